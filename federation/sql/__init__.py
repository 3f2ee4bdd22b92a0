"""The SQL fedgate accepts: parsed, checked by a list of rules, planned in steps, and
generated again from the tree (never passed through).

``parse(text)`` is the entry point: ``read`` (text to one SELECT tree) then
``rules.check`` (the subset, rule by rule) then a ``QueryPlan`` of steps (scan at each
owner, aggregate, final at the home). ``partial_query`` generates an owner's SQL from a
plan; ``state_columns`` says what that SQL's partial carries.
"""

from __future__ import annotations

from federation.sql.conditions import MAX_LEAVES, TooManyLeaves, leaves
from federation.sql.generate import leaf_query, partial_query, partial_tree
from federation.sql.join import JoinAgg, JoinPlan, JoinSide, is_join, parse_join
from federation.sql.parse import MAX_SQL_CHARS, parse, read
from federation.sql.plan import (
    MERGED_TABLE,
    AggCall,
    AggregateStep,
    FinalStep,
    Projection,
    QueryPlan,
    ScanStep,
    Step,
    agg_column,
)
from federation.sql.rules import (
    AGGREGATES,
    MAX_DEPTH,
    MAX_LIMIT,
    MAX_NODES,
    RAW_ROW_CAP,
    RULES,
    QueryError,
)
from federation.sql.states import (
    COUNT_KINDS,
    FINGERPRINT,
    ROWS,
    Hidden,
    Kind,
    StateColumn,
    hidden_columns,
    hidden_name,
    row_counts,
    state_columns,
    state_name,
)

__all__ = [
    "AGGREGATES",
    "COUNT_KINDS",
    "FINGERPRINT",
    "MAX_LEAVES",
    "MAX_DEPTH",
    "MAX_LIMIT",
    "MAX_NODES",
    "MAX_SQL_CHARS",
    "MERGED_TABLE",
    "RAW_ROW_CAP",
    "ROWS",
    "RULES",
    "AggCall",
    "AggregateStep",
    "FinalStep",
    "Hidden",
    "Kind",
    "Projection",
    "QueryError",
    "QueryPlan",
    "ScanStep",
    "StateColumn",
    "TooManyLeaves",
    "Step",
    "agg_column",
    "hidden_columns",
    "hidden_name",
    "leaf_query",
    "leaves",
    "parse",
    "partial_query",
    "partial_tree",
    "read",
    "row_counts",
    "state_name",
    "state_columns",
    "JoinAgg",
    "JoinPlan",
    "JoinSide",
    "is_join",
    "parse_join",
]
