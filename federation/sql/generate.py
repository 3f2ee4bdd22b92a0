"""Every SQL text that reaches an engine, built as a sqlglot tree from the validated plan.

No user text is pasted into a query: the owner's query is assembled with sqlglot's
expression builders from the plan's names and its validated WHERE tree, and the home's
post-merge query is the user's own tree with its aggregates replaced by columns of the
merged table.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.generator import Generator

from federation.sql.conditions import leaves
from federation.sql.dialect import DUCKDB
from federation.sql.plan import MERGED_TABLE, AggregateStep, QueryPlan
from federation.sql.states import Hidden, Kind, StateColumn, hidden_columns
from federation.sql.trees import rebuilt

_DOUBLE = exp.DType.DOUBLE
_BIGINT = exp.DType.BIGINT


def generator() -> Generator:
    """A generator of DuckDB text, for one thread: one can write several texts, and making
    one costs about as much as writing a short expression."""
    return DUCKDB.generator(comments=False)


def sql(tree: exp.Expr, writer: Generator | None = None) -> str:
    """DuckDB text of a tree we built or validated (read-only: generated in place)."""
    return (writer or generator()).generate(tree, copy=False)


# --- the owner's query --------------------------------------------------------------------


def _column(name: str) -> exp.Column:
    """A quoted column. Names reaching here passed the subset's identifier check or are
    our own state names."""
    return exp.column(name, quoted=True)


def _cast(value: exp.Expr, to: exp.DType) -> exp.Cast:
    return exp.Cast(this=value, to=exp.DataType(this=to))


def _number(value: float) -> exp.Expr:
    """A float literal, written as Python writes it (``exp.Literal.number`` goes through
    Decimal: slower, and it would write large numbers as 1E+20)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"clamping bound {value!r} is not a finite number")
    text = repr(abs(number))
    if "e" not in text:
        text += "e0"  # DuckDB reads 0.1 as a DECIMAL: LEAST(FLOAT, DECIMAL) is a FLOAT
    literal = exp.Literal(this=text, is_string=False)
    return exp.Neg(this=literal) if number < 0 else literal


def _clamped(value: Callable[[], exp.Expr], bounds: tuple[float, float] | None) -> exp.Expr:
    """A value (``value()`` makes a fresh tree of it), clamped to ``bounds`` under DP;
    NULL stays NULL.

    DuckDB's GREATEST and LEAST skip NULLs (``ignore_nulls``): on their own they would
    turn a missing value into the lower bound, summed (and squared) but not counted by
    COUNT(column), which biases every average whose lower bound is not 0."""
    if bounds is None:
        return value()
    low = exp.Greatest(this=value(), expressions=[_number(bounds[0])], ignore_nulls=True)
    clamped = exp.Least(this=low, expressions=[_number(bounds[1])], ignore_nulls=True)
    missing = exp.Is(this=value(), expression=exp.Null())
    return exp.Case(ifs=[exp.If(this=missing, true=exp.Null())], default=clamped)


class _Values:
    """The owner's SQL for each value a state or hidden column reads: a column, or an
    expression (a fresh tree each time: a node has one parent). Under DP every column
    inside is clamped to its declared bounds, and the expression to the interval they
    imply (``intervals``)."""

    def __init__(
        self,
        step: AggregateStep,
        clamp: dict[str, tuple[float, float]] | None,
        finite: frozenset[str] = frozenset(),
        types: Types | None = None,
    ):
        self.step = step
        self.clamp = clamp
        self.finite = finite
        self.types = types

    def __call__(self, name: str, *, clamped: bool = True) -> exp.Expr:
        tree = self._value(name, clamped)
        if name not in self.finite:
            return tree
        # Under the L2 noise a NaN or infinite row would make the exact sum NaN, and a
        # sum that is not a number is withheld: whether one row of the group is NaN was
        # an exact bit past the noise (review, 2026-12-04, night). Such a row is simply
        # not a value here (not summed, not counted, in no fingerprint).
        is_finite = exp.func("isfinite", tree.copy())
        return exp.Case(ifs=[exp.If(this=is_finite, true=tree)])

    def _value(self, name: str, clamped: bool) -> exp.Expr:
        value = self.step.value_of.get(name)
        if value is None:
            bounds = self.clamp.get(name) if self.clamp is not None and clamped else None
            return _clamped(functools.partial(_column, name), bounds)
        if self.clamp is None or not clamped:
            return _guarded(rebuilt(value.tree), self.types)
        from federation.sql.intervals import clamped_value  # noqa: PLC0415

        # Each column used as a value clamped to its bounds (conditions are left as a
        # WHERE is), then the whole to the interval they imply (QueryPlan.bounds_of).
        tree, _ = clamped_value(value.tree, self.clamp)
        return _guarded(tree, self.types, judged=rebuilt(value.tree))


def _state(
    state: StateColumn, ints: set[str], decimals: set[str], values: _Values, noised: bool
) -> exp.Expr:
    """The aggregate computing one state column over the owner's rows (``noised``: under
    the owner's L2 noise, which takes integer sums as DuckDB's HUGEINT)."""
    if state.kind is Kind.ROWS or state.column is None:
        return exp.Count(this=exp.Star())
    column = state.column
    dp = values.clamp is not None
    if state.kind is Kind.COUNT:  # clamping keeps NULL as NULL: counts need none
        return exp.Count(this=values(column, clamped=False))
    if state.kind is Kind.SUM:
        if column in decimals and not dp:
            # DuckDB keeps DECIMAL(38, s): exact (typecheck refuses a value whose sum could
            # leave it, which DuckDB would raise on)
            return exp.Sum(this=values(column))
        if column in ints and noised:
            # the HUGEINT itself: the noise decides on the noisy total whether it fits
            # BIGINT (a NULL for an exact total past it would tell that total)
            return exp.Sum(this=values(column))
        if column in ints and not dp:
            # DuckDB sums integers as HUGEINT; a total past BIGINT is NULL, not an error
            # that would say whether some row passed the WHERE (as DOUBLE's inf is withheld)
            return exp.TryCast(this=exp.Sum(this=values(column)), to=exp.DataType(this=_BIGINT))
        return _cast(exp.Sum(this=values(column)), _DOUBLE)
    if state.kind is Kind.SQUARES:
        square = exp.Mul(this=values(column), expression=values(column))
        return _cast(exp.Sum(this=square), _DOUBLE)
    if state.kind is Kind.M2:
        spread = exp.VariancePop(this=_cast(values(column), _DOUBLE))
        return exp.Mul(this=spread, expression=exp.Count(this=values(column)))
    if state.kind is Kind.MIN:
        return exp.Min(this=values(column))
    if state.kind is Kind.MAX:
        return exp.Max(this=values(column))
    if state.kind in (Kind.HLL, Kind.KLL, Kind.QHIST):
        # The values themselves, which the owner turns into a sketch (or a noisy
        # histogram) before anything leaves: ``gateway.release.query``.
        present = exp.Not(this=exp.Is(this=values(column), expression=exp.Null()))
        return exp.Filter(this=exp.func("list", values(column)), expression=exp.Where(this=present))
    raise ValueError(f"no SQL for the state {state.kind}")


# Substring: a group key's positions are checked (rules.MAX_SUBSTR), but DuckDB raises on
# some (a length past 2^32): never let one fail on a row. ROUND raises when the rounded
# integer leaves its type (an int8 of 125 rounded to tens), COALESCE, LEAST and GREATEST
# when an operand does not convert to their common type, date_trunc on a date past the
# timestamp range: the owner's type check refuses these within the declared bounds, and
# TRY covers the data beyond them.
_COMPUTED = (
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Neg,
    exp.Cast,
    exp.Abs,
    exp.Round,
    exp.Coalesce,
    exp.Least,
    exp.Greatest,
    exp.Substring,
    exp.DateTrunc,
    exp.TimestampTrunc,
)


_TIMESTAMPS = frozenset(
    {exp.DType.TIMESTAMP, exp.DType.TIMESTAMPTZ, exp.DType.TIMESTAMPNTZ, exp.DType.DATETIME}
)


# The comparisons whose operands DuckDB brings to one type: a string literal among them is
# converted to the other operand's type (``_partner``).
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


@dataclass(frozen=True)
class Typed:
    """A column's family ("string", "date", "timestamp", "int", ...: ``gateway.column_types``)
    and the engine's name for its loaded type ("DATE", "TINYINT", "DECIMAL(15,2)")."""

    family: str
    engine: str


# A column's family (or ``Typed``: its family and engine type) by its lower-cased name;
# None where the types are not known, and then every conversion is taken to be able to fail.
Types = Mapping[str, "str | Typed"]


def _family(types: Types, name: str) -> str | None:
    kind = types.get(name.lower())
    return kind.family if isinstance(kind, Typed) else kind


def _engine(types: Types | None, name: str) -> str | None:
    kind = types.get(name.lower()) if types is not None else None
    return kind.engine if isinstance(kind, Typed) else None


def _partner(node: exp.Expr) -> exp.Expr | None:
    """The operand a string ``node`` is compared with (and so converted to the type of):
    the other side of a comparison, the subject of IN, BETWEEN or a simple CASE; None
    where it is not compared with anything (a CASE's label, a function's argument)."""
    parent = node.parent
    while isinstance(parent, exp.Paren):
        node, parent = parent, parent.parent
    if isinstance(parent, _COMPARISONS):
        partner = parent.expression if node is parent.this else parent.this
    elif isinstance(parent, exp.In | exp.Between) and node is not parent.this:
        partner = parent.this
    elif isinstance(parent, exp.If) and node is parent.this and isinstance(parent.parent, exp.Case):
        partner = parent.parent.this  # CASE x WHEN 'a' THEN ...: None for a searched CASE
    else:
        return None
    while isinstance(partner, exp.Paren):
        partner = partner.this
    return partner


def _is_label(node: exp.Expr) -> bool:
    """A result of a CASE whose results are all string literals (or NULL) and which
    nothing compares or computes with: a group key's or a value's labels, converted to
    nothing."""
    parent = node.parent
    if isinstance(parent, exp.If) and node is parent.args.get("true"):
        case = parent.parent
    elif isinstance(parent, exp.Case) and node is parent.args.get("default"):
        case = parent
    else:
        return False
    if not isinstance(case, exp.Case):
        return False
    results = [i.args.get("true") for i in case.args.get("ifs") or ()]
    results.append(case.args.get("default"))
    if not all(r is None or isinstance(r, exp.Null) or _is_string(r) for r in results):
        return False
    outer = case.parent
    while isinstance(outer, exp.Paren):
        outer = outer.parent
    return not isinstance(outer, (*_COMPARISONS, exp.In, exp.Between, exp.If, exp.Case, *_COMPUTED))


_STRING_TYPES = frozenset({exp.DType.VARCHAR, exp.DType.TEXT, exp.DType.CHAR})


def _is_string(node: exp.Expr | None) -> bool:
    """A string literal, or one cast to a string."""
    while isinstance(node, exp.Cast) and node.to.this in _STRING_TYPES:
        node = node.this
    return isinstance(node, exp.Literal) and node.is_string


def _converted(literal: exp.Literal, types: Types | None) -> bool:
    """Whether DuckDB may have to convert the string ``literal`` to another type on a row:
    compared with anything but a string column (or another string literal), or cast to
    another type (a typed literal, ``DATE '...'``, is a cast). Such a conversion that
    fails is an error only once a row reaches it (DuckDB leaves a constant it cannot fold
    to run time)."""
    node: exp.Expr = literal
    while isinstance(node.parent, exp.Cast) and node.parent.to.this in _STRING_TYPES:
        node = node.parent  # still a string
    if isinstance(node.parent, exp.TryCast) and node.parent.meta.get(PINNED, False):
        return False  # pinned (``_pinned``): a literal that does not convert is NULL
    if isinstance(node.parent, exp.Cast):
        return True
    if _is_label(node):
        return False
    partner = _partner(node)
    if partner is None:
        return True
    if _is_string(partner):
        return False
    if isinstance(partner, exp.Column) and types is not None:
        return _family(types, partner.name) != "string"
    return True


def _mixes_dates(condition: exp.Expr, types: Types | None) -> bool:
    """Whether a DATE column meets a TIMESTAMP column in ``condition`` (compared, or in
    one COALESCE, LEAST, GREATEST or CASE): DuckDB casts the date to a timestamp, which
    fails past year 294 247. Without the types, any two columns might."""
    names = {c.name.lower() for c in condition.find_all(exp.Column)}
    if types is None:
        return len(names) > 1
    families = {_family(types, n) for n in names}
    return "date" in families and "timestamp" in families


_DATE_TYPES = frozenset({exp.DType.DATE, *_TIMESTAMPS})
# Marks the TRY_CASTs ``_pinned`` made (node.meta): one the analyst wrote is no pin (review,
# 2026-12-05: ``day IN (TRY_CAST('...' AS TIMESTAMP))`` of a DATE column ran outside TRY).
PINNED = "fedgate_pinned"


def _pinned(tree: exp.Expr, types: Types | None) -> exp.Expr:
    """``tree`` (changed in place) with each string literal that a comparison converts
    to a column's type converted by ``TRY_CAST`` to that column's own engine type: one
    that does not convert is NULL for every row alike, where DuckDB's own conversion
    failed only once a row reached it. A constant, so DuckDB folds it and still filters
    the scan by it (a whole condition under TRY was read row by row: a date range 2 to 4
    times slower). A typed literal (``DATE '...'``) is pinned to the column's type where
    that is of the same family; whatever is left unpinned runs under TRY (``_may_fail``)."""
    if types is None:
        return tree

    def pin(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.TryCast) or not isinstance(node, exp.Literal | exp.Cast):
            return node
        typed = None  # a typed literal's own type: CAST('...' AS DATE)
        if isinstance(node, exp.Cast):
            literal, typed = node.this, node.to.this
            if not isinstance(literal, exp.Literal) or not literal.is_string:
                return node
            if node.to.this not in _DATE_TYPES:
                return node
        else:
            literal = node
            if not node.is_string or isinstance(node.parent, exp.Cast):
                return node
            if not _converted(node, types):
                return node
        partner = _partner(node)
        if not isinstance(partner, exp.Column):
            return node
        engine = _engine(types, partner.name)
        # a typed literal only to its very own type: TIMESTAMP '... +08' is read without
        # its offset, as TIMESTAMPTZ it is not (review, 2026-12-05: answers changed)
        if engine is None:
            return node
        to = exp.DataType.build(engine, dialect=DUCKDB)
        if typed is not None and typed != to.this:
            return node
        pinned = exp.TryCast(this=literal.copy(), to=to)
        pinned.meta[PINNED] = True  # ours: not a TRY_CAST the analyst wrote
        return pinned

    return tree.transform(pin, copy=False)


def _guarded(tree: exp.Expr, types: Types | None, judged: exp.Expr | None = None) -> exp.Expr:
    """``tree`` with its literals pinned (``_pinned``), under TRY if it can still fail on a
    row (``_may_fail`` of ``judged``, pinned the same way: by default ``tree`` itself)."""
    tree = _pinned(tree, types)
    check = tree if judged is None else _pinned(judged.copy(), types)
    return exp.Try(this=tree) if _may_fail(check, types) else tree


def _may_fail(condition: exp.Expr, types: Types | None = None) -> bool:
    """Whether evaluating ``condition`` (or a value, a group key) on a row can fail:
    arithmetic, a cast, a function (``_COMPUTED``) over a column (an overflow, a
    conversion, a position or a date out of range); a timestamp literal beside a column
    (a DATE column is cast to a timestamp to be compared with it: past year 294 247 that
    fails), or a DATE column beside a TIMESTAMP column (``d < ts``: the same cast); a
    string literal that DuckDB
    converts to another type (``'300'`` against an int8 column, ``DATE '...'``,
    ``'2025-01-01 25:00:00'`` against a timestamp), which fails only once a row reaches
    it, however the owner's type check judged the literal. A plain comparison of a column
    with a literal of its own type (a number, or a string against a string column)
    cannot, and such conditions stay as they are, at no cost. ``types`` names the
    columns' families (``Types``); without it every string literal beside a column, and
    any two columns together, are taken to be able to fail."""
    if next(condition.find_all(exp.Column), None) is None:
        return False
    for node in condition.find_all(*_COMPUTED):
        if next(node.find_all(exp.Column), None) is not None:
            return True
        pinned = node.meta.get(PINNED, False)  # beside a column of its very type
        if isinstance(node, exp.Cast) and node.to.this in _TIMESTAMPS and not pinned:
            return True
    if any(
        literal.is_string and _converted(literal, types)
        for literal in condition.find_all(exp.Literal)
    ):
        return True
    return _mixes_dates(condition, types)


def _fingerprint(where: exp.Expr | None = None) -> exp.Expr:
    """Which rows (of the group, or matching ``where``): the XOR of their row ids' hashes.
    The same rows give the same value, however the query that selected them was written."""
    value: exp.Expr = exp.func("bit_xor", exp.func("hash", exp.column("rowid")))
    if where is None:
        return value
    return exp.Filter(this=value, expression=exp.Where(this=where))


def _hidden(column: Hidden, values: _Values) -> exp.Expr:
    """The aggregate computing one hidden column (``states.hidden_columns``)."""
    if column.kind == "fingerprint":
        if column.column is None:
            return _fingerprint()
        present = exp.Not(this=exp.Is(this=values(column.column), expression=exp.Null()))
        return _fingerprint(present)
    if column.kind == "top":
        # The largest magnitude, ties broken by row id: the same rows always name the same
        # row (DOUBLE: abs() of the smallest BIGINT would overflow).
        magnitude = exp.Abs(this=_cast(values(column.column or ""), _DOUBLE))
        key = exp.func(
            "struct_pack",
            exp.PropertyEQ(this=exp.to_identifier("m"), expression=magnitude),
            exp.PropertyEQ(this=exp.to_identifier("r"), expression=exp.column("rowid")),
        )
        # Only rows that hold a value: a NULL magnitude would sort above every number.
        present = exp.Not(this=exp.Is(this=values(column.column or ""), expression=exp.Null()))
        top = exp.Filter(
            this=exp.func("arg_max", exp.column("rowid"), key), expression=exp.Where(this=present)
        )
        return exp.func("hash", top)
    if column.kind == "low":
        return _cast(exp.Min(this=values(column.column or "")), _DOUBLE)
    return _cast(exp.Max(this=values(column.column or "")), _DOUBLE)


def leaf_query(plan: QueryPlan, table: str, types: Types | None = None) -> str | None:
    """Per leaf of the WHERE condition (``conditions.leaves``), the fingerprint of the
    rows it matches in the whole ``table``; None without a condition. ``types``: the
    columns' families (``Types``), as for ``partial_query``."""
    found = leaves(*plan.conditions)
    if not found:
        return None
    items = []
    for i, leaf in enumerate(found):
        test = rebuilt(leaf)  # a leaf may be the shared plan's own node: never re-parent it
        test = _guarded(test, types)
        items.append(exp.alias_(_fingerprint(test), f"__leaf{i}", quoted=True, copy=False))
    return sql(exp.Select(expressions=items, from_=exp.From(this=exp.table_(table, quoted=True))))


def partial_tree(
    plan: QueryPlan,
    table: str,
    *,
    integer_columns: Iterable[str] = (),
    decimals: Iterable[str] = (),
    clamp: dict[str, tuple[float, float]] | None = None,
    hidden: bool = False,
    whole: Iterable[str] = (),
    floats: Iterable[str] = (),
    types: Types | None = None,
) -> exp.Select:
    """The owner's query over its ``table``: the scan step, then (unless raw) the
    aggregate step's states per group. See ``partial_query``."""
    # Clauses as nodes (exp.Select(where=...)) rather than the chained builders
    # (.where(...)), which parse-or-wrap each argument: a third of the cost of the tree.
    scan, step = plan.scan, plan.aggregate
    clauses: dict[str, exp.Expr] = {"from_": exp.From(this=exp.table_(table, quoted=True))}
    if scan.where is not None:
        # An error on some row would tell whether such a row exists (a one-bit answer
        # past k and DP): under TRY a row whose condition fails is simply not matched,
        # and the count that changes goes through the owner's disclosure control.
        clauses["where"] = exp.Where(this=_guarded(rebuilt(scan.where), types))
    if step is None:  # a raw read
        items: list[exp.Expr] = [_column(c) for c in scan.raw_columns]
        if scan.raw_order:
            order = [
                exp.Ordered(this=_column(c), desc=d, nulls_first=f) for c, d, f in scan.raw_order
            ]
            clauses["order"] = exp.Order(expressions=order)
        if scan.limit is not None:
            clauses["limit"] = exp.Limit(expression=exp.Literal.number(scan.limit))
    else:
        ints, exact = set(integer_columns), set(decimals)
        states = step.states if clamp is None else step.dp_states
        values = _Values(step, clamp, frozenset(floats), types)
        wide = frozenset(whole)
        items = [_key(step, g, wide, types) for g in step.group_by]
        items += [
            exp.alias_(_state(s, ints, exact, values, hidden), s.name, quoted=True, copy=False)
            for s in states
        ]
        if hidden:
            items += [
                exp.alias_(_hidden(h, values), h.name, quoted=True, copy=False)
                for h in hidden_columns(states)
            ]
        if step.group_by:
            positions = [exp.Literal.number(i + 1) for i in range(len(step.group_by))]
            clauses["group"] = exp.Group(expressions=positions)
    return exp.Select(expressions=items, **clauses)


def _whole_literal(node: exp.Expr) -> int | None:
    """A whole-number literal's exact value (``-5``, ``100``), else None."""
    negative = isinstance(node, exp.Neg)
    inner = node.this if negative else node
    if not isinstance(inner, exp.Literal) or inner.is_string or not inner.this.isdigit():
        return None
    return -int(inner.this) if negative else int(inner.this)


def _fits_bigint(lo: int, hi: int, n: int) -> bool:
    limit = 2**62
    return max(abs(lo), abs(hi)) < limit and 0 <= (hi - lo) * n < limit


def _width_bucket(node: exp.Expr, whole: frozenset[str]) -> exp.Expr:
    """``width_bucket(x, lo, hi, n)`` as DuckDB can run it (it has no such function),
    with PostgreSQL's meaning: 0 below ``lo``, ``n + 1`` from ``hi`` on, else the bucket
    1..n of equal width. An integer ``x`` is widened first: ``(x - lo) * n`` in its own
    type (a TINYINT, say) would overflow, and the row would fall in the NULL group. In
    the last branch ``0 <= x - lo < hi - lo``, so BIGINT holds it when ``(hi - lo) * n``
    does; else HUGEINT (exact too, but 1.6 times the time of a key over 5 M rows)."""
    if not isinstance(node, exp.WidthBucket):
        return node
    x, lo, hi, n = (
        node.this,
        node.args["min_value"],
        node.args["max_value"],
        node.args["num_buckets"],
    )
    width = exp.Paren(this=exp.Sub(this=hi.copy(), expression=lo.copy()))
    low, high, count = (_whole_literal(v) for v in (lo, hi, n))
    if x.name.lower() in whole and low is not None and high is not None and count is not None:
        # whole numbers throughout: divided exactly (DuckDB's / is a DOUBLE's, off by one
        # bucket past 2^53); the numerator is >= 0 here, so // is the floor
        wide = _cast(x.copy(), _BIGINT if _fits_bigint(low, high, count) else exp.DType.INT128)
        offset = exp.Paren(this=exp.Sub(this=wide, expression=lo.copy()))
        index: exp.Expr = exp.IntDiv(
            this=exp.Mul(this=offset, expression=n.copy()), expression=width
        )
    else:
        offset = exp.Paren(this=exp.Sub(this=x.copy(), expression=lo.copy()))
        index = exp.Floor(
            this=exp.Div(this=exp.Mul(this=offset, expression=n.copy()), expression=width)
        )
    inside = exp.Add(this=_cast(index, _BIGINT), expression=exp.Literal.number(1))
    return exp.Case(
        ifs=[
            exp.If(this=exp.LT(this=x.copy(), expression=lo.copy()), true=exp.Literal.number(0)),
            exp.If(
                this=exp.GTE(this=x.copy(), expression=hi.copy()),
                true=exp.Add(this=n.copy(), expression=exp.Literal.number(1)),
            ),
        ],
        default=inside,
    )


def _key(
    step: AggregateStep, name: str, whole: frozenset[str], types: Types | None = None
) -> exp.Expr:
    """A group key of the owner's query: a column, or an expression named as the key
    (``whole``: the dataset's integer columns)."""
    key = step.value_of.get(name)
    if key is None:
        return _column(name)
    tree = rebuilt(key.tree)
    if tree.find(exp.WidthBucket) is not None:
        tree = tree.transform(lambda node: _width_bucket(node, whole), copy=False)
    return exp.alias_(_guarded(tree, types), name, quoted=True, copy=False)


def partial_query(
    plan: QueryPlan,
    table: str,
    *,
    integer_columns: Iterable[str] = (),
    decimals: Iterable[str] = (),
    clamp: dict[str, tuple[float, float]] | None = None,
    hidden: bool = False,
    whole: Iterable[str] = (),
    floats: Iterable[str] = (),
    types: Types | None = None,
) -> str:
    """The owner's SQL, generated from the validated plan (its WHERE from the tree).

    Its columns are the group keys then ``state_columns(plan, dp=clamp is not None)``.
    With ``clamp`` (differential privacy) values are clamped to the declared bounds and
    variance travels as a sum of squares that the privacy layer turns into M2 after
    adding noise. Sums of ``integer_columns`` stay exact integers and those of
    ``decimals`` exact decimals (without DP); both name values (a column, or an
    expression's ``value_name``). With ``hidden`` the ``states.hidden_columns`` follow, for
    the owner's L2 noise. ``whole`` names the dataset's integer columns. A value of
    ``floats`` that is not finite is no value (NULL) wherever a state reads it: under the
    L2 noise a NaN row made the exact sum NaN, withheld, and any aggregate that counted
    it apart from one that did not told whether the group held one (review, 2026-12-04,
    night). ``types`` names each column's family by its lower-cased name (``Types``:
    which comparisons convert a string literal, which mix a date with a timestamp);
    without it every such comparison runs under TRY.
    """
    tree = partial_tree(
        plan,
        table,
        integer_columns=integer_columns,
        decimals=decimals,
        clamp=clamp,
        hidden=hidden,
        whole=whole,
        floats=floats,
        types=types,
    )
    return sql(tree)


# --- the home's post-merge query ----------------------------------------------------------


def final_query(
    select: exp.Select,
    outputs: Iterable[tuple[exp.Expr, str]],
    writer: Generator | None = None,
) -> exp.Select:
    """The post-merge query: aggregates and group keys become columns of the merged
    table, WHERE goes.

    Built in place from the validated ``select``, which the caller no longer needs.
    ``outputs`` pair each aggregate call, group key and alias reference of its SELECT,
    HAVING and ORDER BY (``rules.Context.outputs``) with the merged column replacing it,
    so the rest of the tree is not walked again."""
    # An unaliased output keeps the name the user wrote (as DuckDB would name it).
    writer = writer or generator()
    names = [
        None if isinstance(item, exp.Alias | exp.Column) else sql(item, writer)
        for item in select.expressions
    ]
    for node, column in outputs:
        node.replace(exp.column(column))
    final = select
    final.set("where", None)
    final.set("group", None)
    having = final.args.get("having")
    final.set("having", None)
    final.set("from_", exp.From(this=exp.Table(this=exp.to_identifier(MERGED_TABLE))))
    if having is not None:
        final.set("where", exp.Where(this=having.this))
    for i, name in enumerate(names):
        if name is not None:
            final.expressions[i] = exp.alias_(final.expressions[i], name, quoted=True, copy=False)
    return final
