"""The SQL subset fedgate accepts, as a list of small rules applied in order.

Like sqlglot's optimizer lists its RULES, ``RULES`` lists the checks one parsed SELECT
goes through. Each rule reads the tree through a ``Context``, raises ``QueryError`` with
the reason if the query is outside the subset, and records what it validated (the
dataset, the columns and their roles, the group keys, the aggregate calls...) for the
plan. The order is the order of priority of refusals: a query broken in several ways is
refused for the first rule it fails.

One pass over the tree (``survey``) finds what the early rules look for, so that the
rules do not walk the tree each.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlglot import exp

from federation.sql.plan import AggCall

MAX_DEPTH = 40
MAX_NODES = 1_500
MAX_LIMIT = 100_000
RAW_ROW_CAP = 1_000

# Aggregate functions and their canonical names.
AGGREGATES: dict[type[exp.Expr], str] = {
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


# --- one pass over the tree ---------------------------------------------------------------

_WINDOW, _SUBQUERY, _PARAMETER, _AGGREGATE, _FUNCTION, _COLUMN = 1, 2, 4, 8, 16, 32


def _node_kind(cls: type) -> int:
    """What a node class is to the survey, as bits."""
    bits = 0
    if issubclass(cls, exp.Window):
        bits |= _WINDOW
    elif issubclass(cls, exp.Select | exp.Subquery | exp.Union):
        bits |= _SUBQUERY
    elif issubclass(cls, exp.Placeholder | exp.Parameter):
        bits |= _PARAMETER
    if cls in AGGREGATES:
        bits |= _AGGREGATE
    elif issubclass(cls, exp.Func) and not issubclass(cls, _NOT_FUNCTIONS):
        bits |= _FUNCTION
    if issubclass(cls, exp.Column):
        bits |= _COLUMN
    return bits


# The same, worked out once for every node class sqlglot defines (the survey looks up
# every node's); a class made elsewhere (none the parser makes today) is worked out anew.
_NODE_KINDS: dict[type, int] = {
    cls: _node_kind(cls)
    for cls in vars(exp).values()
    if isinstance(cls, type) and issubclass(cls, exp.Expr)
}


@dataclass(frozen=True)
class Survey:
    """What one pass over the tree found, so that refusals keep their order of priority."""

    depth: int
    nodes: int
    window: bool
    subquery: bool
    parameter: bool
    bad_function: exp.Expr | None  # the first function outside the subset, if any
    has_aggregate: bool
    columns: tuple[exp.Column, ...]  # every column reference, wherever it is


def survey(root: exp.Expr) -> Survey:
    """One pass over the tree: depth, size, forbidden node kinds, aggregates; and every
    comment dropped (comments never travel on: no user text but the tree)."""
    depth = nodes = found = 0
    bad: exp.Expr | None = None
    columns: list[exp.Column] = []
    stack: list[tuple[exp.Expr, int]] = [(root, 1)]
    pop, push, known = stack.pop, stack.append, _NODE_KINDS.get
    while stack:
        node, d = pop()
        nodes += 1
        if d > depth:
            depth = d
        if node.comments is not None:
            node.comments = None
        bits = known(type(node))
        if bits is None:
            bits = _node_kind(type(node))
        if bits:
            if bits & _COLUMN and isinstance(node, exp.Column):
                columns.append(node)
            if node is root:
                bits &= ~_SUBQUERY
            if bits & _FUNCTION and bad is None:
                bad = node
            found |= bits
        d += 1
        for child in node.iter_expressions():
            push((child, d))
    return Survey(
        depth=depth,
        nodes=nodes,
        window=bool(found & _WINDOW),
        subquery=bool(found & _SUBQUERY),
        parameter=bool(found & _PARAMETER),
        bad_function=bad,
        has_aggregate=bool(found & _AGGREGATE),
        columns=tuple(columns),
    )


# --- what the rules read and record -------------------------------------------------------


@dataclass
class Context:
    """One query under validation: the tree, the survey, and what the rules validated."""

    select: exp.Select
    survey: Survey
    dataset: str = ""
    node: str = ""
    roles: dict[str, set[str]] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    aggregates: list[AggCall] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)  # a raw SELECT's columns
    raw_order: list[tuple[str, bool, bool]] = field(default_factory=list)
    limit: int | None = None  # the query's LIMIT
    # The aggregate calls and column references of SELECT, HAVING and ORDER BY: what
    # becomes a column of the merged table in the post-merge query.
    outputs: list[exp.Expr] = field(default_factory=list)
    row_cap: int | None = None  # a raw read's LIMIT at every owner: never above RAW_ROW_CAP

    def use(self, column: str, role: str) -> None:
        self.roles.setdefault(column, set()).add(role)

    def column(self, col: exp.Column) -> str:
        """The lower-cased name of a column of the dataset, or a refusal."""
        if isinstance(col.this, exp.Identifier) and not _IDENTIFIER.fullmatch(col.name.lower()):
            raise QueryError(f"{col.name!r} is not a column name")
        if col.args.get("catalog") or (col.table and col.table.lower() != self.dataset):
            raise QueryError(f"column {col.sql()} must name a column of {self.dataset}")
        if isinstance(col.this, exp.Star):
            raise QueryError("SELECT * is not allowed; name the columns or aggregates")
        if col.name.startswith("__"):
            raise QueryError(f"{col.name!r}: names starting with __ are reserved")
        return col.name.lower()


Rule = Callable[[Context], None]


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return node.sql_name().lower() if isinstance(node, exp.Func) else type(node).__name__


def _describe(node: exp.Expr) -> str:
    if isinstance(node, exp.Func):
        return f"function {_function_name(node)}()"
    if isinstance(node, exp.Subquery | exp.Select):
        return "a subquery"
    return f"{type(node).__name__} ({node.sql()[:60]})"


def _literal(node: exp.Expr) -> None:
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


def _scalar(ctx: Context, node: exp.Expr, role: str) -> None:
    """Columns, literals and arithmetic; columns are recorded with ``role``."""
    if isinstance(node, exp.Column):
        ctx.use(ctx.column(node), role)
    elif isinstance(node, _ARITHMETIC):
        for child in node.iter_expressions():
            _scalar(ctx, child, role)
    else:
        _literal(node)


def _condition(ctx: Context, node: exp.Expr) -> None:
    """WHERE: comparisons, IN, BETWEEN, IS NULL, AND/OR/NOT over columns and literals."""
    if isinstance(node, exp.Paren):
        _condition(ctx, node.this)
    elif isinstance(node, _LOGIC):
        for child in node.iter_expressions():
            _condition(ctx, child)
    elif isinstance(node, _COMPARISONS):
        _scalar(ctx, node.this, "filter")
        _scalar(ctx, node.expression, "filter")
    elif isinstance(node, exp.In):
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise QueryError("IN takes a list of literals, not a subquery")
        _scalar(ctx, node.this, "filter")
        for item in node.expressions:
            _literal(item)
    elif isinstance(node, exp.Between):
        _scalar(ctx, node.this, "filter")
        _literal(node.args["low"])
        _literal(node.args["high"])
    elif isinstance(node, exp.Is):
        _scalar(ctx, node.this, "filter")
        if not isinstance(node.expression, exp.Null):
            raise QueryError("IS only takes NULL (IS NULL / IS NOT NULL)")
    elif isinstance(node, exp.Column):
        ctx.use(ctx.column(node), "filter")
    elif isinstance(node, exp.Boolean):
        return
    else:
        raise QueryError(f"{_describe(node)} is not allowed in WHERE")


def aggregate_call(node: exp.Expr) -> AggCall:
    """The call an aggregate node of a validated tree stands for."""
    arg = node.this
    column = None if isinstance(arg, exp.Star) else arg.name.lower()
    return AggCall(AGGREGATES[type(node)], column)


def _aggregate(ctx: Context, node: exp.Expr) -> None:
    func = AGGREGATES[type(node)]
    arg = node.this
    if isinstance(arg, exp.Distinct) or node.args.get("distinct"):
        raise QueryError(f"{func.upper()}(DISTINCT ...) is not allowed")
    if func == "count" and isinstance(arg, exp.Star):
        call = AggCall("count", None)
    elif isinstance(arg, exp.Column):
        column = ctx.column(arg)
        ctx.use(column, "aggregate")
        call = AggCall(func, column)
    else:
        raise QueryError(f"{func.upper()} takes one column, not {arg.sql() if arg else '()'}")
    if len(list(node.iter_expressions())) > 1:
        raise QueryError(f"{func.upper()} takes exactly one argument")
    if call not in ctx.aggregates:
        ctx.aggregates.append(call)
    ctx.outputs.append(node)


def _output(ctx: Context, node: exp.Expr) -> None:
    """SELECT / HAVING / ORDER BY: aggregates, group keys, literals, arithmetic, logic."""
    if type(node) in AGGREGATES:
        _aggregate(ctx, node)
    elif isinstance(node, exp.Column):
        name = ctx.column(node)
        if name not in ctx.groups:
            raise QueryError(f"column {name!r} must be in GROUP BY or inside an aggregate function")
        ctx.outputs.append(node)
    elif isinstance(node, _ARITHMETIC + _COMPARISONS + _LOGIC):
        for child in node.iter_expressions():
            _output(ctx, child)
    elif isinstance(node, exp.Alias):
        _output(ctx, node.this)
    else:
        _literal(node)


def limit_of(select: exp.Select) -> int | None:
    node = select.args.get("limit")
    if node is None:
        return None
    value = node.expression
    if not isinstance(value, exp.Literal) or value.is_string or not value.this.isdigit():
        raise QueryError("LIMIT takes a whole number")
    if int(value.this) > MAX_LIMIT:
        raise QueryError(f"LIMIT may be at most {MAX_LIMIT}")
    return int(value.this)


# --- the rules, in order of priority -------------------------------------------------------


def within_depth(ctx: Context) -> None:
    if ctx.survey.depth > MAX_DEPTH:
        raise QueryError(f"the query is nested too deeply (limit {MAX_DEPTH})")


def within_size(ctx: Context) -> None:
    if ctx.survey.nodes > MAX_NODES:
        raise QueryError(f"the query is too large (limit {MAX_NODES} syntax nodes)")


_CLAUSES = (
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
)


def no_other_clauses(ctx: Context) -> None:
    """Only SELECT ... FROM ... WHERE ... GROUP BY ... HAVING ... ORDER BY ... LIMIT."""
    for key, what in _CLAUSES:
        if ctx.select.args.get(key):
            raise QueryError(f"{what} is not allowed")


def no_window_functions(ctx: Context) -> None:
    if ctx.survey.window:
        raise QueryError("window functions are not allowed")


def no_subqueries(ctx: Context) -> None:
    if ctx.survey.subquery:
        raise QueryError("subqueries are not allowed")


def no_parameters(ctx: Context) -> None:
    if ctx.survey.parameter:
        raise QueryError("parameters are not allowed")


def only_aggregate_functions(ctx: Context) -> None:
    """No function of the engine is reachable but the aggregates (and operators)."""
    if ctx.survey.bad_function is not None:
        raise QueryError(f"{_describe(ctx.survey.bad_function)} is not allowed")


def from_one_dataset(ctx: Context) -> None:
    """FROM dataset or FROM node.dataset, nothing else."""
    source = ctx.select.args.get("from_") or ctx.select.args.get("from")
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
    ctx.dataset, ctx.node = table.name.lower(), (table.db or "").lower()


def where_condition(ctx: Context) -> None:
    where = ctx.select.args.get("where")
    if where is not None:
        _condition(ctx, where.this)


def group_by_columns(ctx: Context) -> None:
    group = ctx.select.args.get("group")
    if group is None:
        return
    for key in ("rollup", "cube", "grouping_sets", "totals"):
        if group.args.get(key):
            raise QueryError(f"GROUP BY {key.upper()} is not allowed")
    for g in group.expressions:
        if not isinstance(g, exp.Column):
            raise QueryError(f"GROUP BY takes column names, not {g.sql()}")
        name = ctx.column(g)
        ctx.use(name, "group_by")
        if name not in ctx.groups:
            ctx.groups.append(name)


def select_list(ctx: Context) -> None:
    """Aggregates over group keys, or (no aggregate, no GROUP BY) a raw read of columns."""
    raw_read = not ctx.survey.has_aggregate and not ctx.groups
    for item in ctx.select.expressions:
        if isinstance(item, exp.Star):
            raise QueryError("SELECT * is not allowed; name the columns or aggregates")
        if not raw_read:
            _output(ctx, item)
            continue
        inner = item.this if isinstance(item, exp.Alias) else item
        if not isinstance(inner, exp.Column):
            raise QueryError(f"{inner.sql()} is not allowed in a raw SELECT")
        name = ctx.column(inner)
        if name in ctx.raw:
            raise QueryError(f"column {name!r} is selected twice")
        ctx.use(name, "raw")
        ctx.raw.append(name)
        ctx.outputs.append(inner)


def selects_a_column(ctx: Context) -> None:
    """SELECT names at least one column or aggregate: an empty or constant select list
    asks for nothing, and no owner is to sign a release of nothing."""
    items = ctx.select.expressions
    if not items:
        raise QueryError("the SELECT list is empty; name the columns or aggregates to compute")
    if not any(item.find(exp.Column, exp.Star, *AGGREGATES) for item in items):
        raise QueryError("the SELECT list names no column or aggregate; name what to compute")


def having_over_groups(ctx: Context) -> None:
    having = ctx.select.args.get("having")
    if having is None:
        return
    if ctx.raw:
        raise QueryError("HAVING needs aggregates")
    _output(ctx, having.this)


def order_by(ctx: Context) -> None:
    """Aggregates, group keys or aliases; a raw read only by its own columns."""
    order = ctx.select.args.get("order")
    if order is None:
        return
    aliases = {i.alias.lower(): i.this for i in ctx.select.expressions if isinstance(i, exp.Alias)}
    for o in order.expressions:
        target = o.this
        if isinstance(target, exp.Literal):
            raise QueryError("ORDER BY takes columns, aliases or aggregates, not positions")
        if isinstance(target, exp.Column) and target.name.lower() in aliases:
            target = aliases[target.name.lower()]
            if not ctx.raw:
                ctx.outputs.append(o.this)  # the alias, a column of the post-merge query
                continue
        if not ctx.raw:
            _output(ctx, target)
            continue
        if not isinstance(target, exp.Column) or ctx.column(target) not in ctx.raw:
            raise QueryError("a raw SELECT may only be ordered by its columns")
        ctx.raw_order.append(
            (ctx.column(target), bool(o.args.get("desc")), bool(o.args.get("nulls_first")))
        )
        ctx.outputs.append(o.this)


def limit_number(ctx: Context) -> None:
    """A whole number up to MAX_LIMIT; a raw read is always capped at RAW_ROW_CAP rows."""
    ctx.limit = limit = limit_of(ctx.select)
    if ctx.raw:
        if limit is None or limit > RAW_ROW_CAP:
            limit = min(limit or RAW_ROW_CAP, RAW_ROW_CAP)
        ctx.row_cap = limit


RULES: tuple[Rule, ...] = (
    within_depth,
    within_size,
    no_other_clauses,
    no_window_functions,
    no_subqueries,
    no_parameters,
    only_aggregate_functions,
    from_one_dataset,
    where_condition,
    group_by_columns,
    select_list,
    selects_a_column,
    having_over_groups,
    order_by,
    limit_number,
)


def check(select: exp.Select, rules: tuple[Rule, ...] = RULES) -> Context:
    """Apply ``rules`` in order to one parsed SELECT; the context holds what they found."""
    ctx = Context(select, survey(select))
    for rule in rules:
        rule(ctx)
    return ctx
