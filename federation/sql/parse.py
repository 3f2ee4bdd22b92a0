"""From a query's text to its plan: one SELECT tree, checked by the rules, made a plan.

The SQL that fedgate accepts is parsed with sqlglot and never passed through: every SQL
string that reaches an engine is generated from the validated tree, not from the user's
text.
"""

from __future__ import annotations

import collections
import threading

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from federation.sql import generate, wording
from federation.sql.dialect import DUCKDB
from federation.sql.plan import AggregateStep, FinalStep, QueryPlan, ScanStep, Step, agg_column
from federation.sql.rules import MAX_DEPTH, Context, QueryError, check

MAX_SQL_CHARS = 8_000


def read(sql: str) -> exp.Select:
    """The one SELECT statement in ``sql``, as a tree; or a refusal."""
    if len(sql) > MAX_SQL_CHARS:
        raise QueryError(f"the query is {len(sql)} characters; the limit is {MAX_SQL_CHARS}")
    try:
        statements = [s for s in DUCKDB.parse(sql) if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise QueryError(f"the query does not parse: {first}") from None
    except RecursionError:
        raise QueryError(f"the query is nested too deeply (limit {MAX_DEPTH})") from None
    if len(statements) != 1:
        raise QueryError(f"exactly one statement is allowed, got {len(statements)}")
    select = statements[0]
    if not isinstance(select, exp.Select):
        raise QueryError(f"only SELECT is allowed, not {wording.statement_kind(sql, select)}")
    return select


PLAN_CACHE_ENTRIES = 512
# Bytes of memory the kept plans may take: a plan's trees cost ~100-120 bytes of memory a
# character of its text (measured: 9 KB for a 94-character query, 0.68 MB for one of
# 6 200), so 512 plans of the largest text allowed took ~0.5 GB (review, 2026-12-05).
PLAN_CACHE_BYTES = 32 * 1024 * 1024
PLAN_BYTES_PER_CHAR = 128


def plan_cost(sql: str) -> int:
    """What keeping a plan of this text costs, about, in memory."""
    return PLAN_BYTES_PER_CHAR * len(sql)


class _Plans:
    """Plans by text, least recently used dropped first, within ``limit`` entries and
    ``max_bytes`` of memory (``plan_cost``). A plan is also kept under its normalised text
    (``plan.sql``), which is what every owner plans from: the home's own owner then finds
    the plan the home just made (normalising is idempotent: tested)."""

    def __init__(self, limit: int, max_bytes: int = PLAN_CACHE_BYTES) -> None:
        self._limit = limit
        self._max_bytes = max_bytes
        self._plans: collections.OrderedDict[str, tuple[QueryPlan, int]] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, sql: str) -> QueryPlan | None:
        with self._lock:
            hit = self._plans.get(sql)
            if hit is None:
                return None
            self._plans.move_to_end(sql)
            return hit[0]

    def keep(self, sql: str, plan: QueryPlan) -> None:
        cost = plan_cost(plan.sql)  # under each key: an alias may outlive the other
        with self._lock:
            for key in dict.fromkeys((sql, plan.sql)):
                old = self._plans.pop(key, None)
                if old is not None:
                    self._bytes -= old[1]
                self._plans[key] = (plan, cost)
                self._bytes += cost
            while self._plans and (len(self._plans) > self._limit or self._bytes > self._max_bytes):
                self._bytes -= self._plans.popitem(last=False)[1][1]

    @property
    def bytes(self) -> int:
        return self._bytes


_PLANS = _Plans(PLAN_CACHE_ENTRIES)


def parse(sql: str) -> QueryPlan:
    """Parse and validate one query; raise QueryError with the reason if it is refused.

    Pure, so the result is kept by text: the same dashboard query asked again costs
    nothing here. Callers must treat the plan (and its trees) as read-only.
    """
    plan = _PLANS.get(sql)
    if plan is None:
        plan = build(check(read(sql), sql=sql))
        _PLANS.keep(sql, plan)
    return plan


def _every_column_has_a_role(ctx: Context) -> None:
    """Defence in depth: every column in what owners compute (the condition, the values,
    the keys) was recorded in a role the owner's grants are checked against. A column a
    rule let through unrecorded would be used in no role at all: refuse the query."""
    where = ctx.select.args.get("where")
    trees = [where.this] if where is not None else []
    trees += [v.tree for v in (*ctx.values, *ctx.keys)]
    for tree in trees:
        for col in tree.find_all(exp.Column):
            if col.name.lower() not in ctx.roles:
                raise QueryError(f"column {col.name!r} is used in a way the subset does not check")


def build(ctx: Context) -> QueryPlan:
    """The plan of a query the rules accepted (its tree becomes the final step's)."""
    _every_column_has_a_role(ctx)
    select = ctx.select
    # Generated in place: generating DuckDB from a DuckDB tree rewrites nothing that
    # matters, and the copies were most of the cost of planning a new query.
    writer = generate.generator()
    normalised = generate.sql(select, writer)
    where = select.args.get("where")
    scan = ScanStep(
        dataset=ctx.dataset,
        node=ctx.node,
        where=where.this if where is not None else None,
        column_roles={k: frozenset(r) for k, r in ctx.roles.items()},
        raw_columns=tuple(ctx.raw),
        raw_order=tuple(ctx.raw_order),
        limit=ctx.row_cap,
    )
    final_tree = generate.final_query(select, ctx.outputs, writer)  # in place
    merged = ctx.raw or [*ctx.groups, *(agg_column(i) for i in range(len(ctx.aggregates)))]
    final = FinalStep(tree=final_tree, merged=tuple(merged), limit=ctx.limit)
    steps: tuple[Step, ...]
    if ctx.raw:
        steps = (scan, final)
    else:
        step = AggregateStep(
            tuple(ctx.groups),
            tuple(ctx.aggregates),
            values=tuple(ctx.values),
            keys=tuple(ctx.keys),
            buckets=tuple(ctx.buckets),
            key_aliases=tuple(ctx.key_aliases),
        )
        steps = (scan, step, final)
    return QueryPlan(sql=normalised, steps=steps)
