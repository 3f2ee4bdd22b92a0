"""Federated answers equal DuckDB on the pooled rows (grants without DP, no suppression).

Two open (L1, k = 1) datasets are registered by each of the six regional owners, their
rows written by this test: ``enterprise_open``, a copy of the sample enterprise registry
(strings, a boolean, int64 and float64 columns), and ``enterprise_typed``, the same
enterprises in the other declared types (decimal(15,2) and decimal(12,3), int32, int16,
int8, float32, date, timestamp, timestamptz, a dictionary-encoded string). Hypothesis
writes queries in every accepted form: expressions inside aggregates (arithmetic, ABS,
ROUND, COALESCE, CAST, LEAST/GREATEST, CASE), conditional aggregation (CASE and
``FILTER (WHERE ...)``), group keys that are expressions (substr, date parts, CASE
mappings, arithmetic) and buckets (``floor(x / w) * w``, ``width_bucket``, ``date_trunc``),
GROUP BY by position and alias, HAVING and ORDER BY by alias and position. Each federated
answer, computed by real node processes (Anhui relaying for Hefei and Wuhu), is compared
with the same SQL run by DuckDB on all rows pooled in one table: exact for integers and
decimals (Python ``Decimal``), 1e-9 relative for floats. The pooled DuckDB runs in UTC,
as every owner's engine does, and has a ``width_bucket`` macro with the SQL standard's
meaning (DuckDB has no such function).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from federation.sql.parse import build, read
from federation.sql.rules import check
from gateway import descriptor
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from tests.conftest import RunningFederation

pytestmark = pytest.mark.integration

REGIONAL = ("shanghai", "jiangsu", "zhejiang", "anhui", "hefei", "wuhu")
USER = "li.wei@shanghai"
OPEN = "enterprise_open"
TYPED = "enterprise_typed"
NUMBERS = ("int", "float", "decimal")
TEMPORAL = ("date", "timestamp", "timestamptz")
FUNCS = ("COUNT", "SUM", "AVG", "MIN", "MAX", "VAR_SAMP", "VAR_POP", "STDDEV_SAMP", "STDDEV_POP")
EXACT_FUNCS = ("COUNT", "SUM", "MIN", "MAX")  # exact over an exact value
REL = 1e-9

Draw = Callable[[st.SearchStrategy[Any]], Any]


# --- the datasets, as the generator sees them ----------------------------------------------


_ARROW = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "decimal(15,2)": pa.decimal128(15, 2),
    "decimal(12,3)": pa.decimal128(12, 3),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True)
class Col:
    """A column: its declared type, its grant controls, literals to compare it with."""

    name: str
    type: str  # as declared in the descriptor (a key of _ARROW)
    controls: str
    literals: st.SearchStrategy[str]
    lower: float | None = None  # declared bounds
    upper: float | None = None
    nullable: bool = False

    @property
    def kind(self) -> str:
        """The type's family: int, float, decimal, string, bool, date, timestamp(tz)."""
        return self.type.rstrip("0123456789").split("(")[0]

    @property
    def bits(self) -> int:
        """An integer's or a float's width (DuckDB computes int16 + 1 in 16 bits)."""
        return int(self.type[len(self.kind) :] or 64) if self.kind in ("int", "float") else 64

    @property
    def spec(self) -> ColumnSpec:
        return ColumnSpec(self.name, self.type, lower=self.lower, upper=self.upper)

    def has(self, control: str) -> bool:
        return control in self.controls.split(",")

    @property
    def magnitude(self) -> float:
        return max(abs(self.lower or 0.0), abs(self.upper or 0.0))

    @property
    def coarse_widths(self) -> tuple[int, ...]:
        """Bucket widths that make at most 1 000 groups over the declared range (what a
        filter-only column allows); a group_by column takes any width."""
        span = (self.upper or 0.0) - (self.lower or 0.0)
        least = span / 999
        return tuple(w for w in (2, 5, 10, 100, 250, 1000, 2500, 20000, 50000) if w >= least)


@dataclass(frozen=True)
class Schema:
    dataset: str
    columns: tuple[Col, ...]

    def having(self, *controls: str, kinds: tuple[str, ...] = ()) -> list[Col]:
        return [
            c
            for c in self.columns
            if all(c.has(x) for x in controls) and (not kinds or c.kind in kinds)
        ]

    def any_of(self, controls: tuple[str, ...], kinds: tuple[str, ...]) -> list[Col]:
        return [c for c in self.columns if c.kind in kinds and any(c.has(x) for x in controls)]

    @property
    def grant(self) -> dict[str, str]:
        return {c.name: c.controls for c in self.columns}


def _quoted(*values: str) -> st.SearchStrategy[str]:
    return st.sampled_from([f"'{v}'" for v in values])


_SECTIONS = _quoted(*"CIFMGKJ")
_CODES = _quoted("C39", "I65", "F51", "C38", "K70")
_CITIES = _quoted("Suzhou", "Hefei", "Wuhu", "Hangzhou", "Nanjing", "Shanghai")
_BOOLS = st.sampled_from(["TRUE", "FALSE"])
_YEARS = st.integers(1985, 2024).map(str)
_STAFF = st.sampled_from(["0", "3", "10", "25", "50", "100", "250", "500"])
_MONEY = st.sampled_from(["0", "150", "500", "1200.5", "2500", "8000", "20000"])
_CAPITAL = st.sampled_from(["0", "50", "300", "1000", "4000.25", "10000"])

_TIMES = st.sampled_from(
    [
        "TIMESTAMP '1999-12-31 23:59:59'",
        "TIMESTAMP '2010-06-15 12:00:00'",
        "TIMESTAMP '2018-01-01 00:00:00'",
        "'2021-03-04 05:06:07'",
    ]
)
_ZONED = st.sampled_from(
    [
        "TIMESTAMPTZ '2005-01-01 00:00:00+08'",
        "'2012-07-01 16:00:00'",
        "TIMESTAMPTZ '2019-12-31 23:00:00+00'",
    ]
)
_DAYS = st.sampled_from(
    ["DATE '1995-01-01'", "DATE '2008-08-08'", "DATE '2016-02-29'", "'2022-10-01'"]
)
_BALANCES = st.sampled_from(["-50.125", "0", "10", "25.5", "120.75", "-3"])

# The sample registry's columns (as declared by gateway.demo.sample_data), granted as
# group_by, filter and aggregate.
OPEN_SCHEMA = Schema(
    OPEN,
    (
        Col("industry_section", "string", "group_by,filter", _SECTIONS),
        Col("industry_code", "string", "group_by,filter", _CODES),
        Col("city", "string", "group_by,filter", _CITIES),
        Col("high_tech", "bool", "group_by,filter", _BOOLS),
        Col("founding_year", "int64", "group_by,filter,aggregate", _YEARS, 1980, 2026),
        Col("employees", "int64", "aggregate,filter", _STAFF, 0, 100_000),
        Col("revenue", "float64", "aggregate,filter", _MONEY, 0, 1e7, nullable=True),
        Col("registered_capital", "float64", "aggregate,filter", _CAPITAL, 0, 1e6, True),
    ),
)

# The same enterprises in the other types (``_typed_rows``); its descriptor is made from
# this. Extremes are granted on one column: on L1 data ``aggregate`` alone allows them.
TYPED_SCHEMA = Schema(
    TYPED,
    (
        Col("city", "string", "group_by,filter", _CITIES),  # written dictionary-encoded
        Col("industry_section", "string", "group_by,filter", _SECTIONS),
        Col("high_tech", "bool", "group_by,filter", _BOOLS),
        Col("revenue_dec", "decimal(15,2)", "aggregate,filter,extremes", _MONEY, 0, 1e7, True),
        Col("balance", "decimal(12,3)", "aggregate,filter", _BALANCES, -1e5, 1e5, True),
        Col("staff", "int32", "aggregate,filter", _STAFF, 0, 100_000),
        Col("founded", "int16", "group_by,filter,aggregate", _YEARS, 1980, 2026),
        Col("grade", "int8", "group_by,filter,aggregate", st.integers(0, 9).map(str), 0, 9),
        Col("capital32", "float32", "aggregate,filter", _CAPITAL, 0, 1e6, nullable=True),
        Col("registered_at", "timestamp", "filter,aggregate", _TIMES, nullable=True),
        Col("registered_tz", "timestamptz", "filter", _ZONED, nullable=True),  # in Shanghai time
        Col("licensed_on", "date", "group_by,filter", _DAYS),
    ),
)


# --- writing and registering the data -------------------------------------------------------


def _register(
    federation: RunningFederation, node: str, table: pa.Table, desc: DatasetDescriptor
) -> None:
    """Write ``table`` as the node's Parquet file with its descriptor, and register it."""
    root = federation.fed.data_dir(node)
    pq.write_table(table, root / desc.path)
    path = root / f"{desc.name}.toml"
    path.write_text(descriptor.dumps(desc))
    with federation.client(f"ops@{node}") as ops:
        ops.register(path)


def _grant(federation: RunningFederation, node: str, schema: Schema) -> None:
    federation.grant(
        node,
        dataset=schema.dataset,
        grantee_kind="user",
        grantee=USER,
        min_group_size=1,
        columns=schema.grant,
    )


def _sample(federation: RunningFederation, node: str) -> tuple[pa.Table, DatasetDescriptor]:
    src = next(p for p in federation.written[node] if p.stem == "enterprise_registry")
    desc = descriptor.load(src)
    return pq.read_table(desc.path), desc


def _open_copy(federation: RunningFederation, node: str) -> pa.Table:
    """The sample registry as open data (every column L1), under a new name."""
    table, desc = _sample(federation, node)
    columns = tuple(dataclasses.replace(c, level="") for c in desc.columns)
    copy = dataclasses.replace(desc, name=OPEN, path=f"{OPEN}.parquet", level="L1", columns=columns)
    _register(federation, node, table, copy)
    return table


def _typed_rows(source: pa.Table, salt: int) -> dict[str, list[Any]]:
    """The same enterprises in other types; timestamps and dates made up from each row."""
    out: dict[str, list[Any]] = {c.name: [] for c in TYPED_SCHEMA.columns}
    for i, row in enumerate(source.to_pylist()):
        n = i * 7 + salt
        revenue, capital = row["revenue"], row["registered_capital"]
        registered = dt.datetime(row["founding_year"], 1, 1) + dt.timedelta(
            days=(n * 37 + row["employees"]) % 365, seconds=(n * 7919) % 86400
        )
        values = {
            "city": row["city"],
            "industry_section": row["industry_section"],
            "high_tech": row["high_tech"],
            "revenue_dec": None if revenue is None else Decimal(f"{revenue:.2f}"),
            "balance": (
                None
                if revenue is None or capital is None
                else Decimal(f"{(revenue - capital) / 100:.3f}")
            ),
            "staff": row["employees"],
            "founded": row["founding_year"],
            "grade": row["employees"] % 10,
            "capital32": capital,
            "registered_at": None if n % 13 == 5 else registered,
            "registered_tz": (
                None
                if n % 11 == 3
                else (registered + dt.timedelta(hours=n % 24)).replace(tzinfo=dt.UTC)
            ),
            "licensed_on": registered.date() + dt.timedelta(days=n % 400),
        }
        for name, value in values.items():
            out[name].append(value)
    return out


def _typed_copy(federation: RunningFederation, node: str, salt: int) -> pa.Table:
    """Register the typed dataset at ``node`` (its file holds the city dictionary-encoded
    and the zoned timestamps in Shanghai time); return its rows as the engine loads them."""
    source, desc = _sample(federation, node)
    rows = _typed_rows(source, salt)
    table = pa.table({c.name: pa.array(rows[c.name], _ARROW[c.type]) for c in TYPED_SCHEMA.columns})
    city, zoned = (
        table.schema.get_field_index("city"),
        table.schema.get_field_index("registered_tz"),
    )
    stored = table.set_column(city, "city", table.column(city).dictionary_encode())
    shanghai = pa.timestamp("us", tz="Asia/Shanghai")
    stored = stored.set_column(zoned, "registered_tz", table.column(zoned).cast(shanghai))
    typed = DatasetDescriptor(
        name=TYPED,
        title=f"{desc.title}, in more types (correctness test)",
        description="The sample registry with decimal, narrow integer, float32 and time columns.",
        department=desc.department,
        level="L1",
        update_frequency="static",
        path=f"{TYPED}.parquet",
        format="parquet",
        columns=tuple(c.spec for c in TYPED_SCHEMA.columns),
    )
    _register(federation, node, stored, typed)
    return table


def _pooled(tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # as every owner's engine
    # The SQL standard's width_bucket (PostgreSQL's): 0 below lo, n + 1 from hi on, else
    # which of n equal buckets. Written here by the bucket's width (the test's widths are
    # whole numbers), not as the owners compute it, so that the two are checked.
    con.execute(
        "CREATE MACRO width_bucket(x, lo, hi, n) AS CASE WHEN x < lo THEN 0 "
        "WHEN x >= hi THEN n + 1 ELSE CAST(floor((x - lo) / ((hi - lo) // n)) AS BIGINT) + 1 END"
    )
    for name, table in tables.items():
        con.register(name, table)
    return con


@pytest.fixture(scope="module")
def pooled(federation: RunningFederation) -> duckdb.DuckDBPyConnection:
    """Register the open copy at every regional owner, grant it, and pool its rows."""
    tables = []
    for node in REGIONAL:
        tables.append(_open_copy(federation, node))
        _grant(federation, node, OPEN_SCHEMA)
    return _pooled({OPEN: pa.concat_tables(tables)})


@pytest.fixture(scope="module")
def pooled_typed(federation: RunningFederation) -> duckdb.DuckDBPyConnection:
    """The typed dataset at every regional owner, granted, and its rows pooled."""
    tables = []
    for salt, node in enumerate(REGIONAL):
        tables.append(_typed_copy(federation, node, salt))
        _grant(federation, node, TYPED_SCHEMA)
    return _pooled({TYPED: pa.concat_tables(tables)})


# --- conditions -----------------------------------------------------------------------------


def _comparison(draw: Draw, col: Col) -> str:
    literal = draw(col.literals)
    if col.kind == "bool":
        return draw(st.sampled_from([col.name, f"NOT {col.name}", f"{col.name} = {literal}"]))
    op = draw(st.sampled_from(["=", "<>", "<", "<=", ">", ">="]))
    if col.kind == "int" and col.bits == 64 and draw(st.booleans()):
        return f"{col.name} + {draw(st.integers(1, 50))} {op} {literal}"
    if col.kind == "float" and col.bits == 64 and draw(st.booleans()):
        return f"{col.name} * 0.5 {op} {literal}"
    return f"{col.name} {op} {literal}"


@st.composite
def conditions(draw: Draw, schema: Schema, depth: int = 0) -> str:
    filters = schema.having("filter")
    kinds = ["cmp", "in", "between", "null", "pair"]
    kind = draw(st.sampled_from(kinds + (["and", "or", "not"] if depth < 2 else [])))
    col = draw(st.sampled_from(filters))
    if kind == "cmp" or (kind == "in" and col.kind == "bool"):
        return _comparison(draw, col)
    if kind == "in":
        values = [draw(col.literals) for _ in range(draw(st.integers(1, 3)))]
        return f"{col.name} {draw(st.sampled_from(['IN', 'NOT IN']))} ({', '.join(values)})"
    if kind == "between":
        col = draw(st.sampled_from([c for c in filters if c.kind in NUMBERS + TEMPORAL]))
        low, high = draw(col.literals), draw(col.literals)
        return f"{col.name} BETWEEN {low} AND {high}"
    if kind == "null":
        col = draw(st.sampled_from([c for c in filters if c.nullable]))
        return f"{col.name} IS {draw(st.sampled_from(['', 'NOT ']))}NULL"
    if kind == "pair":  # two columns of one kind compared
        numbers = [c for c in filters if c.kind in NUMBERS]
        a, b = draw(st.sampled_from(numbers)), draw(st.sampled_from(numbers))
        return f"{a.name} {draw(st.sampled_from(['<', '>=', '<>']))} {b.name}"
    if kind == "not":
        return f"NOT ({draw(conditions(schema, depth + 1))})"
    left, right = draw(conditions(schema, depth + 1)), draw(conditions(schema, depth + 1))
    return f"({left}) {kind.upper()} ({right})"


# --- values inside aggregates ---------------------------------------------------------------


class Val(NamedTuple):
    """An expression inside an aggregate, with its type as DuckDB computes it."""

    sql: str
    kind: str  # "int", "float" or "decimal"
    bits: int = 64  # an integer's width: DuckDB computes int16 * 2 in 16 bits
    magnitude: float = 0.0  # a bound of |value| within the declared bounds

    @property
    def safe(self) -> bool:
        """Far from its integer type's overflow (the owner refuses what could pass it)."""
        return self.kind != "int" or self.magnitude < 2.0 ** (self.bits - 1) / 4

    @property
    def exact(self) -> bool:
        return self.kind in ("int", "decimal")


def _common(*vals: Val) -> tuple[str, int]:
    """DuckDB's type of arithmetic, CASE, COALESCE, LEAST over ``vals``."""
    kinds = {v.kind for v in vals}
    kind = "float" if "float" in kinds else "decimal" if "decimal" in kinds else "int"
    return kind, max(v.bits for v in vals)


def _literal_for(draw: Draw, v: Val, op: str) -> Val:
    """A literal that keeps ``v``'s kind (an int with a decimal literal is a DECIMAL)."""
    if op == "*":
        choices = {"int": ["2", "3"], "decimal": ["2", "1.5", "0.25"], "float": ["1.5", "0.5"]}
    else:
        choices = {"int": ["1", "10", "100"], "decimal": ["1", "0.5", "100.25"]}
        choices["float"] = ["1", "2.5", "100"]
    text = draw(st.sampled_from(choices[v.kind]))
    kind = v.kind if "." not in text or v.kind != "int" else "decimal"
    return Val(text, kind, 8 if kind == "int" else 64, abs(float(text)))


@st.composite
def values(draw: Draw, schema: Schema, depth: int = 0) -> Val:
    """A per-row expression over ``aggregate`` number columns and literals."""
    leaves = schema.having("aggregate", kinds=NUMBERS)
    if depth >= 2 or draw(st.integers(0, 2)) == 0:
        col = draw(st.sampled_from(leaves))
        return Val(col.name, col.kind, col.bits, col.magnitude)
    form = draw(
        st.sampled_from(
            ["neg", "abs", "round", "cast", "literal", "pair", "coalesce", "least", "case"]
        )
    )
    v = draw(values(schema, depth + 1))
    made = v
    if form == "neg":
        made = v._replace(sql=f"-({v.sql})")
    elif form == "abs":
        made = v._replace(sql=f"ABS({v.sql})")
    elif form == "round":
        digits = draw(st.integers(0, 2)) if v.kind != "int" else 0
        made = v._replace(sql=f"ROUND({v.sql}, {digits})", magnitude=v.magnitude + 1)
    elif form == "cast":
        target = draw(st.sampled_from(["DOUBLE", "BIGINT", "DECIMAL(18,2)"]))
        if target == "DOUBLE":
            made = Val(f"CAST({v.sql} AS DOUBLE)", "float", 64, v.magnitude)
        elif target == "BIGINT" or v.magnitude > 1e14:
            made = Val(f"CAST({v.sql} AS BIGINT)", "int", 64, v.magnitude + 1)
        else:
            made = Val(f"CAST({v.sql} AS DECIMAL(18,2))", "decimal", 64, v.magnitude + 1)
    elif form == "literal":
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        operand = f"({v.sql})" if " " in v.sql else v.sql
        if op == "/":
            made = Val(f"{operand} / {draw(st.sampled_from(['2', '4', '10', '2.5']))}", "float")
        else:
            lit = _literal_for(draw, v, op)
            kind, bits = _common(v, lit)
            size = v.magnitude * lit.magnitude if op == "*" else v.magnitude + lit.magnitude
            made = Val(f"{operand} {op} {lit.sql}", kind, bits, size)
    elif form == "pair":
        w = draw(values(schema, depth + 1))
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        kind, bits = _common(v, w)
        if op == "/":
            made = Val(f"({v.sql}) / ({w.sql})", "float")
        elif op == "*" and kind == "decimal":
            made = v  # a product of decimals can need more digits than DuckDB keeps
        else:
            size = v.magnitude * w.magnitude if op == "*" else v.magnitude + w.magnitude
            made = Val(f"({v.sql}) {op} ({w.sql})", kind, bits, size)
    elif form == "coalesce":
        lit = _literal_for(draw, v, "+")
        made = v._replace(sql=f"COALESCE({v.sql}, {lit.sql})")
    elif form == "least":
        w = draw(values(schema, depth + 1))
        kind, bits = _common(v, w)
        func = draw(st.sampled_from(["LEAST", "GREATEST"]))
        made = Val(f"{func}({v.sql}, {w.sql})", kind, bits, max(v.magnitude, w.magnitude))
    elif form == "case":
        condition = draw(conditions(schema, 1))
        other = draw(st.sampled_from(["", "zero", "value"]))
        if other == "":
            made = v._replace(sql=f"CASE WHEN {condition} THEN {v.sql} END")
        elif other == "zero":
            made = v._replace(sql=f"CASE WHEN {condition} THEN {v.sql} ELSE 0 END")
        else:
            w = draw(values(schema, depth + 1))
            kind, bits = _common(v, w)
            size = max(v.magnitude, w.magnitude)
            made = Val(f"CASE WHEN {condition} THEN {v.sql} ELSE {w.sql} END", kind, bits, size)
    return made if made.safe else v


class Agg(NamedTuple):
    sql: str
    exact: bool  # an exact number (an integer or a decimal): HAVING and ORDER BY use it
    number: bool  # arithmetic may go over it


@st.composite
def aggregates(draw: Draw, schema: Schema) -> Agg:
    func = draw(st.sampled_from(FUNCS))
    temporal = schema.having("aggregate", kinds=TEMPORAL)
    if func == "COUNT" and draw(st.booleans()):
        call = Agg("COUNT(*)", True, True)
    elif func in ("MIN", "MAX", "COUNT") and temporal and draw(st.integers(0, 3)) == 0:
        col = draw(st.sampled_from(temporal))
        call = Agg(f"{func}({col.name})", func == "COUNT", func == "COUNT")
    else:
        v = draw(values(schema))
        exact = func == "COUNT" or (func in EXACT_FUNCS and v.exact)
        call = Agg(f"{func}({v.sql})", exact, True)
    if draw(st.integers(0, 3)) == 0:
        call = call._replace(sql=f"{call.sql} FILTER (WHERE {draw(conditions(schema, 1))})")
    return call


# --- group keys -----------------------------------------------------------------------------


def _bucket(draw: Draw, col: Col) -> str:
    widths = (2, 5, 10) + col.coarse_widths if col.has("group_by") else col.coarse_widths
    width = draw(st.sampled_from(widths))
    if draw(st.booleans()):
        lo = draw(st.sampled_from([0, 10, 1980] if col.has("group_by") else [0, 10]))
        count = draw(st.integers(2, 20))
        return f"width_bucket({col.name}, {lo}, {lo + width * count}, {count})"
    if draw(st.booleans()):
        return f"floor({col.name} / {width}) * {width}"
    return f"floor({col.name} / {width})"


def _date_key(draw: Draw, col: Col) -> str:
    units = ["year", "quarter", "month"] + (["week", "day"] if col.has("group_by") else [])
    unit = draw(st.sampled_from(units))
    if unit in ("year", "quarter", "month") and draw(st.booleans()):
        return f"{unit}({col.name})"
    return f"date_trunc('{unit}', {col.name})"


def _case_key(draw: Draw, schema: Schema) -> str:
    numbers = schema.any_of(("filter",), NUMBERS)
    form = draw(st.sampled_from(["range", "condition", "subject"]))
    if form == "range":  # two thresholds as far apart as a coarse bucket (owner-checked)
        col = draw(st.sampled_from(numbers))
        low = float(draw(col.literals))
        widths = (2, 5, 10) + col.coarse_widths if col.has("group_by") else col.coarse_widths
        high = low + draw(st.sampled_from(widths))
        return (
            f"CASE WHEN {col.name} < {low:g} THEN 'low' WHEN {col.name} < {high:g} THEN 'mid' "
            "ELSE 'high' END"
        )
    if form == "condition":  # one threshold: two groups
        col = draw(st.sampled_from(numbers))
        return f"CASE WHEN {col.name} > {float(draw(col.literals)):g} THEN 1 ELSE 0 END"
    return (
        "CASE city WHEN 'Hefei' THEN 'Anhui' WHEN 'Wuhu' THEN 'Anhui' "
        "WHEN 'Nanjing' THEN 'Jiangsu' WHEN 'Suzhou' THEN 'Jiangsu' ELSE 'other' END"
    )


@st.composite
def keys(draw: Draw, schema: Schema) -> str:
    """One group key: a group_by column, an expression over one, or a bucket."""
    groups = schema.having("group_by")
    dates = schema.any_of(("filter", "group_by"), TEMPORAL)
    forms = ["column", "column", "substr", "bucket", "bucket", "case", "case", "sum"]
    form = draw(st.sampled_from(forms + ["date", "date", "date"] if dates else forms))
    if form == "substr":
        col = draw(st.sampled_from([c for c in groups if c.kind == "string"]))
        return f"substr({col.name}, 1, {draw(st.integers(1, 3))})"
    if form == "bucket":
        return _bucket(draw, draw(st.sampled_from(schema.any_of(("filter", "group_by"), NUMBERS))))
    if form == "date":
        return _date_key(draw, draw(st.sampled_from(dates)))
    if form == "case":
        return _case_key(draw, schema)
    if form == "sum":
        col = draw(st.sampled_from([c for c in groups if c.kind == "int"]))
        return f"({col.name} - 1980) * {draw(st.integers(1, 3))}"
    return str(draw(st.sampled_from(groups)).name)


# --- whole queries --------------------------------------------------------------------------


class Case(NamedTuple):
    sql: str
    ordered: bool


def _ref(draw: Draw, key: str, position: int, alias: str | None) -> str:
    """A key as GROUP BY / ORDER BY name it: its text, its SELECT position, or its alias."""
    forms = ["text", "position"] + (["alias"] if alias else [])
    form = draw(st.sampled_from(forms))
    return key if form == "text" else str(position) if form == "position" else str(alias)


@st.composite
def queries(draw: Draw, schema: Schema) -> Case:
    count = draw(st.sampled_from([0, 1, 1, 2, 2]))
    group_keys = draw(st.lists(keys(schema), min_size=count, max_size=count, unique=True))
    # a column without group_by may be bucketed by one key of a query (policy/query.py)
    bucketed = [c.name for c in schema.columns if not c.has("group_by")]
    assume(
        all(sum(re.search(rf"\b{n}\b", k) is not None for k in group_keys) <= 1 for n in bucketed)
    )
    aliases = [f"k{i}" if draw(st.booleans()) else None for i in range(len(group_keys))]
    aggs = [draw(aggregates(schema)) for _ in range(draw(st.integers(1, 4)))]
    numeric = [a for a in aggs if a.number]
    if numeric and draw(st.booleans()):  # arithmetic over an aggregate
        aggs.append(Agg(f"{numeric[0].sql} * 2 + 1", numeric[0].exact, True))
    items = [f"{k} AS {a}" if a else k for k, a in zip(group_keys, aliases, strict=True)]
    items += [f"{a.sql} AS a{i}" for i, a in enumerate(aggs)]
    sql = f"SELECT {', '.join(items)} FROM {schema.dataset}"
    if draw(st.booleans()):
        sql += f" WHERE {draw(conditions(schema))}"
    named = list(enumerate(zip(group_keys, aliases, strict=True), start=1))
    exact = [(f"a{i}", a) for i, a in enumerate(aggs) if a.exact and a.number]
    if not group_keys:
        return Case(sql, False)
    sql += " GROUP BY " + ", ".join(_ref(draw, k, i, a) for i, (k, a) in named)
    having = draw(st.sampled_from(["", "count", "alias"] if exact else ["", "count"]))
    bound = draw(st.integers(0, 50))
    if having == "count":
        sql += f" HAVING COUNT(*) > {bound}"
    elif having == "alias":
        sql += f" HAVING {draw(st.sampled_from(exact))[0]} >= {bound}"
    if draw(st.integers(0, 2)) == 0:
        return Case(sql, False)
    # Always a total order (every group key takes part) and first by an exact value, so
    # that the comparison with the pooled answer is row by row. Keys sort by their text,
    # SELECT position or alias, each with or without its NULL placement: the final step
    # runs in Arrow or in the engine depending on these.
    order = []
    first = draw(st.sampled_from(["keys", "count"] + (["alias", "position"] if exact else [])))
    if first == "count":
        order.append("COUNT(*) DESC")
    elif first in ("alias", "position"):
        alias, _agg = draw(st.sampled_from(exact))
        index = len(group_keys) + int(alias[1:]) + 1
        order.append(f"{alias if first == 'alias' else index} DESC NULLS LAST")
    for i, (k, a) in named:
        direction = draw(st.sampled_from(["", " DESC"]))
        nulls = draw(st.sampled_from(["", " NULLS FIRST", " NULLS LAST"]))
        order.append(f"{_ref(draw, k, i, a)}{direction}{nulls}")
    sql += " ORDER BY " + ", ".join(order)
    if draw(st.booleans()):
        sql += f" LIMIT {draw(st.integers(1, 10))}"
    return Case(sql, True)


# --- comparing ------------------------------------------------------------------------------


def _same(got: object, want: object) -> bool:
    """Floats within 1e-9 relative; integers, decimals, dates, timestamps and strings
    exactly (an integer or a decimal that came back as a float is a mismatch, and so is
    a decimal where DuckDB's answer is a float)."""
    if got is None or want is None:
        return got is None and want is None
    if isinstance(want, float):
        if not isinstance(got, float):
            return False
        if math.isnan(want):  # 0 / 0 over doubles, in both
            return math.isnan(got)
        return math.isclose(got, want, rel_tol=REL, abs_tol=1e-9)
    if isinstance(got, float) or isinstance(got, bool) != isinstance(want, bool):
        return False
    return got == want  # DuckDB's pooled SUM of integers is a HUGEINT (a whole Decimal)


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """The rows, by position (two output columns may share a name)."""
    columns = [c.to_pylist() for c in table.columns]
    return list(zip(*columns, strict=True)) if columns else []


def _order(value: object) -> tuple[int, float, str]:
    if value is None:
        return (1, 0.0, "")
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        number = float(value)
        return (0, number, "") if not math.isnan(number) else (0, math.inf, "nan")
    return (0, 0.0, str(value))


def _key(row: tuple[Any, ...]) -> tuple[tuple[int, float, str], ...]:
    return tuple(_order(v) for v in row)


def _check(federation: RunningFederation, pooled: duckdb.DuckDBPyConnection, case: Case) -> None:
    # Normalising is idempotent: the home keeps its plan under the normalised text, which
    # every owner plans from (federation/sql/parse.py), so both must be one plan.
    first = build(check(read(case.sql), sql=case.sql))
    again = build(check(read(first.sql), sql=first.sql))
    assert (again.sql, again.steps) == (first.sql, first.steps), case.sql
    with federation.client(USER) as c:
        result = c.query(case.sql)
    expected = pooled.sql(case.sql).to_arrow_table()
    got, want = _rows(result.table), _rows(expected)
    if not case.ordered:
        got, want = sorted(got, key=_key), sorted(want, key=_key)
    assert len(got) == len(want), (case.sql, got[:5], want[:5])
    for g, w in zip(got, want, strict=True):
        assert all(_same(x, y) for x, y in zip(g, w, strict=True)), (case.sql, g, w)
    assert sorted(result.contributors) == sorted(REGIONAL)
    assert not result.missing and result.epsilon_spent == 0 and not result.noised


# Deterministic (the same queries on every run), no deadline (a federated query's time
# is the federation's), and the federation is a session fixture.
_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(_SETTINGS, max_examples=250)
@given(case=queries(OPEN_SCHEMA))
def test_federated_equals_pooled(
    federation: RunningFederation, pooled: duckdb.DuckDBPyConnection, case: Case
) -> None:
    _check(federation, pooled, case)


@settings(_SETTINGS, max_examples=150)
@given(case=queries(TYPED_SCHEMA))
def test_typed_columns_equal_pooled(
    federation: RunningFederation, pooled_typed: duckdb.DuckDBPyConnection, case: Case
) -> None:
    """Decimals exact, int8/16/32 exact, timestamps (with and without zone) and dates
    exact, float32 like any float."""
    _check(federation, pooled_typed, case)


def test_integer_results_are_integers(
    federation: RunningFederation, pooled: duckdb.DuckDBPyConnection
) -> None:
    sql = f"SELECT COUNT(*) AS n, SUM(employees) AS e FROM {OPEN}"
    with federation.client(USER) as c:
        row = c.query(sql).table.to_pylist()[0]
    want = pooled.sql(sql).fetchall()[0]
    assert isinstance(row["e"], int) and row["e"] == int(want[1]) and row["n"] == want[0]


def test_decimal_results_are_decimals(
    federation: RunningFederation, pooled_typed: duckdb.DuckDBPyConnection
) -> None:
    """A sum of decimals (and of a decimal expression) is a Decimal of the pooled scale,
    to the last cent."""
    sql = f"SELECT SUM(revenue_dec) AS r, SUM(revenue_dec * 1.5 - balance) AS m FROM {TYPED}"
    with federation.client(USER) as c:
        row = c.query(sql).table.to_pylist()[0]
    want = pooled_typed.sql(sql).fetchall()[0]
    assert isinstance(row["r"], Decimal) and isinstance(row["m"], Decimal), row
    assert (row["r"], row["m"]) == want
    assert row["r"].as_tuple().exponent == want[0].as_tuple().exponent == -2


def test_vertical_link_covers_the_cities(
    federation: RunningFederation, pooled: duckdb.DuckDBPyConnection
) -> None:
    sql = f"SELECT city, COUNT(*) AS n, SUM(employees) AS e FROM anhui.{OPEN} GROUP BY city"
    with federation.client(USER) as c:
        result = c.query(sql)
    got = {r["city"]: (r["n"], r["e"]) for r in result.table.to_pylist()}
    anhui_cities = pooled.sql(
        f"SELECT city, COUNT(*), SUM(employees) FROM {OPEN} "
        "WHERE division_code LIKE '34%' GROUP BY city"
    ).fetchall()
    assert got == {c: (n, int(e)) for c, n, e in anhui_cities}
    assert {"Hefei", "Wuhu"} <= set(got)
    via = {o.node_id: o.via for o in result.owners}
    assert via == {"anhui": "", "hefei": "anhui", "wuhu": "anhui"}
