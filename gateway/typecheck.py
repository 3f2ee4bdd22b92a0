"""Types of a query against the owner's declared columns, checked before anything runs.

A plan knows which column a condition compares with which literal, but not the columns'
types: the owner does (``DatasetDescriptor``). Left to the engine, a string column
compared with a number makes DuckDB convert every cell, and its error quotes the first
cell that does not convert ("Could not convert string 'Shanghai' to INT32"). So the owner
refuses, at decide time, a query whose types do not fit, with a message that names the
column and never a value:

- a comparison, ``IN`` or ``BETWEEN`` of a string with a number, a boolean or a date, a
  number with a string that is not a number or with a date, a date with a string that is
  not a date or with a number, a boolean with a string that is not a truth value;
- arithmetic on a string or a boolean (a date takes only ``date ± whole days`` and
  ``date - date``); a string or a date used as a condition;
- integer arithmetic in WHERE that can exceed a 64-bit integer for values within the
  columns' declared bounds (public, in the catalog; a column without bounds is taken to
  reach 2^40), in whatever order DuckDB multiplies or adds (it moves constants together).
  DuckDB's overflow error quotes the operands, and whether it happens at all tells
  whether some row passed the conditions before it: refused from the bounds instead;
- ``SUM``/``AVG``/variance/standard deviation of a column that is not a number;
- the same types in HAVING, ORDER BY and SELECT expressions, which the home runs after
  the merge: the owner refuses before it spends anything on a query the home cannot
  answer (the size of an aggregate is not known here: its overflow is left to run time).

Whatever gets past it (data beyond its declared bounds, a literal DuckDB does not
convert) is mapped at run time by ``gateway.engine_errors``; ``place`` says where such an
error happened, naming the plan's columns.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass

from sqlglot import exp

from federation.sql import QueryPlan, agg_column
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.engine_errors import Failure, columns_phrase
from gateway.errors import InvalidArgument

# What a value is, to this check: a declared column type's kind, or a literal's.
STRING, NUMBER, BOOL, DATE = "string", "number", "bool", "date"
TEXT, NULL, UNKNOWN = "text", "null", "unknown"  # a string literal, NULL, not known here

KIND_OF_TYPE = {"string": STRING, "int64": NUMBER, "float64": NUMBER, "bool": BOOL, "date": DATE}
_NOUN = {STRING: "a string", NUMBER: "a number", BOOL: "a boolean", DATE: "a date"}
_ADVICE = {
    STRING: "compare it with a string",
    NUMBER: "compare it with a number",
    BOOL: "compare it with true or false",
    DATE: "compare it with a date written 'YYYY-MM-DD'",
}
# A string literal DuckDB converts to a number, a date or a boolean (checked leniently:
# one it refuses anyway fails on the user's own literal, which the engine error maps).
_NUMERIC = re.compile(r"\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")
_DATE_LIKE = re.compile(r"\s*(-?)([0-9]+)[-/.]([0-9]+)[-/.]([0-9]+)")
_DATE_WORDS = {"infinity", "-infinity", "epoch"}
_TRUTH = {"true", "false", "t", "f", "yes", "no", "y", "n", "1", "0"}
_NUMERIC_AGGREGATES = {"sum", "avg", "var_samp", "var_pop", "stddev_samp", "stddev_pop"}
INT64_MAX = 2**63 - 1
# The magnitude an integer column without declared bounds is taken to reach. Arithmetic
# that could pass INT64_MAX within it is refused; beyond it, a run-time overflow is mapped.
UNBOUNDED = 2.0**40


@dataclass(frozen=True)
class Value:
    """An operand as this check sees it."""

    kind: str
    name: str = ""  # how a message names it ("column 'city'"); "" for a literal
    text: str = ""  # a string literal's text
    refs: frozenset[str] = frozenset()  # the columns (or aggregates) it is computed from
    # Integer arithmetic: DuckDB raises on overflow, quoting the operands. ``magnitude``
    # bounds |value| for every value within the declared bounds.
    whole: bool = False
    magnitude: float = 0.0
    assumed: bool = False  # from a column without declared bounds (taken as UNBOUNDED)


def _text_fits(text: str, kind: str) -> bool:
    if kind == NUMBER:
        return _NUMERIC.fullmatch(text) is not None
    if kind == DATE:
        return _is_date(text)
    if kind == BOOL:
        return text.lower() in _TRUTH
    return True


def _is_date(text: str) -> bool:
    """Whether DuckDB reads ``text`` as a date (or a timestamp, when compared with one)."""
    if text.strip().lower() in _DATE_WORDS:
        return True
    m = _DATE_LIKE.match(text)
    if m is None:
        return False
    sign, year, month, day = m.groups()
    if sign or len(year) > 4:
        return True  # out of the calendar module's range: let the engine decide
    try:
        datetime.date(max(int(year), 1), int(month), int(day))
    except ValueError:
        return False
    return True


def _fits(a: Value, b: Value) -> bool:
    kinds = {a.kind, b.kind}
    if kinds & {NULL, UNKNOWN} or kinds == {TEXT}:
        return True
    if a.kind == TEXT:
        return _text_fits(a.text, b.kind)
    if b.kind == TEXT:
        return _text_fits(b.text, a.kind)
    if kinds == {NUMBER, BOOL}:  # DuckDB casts a whole number to a truth value (0, 1, ...)
        number = a if a.kind == NUMBER else b
        return number.whole and not number.refs
    return a.kind == b.kind


def _mismatch(a: Value, b: Value) -> InvalidArgument:
    """The refusal of comparing ``a`` with ``b``: it names columns, never a literal."""
    if a.name and b.name and TEXT not in (a.kind, b.kind):
        return InvalidArgument(
            f"{a.name} is {_NOUN[a.kind]} and {b.name} is {_NOUN[b.kind]}: they cannot be compared"
        )
    named = a if a.name else b
    if named.name:
        return InvalidArgument(f"{named.name} is {_NOUN[named.kind]}: {_ADVICE[named.kind]}")
    if TEXT in (a.kind, b.kind):  # two literals, one of them a string
        other = b if a.kind == TEXT else a
        return InvalidArgument(
            f"a string literal is compared with {_NOUN[other.kind]} it does not convert to"
        )
    return InvalidArgument(f"{_NOUN[a.kind]} is compared with {_NOUN[b.kind]}")


class Checker:
    """The types of one query's expressions, from the names they use."""

    def __init__(self, names: Mapping[str, Value]) -> None:
        self.names = names

    def value(self, node: exp.Expr) -> Value:
        """The type of ``node``, refusing what does not fit on the way."""
        if isinstance(node, exp.Column):
            return self.names.get(node.name.lower(), Value(UNKNOWN))
        if isinstance(node, exp.Literal):
            text = str(node.this)
            if node.is_string:  # in arithmetic DuckDB reads it as a number (checked there)
                number = _NUMERIC.fullmatch(text) is not None
                size = abs(float(text)) if number else 0.0
                return Value(
                    TEXT, text=text, whole=number and text.strip().isdigit(), magnitude=size
                )
            return Value(NUMBER, whole=text.isdigit(), magnitude=abs(float(text)))
        if isinstance(node, exp.Null):
            return Value(NULL)
        if isinstance(node, exp.Boolean):
            return Value(BOOL)
        if isinstance(node, exp.Cast):  # the subset casts only a string literal, to a date
            if not _is_date(str(node.this.this)):
                raise InvalidArgument(
                    "a string cast to a date is not a date: write it 'YYYY-MM-DD'"
                )
            return Value(DATE)
        if isinstance(node, exp.Paren | exp.Alias | exp.Ordered):
            return self.value(node.this)
        if isinstance(node, exp.Neg | exp.Add | exp.Sub | exp.Mul | exp.Div):
            return self._arithmetic(node)
        if isinstance(node, exp.EQ | exp.NEQ | exp.GT | exp.GTE | exp.LT | exp.LTE):
            self._compare(self.value(node.this), self.value(node.expression))
            return Value(BOOL)
        if isinstance(node, exp.In):
            this = self.value(node.this)
            for item in node.expressions:
                self._compare(this, self.value(item))
            return Value(BOOL)
        if isinstance(node, exp.Between):
            this = self.value(node.this)
            self._compare(this, self.value(node.args["low"]))
            self._compare(this, self.value(node.args["high"]))
            return Value(BOOL)
        if isinstance(node, exp.Is):
            self.value(node.this)
            return Value(BOOL)
        if isinstance(node, exp.And | exp.Or | exp.Not):
            for child in node.iter_expressions():
                self.condition(child)
            return Value(BOOL)
        return Value(UNKNOWN)  # nothing else passes the subset's rules

    def condition(self, node: exp.Expr) -> None:
        """``node`` where a truth value is expected (WHERE, HAVING, AND/OR/NOT)."""
        v = self.value(node)
        if v.kind in (STRING, DATE, TEXT):
            what = v.name or "a string literal"
            noun = _NOUN.get(v.kind, "a string")
            raise InvalidArgument(f"{what} is {noun}: a condition needs a comparison")

    def _compare(self, a: Value, b: Value) -> None:
        if not _fits(a, b):
            raise _mismatch(a, b)

    def _arithmetic(self, node: exp.Expr) -> Value:
        operands = [self.value(child) for child in node.iter_expressions()]
        for v in operands:
            if v.kind in (STRING, BOOL):
                raise InvalidArgument(
                    f"{v.name or 'a literal'} is {_NOUN[v.kind]}: arithmetic needs numbers"
                )
            if v.kind == TEXT and not _text_fits(v.text, NUMBER):
                raise InvalidArgument("a string literal in arithmetic must be a number")
        refs = frozenset().union(*(v.refs for v in operands))
        over = f"the expression over {_listed(refs)}" if refs else ""
        if any(v.kind == NULL for v in operands):
            return Value(NULL)
        dates = [v for v in operands if v.kind == DATE]
        if dates:
            return self._dates(node, operands, dates[0], over, refs)
        whole = all(v.whole for v in operands) and not isinstance(node, exp.Div)
        assumed = any(v.assumed for v in operands)
        if isinstance(node, exp.Mul):  # every partial product, in any order DuckDB picks
            magnitude = max(1.0, operands[0].magnitude) * max(1.0, operands[1].magnitude)
        elif isinstance(node, exp.Div):
            magnitude = 0.0  # a DOUBLE: it cannot overflow
        else:
            magnitude = sum(v.magnitude for v in operands)
        if whole and magnitude > INT64_MAX:
            if not refs:
                raise InvalidArgument(
                    "a constant computed by the query exceeds a 64-bit integer: "
                    "compute with smaller numbers"
                )
            within = (
                "a column without declared bounds taken as reaching 2^40"
                if assumed
                else "values within the declared bounds"
            )
            raise InvalidArgument(
                f"{over} can exceed a 64-bit integer for {within}: compute with smaller numbers"
            )
        return Value(
            NUMBER, name=over, refs=refs, whole=whole, magnitude=magnitude, assumed=assumed
        )

    @staticmethod
    def _dates(
        node: exp.Expr, operands: list[Value], date: Value, over: str, refs: frozenset[str]
    ) -> Value:
        """Date arithmetic: ``date ± whole days`` (a literal) and ``date - date``."""
        if len(operands) == 1:
            raise InvalidArgument(f"{date.name or 'a date'} is a date: it cannot be negated")
        if isinstance(node, exp.Sub) and all(v.kind == DATE for v in operands):
            return Value(NUMBER, name=over, refs=refs)  # days between two dates
        other = operands[1] if operands[0] is date else operands[0]
        moved = isinstance(node, exp.Add) or (isinstance(node, exp.Sub) and date is operands[0])
        if moved and other.kind == NUMBER and other.whole and not other.refs:
            return Value(DATE, name=over, refs=refs)
        raise InvalidArgument(
            f"{date.name or 'a date'} is a date: only a whole number of days (a literal) "
            "can be added to or subtracted from it"
        )


def _listed(refs: frozenset[str]) -> str:
    names = sorted(refs)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _column(c: ColumnSpec) -> Value:
    name = f"column {c.name!r}"
    if c.type != "int64":
        return Value(KIND_OF_TYPE.get(c.type, UNKNOWN), name=name, refs=frozenset({name}))
    bounded = c.lower is not None and c.upper is not None
    size = max(abs(c.lower or 0.0), abs(c.upper or 0.0)) if bounded else UNBOUNDED
    refs = frozenset({name})
    return Value(NUMBER, name=name, refs=refs, whole=True, magnitude=size, assumed=not bounded)


def _columns(desc: DatasetDescriptor) -> dict[str, Value]:
    return {c.name: _column(c) for c in desc.columns}


def check(plan: QueryPlan, desc: DatasetDescriptor) -> None:
    """Refuse (InvalidArgument) a query whose types do not fit the owner's columns."""
    columns = _columns(desc)
    where = plan.scan.where
    if where is not None:
        Checker(columns).condition(where)
    for call in plan.aggregates:
        if call.func in _NUMERIC_AGGREGATES and call.column is not None:
            kind = columns[call.column].kind if call.column in columns else UNKNOWN
            if kind not in (NUMBER, UNKNOWN):
                func = call.func.upper()
                raise InvalidArgument(
                    f"{func}({call.column}): column {call.column!r} is {_NOUN[kind]}; "
                    f"{func} needs a number column"
                )
    _check_final(plan, columns)


def _check_final(plan: QueryPlan, columns: Mapping[str, Value]) -> None:
    """HAVING, ORDER BY and SELECT's expressions, as the home runs them over the merged
    table: group keys and raw columns by their type, each aggregate by its result's."""
    names = {n: columns.get(n, Value(UNKNOWN)) for n in plan.group_by + plan.raw_columns}
    for i, call in enumerate(plan.aggregates):
        if call.func in ("min", "max") and call.column is not None:
            kind = columns[call.column].kind if call.column in columns else UNKNOWN
        else:
            kind = NUMBER
        # An aggregate's size is not known here (and its value is protected): not whole.
        names[agg_column(i)] = Value(kind, name=call.label, refs=frozenset({call.label}))
    checker = Checker(names)
    tree = plan.final.tree
    having = tree.args.get("where")
    if having is not None:
        checker.condition(having.this)
    for item in tree.expressions:
        checker.value(item)
    order = tree.args.get("order")
    for o in order.expressions if order is not None else []:
        checker.value(o)


# --- where a run-time error happened, for its message ---------------------------------------


def _columns_in(node: exp.Expr | None, *, arithmetic: bool) -> set[str]:
    """Column names under ``node`` (only those inside arithmetic, if ``arithmetic``)."""
    if node is None:
        return set()
    found: set[str] = set()
    stack: list[tuple[exp.Expr, bool]] = [(node, False)]
    while stack:
        n, inside = stack.pop()
        if isinstance(n, exp.Column) and (inside or not arithmetic):
            found.add(n.name.lower())
        inside = inside or isinstance(n, exp.Neg | exp.Add | exp.Sub | exp.Mul | exp.Div)
        stack.extend((child, inside) for child in n.iter_expressions())
    return found


def place(plan: QueryPlan, failure: Failure) -> str:
    """Where in the owner's query an engine ``failure`` can have happened, as a phrase of
    column names (``engine_errors.message``'s ``place``)."""
    where = plan.scan.where
    aggregated = {a.column for a in plan.aggregates if a.column is not None}
    if failure is Failure.OVERFLOW:
        in_arithmetic = _columns_in(where, arithmetic=True)
        if in_arithmetic:
            return columns_phrase("the WHERE clause's arithmetic", in_arithmetic)
        if aggregated:
            return columns_phrase("an aggregate", aggregated)
        return ""
    if failure in (Failure.CONVERSION, Failure.EVALUATION):
        if where is not None:
            return columns_phrase("the WHERE clause", _columns_in(where, arithmetic=False))
        if aggregated:  # e.g. a sum past BIGINT, cast back for the partial
            return columns_phrase("an aggregate", aggregated)
    if failure is Failure.TYPES:
        return columns_phrase("", set(plan.column_roles))
    return ""
