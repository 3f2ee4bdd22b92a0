"""Declared column types: parsed once, loaded as declared, and typed as DuckDB types them.

The truth for every type question is DuckDB itself: the engine's loaded columns are
asked their ``typeof``, expressions are typed by DuckDB beside ``typecheck.value_kind``,
and an expression the type check accepts is run at the corners of its columns' bounds.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot

from gateway import column_types, typecheck
from gateway.catalog import CatalogEntry
from gateway.column_types import exact_kind, parse_type, sum_type
from gateway.descriptor import ColumnSpec, DatasetDescriptor, validate
from gateway.engine import Engine
from gateway.errors import InvalidArgument
from gateway.quality import check_file

# --- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "family", "duckdb_type"),
    [
        ("int8", "int", "TINYINT"),
        ("int16", "int", "SMALLINT"),
        ("int32", "int", "INTEGER"),
        ("int64", "int", "BIGINT"),
        ("float32", "float", "FLOAT"),
        ("float64", "float", "DOUBLE"),
        ("decimal(15,2)", "decimal", "DECIMAL(15,2)"),
        ("decimal(38,38)", "decimal", "DECIMAL(38,38)"),
        ("decimal(1,0)", "decimal", "DECIMAL(1,0)"),
        ("string", "string", "VARCHAR"),
        ("bool", "bool", "BOOLEAN"),
        ("date", "date", "DATE"),
        ("timestamp", "timestamp", "TIMESTAMP"),
        ("timestamptz", "timestamp", "TIMESTAMP WITH TIME ZONE"),
    ],
)
def test_every_declared_type_parses_to_its_duckdb_type(
    text: str, family: str, duckdb_type: str
) -> None:
    t = parse_type(text)
    assert (t.name, t.family, t.duckdb) == (text, family, duckdb_type)
    # DuckDB reads its own name of the type, and gives the same Arrow type we load as
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    loaded = con.sql(f"SELECT CAST(NULL AS {duckdb_type}) AS v").to_arrow_table()
    assert loaded.schema.field("v").type == t.arrow


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("decimal(15, 2)", "write a decimal as decimal(p,s)"),
        ("DECIMAL(15,2)", "write a decimal as decimal(p,s)"),
        ("decimal(015,2)", "write a decimal as decimal(p,s)"),
        ("decimal(15)", "write a decimal as decimal(p,s)"),
        ("numeric(15,2)", "write a decimal as decimal(p,s)"),
        ("decimal(0,0)", "the precision 0 must be 1 to 38"),
        ("decimal(39,2)", "the precision 39 must be 1 to 38"),
        ("decimal(5,6)", "the scale 6 must be 0 to the precision 5"),
        ("int", "must be one of string, bool, int8"),
        ("float", "or decimal(p,s)"),
        ("timestamp with time zone", "must be one of"),
    ],
)
def test_a_type_that_is_not_one_is_refused_with_the_choices(text: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_type(text)


def _desc(*cols: ColumnSpec, path: str = "t.parquet", fmt: str = "parquet") -> DatasetDescriptor:
    return DatasetDescriptor("t", "T", "", "Dept", "L2", "daily", path, fmt, cols)


def test_declared_categories_are_distinct_values_of_a_string_column() -> None:
    assert validate(_desc(ColumnSpec("sector", "string", categories=("A", "B"))))
    for col, words in (
        (ColumnSpec("n", "int64", categories=("1", "2")), "categories are for string columns"),
        (ColumnSpec("s", "string", categories=("A", "A")), "categories are distinct"),
        (ColumnSpec("s", "string", categories=tuple(map(str, range(1001)))), "at most 1000"),
        (ColumnSpec("s", "string", categories=("",)), "1 to 200 characters"),
    ):
        with pytest.raises(InvalidArgument, match=words):
            validate(_desc(col))


def test_categories_survive_the_toml_round_trip(tmp_path: Path) -> None:
    from gateway.descriptor import dumps, load

    desc = _desc(ColumnSpec("sector", "string", categories=("制造业", 'B "x"')))
    (tmp_path / "d.toml").write_text(dumps(desc))
    assert load(tmp_path / "d.toml").columns[0].categories == ("制造业", 'B "x"')


def test_the_descriptor_names_the_column_of_a_bad_type() -> None:
    assert validate(_desc(ColumnSpec("price", "decimal(15,2)", lower=0, upper=1e6)))
    with pytest.raises(InvalidArgument, match=r"column 'price': type 'decimal\(40,2\)'"):
        validate(_desc(ColumnSpec("price", "decimal(40,2)")))
    with pytest.raises(InvalidArgument, match="column 'day': bounds are for number columns"):
        validate(_desc(ColumnSpec("day", "timestamp", lower=0, upper=1)))


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (
            {"name": "staff", "type": "int64", "lower": "zero"},
            "descriptor column 'staff': lower must be a number, got 'zero'",
        ),
        ({"type": "int64"}, "descriptor column 2 is missing the field 'name'"),
        ({"name": "x"}, "descriptor column 'x' is missing the field 'type'"),
        ("x", "column 2 of the descriptor is not a table"),
    ],
)
def test_a_descriptor_column_of_the_wrong_shape_is_named(column: object, message: str) -> None:
    # was "descriptor has a field of the wrong type: could not convert string to float:
    # 'zero'", naming no column (seen by an operator)
    from gateway.descriptor import from_dict

    data = {"name": "d", "path": "/x.csv", "level": "L1"}
    data["columns"] = [{"name": "a", "type": "string"}, column]
    with pytest.raises(InvalidArgument) as info:
        from_dict(data)
    assert info.value.message == message


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("path", 5, "descriptor field 'path' must be a non-empty string, got 5"),
        ("path", "", "descriptor field 'path' must be a non-empty string, got ''"),
        ("columns", 5, "descriptor field 'columns' must be [[columns]] tables, got 5"),
        ("columns", {"name": "a"}, "descriptor field 'columns' must be [[columns]] tables, got"),
    ],
)
def test_a_descriptor_path_or_columns_of_the_wrong_type_is_named(
    field: str, value: object, message: str
) -> None:
    # review (2026-12-05): `path = 5` was "format '' must be one of parquet, csv",
    # `columns = 5` "'int' object is not iterable"
    from gateway.descriptor import from_dict

    data = {"name": "d", "path": "/x.csv", "level": "L1", "columns": []}
    data[field] = value
    with pytest.raises(InvalidArgument) as info:
        from_dict(data)
    assert info.value.message.startswith(message)


@pytest.mark.parametrize(
    ("declared", "accepted", "refused"),
    [
        (
            "int16",
            [pa.int8(), pa.int16(), pa.uint8()],
            [pa.int32(), pa.uint16(), pa.float32(), pa.decimal128(4, 0), pa.string()],
        ),
        ("int64", [pa.int32(), pa.uint32(), pa.int64()], [pa.uint64(), pa.float64()]),
        ("float32", [pa.float16(), pa.float32()], [pa.float64(), pa.int32()]),
        (
            "decimal(15,2)",
            [pa.decimal128(15, 2), pa.decimal128(12, 2), pa.decimal128(14, 1), pa.decimal128(3, 0)],
            [pa.decimal128(15, 3), pa.decimal128(16, 2), pa.float64(), pa.int64()],
        ),
        (
            "string",
            [pa.string(), pa.large_string(), pa.dictionary(pa.int32(), pa.string())],
            [pa.binary(), pa.dictionary(pa.int32(), pa.int64()), pa.int64()],
        ),
        ("date", [pa.date32(), pa.date64()], [pa.timestamp("us"), pa.string()]),
        (
            "timestamp",
            [pa.timestamp("s"), pa.timestamp("ms"), pa.timestamp("us"), pa.timestamp("ns")],
            [pa.timestamp("us", tz="UTC"), pa.date32()],
        ),
        (
            "timestamptz",
            [pa.timestamp("us", tz="UTC"), pa.timestamp("ns", tz="Asia/Shanghai")],
            [pa.timestamp("us"), pa.date32()],
        ),
    ],
)
def test_a_type_accepts_its_lossless_widenings_only(
    declared: str, accepted: list[pa.DataType], refused: list[pa.DataType]
) -> None:
    t = parse_type(declared)
    for actual in accepted:
        assert t.accepts(actual), (declared, actual)
    for actual in refused:
        assert not t.accepts(actual), (declared, actual)


def test_sums_are_exact_for_integers_and_decimals_only() -> None:
    assert [exact_kind(t) for t in ("int8", "int64", "decimal(15,2)", "float32", "date")] == [
        "int",
        "int",
        "decimal",
        None,
        None,
    ]
    decimal_sum = sum_type("decimal(15,2)")
    assert decimal_sum is not None
    assert (decimal_sum.duckdb, decimal_sum.arrow) == ("DECIMAL(38,2)", pa.decimal128(38, 2))
    # what DuckDB's own SUM is, for a decimal and a float (an integer's is cast to BIGINT)
    con = duckdb.connect()
    for declared in ("decimal(15,2)", "decimal(7,7)", "float32", "float64"):
        summed = sum_type(declared)
        assert summed is not None
        want = con.sql(f"SELECT typeof(SUM(CAST(1 AS {parse_type(declared).duckdb})))")
        assert want.fetchall()[0] == (summed.duckdb,), declared


# --- the engine loads the declared types ----------------------------------------------

TYPED = (
    ColumnSpec("price", "decimal(15,2)"),
    ColumnSpec("qty", "int8"),
    ColumnSpec("units", "int16"),
    ColumnSpec("visits", "int32"),
    ColumnSpec("ratio", "float32"),
    ColumnSpec("seen", "timestamp"),
    ColumnSpec("seen_tz", "timestamptz"),
    ColumnSpec("day", "date"),
    ColumnSpec("region", "string"),
)


def _typed_file(path: Path) -> None:
    """A file holding each type in another lossless form than the declared one."""
    shanghai = dt.timezone(dt.timedelta(hours=8))
    pq.write_table(
        pa.table(
            {
                "price": pa.array([Decimal("12.50"), None], pa.decimal128(10, 2)),
                "qty": pa.array([-3, 7], pa.int8()),
                "units": pa.array([200, None], pa.uint8()),
                "visits": pa.array([1, 2], pa.int16()),
                "ratio": pa.array([0.5, 1.25], pa.float16()),
                "seen": pa.array([dt.datetime(2025, 1, 2, 3, 4, 5), None], pa.timestamp("ns")),
                "seen_tz": pa.array(
                    [dt.datetime(2025, 1, 2, 8, 0, tzinfo=shanghai), None],
                    pa.timestamp("ms", tz="Asia/Shanghai"),
                ),
                "day": pa.array([dt.date(2025, 1, 2), None], pa.date32()),
                "region": pa.array(["east", "west"]).dictionary_encode(),
            }
        ),
        path,
    )


def test_the_engine_loads_each_column_in_its_declared_type(tmp_path: Path) -> None:
    path = tmp_path / "typed.parquet"
    _typed_file(path)
    desc = _desc(*TYPED, path=str(path))
    entry = CatalogEntry(desc, check_file(desc, path), "", "")
    engine = Engine()
    try:
        table = engine.ensure_loaded(entry)
        select = ", ".join(f"typeof({c.name})" for c in TYPED)
        (types,) = engine.run(f"SELECT {select} FROM {table} LIMIT 1").to_pylist()
        assert list(types.values()) == [parse_type(c.type).duckdb for c in TYPED]
        (row,) = engine.run(
            f"SELECT seen_tz, seen_tz = '2025-01-02 00:00:00' AS utc, price, units FROM {table} "
            "WHERE qty < 0"
        ).to_pylist()
    finally:
        engine.close()
    # the instant is kept, in UTC: 08:00 in Shanghai is midnight UTC
    assert row["seen_tz"] == dt.datetime(2025, 1, 2, tzinfo=dt.UTC) and row["utc"] is True
    assert (row["price"], row["units"]) == (Decimal("12.50"), 200)


# --- expressions are typed as DuckDB types them ------------------------------------------

COLUMNS = (
    ColumnSpec("d", "decimal(15,2)"),
    ColumnSpec("q", "decimal(3,1)", lower=0, upper=10),
    ColumnSpec("a", "int8"),
    ColumnSpec("b", "int16", lower=-100, upper=100),
    ColumnSpec("c", "int32"),
    ColumnSpec("e", "int64"),
    ColumnSpec("f", "float32"),
    ColumnSpec("g", "float64"),
    ColumnSpec("ts", "timestamp"),
    ColumnSpec("day", "date"),
    ColumnSpec("s", "string"),
)
EXPRESSIONS = [
    "d",
    "d * (1 - q)",
    "d * q",
    "a * 1000",
    "b * 100",
    "a + b",
    "d + e",
    "d * e",
    "c * 1.5",
    "d * 0.25",
    "q + 0.001",
    "q * q * q",
    "-d",
    "d / 2",
    "a / b",
    "f * 2",
    "f + d",
    "g * d",
    "ROUND(d, 1)",
    "ROUND(d)",
    "ROUND(q * 1.05, 2)",
    "ROUND(a, 1)",
    "ROUND(f, 1)",
    "ABS(d)",
    "COALESCE(d, 0)",
    "COALESCE(q, 5)",
    "COALESCE(f, d)",
    "GREATEST(d, a)",
    "LEAST(a, 1000)",
    "CASE WHEN a > 1 THEN d ELSE 0 END",
    "CASE WHEN a > 1 THEN q ELSE e END",
    "CASE WHEN s = 'x' THEN d END",
    "CAST(a AS DECIMAL(10,3))",
    "CAST(d AS DOUBLE)",
    "CAST(d AS BIGINT)",
    "CAST(q AS INT) + a",
    "day - day",
    "day + 1",
    "LEAST(ts, day)",
    "s",
]


def _duckdb_with(columns: tuple[ColumnSpec, ...]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    body = ", ".join(f"{c.name} {parse_type(c.type).duckdb}" for c in columns)
    con.execute(f"CREATE TABLE t ({body})")
    con.execute("INSERT INTO t DEFAULT VALUES")
    return con


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_value_kind_is_duckdbs_type(expression: str) -> None:
    con = _duckdb_with(COLUMNS)
    want = con.sql(f"SELECT typeof({expression}) FROM t").fetchall()[0]
    kind = typecheck.value_kind(sqlglot.parse_one(expression, read="duckdb"), COLUMNS)
    assert (kind.duckdb,) == want, expression
    # and a SUM over it is exactly what the type says
    summed = typecheck.exact_sum_type(kind)
    if kind.number in ("decimal", "float"):
        got = con.sql(f"SELECT typeof(SUM({expression})) FROM t").fetchall()[0]
        assert got == (summed.duckdb,), expression
    assert summed.exact == (kind.number if kind.number in ("int", "decimal") else None)


def test_exact_kind_of_an_expression() -> None:
    desc = _desc(*COLUMNS)

    def kind(expression: str) -> str | None:
        return typecheck.exact_kind_of(sqlglot.parse_one(expression, read="duckdb"), desc)

    assert kind("q * (1 - q)") == "decimal"
    assert kind("b * 2 + 1") == "int"
    assert kind("CAST(b AS DECIMAL(12,2))") == "decimal"
    assert kind("ROUND(q, 0)") == "decimal"
    assert kind("q / 2") is None and kind("b * f") is None and kind("q * 1e2") is None
    assert typecheck.exact_sum_type("decimal(9,3)") == column_types.decimal_sum(3)


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("a + a", "can exceed an 8-bit integer"),
        ("a * 2", "can exceed an 8-bit integer"),
        ("c * c", "can exceed a 32-bit integer"),
        ("b * b * b", "can exceed a 16-bit integer"),
        ("d * d", r"can exceed DECIMAL\(18,4\)"),
        ("2000000000 * 2", "a constant computed by the query exceeds a 32-bit integer"),
        ("CAST(c AS TINYINT)", "cast of column 'c' to an 8-bit integer can fail"),
        ("CAST(d AS DECIMAL(5,2))", r"to DECIMAL\(5,2\) can fail"),
        ("d * '2'", "a string literal in arithmetic with a decimal"),
        ("ts + 1", "column 'ts' is a timestamp: it takes no arithmetic"),
        ("CAST(s AS INT)", "column 's' is a string: it cannot be cast to a number"),
        ("ROUND(d, a)", "ROUND's number of digits must be a whole number literal"),
        ("CAST(q AS DECIMAL(39,2))", "is not a decimal type"),
        ("0.12345678901234567890 * 0.12345678901234567890", "more than 38 digits after"),
        # a FLOAT past its largest value is inf, and an inf sum is withheld (review)
        ("f * 1000000 * 1000000 * 1000000 * 1000000 * 1000000 * 1000000 * 1000000", "FLOAT"),
        ("f / 0.0000000000000000000000000000000001", "can exceed the largest FLOAT"),
    ],
)
def test_what_duckdb_could_only_fail_on_is_refused(expression: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        typecheck.value_kind(sqlglot.parse_one(expression, read="duckdb"), COLUMNS)


def test_an_accepted_expression_never_overflows_within_its_bounds() -> None:
    """At every corner of the columns' declared bounds (or their types' ranges), DuckDB
    computes each accepted integer or decimal expression without an error, and at a
    corner beyond it a refused one does fail."""
    columns = (
        ColumnSpec("a", "int8"),
        ColumnSpec("b", "int16", lower=-300, upper=300),
        ColumnSpec("c", "int32", lower=0, upper=50_000),
        ColumnSpec("d", "decimal(9,2)"),
        ColumnSpec("q", "decimal(4,2)", lower=0, upper=1),
    )
    corners = {
        "a": (-127, 127),
        "b": (-300, 300),
        "c": (0, 50_000),
        "d": (Decimal("-9999999.99"), Decimal("9999999.99")),
        "q": (Decimal("0"), Decimal("1")),
    }
    con = _duckdb_with(columns)
    con.execute("DELETE FROM t")
    rows = list(itertools.product(*corners.values()))
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
    accepted = [
        "a * 1000",
        "b * 100",
        "CAST(b AS INT) * b",
        "c * b",
        "CAST(c AS BIGINT) * c",
        "d * (1 - q)",
        "d * q + d",
        "-a",
        "a + 0",
        "CAST(b AS SMALLINT) * 10",
        "ROUND(d * q, 1)",
        "d * d",
    ]
    refused = ["a * 2", "a * 100", "b * 200", "b * b", "c * c", "d * d * d", "b * b * b * b"]
    for expression in accepted:
        tree = sqlglot.parse_one(expression, read="duckdb")
        assert typecheck.value_kind(tree, columns).number in ("int", "decimal"), expression
        con.sql(f"SELECT SUM({expression}) FROM t").fetchall()  # no overflow at any corner
    for expression in refused:
        with pytest.raises(InvalidArgument, match="can exceed"):
            typecheck.value_kind(sqlglot.parse_one(expression, read="duckdb"), columns)
        with pytest.raises(duckdb.OutOfRangeException):
            con.sql(f"SELECT {expression} FROM t").fetchall()


def test_registered_ranges_stand_in_for_missing_bounds() -> None:
    tree = sqlglot.parse_one("e * e", read="duckdb")
    with pytest.raises(InvalidArgument, match="taken as reaching 2\\^40"):
        typecheck.value_kind(tree, COLUMNS)
    assert typecheck.value_kind(tree, COLUMNS, {"e": (-1000.0, 5000.0)}).number == "int"


def test_timestamps_compare_with_dates_and_timestamps_only() -> None:
    from federation.sql import parse

    desc = _desc(*COLUMNS)
    for where in (
        "ts > '2025-01-01 08:00:00'",
        "ts BETWEEN '2025-01-01' AND CAST('2025-02-01' AS TIMESTAMP)",
        "ts >= day",
        "d > 1.5 AND d < '3' AND a IN (1, 2) AND f > 0.5",
    ):
        typecheck.check(parse(f"SELECT COUNT(*) FROM t WHERE {where}"), desc)
    for where, words in (
        ("ts > 5", "column 'ts' is a timestamp: compare it with a timestamp"),
        ("ts = 'soon'", "column 'ts' is a timestamp"),
        ("ts", "column 'ts' is a timestamp: a condition needs a comparison"),
        ("d = 'x'", "column 'd' is a number"),
    ):
        with pytest.raises(InvalidArgument, match=words):
            typecheck.check(parse(f"SELECT COUNT(*) FROM t WHERE {where}"), desc)
    with pytest.raises(InvalidArgument, match="SUM\\(ts\\): column 'ts' is a timestamp"):
        typecheck.check(parse("SELECT SUM(ts) FROM t"), desc)


def test_every_cursor_of_the_engine_runs_in_utc() -> None:
    engine = Engine()
    try:
        table = engine.run("SELECT TIMESTAMPTZ '2025-01-02 08:00:00+08' AS t")
        again = engine.run("SELECT current_setting('TimeZone') AS z").to_pylist()
    finally:
        engine.close()
    assert table.schema.field("t").type == pa.timestamp("us", tz="UTC")
    assert again == [{"z": "UTC"}]


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        ("SELECT SUM(s * 2) FROM t", "column 's' is a string: arithmetic needs numbers"),
        ("SELECT SUM(CASE WHEN s THEN b END) FROM t", "column 's' is a string: a condition needs"),
        ("SELECT AVG(b) FILTER (WHERE ts > 5) FROM t", "column 'ts' is a timestamp: compare it"),
        (
            "SELECT SUM(CASE WHEN b > 1 THEN s END) FROM t",
            "SUM(CASE WHEN b > 1 THEN s END): the expression over column 's' is a string; "
            "SUM needs a number",
        ),
        ("SELECT SUM(a * 2) FROM t", "the expression over column 'a' can exceed an 8-bit"),
        (
            "SELECT CASE WHEN b < 5 THEN 'low' ELSE 'high' END AS k, COUNT(*) FROM t "
            "GROUP BY k HAVING k = 5",
            "the expression CASE WHEN b < 5 THEN 'low' ELSE 'high' END is a string",
        ),
        ("SELECT MIN(ts) AS m FROM t HAVING m > 5", "min(ts) is a timestamp"),
    ],
)
def test_values_inside_aggregates_and_keys_are_type_checked(sql: str, refusal: str) -> None:
    from federation.sql import parse

    with pytest.raises(InvalidArgument) as caught:
        typecheck.check(parse(sql), _desc(*COLUMNS))
    assert refusal in caught.value.message


def test_typed_values_that_fit_pass() -> None:
    from federation.sql import parse

    for sql in (
        "SELECT SUM(d * (1 - q)) AS r, AVG(CAST(a AS INT) * 2) FROM t",
        "SELECT SUM(d) FILTER (WHERE ts >= '2025-01-01' AND s = 'x') FROM t",
        "SELECT CASE WHEN b < 5 THEN 'low' ELSE 'high' END AS k, MAX(ts) AS m FROM t "
        "GROUP BY k HAVING k = 'low' AND m > '2025-01-01 08:00:00'",
    ):
        typecheck.check(parse(sql), _desc(*COLUMNS))


def test_a_group_key_function_over_a_column_of_the_wrong_kind_is_refused_before_it_runs() -> None:
    from federation.sql import parse
    from gateway import typecheck
    from gateway.descriptor import ColumnSpec, DatasetDescriptor
    from gateway.errors import InvalidArgument

    cols = (ColumnSpec("city", "string"), ColumnSpec("x", "int64"), ColumnSpec("d", "date"))
    desc = DatasetDescriptor("t", "t", "", "", "L1", "static", "/x", "parquet", cols)
    for sql, words in [
        ("SELECT year(city), COUNT(*) FROM t GROUP BY 1", "year(city) in GROUP BY"),
        ("SELECT substr(x, 1, 2), COUNT(*) FROM t GROUP BY 1", "substr(x) in GROUP BY"),
        ("SELECT date_trunc('month', x), COUNT(*) FROM t GROUP BY 1", "date_trunc(x)"),
    ]:
        with pytest.raises(InvalidArgument, match=re.escape(words)):
            typecheck.check(parse(sql), desc)
    typecheck.check(
        parse("SELECT year(d), substr(city, 1, 2), COUNT(*) FROM t GROUP BY 1, 2"), desc
    )
