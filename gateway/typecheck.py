"""Types of a query against the owner's declared columns, checked before anything runs.

A plan knows which column a condition compares with which literal, but not the columns'
types: the owner does (``DatasetDescriptor``). Left to the engine, a string column
compared with a number makes DuckDB convert every cell, and its error quotes the first
cell that does not convert ("Could not convert string 'Shanghai' to INT32"). So the owner
refuses, at decide time, a query whose types do not fit, with a message that names the
column and never a value:

- a comparison, ``IN`` or ``BETWEEN`` of a string with a number, a boolean or a date, a
  number with a string that is not a number or with a date, a date (or a timestamp) with
  a string that is not a date or with a number, a boolean with a string that is not a
  truth value; a string that reads as the column's kind but does not convert to its type
  exactly and within its range (``_converts``: ``age = '300'`` of an int8, a decimal
  with too many digits, ``'2025-01-01 25:00:00'``), which DuckDB would fail on only
  once a row reaches it;
- arithmetic on a string, a boolean or a timestamp (a date takes only ``date ± whole
  days`` and ``date - date``); a string literal in arithmetic with a decimal (DuckDB
  cannot choose a type for it); a string, a date or a timestamp used as a condition;
- integer arithmetic in WHERE that can exceed its integer type (DuckDB's: an int8 column
  times a literal that fits int8 is computed in int8, times 1000 in int32, ...) for
  values within the columns' declared bounds (public, in the catalog; a column without
  bounds is taken to reach 2^40, or its type's largest value if smaller), in whatever
  order DuckDB multiplies or adds (it moves constants together). Decimal arithmetic the
  same, against the DECIMAL(p, s) DuckDB computes it in (a product of two decimals of at
  most 18 digits is kept in 18). DuckDB's overflow error quotes the operands, and whether
  it happens at all tells whether some row passed the conditions before it: refused from
  the bounds instead;
- ``SUM``/``AVG``/variance/standard deviation of a column that is not a number, or of
  a value whose sum over 2^40 rows within the bounds could leave the type DuckDB sums it
  in (a HUGEINT, a DECIMAL(38, s)), which DuckDB raises on;
- a group key's function (``substr``, date parts, ``date_trunc``...) over a value of a
  kind it does not take, and whatever is inside its arguments, typed like any value;
- the same types in HAVING, ORDER BY and SELECT expressions, which the home runs after
  the merge: the owner refuses before it spends anything on a query the home cannot
  answer (the size of an aggregate is not known here: its overflow is left to run time).

Whatever gets past it (data beyond its declared bounds, a literal DuckDB does not
convert) is mapped at run time by ``gateway.engine_errors``; ``place`` says where such an
error happened, naming the plan's columns.

The same walk types a value: ``value_kind`` says what a scalar expression over declared
columns is (an integer, a DECIMAL(p, s), a float, a date...), following DuckDB's typing
rules, and ``exact_kind_of`` whether a SUM over it is exact (``"int"``, ``"decimal"``)
or a DOUBLE; ``exact_sum_type`` gives the SUM's type itself.
"""

from __future__ import annotations

import datetime
import decimal
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

from sqlglot import exp

from federation.sql import AggCall, QueryPlan, agg_column
from federation.sql.generate import Typed
from gateway import column_types as ct
from gateway.column_types import ExactKind, SumType, parse_type
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.engine_errors import Failure, columns_phrase
from gateway.errors import InvalidArgument

# What a value is, to this check: a declared column type's kind, or a literal's.
STRING, NUMBER, BOOL, DATE, TIMESTAMP = "string", "number", "bool", "date", "timestamp"
TEXT, NULL, UNKNOWN = "text", "null", "unknown"  # a string literal, NULL, not known here
# A number's type as DuckDB computes it ("" where it is not known here: an aggregate's).
INT, DECIMAL, FLOAT = ct.INT, ct.DECIMAL, ct.FLOAT

_KIND_OF_FAMILY = {
    ct.INT: NUMBER,
    ct.FLOAT: NUMBER,
    ct.DECIMAL: NUMBER,
    ct.STRING: STRING,
    ct.BOOL: BOOL,
    ct.DATE: DATE,
    ct.TIMESTAMP: TIMESTAMP,
}


_NOUN = {
    STRING: "a string",
    NUMBER: "a number",
    BOOL: "a boolean",
    DATE: "a date",
    TIMESTAMP: "a timestamp",
}
_ADVICE = {
    STRING: "compare it with a string",
    NUMBER: "compare it with a number",
    BOOL: "compare it with true or false",
    DATE: "compare it with a date written 'YYYY-MM-DD'",
    TIMESTAMP: "compare it with a timestamp written 'YYYY-MM-DD HH:MM:SS'",
}
# A string literal DuckDB converts to a number, a date or a boolean (checked leniently:
# one it refuses anyway fails on the user's own literal, which the engine error maps).
_NUMERIC = re.compile(r"\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")
_DECIMAL_LITERAL = re.compile(r"([0-9]*)\.([0-9]*)")
_DATE_LIKE = re.compile(r"\s*(-?)([0-9]+)[-/.]([0-9]+)[-/.]([0-9]+)")
_DATE_WORDS = {"infinity", "-infinity", "epoch"}
# What a date or timestamp literal must be, whole, to be compared with or cast to one: the
# date (years 0 to 9999, one separator throughout), then maybe a time (hours and minutes,
# maybe seconds and a fraction) and a UTC offset right after it. DuckDB reads each of
# these for a DATE, a TIMESTAMP and a TIMESTAMPTZ alike; what it reads beyond them (years
# past 9999, BC, a space before the offset) is refused here, since a literal it cannot
# convert fails only once a row reaches it.
_DATE_TEXT = re.compile(
    r"\s*([0-9]{1,4})([-/])([0-9]{1,2})\2([0-9]{1,2})"
    r"(?:[ T]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]{0,9})?)?"
    r"(?:Z|[+-]([0-9]{2})(?::?([0-9]{2}))?)?)?\s*"
)
_TRUTH = {"true", "false", "t", "f", "yes", "no", "y", "n", "1", "0"}
# The aggregates whose states hold a SUM of the value (AVG, VAR_*, STDDEV_* too).
_SUMMED = {"sum", "avg", "var_samp", "var_pop", "stddev_samp", "stddev_pop"}
# The rows a sum is judged for (2^40, a trillion): within them, a sum of values within the
# declared bounds must fit the type DuckDB sums in.
SUMMED_ROWS = 2.0**40
# approx_quantile too: its sketch answers in float64 (a date or timestamp would come back
# as a number of days or microseconds).
_NUMERIC_AGGREGATES = {
    "sum",
    "avg",
    "var_samp",
    "var_pop",
    "stddev_samp",
    "stddev_pop",
    "approx_quantile",
}
INT64_MAX = 2**63 - 1
INT_MAX = {bits: 2 ** (bits - 1) - 1 for bits in (8, 16, 32, 64, 128)}
_INT_NOUN = {8: "an 8-bit", 16: "a 16-bit", 32: "a 32-bit", 64: "a 64-bit", 128: "a 128-bit"}
# The magnitude an integer column without declared bounds is taken to reach. Arithmetic
# that could pass INT64_MAX within it is refused; beyond it, a run-time overflow is mapped.
UNBOUNDED = 2.0**40
# A float's largest finite value: past it DuckDB gives inf, and a sum that is inf is
# withheld, which would tell by whether it was whether some row passed a threshold.
FLOAT_MAX = {32: 3.4028234663852886e38, 64: 1.7976931348623157e308}
_INT64_DIGITS = 18  # DuckDB keeps a decimal product of such narrow operands in 18 digits
_ARITHMETIC = (exp.Neg, exp.Add, exp.Sub, exp.Mul, exp.Div)
_FUNCTIONS = (exp.Abs, exp.Round, exp.Coalesce, exp.Greatest, exp.Least, exp.Case, exp.If)


@dataclass(frozen=True)
class Value:
    """An operand as this check sees it."""

    kind: str
    name: str = ""  # how a message names it ("column 'city'"); "" for a literal
    text: str = ""  # a string literal's text
    refs: frozenset[str] = frozenset()  # the columns (or aggregates) it is computed from
    # Integer and decimal arithmetic: DuckDB raises on overflow, quoting the operands.
    # ``magnitude`` bounds |value| for every value within the declared bounds.
    whole: bool = False
    magnitude: float = 0.0
    assumed: bool = False  # from a column without declared bounds (taken as UNBOUNDED)
    typed: bool = False  # from a column without declared bounds, as large as its type
    observed: bool = False  # from a column without declared bounds, its registered range
    # A number's type as DuckDB computes it: INT (``bits`` wide), DECIMAL(``precision``,
    # ``scale``) or FLOAT (``bits`` 32 or 64); "" where not known (an aggregate's value).
    number: str = ""
    bits: int = 0
    precision: int = 0
    scale: int = 0


class ValueKind(NamedTuple):
    """What a scalar expression is (``value_kind``): its kind (``NUMBER``, ``STRING``,
    ``BOOL``, ``DATE``, ``TIMESTAMP``, ``NULL`` or ``UNKNOWN``) and, for a number, its
    type as DuckDB computes it."""

    kind: str
    number: str = ""  # INT, DECIMAL, FLOAT, or "" (not a number, or not known)
    bits: int = 0  # INT and FLOAT
    precision: int = 0  # DECIMAL
    scale: int = 0

    @property
    def exact(self) -> ExactKind | None:
        """Whether a SUM over it is exact: "int", "decimal" or None."""
        return exact_sum_type(self).exact

    @property
    def duckdb(self) -> str:
        """DuckDB's name of the type ("" where not known)."""
        if self.number == DECIMAL:
            return f"DECIMAL({self.precision},{self.scale})"
        if self.number == INT:
            return {8: "TINYINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}.get(
                self.bits, "HUGEINT"
            )
        if self.number == FLOAT:
            return "FLOAT" if self.bits == 32 else "DOUBLE"
        return {STRING: "VARCHAR", BOOL: "BOOLEAN", DATE: "DATE", TIMESTAMP: "TIMESTAMP"}.get(
            self.kind, ""
        )


def _bare_number(node: exp.Expr) -> bool:
    """A number literal, maybe negated or in parentheses."""
    while isinstance(node, exp.Paren | exp.Neg):
        node = node.this
    return isinstance(node, exp.Literal) and not node.is_string


def _text_fits(text: str, kind: str) -> bool:
    if kind == NUMBER:
        return _NUMERIC.fullmatch(text) is not None
    if kind in (DATE, TIMESTAMP):
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


def _converts(text: str, target: Value) -> str:
    """Why the string literal ``text``, which reads as ``target``'s kind (``_text_fits``),
    does not convert to ``target``'s type exactly and within its range ("" if it does):
    an integer must be a whole number the type holds, a DECIMAL(p, s) a number of at
    most p - s digits before the point and s after it, a date or a timestamp the whole
    of ``_DATE_TEXT`` with a real day and time. DuckDB converts such a literal only when
    a row reaches it, and its error would tell that one did (the WHERE's other tests
    passed): refused here instead, and run under TRY in any case
    (``federation.sql.generate``)."""
    if target.kind == NUMBER and target.number in (INT, DECIMAL):
        try:
            number = decimal.Decimal(text.strip())
        except decimal.InvalidOperation:
            return "is not a number"
        if target.number == INT:
            top = INT_MAX[target.bits] if target.bits in INT_MAX else INT_MAX[64]
            if not -top - 1 <= number <= top:
                return f"is not a whole number from {-top - 1} to {top}"
            if number != number.to_integral_value():
                return "is not a whole number"
            return ""
        digits = target.precision - target.scale
        if abs(number) >= decimal.Decimal(10) ** digits:
            return f"has more than {digits} digit(s) before the point"
        step = decimal.Decimal(1).scaleb(-target.scale)
        exact = number.quantize(step, rounding=decimal.ROUND_DOWN, context=_WIDE)
        if number != exact:
            return f"has more than {target.scale} digit(s) after the point"
        return ""
    if target.kind in (DATE, TIMESTAMP):
        if text.strip().lower() in _DATE_WORDS:
            return ""
        m = _DATE_TEXT.fullmatch(text)
        if m is None:
            return "is not written 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'"
        year, _, month, day, hour, minute, second, zone_h, zone_m = m.groups()
        try:
            datetime.date(max(int(year), 1), int(month), int(day))
        except ValueError:
            return "is not a day of the calendar"
        parts = [(hour, 23), (minute, 59), (second, 59), (zone_h, 23), (zone_m, 59)]
        if any(part is not None and int(part) > top for part, top in parts):
            return "is not a time of day"
    return ""


_WIDE = decimal.Context(prec=100)  # room for any DECIMAL(38, s) a literal is brought to


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
    if kinds == {DATE, TIMESTAMP}:  # a date is the timestamp of its midnight
        return True
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


def _exactly(text: str, target: Value, cast: bool = False) -> None:
    """Refuse the string literal ``text`` where it does not convert to ``target``'s type
    exactly (``_converts``), quoting it (the user's own words, never a cell)."""
    why = _converts(text, target)
    if not why:
        return
    literal = f"the string {_quoted(text)} {why}"
    if cast:
        raise InvalidArgument(f"a string cast to {_type_noun(target)}: {literal}")
    what = target.name or "a value"
    raise InvalidArgument(
        f"{what} is {_type_noun(target)}: {literal}, so it does not convert to it exactly"
    )


def _type_noun(v: Value) -> str:
    if v.number == INT and v.bits in _INT_NOUN:
        return f"{_INT_NOUN[v.bits]} integer"
    if v.number == DECIMAL:
        return f"a DECIMAL({v.precision},{v.scale})"
    return _NOUN.get(v.kind, "a value")


def _quoted(text: str, most: int = 40) -> str:
    """A literal as the user wrote it, in quotes, cut at ``most`` characters."""
    cut = text if len(text) <= most else text[:most] + "..."
    return "'" + cut.replace("'", "''") + "'"


def _number_literal(text: str) -> Value:
    """A number as DuckDB types it: INTEGER (BIGINT, HUGEINT if larger), DECIMAL(p, s) with
    a point, DOUBLE with an exponent."""
    magnitude = abs(float(text))
    if text.isdigit():
        n = int(text)
        bits = 32 if n <= INT_MAX[32] else 64 if n <= INT_MAX[64] else 128
        return Value(NUMBER, whole=True, magnitude=magnitude, number=INT, bits=bits)
    m = _DECIMAL_LITERAL.fullmatch(text)
    if m is not None:
        scale = len(m.group(2))
        precision = max(len(m.group(1)) + scale, 1)
        if precision <= ct.MAX_PRECISION:
            return Value(
                NUMBER, magnitude=magnitude, number=DECIMAL, precision=precision, scale=scale
            )
    return Value(NUMBER, magnitude=magnitude, number=FLOAT, bits=64)


def _digits(v: Value) -> tuple[int, int]:
    """(precision, scale) of a number in decimal arithmetic (an integer's DuckDB width)."""
    if v.number == DECIMAL:
        return v.precision, v.scale
    return ct.INT_DIGITS.get(v.bits, ct.MAX_PRECISION), 0


def _int_bits(numbers: list[Value]) -> int:
    """DuckDB's integer type of an operation over integers: the widest column's, widened
    for a constant only where the constant does not fit it (int8 * 2 is int8, int8 *
    1000 is int32); constants alone keep their own (INTEGER, or BIGINT if larger)."""
    bits = max((v.bits for v in numbers if v.refs), default=0)
    for v in numbers:
        if not v.refs and (bits == 0 or v.magnitude > INT_MAX[bits]):
            bits = max(bits, v.bits)
    return bits or 64


def _float_bits(numbers: list[Value]) -> int:
    floats = [v.bits for v in numbers if v.number == FLOAT]
    return 32 if floats and all(b == 32 for b in floats) else 64


def _numeric_type(node: exp.Expr, numbers: list[Value]) -> tuple[str, int, int, int]:
    """(number, bits, precision, scale) of arithmetic over ``numbers``, as DuckDB binds
    it (its BindDecimalAddSubtract and BindDecimalMultiply for decimals)."""
    if not numbers or any(v.number == "" for v in numbers):
        return "", 0, 0, 0
    if isinstance(node, exp.Div) or any(v.number == FLOAT for v in numbers):
        return FLOAT, _float_bits(numbers), 0, 0  # "/" is a division of DOUBLEs (FLOATs)
    if not any(v.number == DECIMAL for v in numbers):
        return INT, _int_bits(numbers), 0, 0
    digits = [_digits(v) for v in numbers]
    widest = max(p for p, _ in digits)
    if isinstance(node, exp.Mul):
        precision, scale = sum(p for p, _ in digits), sum(s for _, s in digits)
        if scale > ct.MAX_PRECISION:
            raise InvalidArgument(
                "a product of decimals would need more than 38 digits after the point: "
                "round or cast its factors first"
            )
        if precision > _INT64_DIGITS and widest <= _INT64_DIGITS and scale < _INT64_DIGITS:
            precision = _INT64_DIGITS
    elif isinstance(node, exp.Neg):
        precision, scale = digits[0]
    else:  # + and -: one more digit
        scale = max(s for _, s in digits)
        precision = max(scale + max(p - s for p, s in digits), widest) + 1
    return DECIMAL, 0, min(precision, ct.MAX_PRECISION), scale


def _common_type(numbers: list[Value]) -> tuple[str, int, int, int]:
    """The type DuckDB gives COALESCE, LEAST, GREATEST and CASE over ``numbers``."""
    if not numbers or any(v.number == "" for v in numbers):
        return "", 0, 0, 0
    if any(v.number == FLOAT for v in numbers):
        return FLOAT, _float_bits(numbers), 0, 0
    if not any(v.number == DECIMAL for v in numbers):
        return INT, _int_bits(numbers), 0, 0
    digits = [_digits(v) for v in numbers]
    scale = max(s for _, s in digits)
    precision = min(scale + max(p - s for p, s in digits), ct.MAX_PRECISION)
    return DECIMAL, 0, precision, scale


def _decimal_common(values: list[Value]) -> None:
    """Refuse numbers DuckDB must bring to one DECIMAL (to compare them, or for COALESCE,
    LEAST, GREATEST, CASE) when that decimal cannot hold every value of a column's type:
    it keeps the most digits after the point, and a value with more digits before it
    than are left of 38 fails to convert ("Could not cast value ... to DECIMAL(38,37)")
    only where such a row is reached. Judged from the types (integers as decimals of
    their width), not the bounds: the data may pass its declared bounds, and a
    comparison is not run under TRY (``federation.sql.generate``)."""
    numbers = [v for v in values if v.kind == NUMBER]
    if not any(v.number == DECIMAL for v in numbers):
        return
    if any(v.number not in (INT, DECIMAL) for v in numbers):
        return  # a DOUBLE (or a type not known here): compared as DOUBLEs
    scale = max(_digits(v)[1] for v in numbers)
    for v in numbers:
        precision, own = _digits(v)
        if v.refs and scale + precision - own > ct.MAX_PRECISION:
            what = v.name.removeprefix("the expression over ")
            raise InvalidArgument(
                f"{what} is brought to a decimal with {scale} digits after the point, which "
                "cannot hold every value of its type: cast the other decimal to fewer digits "
                "after the point, or to DOUBLE"
            )


def _within(operands: Iterable[Value]) -> str:
    """For which values a refused overflow can happen."""
    operands = list(operands)
    if any(v.assumed for v in operands):
        return "a column without declared bounds taken as reaching 2^40"
    if any(v.typed for v in operands):
        return "values its columns' types hold (no bounds are declared)"
    if any(v.observed for v in operands):
        return "values within the declared bounds or, where none are, the registered range"
    return "values within the declared bounds"


_CAST_INTS = {
    exp.DType.TINYINT: 8,
    exp.DType.SMALLINT: 16,
    exp.DType.INT: 32,
    exp.DType.BIGINT: 64,
    exp.DType.INT128: 128,
}
_CAST_KINDS = {
    exp.DType.VARCHAR: STRING,
    exp.DType.TEXT: STRING,
    exp.DType.CHAR: STRING,
    exp.DType.BOOLEAN: BOOL,
    exp.DType.DATE: DATE,
    exp.DType.TIMESTAMP: TIMESTAMP,
    exp.DType.TIMESTAMPNTZ: TIMESTAMP,
    exp.DType.TIMESTAMPTZ: TIMESTAMP,
    exp.DType.DATETIME: TIMESTAMP,
}


def _cast_target(to: exp.DataType) -> Value:
    """The value a CAST makes (UNKNOWN for a type this check does not know)."""
    kind = to.this
    if kind in _CAST_INTS:
        return Value(NUMBER, whole=True, number=INT, bits=_CAST_INTS[kind])
    if kind == exp.DType.FLOAT:
        return Value(NUMBER, number=FLOAT, bits=32)
    if kind == exp.DType.DOUBLE:
        return Value(NUMBER, number=FLOAT, bits=64)
    if kind == exp.DType.DECIMAL:
        params = [int(p.this.this) for p in to.expressions if isinstance(p.this, exp.Literal)]
        precision, scale = (params + [18, 3][len(params) :])[:2] if params else (18, 3)
        if len(params) == 1:
            scale = 0
        if not 1 <= precision <= ct.MAX_PRECISION or scale > precision:
            raise InvalidArgument(
                f"DECIMAL({precision},{scale}) is not a decimal type: the precision must be "
                "1 to 38 and the scale at most the precision"
            )
        return Value(NUMBER, number=DECIMAL, precision=precision, scale=scale)
    return Value(_CAST_KINDS.get(kind, UNKNOWN))


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
            return _number_literal(text)
        if isinstance(node, exp.Null):
            return Value(NULL)
        if isinstance(node, exp.Boolean):
            return Value(BOOL)
        if isinstance(node, exp.Cast):  # TRY_CAST is a Cast too
            return self._cast(node)
        if isinstance(node, exp.Paren | exp.Alias | exp.Ordered):
            return self.value(node.this)
        if isinstance(node, _ARITHMETIC):
            return self._arithmetic(node)
        if isinstance(node, _FUNCTIONS):
            return self._function(node)
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
        if isinstance(node, _KEY_FUNCTIONS):
            return self._key_function(node)
        return Value(UNKNOWN)  # nothing else passes the subset's rules

    def _key_function(self, node: exp.Expr) -> Value:
        """A group key's function (``substr``, a date part, ``date_trunc``, ``floor``,
        ``width_bucket``): its arguments typed like any value, so that nothing inside one
        escapes this check (a conversion that fails only on a row that passed the WHERE
        says the row exists), and its subject of a kind it takes (``year(city)``,
        ``substr(revenue, 1, 2)`` are refused here rather than in every owner's engine)."""
        subject, *_ = operands = [self.value(child) for child in node.iter_expressions()]
        allowed = _KEY_KINDS.get(type(node))
        kind = STRING if subject.kind == TEXT else subject.kind
        if allowed is not None and kind not in (*allowed, UNKNOWN, NULL):
            func = _KEY_NAMES.get(type(node), node.key)
            arg = node.this.name if isinstance(node.this, exp.Column) else "..."
            noun = _NOUN.get(subject.kind, "a string")
            raise InvalidArgument(
                f"{func}({arg}) in GROUP BY: {subject.name or 'a literal'} is {noun}"
            )
        refs = frozenset().union(*(v.refs for v in operands))
        name = f"the expression over {_listed(refs)}" if refs else ""
        return Value(STRING if isinstance(node, exp.Substring) else UNKNOWN, name=name, refs=refs)

    def condition(self, node: exp.Expr) -> None:
        """``node`` where a truth value is expected (WHERE, HAVING, AND/OR/NOT)."""
        v = self.value(node)
        if v.kind in (STRING, DATE, TIMESTAMP, TEXT):
            what = v.name or "a string literal"
            noun = _NOUN.get(v.kind, "a string")
            raise InvalidArgument(f"{what} is {noun}: a condition needs a comparison")

    def _compare(self, a: Value, b: Value) -> None:
        if not _fits(a, b):
            raise _mismatch(a, b)
        if TEXT in (a.kind, b.kind) and a.kind != b.kind:
            literal, target = (a, b) if a.kind == TEXT else (b, a)
            _exactly(literal.text, target)
        _decimal_common([a, b])

    def _arithmetic(self, node: exp.Expr) -> Value:
        operands = [self.value(child) for child in node.iter_expressions()]
        for v in operands:
            if v.kind in (STRING, BOOL):
                raise InvalidArgument(
                    f"{v.name or 'a literal'} is {_NOUN[v.kind]}: arithmetic needs numbers"
                )
            if v.kind == TIMESTAMP:
                raise InvalidArgument(
                    f"{v.name or 'a timestamp'} is a timestamp: it takes no arithmetic "
                    "(compare it with a timestamp instead)"
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
        numbers = [v for v in operands if v.kind == NUMBER]
        if any(v.kind == TEXT for v in operands) and any(v.number == DECIMAL for v in numbers):
            raise InvalidArgument(
                "a string literal in arithmetic with a decimal: write the number without quotes"
            )
        if any(v.kind == UNKNOWN for v in operands):  # e.g. a key function's value
            numbers = [*numbers, Value(NUMBER)]  # a number of a type not known here
        number, bits, precision, scale = _numeric_type(node, numbers)
        whole = all(v.whole for v in operands) and not isinstance(node, exp.Div)
        if isinstance(node, exp.Mul):  # every partial product, in any order DuckDB picks
            magnitude = max(1.0, operands[0].magnitude) * max(1.0, operands[1].magnitude)
        elif isinstance(node, exp.Div) and _bare_number(node.expression):
            # by a literal, whose magnitude is its value (that of a constant expression is
            # only an upper bound: 1 - 0.9 would make the quotient look 20 times smaller)
            magnitude = operands[0].magnitude / max(operands[1].magnitude, 1e-300)
        elif isinstance(node, exp.Div):
            magnitude = 0.0  # by a column: not bounded here (a divisor may be near 0)
        else:
            magnitude = sum(v.magnitude for v in operands)
        out = Value(
            NUMBER,
            name=over,
            refs=refs,
            whole=whole,
            magnitude=magnitude,
            assumed=any(v.assumed for v in operands),
            typed=any(v.typed for v in operands),
            observed=any(v.observed for v in operands),
            number=number,
            bits=bits,
            precision=precision,
            scale=scale,
        )
        self._overflow(out, operands)
        return out

    @staticmethod
    def _overflow(out: Value, operands: list[Value]) -> None:
        """Refuse a result that can exceed its DuckDB type for values within the bounds."""
        if out.whole:
            bits = out.bits if out.number == INT else 64
            if out.magnitude <= INT_MAX.get(bits, INT64_MAX):
                return
            width = _INT_NOUN.get(bits, "a 64-bit")
            if not out.refs:
                raise InvalidArgument(
                    f"a constant computed by the query exceeds {width} integer: "
                    "compute with smaller numbers"
                )
            raise InvalidArgument(
                f"{out.name} can exceed {width} integer for {_within(operands)}: "
                "compute with smaller numbers"
            )
        if out.number == DECIMAL and out.refs:
            if out.magnitude < 10.0 ** (out.precision - out.scale):
                return
            raise InvalidArgument(
                f"{out.name} can exceed DECIMAL({out.precision},{out.scale}), the type DuckDB "
                f"computes it in, for {_within(operands)}: compute with smaller numbers"
            )
        if (
            out.number == FLOAT
            and out.refs
            and out.magnitude > FLOAT_MAX.get(out.bits, FLOAT_MAX[64])
        ):
            raise InvalidArgument(
                f"{out.name} can exceed the largest {'FLOAT' if out.bits == 32 else 'DOUBLE'}, "
                "the type DuckDB computes it "
                f"in, for {_within(operands)}: compute with smaller numbers"
            )

    @staticmethod
    def _dates(
        node: exp.Expr, operands: list[Value], date: Value, over: str, refs: frozenset[str]
    ) -> Value:
        """Date arithmetic: ``date ± whole days`` (a literal) and ``date - date``."""
        if len(operands) == 1:
            raise InvalidArgument(f"{date.name or 'a date'} is a date: it cannot be negated")
        if isinstance(node, exp.Sub) and all(v.kind == DATE for v in operands):
            # days between two dates (a BIGINT)
            return Value(NUMBER, name=over, refs=refs, number=INT, bits=64)
        other = operands[1] if operands[0] is date else operands[0]
        moved = isinstance(node, exp.Add) or (isinstance(node, exp.Sub) and date is operands[0])
        if moved and other.kind == NUMBER and other.whole and not other.refs:
            return Value(DATE, name=over, refs=refs)
        raise InvalidArgument(
            f"{date.name or 'a date'} is a date: only a whole number of days (a literal) "
            "can be added to or subtracted from it"
        )

    def _function(self, node: exp.Expr) -> Value:
        """ABS, ROUND, COALESCE, LEAST, GREATEST, CASE and IF."""
        if isinstance(node, exp.Abs | exp.Round):
            return self._rounded(node)
        if isinstance(node, exp.If):  # IF(condition, a, b)
            self.condition(node.this)
            branches = [self.value(node.args["true"])]
            if node.args.get("false") is not None:
                branches.append(self.value(node.args["false"]))
            return self._common(branches)
        if isinstance(node, exp.Case):
            subject = node.args.get("this")
            tested = self.value(subject) if subject is not None else None
            branches = []
            for branch in node.args.get("ifs") or []:
                if tested is not None:  # CASE x WHEN v THEN ...: x = v
                    self._compare(tested, self.value(branch.this))
                else:
                    self.condition(branch.this)
                branches.append(self.value(branch.args["true"]))
            default = node.args.get("default")
            if default is not None:
                branches.append(self.value(default))
            return self._common(branches)
        values = [self.value(child) for child in node.iter_expressions()]
        return self._common(values)

    def _rounded(self, node: exp.Expr) -> Value:
        func = "ABS" if isinstance(node, exp.Abs) else "ROUND"
        v = self.value(node.this)
        if v.kind in (NULL, UNKNOWN):
            return v
        if v.kind != NUMBER:
            noun = _NOUN.get(v.kind, "a string")
            raise InvalidArgument(f"{v.name or 'a literal'} is {noun}: {func} needs a number")
        name = f"the expression over {_listed(v.refs)}" if v.refs else ""
        out = replace(v, name=name)
        if isinstance(node, exp.Abs):
            self._overflow(out, [v])  # ABS of an integer type's smallest value overflows
            return out
        digits = _round_digits(node.args.get("decimals"))
        if out.number == INT and digits < 0:
            return self._rounded_int(out, v, -digits)
        if out.number == DECIMAL and digits < out.scale:
            scale = max(digits, 0)
            # DuckDB's type: DECIMAL(p, d) from DECIMAL(p, s); from DECIMAL(p, 0), one
            # more digit (at most 38) unless the step passes every value (then 0)
            precision = out.precision
            if out.scale == 0 and -digits <= out.precision:
                precision = min(precision + 1, ct.MAX_PRECISION)
            rounded = replace(
                out, precision=precision, scale=scale, magnitude=out.magnitude + 10.0**-digits
            )
            if out.scale == 0 and rounded.refs:
                # ROUND(DECIMAL(38, 0), -1) of 10^38 - 1 raises ("Overflow in ROUND")
                step = 10 ** min(-digits, 400)
                top = (int(min(out.magnitude, 1e300)) + step // 2) // step * step
                if top >= 10**precision:
                    raise InvalidArgument(
                        f"ROUND of {out.name.removeprefix('the expression over ')} can exceed "
                        f"DECIMAL({precision},0) for {_within([v])}: round to fewer digits "
                        "or cast it to DOUBLE first"
                    )
            return rounded
        return out

    @staticmethod
    def _rounded_int(out: Value, v: Value, places: int) -> Value:
        """ROUND(integer, -places): the nearest multiple of 10^places (half away from 0),
        in the integer's own type; DuckDB raises "Overflow in ROUND of integer" when that
        multiple leaves it (an int8 of 125 to 127 rounded to tens): whether it does would
        say whether such a row passed the conditions. Refused from the bounds; the
        magnitude after it is that of the largest multiple."""
        limit = INT_MAX.get(out.bits, INT64_MAX)
        step = 10 ** min(places, 60)
        top = (int(min(out.magnitude, float(2**130))) + step // 2) // step * step
        if top > limit and out.refs:
            what = out.name.removeprefix("the expression over ")
            raise InvalidArgument(
                f"ROUND of {what} to a multiple of 10^{places} can exceed "
                f"{_INT_NOUN.get(out.bits, 'a 64-bit')} integer for {_within([v])}: cast it "
                "to a wider integer first"
            )
        return replace(out, magnitude=float(top))

    def _common(self, values: list[Value]) -> Value:
        """The value of COALESCE, LEAST, GREATEST or CASE: its operands must fit one
        another (as compared), and it has their common type."""
        present = [v for v in values if v.kind not in (NULL, UNKNOWN)]
        refs = frozenset().union(*(v.refs for v in values))
        name = f"the expression over {_listed(refs)}" if refs else ""
        anchor = next((v for v in present if v.kind != TEXT), None)
        if anchor is None:  # string literals only (a CASE's labels): a string value
            kind = STRING if present else (UNKNOWN if values else NULL)
            return Value(kind, name=name, refs=refs)
        for v in present:
            self._compare(anchor, v)
        kinds = {v.kind for v in present} - {TEXT}
        if kinds == {NUMBER}:
            numbers = [v for v in present if v.kind == NUMBER]
            _decimal_common(numbers)
            number, bits, precision, scale = _common_type(numbers)
            return Value(
                NUMBER,
                name=name,
                refs=refs,
                whole=all(v.whole or v.kind == TEXT for v in present),
                magnitude=max(v.magnitude for v in present),
                assumed=any(v.assumed for v in present),
                typed=any(v.typed for v in present),
                observed=any(v.observed for v in present),
                number=number,
                bits=bits,
                precision=precision,
                scale=scale,
            )
        if kinds == {DATE, TIMESTAMP}:
            return Value(TIMESTAMP, name=name, refs=refs)
        if len(kinds) == 1:
            return Value(kinds.pop(), name=name, refs=refs)
        return Value(UNKNOWN, name=name, refs=refs)  # a number with true/false

    def _cast(self, node: exp.Cast) -> Value:
        """CAST(x AS type): a string literal must read as the type; a column converts only
        where no cell can fail (a string column to a number would quote the first cell
        that does not convert)."""
        target = _cast_target(node.args["to"])
        inner = node.this
        if isinstance(inner, exp.Literal) and inner.is_string:
            text = str(inner.this)
            if target.kind in (DATE, TIMESTAMP) and not _is_date(text):
                raise InvalidArgument(
                    "a string cast to a date is not a date: write it 'YYYY-MM-DD'"
                )
            if target.kind in (NUMBER, BOOL) and not _text_fits(text, target.kind):
                raise InvalidArgument(
                    f"a string cast to {_NOUN[target.kind]} is not {_NOUN[target.kind]}"
                )
            _exactly(text, target, cast=True)
            if target.kind == NUMBER:
                size = abs(float(text))
                return replace(target, magnitude=size)
            return target
        v = self.value(inner)
        refs = v.refs
        name = f"the expression over {_listed(refs)}" if refs else ""
        if target.kind == UNKNOWN or v.kind in (NULL, UNKNOWN):
            return Value(target.kind, name=name, refs=refs)
        if v.kind == TEXT:
            return self._cast(exp.Cast(this=exp.Literal.string(v.text), to=node.args["to"]))
        convertible = {
            STRING: {STRING},
            NUMBER: {NUMBER, STRING, BOOL},
            BOOL: {BOOL, NUMBER, STRING},
            DATE: {DATE, TIMESTAMP, STRING},
            TIMESTAMP: {DATE, TIMESTAMP, STRING},
        }
        if target.kind not in convertible[v.kind]:
            raise InvalidArgument(
                f"{v.name or 'a literal'} is {_NOUN[v.kind]}: it cannot be cast to "
                f"{_NOUN[target.kind]}"
            )
        if target.kind != NUMBER:
            return Value(target.kind, name=name, refs=refs)
        magnitude = v.magnitude if v.kind == NUMBER else 1.0
        out = replace(
            target,
            name=name,
            refs=refs,
            magnitude=magnitude,
            assumed=v.assumed,
            typed=v.typed,
            observed=v.observed,
        )
        if not isinstance(node, exp.TryCast):  # TRY_CAST makes NULL of what does not fit
            self._narrowed(out, v)
        return out

    @staticmethod
    def _narrowed(out: Value, source: Value) -> None:
        """Refuse a CAST that can fail on a value within the bounds: DuckDB's conversion
        error would say that such a row passed the conditions."""
        if out.number == INT:
            fits = out.magnitude <= INT_MAX[out.bits]
            target = f"{_INT_NOUN[out.bits]} integer"
        elif out.number == DECIMAL:
            fits = out.magnitude < 10.0 ** (out.precision - out.scale)
            target = f"DECIMAL({out.precision},{out.scale})"
        else:
            return
        if not fits:
            what = out.name or "a constant"
            raise InvalidArgument(
                f"the cast of {what.removeprefix('the expression over ')} to {target} can fail "
                f"for {_within([source])}: cast to a wider type"
            )


def _round_digits(node: exp.Expr | None) -> int:
    """ROUND's digits: a whole number literal (DuckDB requires a constant)."""
    if node is None:
        return 0
    negative = isinstance(node, exp.Neg)
    literal = node.this if negative else node
    if isinstance(literal, exp.Literal) and not literal.is_string and literal.this.isdigit():
        return -int(literal.this) if negative else int(literal.this)
    raise InvalidArgument("ROUND's number of digits must be a whole number literal")


def _listed(refs: frozenset[str]) -> str:
    names = sorted(refs)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


Ranges = Mapping[str, tuple[float, float]]


def _column(c: ColumnSpec, observed: tuple[float, float] | None = None) -> Value:
    """A declared column: its kind, and for a number its type and the magnitude its
    values reach: the declared bounds; without them the ``observed`` range (the
    registration's minimum and maximum, where the caller gives them), else 2^40 or the
    type's largest value if smaller."""
    name = f"column {c.name!r}"
    refs = frozenset({name})
    t = parse_type(c.type)
    kind = _KIND_OF_FAMILY[t.family]
    if not t.numeric:
        return Value(kind, name=name, refs=refs)
    top = t.max_magnitude
    bounded = c.lower is not None and c.upper is not None
    seen = not bounded and observed is not None
    if bounded:
        size = min(max(abs(c.lower or 0.0), abs(c.upper or 0.0)), top)
    elif observed is not None:
        size = min(max(abs(observed[0]), abs(observed[1])), top)
    else:
        size = min(top, UNBOUNDED)
    unknown = not bounded and not seen
    return Value(
        NUMBER,
        name=name,
        refs=refs,
        whole=t.family == ct.INT,
        magnitude=size,
        assumed=unknown and top > UNBOUNDED,
        typed=unknown and top <= UNBOUNDED,
        observed=seen,
        number=t.family,
        bits=t.bits,
        precision=t.precision,
        scale=t.scale,
    )


def _columns(
    desc: DatasetDescriptor | Iterable[ColumnSpec], ranges: Ranges | None = None
) -> dict[str, Value]:
    specs = desc.columns if isinstance(desc, DatasetDescriptor) else desc
    seen = ranges or {}
    return {c.name: _column(c, seen.get(c.name)) for c in specs}


def column_families(desc: DatasetDescriptor) -> dict[str, str | Typed]:
    """Each declared column's family ("string", "date", "timestamp", "int", ...) and its
    engine type by its lower-cased name, for the generated SQL (``generate.Types``): a
    string literal a comparison converts is pinned to the column's type there, and what
    can still fail on a row (a date against a timestamp) runs under TRY."""
    out: dict[str, str | Typed] = {}
    for c in desc.columns:
        t = parse_type(c.type)
        out[c.name.lower()] = Typed(t.family, t.duckdb)
    return out


def value_kind(
    tree: exp.Expr,
    columns: DatasetDescriptor | Iterable[ColumnSpec],
    ranges: Ranges | None = None,
) -> ValueKind:
    """What the scalar expression ``tree`` over declared ``columns`` is, as DuckDB types
    it (an integer of some width, a DECIMAL(p, s), a float, a string, a date...).
    Refuses (InvalidArgument) what does not fit, as ``check`` does in WHERE: a string in
    arithmetic, a product that can overflow within the declared bounds (or ``ranges``,
    the registered minimum and maximum of columns without bounds), and so on."""
    v = Checker(_columns(columns, ranges)).value(tree)
    return ValueKind(v.kind, v.number, v.bits, v.precision, v.scale)


def exact_sum_type(value: ValueKind | str) -> SumType:
    """SUM over a value of kind ``value`` (a ``ValueKind``, or a declared column type):
    integers exactly as BIGINT (the owner's SQL casts DuckDB's HUGEINT down; a larger
    sum is an overflow), a DECIMAL(p, s) exactly as DECIMAL(38, s) (DuckDB's own
    result), anything else as DOUBLE."""
    if isinstance(value, str):
        return parse_type(value).sum_type or ct.FLOAT_SUM
    if value.number == INT:
        return ct.INT_SUM
    if value.number == DECIMAL:
        return ct.decimal_sum(value.scale)
    return ct.FLOAT_SUM


def exact_kind_of(
    tree: exp.Expr, desc: DatasetDescriptor, ranges: Ranges | None = None
) -> ExactKind | None:
    """Whether a SUM over the expression ``tree`` is exact: ``"int"`` (integers under
    ``+ - *``), ``"decimal"`` (a decimal under ``+ - *`` with integers or decimals, a
    CAST to DECIMAL, a ROUND of a decimal), or None (a division, or any float)."""
    return value_kind(tree, desc, ranges).exact


def check(plan: QueryPlan, desc: DatasetDescriptor, ranges: Ranges | None = None) -> None:
    """Refuse (InvalidArgument) a query whose types do not fit the owner's columns: its
    WHERE condition, the expressions inside its aggregates (with their CASE and FILTER
    conditions) and its group keys, then what the home runs after the merge. Overflow is
    judged from the declared bounds, else from ``ranges`` (the registration's minimum and
    maximum per column, if the caller gives them), else from 2^40 or the type's range."""
    columns = _columns(desc, ranges)
    checker = Checker(columns)
    where = plan.scan.where
    if where is not None:
        checker.condition(where)
    typed = dict(columns)
    step = plan.aggregate
    for value in (*step.values, *step.keys) if step is not None else ():
        v = checker.value(value.tree)
        typed[value.name] = v if v.name else replace(v, name=f"the expression {value.text}")
    for call in plan.aggregates:
        if call.func in _NUMERIC_AGGREGATES and call.column is not None:
            v = typed.get(call.column, Value(UNKNOWN))
            if call.func in _SUMMED and v.kind == NUMBER:
                _summable(call, v)
            if v.kind in (NUMBER, UNKNOWN, NULL):
                continue
            func = call.func.upper()
            if call.column in columns:
                raise InvalidArgument(
                    f"{func}({call.column}): column {call.column!r} is {_NOUN[v.kind]}; "
                    f"{func} needs a number column"
                )
            what = v.name or "the expression"
            noun = _NOUN.get(v.kind, "a string")
            raise InvalidArgument(
                f"{func}({call.text or call.column}): {what} is {noun}; {func} needs a number"
            )
    _check_final(plan, typed)


# Group key functions and the kind of column each takes.
_KEY_KINDS: dict[type[exp.Expr], tuple[str, ...]] = {
    exp.Year: (DATE, TIMESTAMP),
    exp.Quarter: (DATE, TIMESTAMP),
    exp.Month: (DATE, TIMESTAMP),
    exp.TimestampTrunc: (DATE, TIMESTAMP),
    exp.DateTrunc: (DATE, TIMESTAMP),
    exp.Substring: (STRING,),
    exp.WidthBucket: (NUMBER,),
}


_KEY_NAMES: dict[type[exp.Expr], str] = {
    exp.TimestampTrunc: "date_trunc",
    exp.DateTrunc: "date_trunc",
    exp.Substring: "substr",
}
# The functions allowed only in group keys (rules._KEY_FUNCTIONS), typed inside.
_KEY_FUNCTIONS = (*_KEY_KINDS, exp.Floor)


def _summable(call: AggCall, v: Value) -> None:
    """DuckDB sums integers in a HUGEINT and a DECIMAL(p, s) in a DECIMAL(38, s), and
    raises when the total leaves it: whether it does would say whether rows passed the
    conditions (``SUM(CAST(x AS DECIMAL(38, 30)))`` fails past 10^8). Refuse a value whose
    sum over SUMMED_ROWS rows within the declared bounds could leave its type. (A total
    past BIGINT, the type an integer sum travels in, is NULL at the owner: generate.)"""
    if v.number == INT:
        limit, target = float(INT_MAX[128]), "a 128-bit integer"
        advice = "compute with smaller numbers"
    elif v.number == DECIMAL:
        limit, target = 10.0 ** (ct.MAX_PRECISION - v.scale), f"DECIMAL(38,{v.scale})"
        advice = "cast it to a DECIMAL with fewer digits after the point, or to DOUBLE"
    elif v.number == FLOAT:  # summed in a DOUBLE: inf past its largest value
        limit, target = FLOAT_MAX[64], "a DOUBLE"
        advice = "compute with smaller numbers"
    else:
        return
    if v.magnitude * SUMMED_ROWS < limit:
        return
    func = call.func.upper()
    raise InvalidArgument(
        f"{func}({call.text or call.column}): its sum can exceed {target}, the type DuckDB "
        f"sums it in, for {_within([v])}: {advice}"
    )


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
    tree = plan.final.tree
    for item in tree.expressions:  # HAVING and ORDER BY may name a SELECT alias
        if isinstance(item, exp.Alias) and isinstance(item.this, exp.Column):
            source = names.get(item.this.name.lower())
            if source is not None:
                names.setdefault(item.alias.lower(), source)
    checker = Checker(names)
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


def _read_by(call: AggCall) -> tuple[str, ...]:
    """The dataset columns an aggregate reads (its value's, for an expression)."""
    if call.columns:
        return call.columns
    return () if call.column is None else (call.column,)


def place(plan: QueryPlan, failure: Failure) -> str:
    """Where in the owner's query an engine ``failure`` can have happened, as a phrase of
    column names (``engine_errors.message``'s ``place``)."""
    where = plan.scan.where
    aggregated = {c for a in plan.aggregates for c in _read_by(a)}
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
