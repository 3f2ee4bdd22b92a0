"""A query's plan, or the typed refusal that says why there is none.

Home and owner both plan the text they are given (an owner never trusts the home's plan).
"""

from __future__ import annotations

from federation.sql import QueryError, QueryPlan, parse
from federation.sql.join import JoinPlan, parse_join
from gateway.errors import InvalidArgument


def plan_or_refuse(sql: str) -> QueryPlan:
    try:
        return parse(sql)
    except QueryError as exc:
        raise InvalidArgument(str(exc)) from None


def join_or_refuse(sql: str) -> JoinPlan:
    """A join aggregate's plan (PSI too: a COUNT over the join), or the typed refusal."""
    try:
        return parse_join(sql)
    except QueryError as exc:
        raise InvalidArgument(str(exc)) from None
