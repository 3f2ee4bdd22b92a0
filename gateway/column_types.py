"""Declared column types: the one place a descriptor's ``type`` text is read.

A descriptor declares each column as one of ``TYPE_NAMES`` or ``decimal(p,s)``
(precision 1..38, scale 0..p, written exactly so). ``parse_type`` turns that text into a
``ColumnType`` that knows everything the rest of the node asks of a type:

- the registration check (``quality.py``): which Arrow types a file may hold for it
  (``accepts``: the type itself or a lossless widening of it, a dictionary-encoded string
  for ``string``) and what it is loaded as (``arrow``);
- the engine (``engine.py``): the Arrow type a dataset is cast to before DuckDB sees it,
  so DuckDB's own type (``duckdb``) is the declared one, whatever the file held;
- the type check (``typecheck.py``): its family (a number, a date, a timestamp...);
- the owner's SQL: whether a SUM over it is exact and as what (``sum_type``,
  ``exact_kind``): integers as BIGINT, decimals as DECIMAL(38, s) (DuckDB's SUM of a
  DECIMAL(p, s)), floats as DOUBLE.

Timestamps are loaded in microseconds (DuckDB's TIMESTAMP); a zoned one (``timestamptz``)
in UTC: the instant is kept, and every owner's engine runs in UTC, so the same literal
means the same instant at every owner.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from typing import Final, Literal, NamedTuple

import pyarrow as pa

from gateway.errors import InvalidArgument

MAX_PRECISION = 38  # DuckDB's and Arrow's decimal128
SUM_PRECISION = 38  # DuckDB's SUM of DECIMAL(p, s) is DECIMAL(38, s)

# The families a type belongs to (the type check's kinds follow from them).
INT: Final = "int"
FLOAT: Final = "float"
DECIMAL: Final = "decimal"
STRING: Final = "string"
BOOL: Final = "bool"
DATE: Final = "date"
TIMESTAMP: Final = "timestamp"
Family = Literal["int", "float", "decimal", "string", "bool", "date", "timestamp"]
ExactKind = Literal["int", "decimal"]

_INT_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}
_FLOAT_BITS = {"float32": 32, "float64": 64}
TYPE_NAMES = (
    "string",
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "float32",
    "float64",
    "date",
    "timestamp",
    "timestamptz",
)
# How a type is named in messages that list the choices.
CHOICES = ", ".join(TYPE_NAMES) + " or decimal(p,s)"
_DECIMAL = re.compile(r"decimal\(([0-9]{1,3}),([0-9]{1,3})\)")
# The decimal digits DuckDB gives an integer type in decimal arithmetic.
INT_DIGITS = {8: 3, 16: 5, 32: 10, 64: 19, 128: 38}


class SumType(NamedTuple):
    """What SUM over a value of some type is: exact (``"int"`` or ``"decimal"``) or not
    (None), as DuckDB's type and as the Arrow type a partial carries it in."""

    exact: ExactKind | None
    duckdb: str
    arrow: pa.DataType


def decimal_sum(scale: int) -> SumType:
    return SumType("decimal", f"DECIMAL({SUM_PRECISION},{scale})", pa.decimal128(38, scale))


INT_SUM = SumType("int", "BIGINT", pa.int64())
FLOAT_SUM = SumType(None, "DOUBLE", pa.float64())


class ColumnType(NamedTuple):
    """One declared type, parsed."""

    name: str  # canonical text: "int8", "decimal(15,2)", ...
    family: Family
    bits: int = 0  # ints and floats: their width
    precision: int = 0  # decimals
    scale: int = 0
    zoned: bool = False  # timestamptz

    @property
    def numeric(self) -> bool:
        return self.family in (INT, FLOAT, DECIMAL)

    @property
    def arrow(self) -> pa.DataType:
        """The Arrow type a dataset column of this type is loaded as."""
        return _arrow(self)

    @property
    def duckdb(self) -> str:
        """DuckDB's name for the type of the loaded column."""
        if self.family == DECIMAL:
            return f"DECIMAL({self.precision},{self.scale})"
        return _DUCKDB[self.name]

    @property
    def sum_type(self) -> SumType | None:
        """SUM over a column of this type; None if it is not a number."""
        if self.family == INT:
            return INT_SUM
        if self.family == DECIMAL:
            return decimal_sum(self.scale)
        if self.family == FLOAT:
            return FLOAT_SUM
        return None

    @property
    def max_magnitude(self) -> float:
        """The largest |value| the type holds (0 where that is not a number)."""
        if self.family == INT:
            return float(2 ** (self.bits - 1) - 1)
        if self.family == DECIMAL:
            return float(10 ** (self.precision - self.scale) - Decimal(1).scaleb(-self.scale))
        if self.family == FLOAT:
            return 3.4028234663852886e38 if self.bits == 32 else 1.7976931348623157e308
        return 0.0

    def accepts(self, actual: pa.DataType) -> bool:
        """Whether a file's Arrow type holds this type's values, exactly or losslessly
        widened to it (int8 in an int32 column, decimal(12,2) in a decimal(15,2) one)."""
        return _accepts(self, actual)


_SIMPLE: dict[str, Family] = {"string": STRING, "bool": BOOL, "date": DATE}
_DUCKDB = {
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float32": "FLOAT",
    "float64": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMP WITH TIME ZONE",
}


@functools.lru_cache(maxsize=1024)
def parse_type(text: str) -> ColumnType:
    """The declared type ``text`` (InvalidArgument, naming the choices, if it is none).
    A decimal is written exactly ``decimal(p,s)``: no spaces, no leading zeros, so that
    the text is the type's one name."""
    if text in _INT_BITS:
        return ColumnType(text, INT, bits=_INT_BITS[text])
    if text in _FLOAT_BITS:
        return ColumnType(text, FLOAT, bits=_FLOAT_BITS[text])
    simple = _SIMPLE.get(text)
    if simple is not None:
        return ColumnType(text, simple)
    if text in ("timestamp", "timestamptz"):
        return ColumnType(text, TIMESTAMP, zoned=text == "timestamptz")
    m = _DECIMAL.fullmatch(text)
    if m is None or text != f"decimal({int(m.group(1))},{int(m.group(2))})":
        if text.lower().startswith(("decimal", "numeric")):
            raise InvalidArgument(
                f"type {text!r}: write a decimal as decimal(p,s), precision p and scale s, "
                "e.g. decimal(15,2)"
            )
        raise InvalidArgument(f"type {text!r} must be one of {CHOICES}")
    precision, scale = int(m.group(1)), int(m.group(2))
    if not 1 <= precision <= MAX_PRECISION:
        raise InvalidArgument(
            f"type {text!r}: the precision {precision} must be 1 to {MAX_PRECISION}"
        )
    if scale > precision:
        raise InvalidArgument(
            f"type {text!r}: the scale {scale} must be 0 to the precision {precision}"
        )
    return ColumnType(text, DECIMAL, precision=precision, scale=scale)


def exact_kind(declared_type: str) -> ExactKind | None:
    """Whether a SUM over a column declared ``declared_type`` is exact: ``"int"`` (as
    BIGINT), ``"decimal"`` (as DECIMAL(38, s)), or None (a DOUBLE, or not a number)."""
    summed = parse_type(declared_type).sum_type
    return None if summed is None else summed.exact


def sum_type(declared_type: str) -> SumType | None:
    """SUM over a column declared ``declared_type`` (None if it is not a number)."""
    return parse_type(declared_type).sum_type


def _arrow(t: ColumnType) -> pa.DataType:
    if t.family == INT:
        return {8: pa.int8(), 16: pa.int16(), 32: pa.int32(), 64: pa.int64()}[t.bits]
    if t.family == FLOAT:
        return pa.float32() if t.bits == 32 else pa.float64()
    if t.family == DECIMAL:
        return pa.decimal128(t.precision, t.scale)
    if t.family == TIMESTAMP:
        return pa.timestamp("us", tz="UTC" if t.zoned else None)
    return {STRING: pa.string(), BOOL: pa.bool_(), DATE: pa.date32()}[t.family]


def _int_fits(bits: int, actual: pa.DataType) -> bool:
    width = actual.bit_width
    if pa.types.is_signed_integer(actual):
        return bool(width <= bits)
    return bool(width < bits)  # unsigned: one bit fewer


def _accepts(t: ColumnType, actual: pa.DataType) -> bool:
    if t.family == STRING:
        if pa.types.is_dictionary(actual):
            actual = actual.value_type
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if pa.types.is_dictionary(actual):
        return False
    if t.family == INT:
        return pa.types.is_integer(actual) and _int_fits(t.bits, actual)
    if t.family == FLOAT:
        return pa.types.is_floating(actual) and actual.bit_width <= t.bits
    if t.family == DECIMAL:
        if not pa.types.is_decimal(actual):
            return False
        # Every value of decimal(p', s') is one of decimal(p, s): no digit lost either side.
        return bool(
            actual.scale <= t.scale and actual.precision - actual.scale <= t.precision - t.scale
        )
    if t.family == BOOL:
        return pa.types.is_boolean(actual)
    if t.family == DATE:
        return pa.types.is_date(actual)
    if t.family == TIMESTAMP:
        return pa.types.is_timestamp(actual) and (actual.tz is not None) == t.zoned
    return False


def suggested(actual: pa.DataType) -> str | None:
    """The declared type that matches a file's Arrow type exactly, if there is one: what a
    refusal suggests ("declared float64 but the file holds decimal128(15, 2): declare it
    decimal(15,2)")."""
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    if pa.types.is_decimal(actual) and actual.precision <= MAX_PRECISION:
        return f"decimal({actual.precision},{actual.scale})"
    if pa.types.is_timestamp(actual):
        return "timestamp" if actual.tz is None else "timestamptz"
    for name in TYPE_NAMES:
        t = parse_type(name)
        if t.family != TIMESTAMP and t.accepts(actual):
            return name
    return None
