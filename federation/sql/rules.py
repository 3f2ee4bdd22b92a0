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

from federation.sql import generate, wording
from federation.sql.plan import (
    AggCall,
    Bucket,
    Value,
    agg_column,
    columns_in,
    key_name,
    value_name,
)

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
    exp.ApproxDistinct: "approx_count_distinct",
    exp.ApproxQuantile: "approx_quantile",
    exp.Median: "approx_quantile",  # median(x) is approx_quantile(x, 0.5)
}
# The aggregates that show values of single rows (the grant's ``extremes`` control).
EXTREMES = frozenset({"min", "max", "approx_quantile"})
# Per-row functions allowed inside values (and conditions): none reads anything but its
# arguments, none fails on a row but by overflow (which the owner's TRY turns into NULL).
_SCALAR_FUNCTIONS = (exp.Abs, exp.Round, exp.Coalesce, exp.Least, exp.Greatest)
# Functions allowed only in a group key: they coarsen a column into buckets or prefixes.
_DATE_PARTS: dict[type[exp.Expr], str] = {
    exp.Year: "year",
    exp.Quarter: "quarter",
    exp.Month: "month",
}
_KEY_FUNCTIONS = (
    *_DATE_PARTS,
    exp.TimestampTrunc,
    exp.DateTrunc,
    exp.Floor,
    exp.WidthBucket,
    exp.Substring,
)
_DATE_UNITS = ("year", "quarter", "month", "week", "day")
_NUMERIC_CASTS = {
    exp.DataType.Type.TINYINT,
    exp.DataType.Type.SMALLINT,
    exp.DataType.Type.INT,
    exp.DataType.Type.BIGINT,
    exp.DataType.Type.INT128,
    exp.DataType.Type.DECIMAL,
    exp.DataType.Type.FLOAT,
    exp.DataType.Type.DOUBLE,
}
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg, exp.Paren)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_LOGIC = (exp.And, exp.Or, exp.Not)
_LITERALS = (exp.Literal, exp.Null, exp.Boolean)
# sqlglot models these as Func subclasses; they are operators we validate ourselves.
_NOT_FUNCTIONS = (
    *AGGREGATES,
    *_SCALAR_FUNCTIONS,
    *_KEY_FUNCTIONS,
    exp.Case,
    exp.If,
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
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")  # as the parser keeps one


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
    bad_number: str | None  # the first number literal that is not a number (``1e``)
    has_aggregate: bool
    columns: tuple[exp.Column, ...]  # every column reference, wherever it is


def survey(root: exp.Expr) -> Survey:
    """One pass over the tree: depth, size, forbidden node kinds, aggregates; and every
    comment dropped (comments never travel on: no user text but the tree)."""
    depth = nodes = found = 0
    bad: exp.Expr | None = None
    bad_number: str | None = None
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
        if (
            type(node) is exp.Literal
            and bad_number is None
            and not node.is_string
            and not _NUMBER.fullmatch(node.this)
        ):
            bad_number = node.this
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
        bad_number=bad_number,
        has_aggregate=bool(found & _AGGREGATE),
        columns=tuple(columns),
    )


# --- what the rules read and record -------------------------------------------------------


@dataclass
class Context:
    """One query under validation: the tree, the survey, and what the rules validated."""

    select: exp.Select
    survey: Survey
    sql: str = ""  # the user's text, to quote what they wrote in a refusal
    dataset: str = ""
    node: str = ""
    roles: dict[str, set[str]] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)  # columns or key names
    keys: list[Value] = field(default_factory=list)  # group keys that are expressions
    buckets: list[Bucket] = field(default_factory=list)
    key_aliases: list[str] = field(default_factory=list)  # GROUP BY names read as aliases
    aggregates: list[AggCall] = field(default_factory=list)
    values: list[Value] = field(default_factory=list)  # expressions inside aggregates
    raw: list[str] = field(default_factory=list)  # a raw SELECT's columns
    raw_order: list[tuple[str, bool, bool]] = field(default_factory=list)
    limit: int | None = None  # the query's LIMIT
    # What becomes a column of the merged table in the post-merge query: each aggregate
    # call, group key and alias reference of SELECT, HAVING and ORDER BY, with the
    # merged column (or alias) that replaces it.
    outputs: list[tuple[exp.Expr, str]] = field(default_factory=list)
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

    def describe(self, node: exp.Expr) -> str:
        """A node as the user wrote it (``list()``, not the parser's ``array_agg()``)."""
        return wording.describe(node, self.sql) if self.sql else _describe(node)


Rule = Callable[[Context], None]


def _describe(node: exp.Expr) -> str:
    if isinstance(node, exp.Func):
        return f"function {wording.function_name(node)}()"
    if isinstance(node, exp.Subquery | exp.Select):
        return "a subquery"
    return f"{type(node).__name__} ({node.sql()[:60]})"


def _text(node: exp.Expr) -> str:
    """A validated expression's normalised text: equal texts compute equal values."""
    return generate.sql(node)


def _is_literal(node: exp.Expr) -> bool:
    if isinstance(node, _LITERALS):
        return True
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        return True
    return (
        isinstance(node, exp.Cast)
        and isinstance(node.this, exp.Literal)
        and node.this.is_string
        and node.to.this in _DATE_TYPES
    )


def _literal(node: exp.Expr, where: str = "") -> None:
    if _is_literal(node):
        return
    if type(node) in AGGREGATES or isinstance(node, exp.Filter):
        raise QueryError(f"{_label(node)}: an aggregate cannot be used here{where}")
    if isinstance(node, exp.Func):
        raise QueryError(f"{_describe(node)} is not allowed here{where}")
    if where:
        raise QueryError(f"{node.sql()} is not allowed{where}")
    raise QueryError(f"{node.sql()} is not a literal")


def _number(node: exp.Expr) -> float | None:
    """A numeric literal's value (None if it is not one)."""
    negative = isinstance(node, exp.Neg)
    inner = node.this if negative else node
    if not isinstance(inner, exp.Literal) or inner.is_string:
        return None
    try:
        value = float(inner.this)
    except ValueError:
        return None
    return -value if negative else value


def _scalar(ctx: Context, node: exp.Expr, role: str, where: str = "") -> None:
    """A per-row value: columns, literals, arithmetic, ABS/ROUND/COALESCE/LEAST/GREATEST,
    CAST to a number or date, and CASE (whose conditions use columns as ``filter``).
    Columns are recorded with ``role``."""
    if isinstance(node, exp.Column):
        ctx.use(ctx.column(node), role)
    elif isinstance(node, _ARITHMETIC + _SCALAR_FUNCTIONS):
        _plain_arguments(node)
        for child in node.iter_expressions():
            _scalar(ctx, child, role, where)
    elif isinstance(node, exp.Cast) and not _is_literal(node):
        target = node.to.this
        if target not in _NUMERIC_CASTS and target not in _DATE_TYPES:
            raise QueryError(f"CAST to {node.to.sql()} is not allowed{where}; cast to a number")
        _scalar(ctx, node.this, role, where)
    elif isinstance(node, exp.Case):
        if node.args.get("this") is not None:  # CASE x WHEN v THEN ...: x is compared
            _scalar(ctx, node.this, "filter", where)
        for branch in node.args.get("ifs") or []:
            if node.args.get("this") is not None:
                _literal(branch.this, where)
            else:
                _condition(ctx, branch.this, "a CASE condition")
            _scalar(ctx, branch.args["true"], role, where)
        if node.args.get("default") is not None:
            _scalar(ctx, node.args["default"], role, where)
    else:
        _literal(node, where)


def _condition(ctx: Context, node: exp.Expr, place: str = "WHERE") -> None:
    """WHERE (and CASE WHEN, FILTER): comparisons, IN, BETWEEN, IS NULL, AND/OR/NOT over
    columns and literals; every column is used as ``filter``."""
    if isinstance(node, exp.Paren):
        _condition(ctx, node.this, place)
    elif isinstance(node, _LOGIC):
        for child in node.iter_expressions():
            _condition(ctx, child, place)
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
        raise QueryError(f"{ctx.describe(node)} is not allowed in {place}")


def _conditions_in(tree: exp.Expr) -> tuple[exp.Expr, ...]:
    """The conditions of the CASE branches inside a validated value."""
    found: list[exp.Expr] = []
    for case in tree.find_all(exp.Case):
        subject = case.args.get("this")
        for branch in case.args.get("ifs") or []:
            if subject is None:
                found.append(branch.this)
            else:
                found.append(exp.EQ(this=subject.copy(), expression=branch.this.copy()))
    return tuple(found)


def _value_columns(tree: exp.Expr) -> tuple[str, ...]:
    """The columns whose values a value can take (not those only in its conditions)."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.Column):
            found.add(node.name.lower())
        elif isinstance(node, exp.Case):
            stack += [b.args["true"] for b in node.args.get("ifs") or []]
            if node.args.get("default") is not None:
                stack.append(node.args["default"])
        else:
            stack.extend(node.iter_expressions())
    return tuple(sorted(found))


def _label(node: exp.Expr) -> str:
    inner = node.this if isinstance(node, exp.Filter) else node
    func = AGGREGATES.get(type(inner), wording.function_name(inner))
    return f"{func.upper()}(...)"


def _value(ctx: Context, tree: exp.Expr) -> tuple[str, tuple[str, ...]]:
    """The name of an aggregated expression (a new ``Value`` unless an equal one exists)
    and the dataset columns it reads."""
    if isinstance(tree, exp.Column):
        name = ctx.column(tree)
        return name, (name,)
    text = _text(tree)
    for value in ctx.values:
        if value.text == text:
            return value.name, value.columns
    value = Value(
        name=value_name(len(ctx.values)),
        tree=tree,
        text=text,
        columns=_value_columns(tree),
        conditions=_conditions_in(tree),
    )
    ctx.values.append(value)
    return value.name, value.columns


class _Said:
    """An aggregate's name as the user wrote it (``variance``, not ``VAR_SAMP``), looked
    up only when a refusal is written: finding it can cost as much as planning."""

    def __init__(self, sql: str, node: exp.Expr, func: str) -> None:
        self.sql, self.node, self.func = sql, node, func

    def __format__(self, spec: str) -> str:
        written = wording.written(self.node, self.sql) if self.sql else None
        return (written or self.func).upper()


class _Inside(str):
    """`` inside SUM``, for a refusal inside an aggregate's value (written lazily)."""

    def __new__(cls, said: _Said) -> _Inside:
        made = super().__new__(cls, " inside ")
        made.said = said
        return made

    said: _Said

    def __format__(self, spec: str) -> str:
        return f" inside {self.said}"


def _quantile(node: exp.Expr) -> float:
    if isinstance(node, exp.Median):
        return 0.5
    q = _number(node.args.get("quantile") or exp.Null())
    if q is None or not 0.0 <= q <= 1.0:
        raise QueryError("approx_quantile takes a quantile between 0 and 1 as a number")
    return q


def _aggregate(ctx: Context, node: exp.Expr) -> str:
    """Validate one aggregate call (maybe with FILTER); the merged column it becomes."""
    condition: exp.Expr | None = None
    call_node = node
    if isinstance(node, exp.Filter):
        call_node = node.this
        condition = node.expression.this if isinstance(node.expression, exp.Where) else None
        if type(call_node) not in AGGREGATES or condition is None:
            raise QueryError("FILTER (WHERE ...) follows an aggregate function")
        _condition(ctx, condition, "FILTER (WHERE ...)")
    func = AGGREGATES[type(call_node)]
    said = _Said(ctx.sql, call_node, func)
    arg = call_node.this
    if isinstance(arg, exp.Distinct) or call_node.args.get("distinct"):
        hint = "; use approx_count_distinct" if func == "count" else ""
        raise QueryError(f"{said}(DISTINCT ...) is not allowed{hint}")
    param = _quantile(call_node) if func == "approx_quantile" else None
    if len(list(call_node.iter_expressions())) > (2 if param is not None else 1):
        raise QueryError(f"{said} takes exactly one argument")
    role = "extremes" if func in EXTREMES else "aggregate"
    if isinstance(arg, exp.Star):
        if func != "count":
            raise QueryError(f"{said}(*) is not allowed; name a column")
        arg = None
    elif arg is None:
        raise QueryError(f"{said} takes one column or expression")
    else:
        _scalar(ctx, arg, role, _Inside(said))
    if condition is not None:  # agg(x) FILTER (WHERE c) is agg(CASE WHEN c THEN x END)
        then = arg.copy() if arg is not None else exp.Literal.number(1)
        arg = exp.Case(ifs=[exp.If(this=condition.copy(), true=then)])
    if arg is None:
        call = AggCall("count", None)
    else:
        name, columns = _value(ctx, arg)
        if func in EXTREMES or func == "approx_count_distinct":
            # These show single rows' values (or whether one is present): a condition
            # inside decides which, so its columns count as shown too (MAX(CASE WHEN
            # id = 17 THEN 1 ELSE 0 END) would answer a test on one entity exactly).
            if not columns:
                raise QueryError(f"{said} of a constant shows nothing but the test; name a column")
            columns = columns_in(arg)
            if func in EXTREMES:
                for column in columns:
                    ctx.use(column, "extremes")
        text = next((v.text for v in ctx.values if v.name == name), name)
        call = AggCall(func, name, columns, param, text)
    if call not in ctx.aggregates:
        ctx.aggregates.append(call)
    return agg_column(ctx.aggregates.index(call))


def _key_of(ctx: Context, node: exp.Expr) -> str | None:
    """The group key a SELECT/HAVING/ORDER BY expression is, if it is one."""
    if isinstance(node, exp.Column):
        name = node.name.lower()
        return name if name in ctx.groups else None
    if not ctx.keys or isinstance(node, _LITERALS):
        return None
    text = _text(node)
    return next((k.name for k in ctx.keys if k.text == text), None)


_COMPUTED_OUTPUTS = (
    *_ARITHMETIC,
    *_COMPARISONS,
    *_LOGIC,
    *_SCALAR_FUNCTIONS,
    exp.Case,
    exp.If,
    exp.In,
    exp.Between,
    exp.Is,
)


def _output(ctx: Context, node: exp.Expr) -> None:
    """SELECT / HAVING / ORDER BY: aggregates, group keys, literals, and arithmetic,
    comparisons, logic, CASE and the scalar functions over them (computed by the home
    over the merged table)."""
    if type(node) in AGGREGATES or isinstance(node, exp.Filter):
        ctx.outputs.append((node, _aggregate(ctx, node)))
        return
    key = _key_of(ctx, node)
    if key is not None:
        ctx.outputs.append((node, key))
    elif isinstance(node, exp.Column):
        name = ctx.column(node)
        aliases = sorted(_aliases(ctx))
        hint = f" (the aliases of SELECT: {', '.join(aliases)})" if aliases else ""
        raise QueryError(
            f"column {name!r} must be in GROUP BY or inside an aggregate function{hint}"
        )
    elif isinstance(node, exp.Alias):
        _output(ctx, node.this)
    elif isinstance(node, _COMPUTED_OUTPUTS):
        for child in node.iter_expressions():
            _output(ctx, child)
    elif isinstance(node, exp.Cast) and not _is_literal(node):
        _output(ctx, node.this)
    else:
        _literal(node, " (outside an aggregate, only group keys and literals)")


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
            raise QueryError(f"{wording.clause(key, ctx.sql) or what} is not allowed")


def no_window_functions(ctx: Context) -> None:
    if ctx.survey.window:
        raise QueryError("window functions are not allowed")


def no_subqueries(ctx: Context) -> None:
    if ctx.survey.subquery:
        raise QueryError("subqueries are not allowed")


def numbers_are_numbers(ctx: Context) -> None:
    """The parser reads ``1e`` as a number; DuckDB would not (nor our type check)."""
    if ctx.survey.bad_number is not None:
        raise QueryError(f"{ctx.survey.bad_number!r} is not a number")


def no_parameters(ctx: Context) -> None:
    if ctx.survey.parameter:
        raise QueryError("parameters are not allowed")


def only_aggregate_functions(ctx: Context) -> None:
    """No function of the engine is reachable but the aggregates (and operators)."""
    if ctx.survey.bad_function is not None:
        raise QueryError(f"{ctx.describe(ctx.survey.bad_function)} is not allowed")


def from_one_dataset(ctx: Context) -> None:
    """FROM dataset or FROM node.dataset, nothing else."""
    source = ctx.select.args.get("from_") or ctx.select.args.get("from")
    if source is None:
        raise QueryError("the query needs FROM dataset (or FROM node.dataset)")
    table = source.this
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise QueryError(f"FROM takes a dataset name, not {ctx.describe(table)}")
    if table.args.get("catalog") or table.args.get("joins") or table.args.get("laterals"):
        raise QueryError("FROM takes dataset or node.dataset")
    for part in (table.name, table.db or ""):
        if part and not _IDENTIFIER.fullmatch(part.lower()):
            raise QueryError(f"{part!r} is not a dataset or node name")
    if table.args.get("alias"):
        raise QueryError("table aliases are not allowed")
    for key in ("pivots", "sample", "version", "when", "only", "partition", "changes", "format"):
        if table.args.get(key):
            words = wording.clause(key, ctx.sql) if key in wording.CLAUSES else None
            raise QueryError(f"{words or 'FROM ' + key.upper()} is not allowed")
    ctx.dataset, ctx.node = table.name.lower(), (table.db or "").lower()
    for col in ctx.survey.columns:  # dataset.column -> column, everywhere, once
        if col.args.get("table") or col.args.get("db"):
            ctx.column(col)  # refuses another table's column
            col.set("table", None)
            col.set("db", None)


def where_condition(ctx: Context) -> None:
    where = ctx.select.args.get("where")
    if where is not None:
        _condition(ctx, where.this)


MAX_SUBSTR = 1_000  # substr's start and length in a group key: 1 to MAX_SUBSTR


# The arguments each function may have where we accept it: any other (``floor(x, n)``,
# ``date_trunc(..., zone)``, ``round(x, n, mode)``) is refused, never dropped unchecked.
_ARGUMENTS: dict[type[exp.Expr], frozenset[str]] = {
    exp.Floor: frozenset({"this"}),
    exp.WidthBucket: frozenset({"this", "min_value", "max_value", "num_buckets"}),
    exp.TimestampTrunc: frozenset({"this", "unit"}),
    exp.DateTrunc: frozenset({"this", "unit"}),
    exp.Year: frozenset({"this"}),
    exp.Quarter: frozenset({"this"}),
    exp.Month: frozenset({"this"}),
    exp.Substring: frozenset({"this", "start", "length"}),
    exp.Round: frozenset({"this", "decimals"}),
    exp.Abs: frozenset({"this"}),
}


def _plain_arguments(node: exp.Expr) -> None:
    allowed = _ARGUMENTS.get(type(node))
    if allowed is None:
        return
    extra = [k for k, v in node.args.items() if k not in allowed and v not in (None, False, [])]
    if extra:
        raise QueryError(f"{wording.function_name(node)}() takes no {extra[0]} argument here")


def _bucket(ctx: Context, node: exp.Expr) -> Bucket | None:
    """The bucket a group key makes of one column, if it is one of the bucket forms:
    ``floor(x / w) [* w]``, ``width_bucket(x, lo, hi, n)``, ``date_trunc('unit', x)``,
    ``year/quarter/month(x)``, or a CASE over conditions with literal results."""
    inner = (
        node.this if isinstance(node, exp.Mul) and _number(node.expression) is not None else node
    )
    _plain_arguments(inner)
    _plain_arguments(node)
    if isinstance(inner, exp.Floor) and isinstance(inner.this, exp.Div):
        div = inner.this
        width = _number(div.expression)
        if isinstance(div.this, exp.Column) and width is not None:
            if width <= 0:
                raise QueryError("a bucket's width must be a positive number")
            return Bucket(ctx.column(div.this), width=width)
    if isinstance(node, exp.WidthBucket) and isinstance(node.this, exp.Column):
        parts = [node.args.get(k) for k in ("min_value", "max_value", "num_buckets")]
        numbers = [_number(p) if p is not None else None for p in parts]
        lo, hi, n = numbers
        if lo is None or hi is None or n is None or not n.is_integer() or n < 1 or lo >= hi:
            raise QueryError(
                "width_bucket takes a column, a low and a higher high bound, and a whole count"
            )
        return Bucket(ctx.column(node.this), width=(hi - lo) / n)
    if type(node) in _DATE_PARTS and isinstance(node.this, exp.Column):
        return Bucket(ctx.column(node.this), unit=_DATE_PARTS[type(node)])
    if isinstance(node, exp.TimestampTrunc | exp.DateTrunc) and isinstance(node.this, exp.Column):
        unit_node = node.args.get("unit")
        unit = (unit_node.name if unit_node is not None else "").lower()
        if unit not in _DATE_UNITS:
            raise QueryError(f"date_trunc takes one of the units {', '.join(_DATE_UNITS)}")
        return Bucket(ctx.column(node.this), unit=unit)
    return None


def _case_key(ctx: Context, node: exp.Case) -> None:
    """A CASE mapping as a group key: conditions over columns, literal results. A column
    compared with two or more numbers across its branches makes a bucket as narrow as the
    closest two (the owner checks it is coarse, as for ``floor(x / w)``): ``CASE WHEN
    id = 1 THEN 1 WHEN id = 2 THEN 2 ...`` is a bucket of width 1. Every column of the
    key is recorded as one bucket of it, even a single threshold: the owner lets a
    filter-only column into one group key only (ten keys ``CASE WHEN x < 2000 ...``,
    ``x < 2001``... would together split it by 1)."""
    subject = node.args.get("this")
    numbers: dict[str, set[float]] = {}
    if subject is not None:
        _scalar(ctx, subject, "bucket")
        if not isinstance(subject, exp.Column):  # CASE x * 1000 WHEN ...: no width to judge
            for column in columns_in(subject):
                ctx.use(column, "group_by")
    branches = node.args.get("ifs") or []
    for branch in branches:
        if subject is None:
            _key_condition(ctx, branch.this, numbers)
        else:
            _literal(branch.this)
            value = _number(branch.this)
            for column in columns_in(subject):
                if value is None:  # a string or a date: a mapping of single values
                    ctx.use(column, "group_by")
                numbers.setdefault(column, set()).update([] if value is None else [value])
        _literal(branch.args["true"], " (a CASE group key maps to literals)")
    if node.args.get("default") is not None:
        _literal(node.args["default"], " (a CASE group key maps to literals)")
    for column in columns_in(node):
        ordered = sorted(numbers.get(column, ()))
        if len(ordered) >= 2:
            width = min(b - a for a, b in zip(ordered, ordered[1:], strict=False))
            ctx.buckets.append(Bucket(column, width=width))
        else:  # one threshold (or none): as many groups as results, at most
            ctx.buckets.append(Bucket(column, count=len(branches) + 1))


def _key_condition(ctx: Context, node: exp.Expr, numbers: dict[str, set[float]]) -> None:
    """A CASE key's condition: as in WHERE, its columns used as ``bucket``; the numbers
    each column is compared with are added to ``numbers``."""
    probe = Context(ctx.select, ctx.survey, dataset=ctx.dataset)
    _condition(probe, node)
    for column in probe.roles:
        ctx.use(column, "bucket")
    for test in node.find_all(*_COMPARISONS, exp.In, exp.Between):
        parts = list(test.iter_expressions())
        found = {n for n in map(_number, parts) if n is not None}
        literals = [p for p in parts if not isinstance(p, exp.Column)]
        plain = any(isinstance(p, exp.Column) for p in parts) and all(
            _number(p) is not None for p in literals
        )
        for column in {c.name.lower() for c in test.find_all(exp.Column)}:
            if not plain:
                # A column inside arithmetic (id * 1000 = ...) or compared with strings or
                # dates: no bucket width to judge it by; it needs group_by.
                ctx.use(column, "group_by")
            numbers.setdefault(column, set()).update(found)


def _group_key(ctx: Context, node: exp.Expr) -> str:
    """One GROUP BY item (a column, or an expression over columns): its key name."""
    if isinstance(node, exp.Paren):
        return _group_key(ctx, node.this)
    if isinstance(node, exp.Column):
        name = ctx.column(node)
        ctx.use(name, "group_by")
        if name not in ctx.groups:
            ctx.groups.append(name)
        return name
    text = _text(node)
    found = next((k for k in ctx.keys if k.text == text), None)
    if found is not None:
        return found.name
    bucket = _bucket(ctx, node)
    if bucket is not None:
        ctx.use(bucket.column, "bucket")
        ctx.buckets.append(bucket)
    elif isinstance(node, exp.Case):
        _case_key(ctx, node)
    else:
        _key_expression(ctx, node)
    if not any(True for _ in node.find_all(exp.Column)):
        raise QueryError(f"GROUP BY {node.sql()} groups by a constant; name a column")
    key = Value(
        name=key_name(len(ctx.keys)),
        tree=node,
        text=text,
        columns=columns_in(node),
        conditions=_conditions_in(node),
    )
    ctx.keys.append(key)
    ctx.groups.append(key.name)
    return key.name


def _substr_key(ctx: Context, node: exp.Substring) -> None:
    """``substr(col, start[, length])`` as a group key: a prefix (or slice) of one
    ``group_by`` column. Only a plain column: ``substr(CASE ... END, 1, 1)`` would carry
    a CASE's conditions past the bucket and type checks. Only small whole positions:
    DuckDB raises on a length past 2^32, and an error that happens only when a row
    passes the WHERE says that the row exists."""
    if not isinstance(node.this, exp.Column):
        raise QueryError(
            f"substr in GROUP BY takes a column, not {ctx.describe(node.this)}: "
            "write substr(col, start, length)"
        )
    if node.args.get("start") is None:
        raise QueryError("substr in GROUP BY takes a column and a start position")
    for part in ("start", "length"):
        position = node.args.get(part)
        if position is not None and not _small_position(position):
            raise QueryError(
                f"substr in GROUP BY takes whole-number positions from 1 to {MAX_SUBSTR}: "
                f"its {part} is {ctx.describe(position)}"
            )
    ctx.use(ctx.column(node.this), "group_by")


def _small_position(node: exp.Expr) -> bool:
    """A whole-number literal from 1 to MAX_SUBSTR (no sign, point or exponent)."""
    if not isinstance(node, exp.Literal) or node.is_string or not str(node.this).isdigit():
        return False
    return 1 <= int(node.this) <= MAX_SUBSTR


def _key_expression(ctx: Context, node: exp.Expr) -> None:
    """Any other key: a per-row value over ``group_by`` columns (``substr(code, 1, 2)``,
    arithmetic...)."""
    _plain_arguments(node)
    if isinstance(node, exp.Substring):
        _substr_key(ctx, node)
    elif isinstance(node, _KEY_FUNCTIONS):
        raise QueryError(f"{ctx.describe(node)} in GROUP BY takes a column and literals")
    else:
        if node.find(exp.Case) is not None:
            raise QueryError("a CASE in GROUP BY must be the whole group key")
        _scalar(ctx, node, "group_by", " in GROUP BY")


def _aliases(ctx: Context) -> dict[str, exp.Expr]:
    return {i.alias.lower(): i.this for i in ctx.select.expressions if isinstance(i, exp.Alias)}


def _position(ctx: Context, node: exp.Expr, clause: str) -> exp.Expr | None:
    """The SELECT item a ``GROUP BY 2`` / ``ORDER BY 2`` names (None if not a position)."""
    if not isinstance(node, exp.Literal) or node.is_string:
        return None
    items = ctx.select.expressions
    if not node.this.isdigit() or not 1 <= int(node.this) <= len(items):
        raise QueryError(f"{clause} {node.this}: there are {len(items)} items in SELECT")
    item = items[int(node.this) - 1]
    return item.this if isinstance(item, exp.Alias) else item


def group_by_columns(ctx: Context) -> None:
    """GROUP BY columns, expressions over them, buckets, SELECT positions and aliases."""
    group = ctx.select.args.get("group")
    if group is None:
        return
    for key in ("rollup", "cube", "grouping_sets", "totals"):
        if group.args.get(key):
            raise QueryError(f"GROUP BY {key.upper()} is not allowed")
    aliases = _aliases(ctx)
    for g in group.expressions:
        if isinstance(g, exp.Rollup | exp.Cube | exp.GroupingSets):
            raise QueryError(f"GROUP BY {type(g).__name__.upper()} is not allowed")
        target = _position(ctx, g, "GROUP BY") or g
        if isinstance(target, exp.Column) and not target.table:
            alias = aliases.get(target.name.lower())
            if alias is not None and alias.find(*AGGREGATES, exp.Filter) is not None:
                alias = None  # as DuckDB: a name that is no key's alias is the column
            if isinstance(alias, exp.Column) and alias.name.lower() == target.name.lower():
                alias = None  # `city AS city`: the column itself
            if alias is not None:
                if any(c.name.lower() == target.name.lower() for c in alias.find_all(exp.Column)):
                    raise QueryError(
                        f"GROUP BY {target.name} is both a column and an alias; rename the alias"
                    )
                ctx.key_aliases.append(target.name.lower())
                target = alias
        if type(target) in AGGREGATES or isinstance(target, exp.Filter):
            raise QueryError("GROUP BY cannot group by an aggregate")
        _group_key(ctx, target)


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
        ctx.outputs.append((inner, name))


def selects_a_column(ctx: Context) -> None:
    """SELECT names at least one column or aggregate: an empty or constant select list
    asks for nothing, and no owner is to sign a release of nothing."""
    items = ctx.select.expressions
    if not items:
        raise QueryError("the SELECT list is empty; name the columns or aggregates to compute")
    if not any(item.find(exp.Column, exp.Star, *AGGREGATES) for item in items):
        raise QueryError("the SELECT list names no column or aggregate; name what to compute")


def _alias_refs(ctx: Context, node: exp.Expr) -> exp.Expr:
    """HAVING over aliases: each column naming a SELECT alias (and not a group key) is
    left to the post-merge query, which knows the alias; the rest is checked."""
    aliases = _aliases(ctx)
    if isinstance(node, exp.Column) and not node.table:
        name = node.name.lower()
        if name in aliases and name not in ctx.groups:
            ctx.outputs.append((node, name))
            return node
    if isinstance(node, exp.Column) or type(node) in AGGREGATES or isinstance(node, exp.Filter):
        _output(ctx, node)
        return node
    if _key_of(ctx, node) is not None:
        _output(ctx, node)
        return node
    if isinstance(node, _LITERALS) or _is_literal(node):
        return node
    allowed = _ARITHMETIC + _COMPARISONS + _LOGIC + _SCALAR_FUNCTIONS + (exp.Case, exp.If)
    if not isinstance(node, allowed + (exp.In, exp.Between, exp.Is, exp.Cast)):
        _literal(node, " in HAVING")
    for child in node.iter_expressions():
        _alias_refs(ctx, child)
    return node


def having_over_groups(ctx: Context) -> None:
    having = ctx.select.args.get("having")
    if having is None:
        return
    if ctx.raw:
        raise QueryError("HAVING needs aggregates")
    _alias_refs(ctx, having.this)


def order_by(ctx: Context) -> None:
    """Aggregates, group keys, aliases or SELECT positions; a raw read only by its own
    columns."""
    order = ctx.select.args.get("order")
    if order is None:
        return
    aliases = _aliases(ctx)
    for o in order.expressions:
        target = o.this
        position = _position(ctx, target, "ORDER BY")
        if position is not None and not ctx.raw:
            continue  # the post-merge query orders by the same position
        target = position if position is not None else target
        if isinstance(target, exp.Column) and target.name.lower() in aliases:
            target = aliases[target.name.lower()]
            if not ctx.raw:
                ctx.outputs.append((o.this, o.this.name.lower()))  # a post-merge column
                continue
        if not ctx.raw:
            _output(ctx, target)
            continue
        if not isinstance(target, exp.Column) or ctx.column(target) not in ctx.raw:
            raise QueryError("a raw SELECT may only be ordered by its columns")
        ctx.raw_order.append(
            (ctx.column(target), bool(o.args.get("desc")), bool(o.args.get("nulls_first")))
        )
        if position is None:
            ctx.outputs.append((o.this, ctx.column(target)))


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
    numbers_are_numbers,
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


def check(select: exp.Select, rules: tuple[Rule, ...] = RULES, sql: str = "") -> Context:
    """Apply ``rules`` in order to one parsed SELECT; the context holds what they found."""
    ctx = Context(select, survey(select), sql=sql)
    for rule in rules:
        rule(ctx)
    return ctx
