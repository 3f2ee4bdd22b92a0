"""A validated query as a plan of explicit steps: where it runs, and what each step does.

A query over one dataset is three steps, run in order by different parties:

1. ``ScanStep``, at every owner: read the dataset's rows that pass the WHERE condition
   (for a raw read: its columns, ordered and capped);
2. ``AggregateStep``, at every owner then again at the home: group and compute each
   aggregate's mergeable state (a raw read has no such step);
3. ``FinalStep``, at the home over the merged table: final values, HAVING, ORDER BY and
   LIMIT.

Where a join across two owners goes: a ``JoinStep`` (both sides' join keys, matched
without revealing the keys, e.g. by PSI) would sit between two ``ScanStep``s, one per
owner and dataset, and the ``AggregateStep``. ``steps`` then reads ``(scan, scan, join,
aggregate, final)``; the single-dataset properties below (``dataset``, ``node``,
``where_sql``, ``column_roles``) are what a join plan would answer per scan instead.

Plans are cached and shared between threads: they and their trees are read-only.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from typing import cast

from sqlglot import exp

from federation.sql.dialect import DUCKDB
from federation.sql.states import StateColumn, needed

MERGED_TABLE = "__merged"


def agg_column(index: int) -> str:
    """The merged table's column holding the final value of the ``index``-th aggregate."""
    return f"__a{index}"


def value_name(index: int) -> str:
    """The name of the ``index``-th expression inside an aggregate (``SUM(a * b)``)."""
    return f"__v{index}"


def key_name(index: int) -> str:
    """The name of the ``index``-th group key that is an expression (``year(day)``)."""
    return f"__g{index}"


def column_name(col: exp.Column) -> str:
    """A column's name as the plan, the grants and the declarations spell it: identifiers
    ignore case, and declared names are lower case (``rules.Context.column``)."""
    return col.name.lower()


def columns_in(tree: exp.Expr) -> tuple[str, ...]:
    """The columns ``tree`` reads (``column_name``), each once, sorted."""
    return tuple(sorted({column_name(c) for c in tree.find_all(exp.Column)}))


@dataclass(frozen=True)
class AggCall:
    func: str  # one of rules.AGGREGATES' values
    # What it aggregates: a dataset column's name, a ``value_name`` (an expression, in
    # ``AggregateStep.values``), or None for COUNT(*).
    column: str | None
    columns: tuple[str, ...] = ()  # the dataset columns it reads (sorted)
    param: float | None = None  # approx_quantile's q (median: 0.5)
    text: str = field(default="", compare=False)  # its argument as written (normalised)

    @property
    def label(self) -> str:
        arg = self.text or self.column or "*"
        if self.param is not None:
            return f"{self.func}({arg}, {self.param:g})"
        return f"{self.func}({arg})"


@dataclass(frozen=True)
class Value:
    """An expression computed per row at every owner: inside an aggregate (``__v<i>``)
    or as a group key (``__g<i>``). Its tree is validated and read-only."""

    name: str
    tree: exp.Expr = field(compare=False, repr=False)
    text: str  # normalised SQL: equal texts are one value
    columns: tuple[str, ...]  # the dataset columns it reads (sorted)
    # The conditions inside it (CASE WHEN ..., FILTER (WHERE ...)): each one's leaves
    # get an L2 noise layer, as the WHERE condition's do.
    conditions: tuple[exp.Expr, ...] = field(default=(), compare=False, repr=False)


def _scaled_column(node: exp.Expr) -> bool:
    """A column times (or divided by) positive numbers whose product is within
    ``SCALES``: each factor moderate is not enough (``x * 1e6 * 1e6 * 1e6`` reaches an
    overflow, decided on the exact value; ``x * 1e-320`` is 0 exactly when every x is
    small, an underflow that would tell the group's largest x)."""
    factor = _column_factor(node)
    return factor is not None and SCALES[0] <= factor <= SCALES[1]


def _column_factor(node: exp.Expr) -> float | None:
    """The product of the positive numbers a column is scaled by (1.0 for a bare
    column), or None for any other shape."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Column):
        return 1.0
    if isinstance(node, exp.Mul | exp.Div):
        parts = [node.this, node.expression]
        for column, number in ((parts[0], parts[1]), (parts[1], parts[0])):
            if isinstance(node, exp.Div) and column is not parts[0]:
                continue
            if isinstance(number, exp.Literal) and not number.is_string:
                value = float(number.this)
                inner = _column_factor(column)
                if inner is not None and math.isfinite(value) and value > 0:
                    return inner * value if isinstance(node, exp.Mul) else inner / value
    return None


def noise_safe(value: Value) -> bool:
    """Whether sticky (L2) noise protects this value: a column scaled by a positive
    number, a positive constant, or ``CASE WHEN cond THEN <one such value> END`` (what
    FILTER becomes). The noise of a value is seeded by the rows that hold it and the
    columns it reads, not by its values: two values of other shapes over the same rows
    and columns (``x`` and ``CASE WHEN id = 17 THEN 0 ELSE x END``; ``x`` and ``-x``)
    would carry the same noise, and their difference would be exact."""
    tree = value.tree
    while isinstance(tree, exp.Paren):
        tree = tree.this
    if isinstance(tree, exp.Case):
        if tree.args.get("default") not in (None,) and not isinstance(
            tree.args.get("default"), exp.Null
        ):
            return False
        results = {b.args["true"].sql() for b in tree.args.get("ifs") or []}
        results.discard("NULL")
        if len(results) != 1:
            return False
        tree = next(b.args["true"] for b in tree.args["ifs"] if b.args["true"].sql() != "NULL")
    if isinstance(tree, exp.Literal) and not tree.is_string:
        return _moderate(float(tree.this))
    return _scaled_column(tree)


# The product of the numbers a noise-protected column may be scaled by: far from overflow
# and from underflow (10^-12 takes revenue in yuan to units of 10^12 and back within reach).
SCALES = (1e-12, 1e6)


def _moderate(factor: float) -> bool:
    """A positive, finite factor far from overflow or underflow (a sum scaled to reach
    infinity would say by whether it does what its exact value is)."""
    return math.isfinite(factor) and 1e-6 <= factor <= 1e6


@dataclass(frozen=True)
class Bucket:
    """A group key that buckets a column (``floor(x / w) * w``, ``width_bucket``,
    ``date_trunc``): allowed on a ``filter`` column when it is coarse (the owner checks
    how many buckets the column's range makes)."""

    column: str
    width: float | None = None  # floor(x / width)
    count: int | None = None  # width_bucket's buckets, or a CASE's branches
    unit: str | None = None  # date_trunc / year / month: the unit


@dataclass(frozen=True)
class Projection:
    """A post-merge step that only picks, sorts and limits columns of the merged table
    (no HAVING, no arithmetic): cheap enough to do without an engine."""

    columns: tuple[tuple[str, str], ...]  # (merged column, output name)
    order: tuple[tuple[str, bool, bool], ...]  # (merged column, descending, nulls first)
    limit: int | None


@dataclass(frozen=True)
class ScanStep:
    """What an owner reads of its own partition."""

    dataset: str
    node: str  # "" unless FROM node.dataset
    # The validated WHERE condition (None if none). Generated SQL is built from it.
    where: exp.Expr | None = field(compare=False, repr=False)
    column_roles: dict[str, frozenset[str]]  # column -> the roles the query uses it in
    raw_columns: tuple[str, ...] = ()  # non-empty only for a raw SELECT of columns
    # A raw SELECT's ORDER BY, applied at every owner too, so that each owner's LIMIT
    # keeps the rows the final ORDER BY ... LIMIT needs.
    raw_order: tuple[tuple[str, bool, bool], ...] = ()  # (column, descending, nulls first)
    limit: int | None = None  # a raw read's row cap at each owner (None for aggregates)

    @functools.cached_property
    def where_sql(self) -> str:
        """The condition as text ("" if none), for display: generated SQL uses the tree."""
        if self.where is None:
            return ""
        return self.where.sql(dialect=DUCKDB, comments=False, copy=False)


@dataclass(frozen=True)
class AggregateStep:
    """Group by the keys and compute each aggregate's mergeable state."""

    group_by: tuple[str, ...]  # dataset columns, or key names (``keys``)
    aggregates: tuple[AggCall, ...]  # distinct calls, in order of first use
    values: tuple[Value, ...] = ()  # the expressions aggregated (``value_name``)
    keys: tuple[Value, ...] = ()  # the group keys that are expressions (``key_name``)
    buckets: tuple[Bucket, ...] = ()
    # GROUP BY names read as SELECT aliases: an owner refuses one that is also a column
    # of its dataset (DuckDB would group by the column; the home cannot see columns).
    key_aliases: tuple[str, ...] = ()

    @functools.cached_property
    def value_of(self) -> dict[str, Value]:
        """Expression values and keys by name."""
        return {v.name: v for v in (*self.values, *self.keys)}

    def columns_of(self, name: str) -> tuple[str, ...]:
        """The dataset columns behind a value or key name (itself for a column)."""
        value = self.value_of.get(name)
        return value.columns if value is not None else (name,)

    @functools.cached_property
    def states(self) -> tuple[StateColumn, ...]:
        """The state columns of a partial, after the group keys (``states.needed``)."""
        return needed(self.aggregates, dp=False)

    @functools.cached_property
    def dp_states(self) -> tuple[StateColumn, ...]:
        """The same as the owner's SQL computes them under DP, before noise."""
        return needed(self.aggregates, dp=True)


@dataclass(frozen=True)
class FinalStep:
    """The post-merge query over ``MERGED_TABLE`` (group keys and ``agg_column(i)``).

    Its text and its Projection are worked out on first use: only the home needs them."""

    tree: exp.Select = field(compare=False, repr=False)
    merged: tuple[str, ...]  # the merged table's columns
    limit: int | None  # the query's LIMIT

    @functools.cached_property
    def sql(self) -> str:
        """The query, run by the home's engine where ``projection`` is None."""
        return self.tree.sql(dialect=DUCKDB, comments=False, copy=False)

    @functools.cached_property
    def projection(self) -> Projection | None:
        """The same step where it is a plain projection, done in Arrow."""
        return _projection(self.tree, set(self.merged))


def _projection(final: exp.Select, merged: set[str]) -> Projection | None:
    """The final step as a Projection, or None where it needs the engine (HAVING,
    expressions, or an alias that shadows another column)."""
    if final.args.get("where") is not None:
        return None
    columns: list[tuple[str, str]] = []
    for item in final.expressions:
        inner = item.this if isinstance(item, exp.Alias) else item
        if not isinstance(inner, exp.Column) or inner.name not in merged:
            return None
        columns.append((inner.name, item.alias if isinstance(item, exp.Alias) else inner.name))
    sources: dict[str, set[str]] = {}  # by lower-cased name: identifiers ignore case
    for source, name in columns:
        sources.setdefault(name.lower(), set()).add(source)
    order: list[tuple[str, bool, bool]] = []
    order_node = final.args.get("order")
    for o in order_node.expressions if order_node is not None else []:
        target = o.this
        if isinstance(target, exp.Literal) and not target.is_string and target.this.isdigit():
            position = int(target.this)  # ORDER BY 2: the second output column
            if not 1 <= position <= len(columns):
                return None
            source = columns[position - 1][0]
            order.append((source, bool(o.args.get("desc")), bool(o.args.get("nulls_first"))))
            continue
        if not isinstance(target, exp.Column):
            return None
        name = target.name.lower()
        picked = sources.get(name)
        if picked is not None:
            if len(picked) > 1 or (name in merged and picked != {name}):
                return None  # ambiguous: leave the resolution to the engine
            source = next(iter(picked))
        elif name in merged:
            source = name
        else:
            return None
        order.append((source, bool(o.args.get("desc")), bool(o.args.get("nulls_first"))))
    return Projection(columns=tuple(columns), order=tuple(order), limit=_limit(final))


def _limit(select: exp.Select) -> int | None:
    """The LIMIT of a validated query (a whole number)."""
    node = select.args.get("limit")
    return None if node is None else int(node.expression.this)


Step = ScanStep | AggregateStep | FinalStep


@dataclass(frozen=True)
class QueryPlan:
    sql: str  # normalised text, regenerated from the tree
    steps: tuple[Step, ...]  # (scan, aggregate, final), or (scan, final) for a raw read

    def __post_init__(self) -> None:
        if not isinstance(self.steps[0], ScanStep) or not isinstance(self.steps[-1], FinalStep):
            raise ValueError("a plan starts with a scan and ends with its final step")

    @property
    def scan(self) -> ScanStep:
        return cast(ScanStep, self.steps[0])  # checked in __post_init__

    @property
    def aggregate(self) -> AggregateStep | None:
        step = self.steps[-2]
        return step if isinstance(step, AggregateStep) else None

    @property
    def final(self) -> FinalStep:
        return cast(FinalStep, self.steps[-1])  # checked in __post_init__

    # --- one dataset's plan, as the rest of the code reads it ------------------------------

    @property
    def dataset(self) -> str:
        return self.scan.dataset

    @property
    def node(self) -> str:
        return self.scan.node

    @property
    def where_sql(self) -> str:
        return self.scan.where_sql

    @property
    def column_roles(self) -> dict[str, frozenset[str]]:
        return self.scan.column_roles

    @property
    def raw_columns(self) -> tuple[str, ...]:
        return self.scan.raw_columns

    @property
    def raw_order(self) -> tuple[tuple[str, bool, bool], ...]:
        return self.scan.raw_order

    @property
    def is_raw(self) -> bool:
        return bool(self.scan.raw_columns)

    @property
    def group_by(self) -> tuple[str, ...]:
        step = self.aggregate
        return step.group_by if step is not None else ()

    @property
    def aggregates(self) -> tuple[AggCall, ...]:
        step = self.aggregate
        return step.aggregates if step is not None else ()

    @property
    def buckets(self) -> tuple[Bucket, ...]:
        step = self.aggregate
        return step.buckets if step is not None else ()

    @functools.cached_property
    def conditions(self) -> tuple[exp.Expr, ...]:
        """Every condition the owner evaluates: WHERE, then those inside values."""
        found: list[exp.Expr] = [] if self.scan.where is None else [self.scan.where]
        step = self.aggregate
        for value in (*step.values, *step.keys) if step is not None else ():
            found.extend(value.conditions)
        return tuple(found)

    @functools.cached_property
    def value_condition_columns(self) -> frozenset[str]:
        """The columns tested inside a value's own condition (FILTER, CASE WHEN)."""
        step = self.aggregate
        values = step.values if step is not None else ()
        return frozenset(col for v in values for c in v.conditions for col in columns_in(c))

    @property
    def limit(self) -> int | None:
        """A raw read's row cap (applied at every owner), else the query's LIMIT."""
        return self.scan.limit if self.is_raw else self.final.limit

    @property
    def final_sql(self) -> str:
        return self.final.sql

    @property
    def projection(self) -> Projection | None:
        return self.final.projection

    def bounds_of(
        self, name: str, clamp: dict[str, tuple[float, float]]
    ) -> tuple[float, float] | None:
        """Under DP, the range one row's value can take once clamped: a column's declared
        bounds, or the interval an expression's columns' bounds imply (``intervals``;
        raises ``intervals.Unbounded`` where none is finite)."""
        step = self.aggregate
        value = step.value_of.get(name) if step is not None else None
        if value is None:
            return clamp.get(name)
        from federation.sql.intervals import interval_of  # noqa: PLC0415

        interval = interval_of(value.tree, clamp)
        return (interval.lo, interval.hi)

    @functools.cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()
