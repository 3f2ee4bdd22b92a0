"""The SQL that fedgate accepts, parsed with sqlglot and never passed through.

A query is parsed into a tree, every node of the tree is checked against a whitelist, and
the result is a ``QueryPlan``: the dataset, the group keys, the aggregate calls, the
filter tree, and which column is used in which role. Every SQL string that reaches an
engine is generated from that tree, not from the user's text.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

MAX_SQL_CHARS = 8_000
MAX_DEPTH = 40
MAX_NODES = 1_500
MAX_LIMIT = 100_000
RAW_ROW_CAP = 1_000

# Aggregate functions and their canonical names.
AGGREGATES: dict[type[exp.Expression], str] = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Avg: "avg",
    exp.Min: "min",
    exp.Max: "max",
    exp.Variance: "var_samp",
    exp.VariancePop: "var_pop",
    exp.Stddev: "stddev_samp",
    exp.StddevSamp: "stddev_samp",
    exp.StddevPop: "stddev_pop",
}
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg, exp.Paren)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_LOGIC = (exp.And, exp.Or, exp.Not)
_LITERALS = (exp.Literal, exp.Null, exp.Boolean)
# sqlglot models these as Func subclasses; they are operators we validate ourselves.
_NOT_FUNCTIONS = (
    *AGGREGATES,
    exp.Cast,
    exp.In,
    exp.Between,
    exp.Is,
    *_ARITHMETIC,
    *_COMPARISONS,
    *_LOGIC,
)
_DATE_TYPES = {
    exp.DataType.Type.DATE,
    exp.DataType.Type.TIMESTAMP,
    exp.DataType.Type.TIMESTAMPNTZ,
    exp.DataType.Type.TIMESTAMPTZ,
}


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class QueryError(ValueError):
    """The query is outside the accepted subset; the message says exactly why."""


@dataclass(frozen=True)
class AggCall:
    func: str  # one of AGGREGATES' values
    column: str | None  # None for COUNT(*)

    @property
    def label(self) -> str:
        return f"{self.func}({self.column or '*'})"


@dataclass(frozen=True)
class Projection:
    """A post-merge step that only picks, sorts and limits columns of the merged table
    (no HAVING, no arithmetic): cheap enough to do without an engine."""

    columns: tuple[tuple[str, str], ...]  # (merged column, output name)
    order: tuple[tuple[str, bool, bool], ...]  # (merged column, descending, nulls first)
    limit: int | None


@dataclass(frozen=True)
class QueryPlan:
    sql: str  # normalised text, regenerated from the tree
    dataset: str
    node: str  # "" unless FROM node.dataset
    group_by: tuple[str, ...]
    aggregates: tuple[AggCall, ...]
    where_sql: str  # the validated WHERE condition, generated from its tree ("" if none)
    raw_columns: tuple[str, ...]  # non-empty only for a raw SELECT of columns
    limit: int | None
    column_roles: dict[str, frozenset[str]] = field(default_factory=dict)
    # A raw SELECT's ORDER BY, applied at every owner too, so that each owner's LIMIT
    # keeps the rows the final ORDER BY ... LIMIT needs.
    raw_order: tuple[tuple[str, bool, bool], ...] = ()
    final_sql: str = ""  # post-merge query over the merged table (generated)
    projection: Projection | None = None  # the same step, where it is a plain projection

    @property
    def is_raw(self) -> bool:
        return bool(self.raw_columns)

    @functools.cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass
class _Survey:
    """What one pass over the tree found, so that refusals keep their order of priority."""

    depth: int = 0
    nodes: int = 0
    window: bool = False
    subquery: bool = False
    parameter: bool = False
    bad_function: exp.Expression | None = None
    has_aggregate: bool = False


def _survey(root: exp.Expression) -> _Survey:
    """One pass over the tree: depth, size, forbidden node kinds, aggregates; and every
    comment dropped (comments never travel on: no user text but the tree)."""
    found = _Survey()
    stack = [(root, 1)]
    while stack:
        node, d = stack.pop()
        found.nodes += 1
        found.depth = max(found.depth, d)
        node.comments = None
        if isinstance(node, exp.Window):
            found.window = True
        elif node is not root and isinstance(node, exp.Select | exp.Subquery | exp.Union):
            found.subquery = True
        elif isinstance(node, exp.Placeholder | exp.Parameter):
            found.parameter = True
        if type(node) in AGGREGATES:
            found.has_aggregate = True
        elif (
            found.bad_function is None
            and isinstance(node, exp.Func)
            and not isinstance(node, _NOT_FUNCTIONS)
        ):
            found.bad_function = node
        for child in node.iter_expressions():
            stack.append((child, d + 1))
    return found


def _column_name(col: exp.Column, dataset: str) -> str:
    if isinstance(col.this, exp.Identifier) and not _IDENTIFIER.fullmatch(col.name.lower()):
        raise QueryError(f"{col.name!r} is not a column name")
    if col.args.get("catalog") or (col.table and col.table.lower() != dataset):
        raise QueryError(f"column {col.sql()} must name a column of {dataset}")
    if isinstance(col.this, exp.Star):
        raise QueryError("SELECT * is not allowed; name the columns or aggregates")
    if col.name.startswith("__"):
        raise QueryError(f"{col.name!r}: names starting with __ are reserved")
    return col.name.lower()


def _function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return node.sql_name().lower() if hasattr(node, "sql_name") else type(node).__name__


class _Validator:
    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.roles: dict[str, set[str]] = {}

    def use(self, column: str, role: str) -> None:
        self.roles.setdefault(column, set()).add(role)

    def literal(self, node: exp.Expression) -> None:
        if isinstance(node, _LITERALS):
            return
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
            return
        if (
            isinstance(node, exp.Cast)
            and isinstance(node.this, exp.Literal)
            and node.this.is_string
            and node.to.this in _DATE_TYPES
        ):
            return
        raise QueryError(f"{node.sql()} is not a literal")

    def scalar(self, node: exp.Expression, role: str) -> None:
        """Columns, literals and arithmetic; columns are recorded with ``role``."""
        if isinstance(node, exp.Column):
            self.use(_column_name(node, self.dataset), role)
        elif isinstance(node, _ARITHMETIC):
            for child in node.iter_expressions():
                self.scalar(child, role)
        else:
            self.literal(node)

    def condition(self, node: exp.Expression) -> None:
        """WHERE: comparisons, IN, BETWEEN, IS NULL, AND/OR/NOT over columns and literals."""
        if isinstance(node, exp.Paren):
            self.condition(node.this)
        elif isinstance(node, _LOGIC):
            for child in node.iter_expressions():
                self.condition(child)
        elif isinstance(node, _COMPARISONS):
            self.scalar(node.this, "filter")
            self.scalar(node.expression, "filter")
        elif isinstance(node, exp.In):
            if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
                raise QueryError("IN takes a list of literals, not a subquery")
            self.scalar(node.this, "filter")
            for item in node.expressions:
                self.literal(item)
        elif isinstance(node, exp.Between):
            self.scalar(node.this, "filter")
            self.literal(node.args["low"])
            self.literal(node.args["high"])
        elif isinstance(node, exp.Is):
            self.scalar(node.this, "filter")
            if not isinstance(node.expression, exp.Null):
                raise QueryError("IS only takes NULL (IS NULL / IS NOT NULL)")
        elif isinstance(node, exp.Column):
            self.use(_column_name(node, self.dataset), "filter")
        elif isinstance(node, exp.Boolean):
            return
        else:
            raise QueryError(f"{_describe(node)} is not allowed in WHERE")

    def aggregate(self, node: exp.Expression, out: list[AggCall]) -> AggCall:
        func = AGGREGATES[type(node)]
        arg = node.this
        if isinstance(arg, exp.Distinct) or node.args.get("distinct"):
            raise QueryError(f"{func.upper()}(DISTINCT ...) is not allowed")
        if func == "count" and isinstance(arg, exp.Star):
            call = AggCall("count", None)
        elif isinstance(arg, exp.Column):
            column = _column_name(arg, self.dataset)
            self.use(column, "aggregate")
            call = AggCall(func, column)
        else:
            raise QueryError(f"{func.upper()} takes one column, not {arg.sql() if arg else '()'}")
        if len(list(node.iter_expressions())) > 1:
            raise QueryError(f"{func.upper()} takes exactly one argument")
        if call not in out:
            out.append(call)
        return call

    def output(self, node: exp.Expression, groups: set[str], aggs: list[AggCall]) -> None:
        """SELECT / HAVING / ORDER BY: aggregates, group keys, literals, arithmetic, logic."""
        if type(node) in AGGREGATES:
            self.aggregate(node, aggs)
        elif isinstance(node, exp.Column):
            name = _column_name(node, self.dataset)
            if name not in groups:
                raise QueryError(
                    f"column {name!r} must be in GROUP BY or inside an aggregate function"
                )
        elif isinstance(node, _ARITHMETIC + _COMPARISONS + _LOGIC):
            for child in node.iter_expressions():
                self.output(child, groups, aggs)
        elif isinstance(node, exp.Alias):
            self.output(node.this, groups, aggs)
        else:
            self.literal(node)


def _describe(node: exp.Expression) -> str:
    if isinstance(node, exp.Func):
        return f"function {_function_name(node)}()"
    if isinstance(node, exp.Subquery | exp.Select):
        return "a subquery"
    return f"{type(node).__name__} ({node.sql()[:60]})"


def _check_clauses(select: exp.Select) -> None:
    for key, what in (
        ("joins", "JOIN"),
        ("with_", "WITH (CTE)"),
        ("with", "WITH (CTE)"),
        ("distinct", "SELECT DISTINCT"),
        ("qualify", "QUALIFY"),
        ("windows", "WINDOW"),
        ("laterals", "LATERAL"),
        ("offset", "OFFSET"),
        ("into", "SELECT INTO"),
        ("sample", "TABLESAMPLE"),
        ("pivots", "PIVOT"),
        ("kind", "this SELECT form"),
        ("prewhere", "PREWHERE"),
        ("settings", "SETTINGS"),
        ("connect", "CONNECT BY"),
        ("match", "MATCH_RECOGNIZE"),
        ("locks", "locking clauses"),
        ("cluster", "CLUSTER BY"),
        ("distribute", "DISTRIBUTE BY"),
        ("sort", "SORT BY"),
    ):
        if select.args.get(key):
            raise QueryError(f"{what} is not allowed")


def _table(select: exp.Select) -> tuple[str, str]:
    source = select.args.get("from_") or select.args.get("from")
    if source is None:
        raise QueryError("the query needs FROM dataset (or FROM node.dataset)")
    table = source.this
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise QueryError(f"FROM takes a dataset name, not {_describe(table)}")
    if table.args.get("catalog") or table.args.get("joins") or table.args.get("laterals"):
        raise QueryError("FROM takes dataset or node.dataset")
    for part in (table.name, table.db or ""):
        if part and not _IDENTIFIER.fullmatch(part.lower()):
            raise QueryError(f"{part!r} is not a dataset or node name")
    if table.args.get("alias"):
        raise QueryError("table aliases are not allowed")
    for key in ("pivots", "sample", "version", "when", "only", "partition", "changes", "format"):
        if table.args.get(key):
            raise QueryError(f"FROM {key.upper()} is not allowed")
    return table.name.lower(), (table.db or "").lower()


def _limit(select: exp.Select) -> int | None:
    node = select.args.get("limit")
    if node is None:
        return None
    value = node.expression
    if not isinstance(value, exp.Literal) or value.is_string or not value.this.isdigit():
        raise QueryError("LIMIT takes a whole number")
    if int(value.this) > MAX_LIMIT:
        raise QueryError(f"LIMIT may be at most {MAX_LIMIT}")
    return int(value.this)


@functools.lru_cache(maxsize=512)
def parse(sql: str) -> QueryPlan:
    """Parse and validate one query; raise QueryError with the reason if it is refused.

    Pure, so the result is cached by text: the same dashboard query asked again costs
    nothing here. Callers must treat the plan (and its trees) as read-only.
    """
    if len(sql) > MAX_SQL_CHARS:
        raise QueryError(f"the query is {len(sql)} characters; the limit is {MAX_SQL_CHARS}")
    try:
        statements = [s for s in sqlglot.parse(sql, dialect="duckdb") if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise QueryError(f"the query does not parse: {first}") from None
    except RecursionError:
        raise QueryError(f"the query is nested too deeply (limit {MAX_DEPTH})") from None
    if len(statements) != 1:
        raise QueryError(f"exactly one statement is allowed, got {len(statements)}")
    select = statements[0]
    if not isinstance(select, exp.Select):
        kind = type(select).__name__.upper()
        raise QueryError(f"only SELECT is allowed, not {kind}")
    found = _survey(select)
    if found.depth > MAX_DEPTH:
        raise QueryError(f"the query is nested too deeply (limit {MAX_DEPTH})")
    if found.nodes > MAX_NODES:
        raise QueryError(f"the query is too large (limit {MAX_NODES} syntax nodes)")
    _check_clauses(select)
    if found.window:
        raise QueryError("window functions are not allowed")
    if found.subquery:
        raise QueryError("subqueries are not allowed")
    if found.parameter:
        raise QueryError("parameters are not allowed")
    if found.bad_function is not None:
        raise QueryError(f"{_describe(found.bad_function)} is not allowed")
    dataset, node_id = _table(select)
    v = _Validator(dataset)
    where = select.args.get("where")
    if where is not None:
        v.condition(where.this)

    group_node = select.args.get("group")
    groups: list[str] = []
    if group_node is not None:
        for key in ("rollup", "cube", "grouping_sets", "totals"):
            if group_node.args.get(key):
                raise QueryError(f"GROUP BY {key.upper()} is not allowed")
        for g in group_node.expressions:
            if not isinstance(g, exp.Column):
                raise QueryError(f"GROUP BY takes column names, not {g.sql()}")
            name = _column_name(g, dataset)
            v.use(name, "group_by")
            if name not in groups:
                groups.append(name)

    aggs: list[AggCall] = []
    has_aggregate = found.has_aggregate
    raw: list[str] = []
    for item in select.expressions:
        if isinstance(item, exp.Star):
            raise QueryError("SELECT * is not allowed; name the columns or aggregates")
        if not has_aggregate and not groups:
            inner = item.this if isinstance(item, exp.Alias) else item
            if not isinstance(inner, exp.Column):
                raise QueryError(f"{inner.sql()} is not allowed in a raw SELECT")
            name = _column_name(inner, dataset)
            if name in raw:
                raise QueryError(f"column {name!r} is selected twice")
            v.use(name, "raw")
            raw.append(name)
        else:
            v.output(item, set(groups), aggs)
    having = select.args.get("having")
    if having is not None:
        if raw:
            raise QueryError("HAVING needs aggregates")
        v.output(having.this, set(groups), aggs)
    order = select.args.get("order")
    aliases = {i.alias.lower(): i.this for i in select.expressions if isinstance(i, exp.Alias)}
    raw_order: list[tuple[str, bool, bool]] = []  # (column, descending, nulls first)
    if order is not None:
        for o in order.expressions:
            target = o.this
            if isinstance(target, exp.Literal):
                raise QueryError("ORDER BY takes columns, aliases or aggregates, not positions")
            if isinstance(target, exp.Column) and target.name.lower() in aliases:
                target = aliases[target.name.lower()]
                if not raw:
                    continue
            if raw:
                if not isinstance(target, exp.Column) or _column_name(target, dataset) not in raw:
                    raise QueryError("a raw SELECT may only be ordered by its columns")
                raw_order.append(
                    (
                        _column_name(target, dataset),
                        bool(o.args.get("desc")),
                        bool(o.args.get("nulls_first")),
                    )
                )
                continue
            v.output(target, set(groups), aggs)
    limit = _limit(select)
    if raw and (limit is None or limit > RAW_ROW_CAP):
        limit = min(limit or RAW_ROW_CAP, RAW_ROW_CAP)

    for col in select.find_all(exp.Column):  # dataset.column -> column, everywhere
        col.set("table", None)
        col.set("db", None)
    # copy=False: generating DuckDB from a DuckDB tree rewrites nothing that matters, and
    # the copies were most of the cost of planning a new query.
    normalised = select.sql(dialect="duckdb", copy=False)
    where_sql = where.this.sql(dialect="duckdb", comments=False, copy=False) if where else ""
    final_tree = _final_query(select, aggs)  # reuses (changes) the tree: generate text first
    merged_columns = raw or [*groups, *(agg_column(i) for i in range(len(aggs)))]
    return QueryPlan(
        sql=normalised,
        dataset=dataset,
        node=node_id,
        group_by=tuple(groups),
        aggregates=tuple(aggs),
        where_sql=where_sql,
        raw_columns=tuple(raw),
        raw_order=tuple(raw_order),
        limit=limit,
        column_roles={k: frozenset(r) for k, r in v.roles.items()},
        final_sql=final_tree.sql(dialect="duckdb", comments=False, copy=False),
        projection=_projection(final_tree, set(merged_columns)),
    )


MERGED_TABLE = "__merged"


def agg_column(index: int) -> str:
    return f"__a{index}"


def _final_query(select: exp.Select, aggs: list[AggCall]) -> exp.Select:
    """The post-merge query: aggregates become columns of the merged table, WHERE goes.

    Built in place from ``select``, which the caller no longer needs."""
    # An unaliased output keeps the name the user wrote (as DuckDB would name it).
    names = [
        None if isinstance(item, exp.Alias | exp.Column) else item.sql(dialect="duckdb")
        for item in select.expressions
    ]
    final = select
    final.set("where", None)
    final.set("group", None)
    having = final.args.get("having")
    final.set("having", None)

    def replace(node: exp.Expression) -> exp.Expression:
        if type(node) in AGGREGATES:
            arg = node.this
            column = None if isinstance(arg, exp.Star) else arg.name.lower()
            call = AggCall(AGGREGATES[type(node)], column)
            return exp.column(agg_column(aggs.index(call)))
        if isinstance(node, exp.Column):
            return exp.column(node.name.lower())
        return node

    final = final.transform(replace, copy=False)
    final.set("from_", exp.From(this=exp.Table(this=exp.to_identifier(MERGED_TABLE))))
    if having is not None:
        final.set("where", exp.Where(this=having.this.transform(replace, copy=False)))
    for i, name in enumerate(names):
        if name is not None:
            final.expressions[i] = exp.alias_(final.expressions[i], name, quoted=True, copy=False)
    return final


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
