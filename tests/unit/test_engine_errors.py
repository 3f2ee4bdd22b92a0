"""Engine errors say what went wrong and over which columns, never a value nor the SQL.

Each DuckDB exception is classified by its type (checked here with the exceptions DuckDB
really raises), the engine raises our fixed message and logs DuckDB's text for the
operator; the owner refuses at decide time what its declared column types can foresee.
"""

from __future__ import annotations

import dataclasses
import logging
import re

import duckdb
import pyarrow as pa
import pytest

from federation.outcome import Code
from federation.partials import from_ipc
from federation.sql import parse
from gateway import clock, identity, typecheck
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.engine import Engine
from gateway.engine_errors import (
    EngineError,
    Failure,
    classify,
    columns_phrase,
    message,
)
from gateway.errors import (
    MAX_LOGGED_CHARS,
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    loggable,
)
from tests.unit import test_owner

parts = test_owner.parts  # the owner with real parts (fixture)

# --- classification, with the exceptions DuckDB 2 really raises --------------------------

_TABLE = (
    "CREATE TABLE t AS SELECT * FROM (VALUES ('Shanghai', 1985::BIGINT, 12345.5::DOUBLE, "
    "true, DATE '2025-01-03')) v(city, birth_year, wage, hi, d)"
)
RAISED = [
    # (DuckDB query, the kind, a value or SQL text its own message quotes)
    ("SELECT COUNT(*) FROM t WHERE city = 5", Failure.CONVERSION, "Shanghai"),
    ("SELECT COUNT(*) FROM t WHERE city IN (1, 2)", Failure.CONVERSION, "Shanghai"),
    ("SELECT COUNT(*) FROM t WHERE hi = city", Failure.CONVERSION, "Shanghai"),
    ("SELECT COUNT(*) FROM t WHERE city = d", Failure.CONVERSION, "Shanghai"),
    ("SELECT VAR_POP(CAST(city AS DOUBLE)) FROM t", Failure.CONVERSION, "Shanghai"),
    (
        "SELECT COUNT(*) FROM t WHERE (birth_year + 1000000) * (birth_year + 1000000) "
        "* (birth_year + 1000000) * (birth_year + 1000000) > 0",
        Failure.OVERFLOW,
        "1001985",
    ),
    (
        "SELECT COUNT(*) FROM t WHERE birth_year * birth_year * birth_year * birth_year "
        "* birth_year * birth_year > 0",
        Failure.OVERFLOW,
        "1985",
    ),
    (
        "SELECT CAST(SUM(v) AS BIGINT) FROM (SELECT birth_year * 4611686018427387 AS v "
        "FROM t UNION ALL SELECT birth_year * 4611686018427387 FROM t)",
        Failure.CONVERSION,  # "Type INT128 with value ... can't be cast": an exact sum
        "18308393493156726390",
    ),
    ("SELECT COUNT(*) FROM t WHERE birth_year // 0 > 0", Failure.EVALUATION, "birth_year"),
    ("SELECT COUNT(*) FROM t WHERE city > 5", Failure.TYPES, "VARCHAR"),
    ("SELECT COUNT(*) FROM t WHERE city + 1 > 0", Failure.TYPES, "VARCHAR"),
    ("SELECT AVG(city) FROM t", Failure.TYPES, "avg"),
    ("SELECT COUNT(*) FROM t WHERE nope = 1", Failure.TYPES, "nope"),
    ("SELECT COUNT(*) FROM nowhere", Failure.OTHER, "nowhere"),
    ("SELECT COUNT(*) FROM t WHERE", Failure.OTHER, "WHERE"),
    ("SELECT * FROM read_csv('/etc/passwd')", Failure.OTHER, "passwd"),
]


@pytest.fixture(scope="module")
def db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:", config={"enable_external_access": False})
    con.execute(_TABLE)
    return con


@pytest.mark.parametrize(("sql", "kind", "quoted"), RAISED)
def test_each_duckdb_error_is_classified_by_its_type(
    db: duckdb.DuckDBPyConnection, sql: str, kind: Failure, quoted: str
) -> None:
    with pytest.raises(duckdb.Error) as caught:
        db.execute(sql).fetchall()
    assert quoted in str(caught.value)  # what DuckDB would have told the analyst
    assert classify(caught.value) is kind
    text = message(kind)
    assert quoted not in text and "SELECT" not in text and "LINE" not in text


def test_only_duckdbs_own_classes_are_classified() -> None:
    class ConversionException(Exception):  # same name, not DuckDB's
        pass

    assert classify(ConversionException("x")) is Failure.OTHER
    assert classify(ValueError("x")) is Failure.OTHER
    assert classify(duckdb.TypeMismatchException("x")) is Failure.TYPES
    assert classify(duckdb.DataError("x")) is Failure.EVALUATION
    assert classify(duckdb.InternalException("x")) is Failure.OTHER


def test_messages_are_fixed_and_say_where_by_column_names_only() -> None:
    where = columns_phrase("the WHERE clause's arithmetic", ["birth_year"])
    assert message(Failure.OVERFLOW, place=where) == (
        "a value computed by the query is out of range for its type (integer overflow) in "
        "the WHERE clause's arithmetic, over 'birth_year'; the owner does not say which "
        "row: compute with smaller numbers"
    )
    assert message(Failure.CONVERSION, who="home").endswith(
        "the home does not say which group: compare each column with a literal of its own type"
    )
    assert message(Failure.OTHER) == "the local engine could not run the query"
    assert columns_phrase("x", ["b", "a", "c", "a"]) == " in x, over 'a', 'b' and 'c'"
    assert columns_phrase("", ["a"]) == " over 'a'"
    assert columns_phrase("x", []) == " in x"
    assert EngineError(Failure.TYPES).code == Code.INVALID_ARGUMENT
    assert isinstance(EngineError(Failure.TYPES), InvalidArgument)


def test_the_logged_engine_text_is_bounded_and_one_line() -> None:
    assert loggable("a\nb") == "'a\\nb'"
    long = loggable("x" * (MAX_LOGGED_CHARS * 3))
    assert len(long) < MAX_LOGGED_CHARS + 40 and "6000 characters" in long


# --- the engine: our message out, DuckDB's text to the log only ----------------------------


def _overflow_sql(table: str) -> str:
    power = " * ".join(["(x + 1000000)"] * 4)
    return f"SELECT COUNT(*) FROM {table} WHERE {power} > 0"


def test_the_engine_raises_a_fixed_message_and_logs_duckdbs_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = Engine(1)
    try:
        engine._db.execute("CREATE TABLE people AS SELECT 1985::BIGINT AS x, 'Shanghai' AS s")
        with caplog.at_level(logging.WARNING, logger="fedgate.engine"):
            with pytest.raises(EngineError) as caught:
                engine.run(_overflow_sql("people"), timeout=5, request_id="req-42")
            with pytest.raises(EngineError) as converted:
                engine.run("SELECT COUNT(*) FROM people WHERE s = 5", request_id="req-43")
        assert caught.value.failure is Failure.OVERFLOW
        assert converted.value.failure is Failure.CONVERSION
        for exc in (caught.value, converted.value):
            assert not re.search(r"[0-9]", exc.message) and "Shanghai" not in exc.message
            assert exc.__context__ is None and exc.__cause__ is None  # DuckDB's is gone
            assert exc.details == {}
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("request=req-42" in m and "1001985" in m for m in lines)
        assert any("request=req-43" in m and "Shanghai" in m for m in lines)
    finally:
        engine.close()


def test_the_merge_at_the_home_says_the_same_without_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = Engine(1)
    try:
        merged = pa.table({"__a0": pa.array([3037000500], pa.int64()), "city": ["Hefei"]})
        with caplog.at_level(logging.WARNING, logger="fedgate.engine"):
            with pytest.raises(EngineError) as caught:
                engine.run_on_table("SELECT __a0 * __a0 * __a0 FROM m", "m", merged)
            with pytest.raises(EngineError) as converted:
                engine.run_on_table("SELECT city FROM m WHERE city = 5", "m", merged)
        assert "3037000500" in caplog.text and "Hefei" in caplog.text
        for exc in (caught.value, converted.value):
            assert "3037000500" not in exc.message and "Hefei" not in exc.message
            assert "the home does not say which group" in exc.message
            assert "in the step after the merge" in exc.message
    finally:
        engine.close()


def test_interrupts_and_memory_keep_their_own_status() -> None:
    engine = Engine(1)
    try:
        engine.run_on_table("SELECT 1", "warm", pa.table({"x": [1]}))
        assert isinstance(
            engine._failed(duckdb.InterruptException("x"), "owner", ""), DeadlineExceeded
        )
        oom = engine._failed(duckdb.OutOfMemoryException("1985 bytes"), "owner", "")
        assert isinstance(oom, ResourceExhausted) and "1985" not in oom.message
    finally:
        engine.close()


# --- static: the owner's declared types, at decide time ------------------------------------

_COLUMNS = (
    ColumnSpec("city", "string"),
    ColumnSpec("employees", "int64", lower=0, upper=100),
    ColumnSpec("revenue", "float64", lower=0, upper=1000),
    ColumnSpec("high_tech", "bool"),
    ColumnSpec("day", "date"),
    ColumnSpec("visits", "int64"),  # no declared bounds
)
_DESC = DatasetDescriptor("t", "t", "t", "t", "L2", "static", "t.parquet", "parquet", _COLUMNS)

REFUSED = [
    ("WHERE city = 5", "column 'city' is a string: compare it with a string"),
    ("WHERE city > -5.5", "column 'city' is a string: compare it with a string"),
    ("WHERE city IN ('Hefei', 5)", "column 'city' is a string: compare it with a string"),
    ("WHERE city BETWEEN 1 AND 2", "column 'city' is a string: compare it with a string"),
    ("WHERE city = true", "column 'city' is a string: compare it with a string"),
    ("WHERE city = CAST('2025-01-01' AS DATE)", "column 'city' is a string"),
    ("WHERE city", "column 'city' is a string: a condition needs a comparison"),
    ("WHERE NOT city OR high_tech", "column 'city' is a string: a condition needs a comparison"),
    ("WHERE city + 1 > 0", "column 'city' is a string: arithmetic needs numbers"),
    ("WHERE high_tech * 2 > 0", "column 'high_tech' is a boolean: arithmetic needs numbers"),
    (
        "WHERE city = employees",
        "column 'city' is a string and column 'employees' is a number: they cannot be compared",
    ),
    (
        "WHERE (employees + 1) * 2 = city",
        "the expression over column 'employees' is a number and column 'city' is a string",
    ),
    ("WHERE employees = 'many'", "column 'employees' is a number: compare it with a number"),
    ("WHERE revenue IN (1, 'x')", "column 'revenue' is a number: compare it with a number"),
    ("WHERE employees = day", "column 'employees' is a number and column 'day' is a date"),
    ("WHERE employees + 'x' > 0", "a string literal in arithmetic must be a number"),
    ("WHERE high_tech = 'maybe'", "column 'high_tech' is a boolean: compare it with true or false"),
    ("WHERE high_tech = city", "column 'high_tech' is a boolean and column 'city' is a string"),
    ("WHERE day = 'soon'", "column 'day' is a date: compare it with a date written 'YYYY-MM-DD'"),
    ("WHERE day > 20250101", "column 'day' is a date: compare it with a date"),
    ("WHERE day BETWEEN '2025-01-01' AND 5", "column 'day' is a date: compare it with a date"),
    ("WHERE day", "column 'day' is a date: a condition needs a comparison"),
    ("WHERE day * 2 > 1", "column 'day' is a date: only a whole number of days"),
    ("WHERE day + employees > '2025-01-01'", "column 'day' is a date: only a whole number"),
    ("WHERE -day > '2025-01-01'", "column 'day' is a date: it cannot be negated"),
    ("WHERE 5 = 'abc'", "a string literal is compared with a number it does not convert to"),
    (
        "WHERE (employees + 1000000) * (employees + 1000000) * (employees + 1000000) "
        "* (employees + 1000000) > 0",
        "the expression over column 'employees' can exceed a 64-bit integer for values "
        "within the declared bounds: compute with smaller numbers",
    ),
    (  # DuckDB moves the constants together: (C * C) * (employees - 5) overflows
        "WHERE employees = 5 AND (employees - 5) * 3037000500 * 3037000500 >= 0",
        "the expression over column 'employees' can exceed a 64-bit integer",
    ),
    (
        "WHERE revenue * (3037000500 * 3037000500) > 0",
        "a constant computed by the query exceeds a 64-bit integer",
    ),
    (
        "WHERE visits * visits > 0",
        "the expression over column 'visits' can exceed a 64-bit integer for a column "
        "without declared bounds taken as reaching 2^40",
    ),
    ("WHERE employees + visits * 'x' > 0", "a string literal in arithmetic must be a number"),
    ("WHERE high_tech > -5.5", "column 'high_tech' is a boolean: compare it with true or false"),
    ("WHERE high_tech = revenue", "column 'high_tech' is a boolean and column 'revenue' is a"),
    ("WHERE day = '2025-13-45'", "column 'day' is a date: compare it with a date written"),
    ("WHERE day = CAST('2025-13-45' AS DATE)", "a string cast to a date is not a date"),
    ("WHERE day > CAST('soon' AS TIMESTAMP)", "a string cast to a date is not a date"),
    ("WHERE CAST('2025-01-01' AS DATE) = 5", "a date is compared with a number"),
]
ACCEPTED = [
    "WHERE city = 'Hefei' AND city IN ('Hefei', 'Wuhu') AND city BETWEEN 'A' AND 'Z'",
    "WHERE city = NULL OR city IS NOT NULL OR city = NULL + 1",
    "WHERE employees = '12' AND revenue > ' 1.5e3 ' AND employees BETWEEN 1 AND 10.5",
    "WHERE (employees + 1000000) * (employees + 1000000) > 0 AND -employees < revenue / 2",
    "WHERE high_tech AND high_tech = 'yes' AND high_tech = 1 AND high_tech = true",
    "WHERE employees AND NOT revenue",
    "WHERE day = '2025-01-03' AND day > '2025/1/3 10:00' AND day < 'infinity'",
    "WHERE day + 1 > '2025-01-01' AND 1 + day > CAST('2025-01-01' AS DATE) AND day - 7 < day",
    "WHERE day - day > 3",
    "WHERE employees * 1000000000 * 10000000 > 0 AND visits * 1000000 > 0 AND -visits < 1",
    "WHERE revenue * 3037000500 * 3037000500 > 0 AND employees / 0 > 0 AND visits + '12' > 0",
    "WHERE high_tech = -1 AND high_tech = 0",
]


@pytest.mark.parametrize(("where", "refusal"), REFUSED)
def test_type_mismatches_are_refused_before_anything_runs(where: str, refusal: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        typecheck.check(parse(f"SELECT COUNT(*) FROM t {where}"), _DESC)
    assert refusal in caught.value.message


@pytest.mark.parametrize("where", ACCEPTED)
def test_queries_whose_types_fit_pass(where: str) -> None:
    typecheck.check(parse(f"SELECT COUNT(*) FROM t {where}"), _DESC)


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        ("SELECT AVG(city) FROM t", "AVG(city): column 'city' is a string; AVG needs a number"),
        ("SELECT SUM(high_tech) FROM t", "SUM(high_tech): column 'high_tech' is a boolean"),
        ("SELECT VAR_SAMP(day) FROM t", "VAR_SAMP(day): column 'day' is a date"),
        (
            "SELECT city, COUNT(*) FROM t GROUP BY city HAVING city = 5",
            "column 'city' is a string: compare it with a string",
        ),
        (
            "SELECT city, MIN(city) AS m FROM t GROUP BY city HAVING MIN(city) > 3",
            "min(city) is a string: compare it with a string",
        ),
        (
            "SELECT city, COUNT(*) + city AS m FROM t GROUP BY city",
            "column 'city' is a string: arithmetic needs numbers",
        ),
        (
            "SELECT day, COUNT(*) FROM t GROUP BY day ORDER BY day * 2",
            "column 'day' is a date: only a whole number",
        ),
    ],
)
def test_aggregates_and_the_step_after_the_merge_are_checked_too(sql: str, refusal: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        typecheck.check(parse(sql), _DESC)
    assert refusal in caught.value.message


def test_the_step_after_the_merge_accepts_what_fits() -> None:
    for sql in (
        "SELECT city, COUNT(*) AS n, MIN(day) AS d FROM t GROUP BY city "
        "HAVING COUNT(*) > 5 AND MIN(day) > '2025-01-01' ORDER BY n DESC, city",
        "SELECT MAX(city), SUM(revenue) / COUNT(*) AS r FROM t HAVING MAX(city) > 'A'",
        "SELECT city, day FROM t WHERE day > '2025-01-01' ORDER BY day LIMIT 5",
    ):
        typecheck.check(parse(sql), _DESC)


def test_every_statically_refused_comparison_would_have_quoted_a_cell() -> None:
    """Why the check exists: DuckDB left alone converts the column and quotes a cell."""
    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE t (city VARCHAR, employees BIGINT, high_tech BOOLEAN, day DATE)")
    con.execute("INSERT INTO t VALUES ('Shanghai', 7, true, DATE '2025-01-03')")
    for where in ("city = 5", "city IN ('Hefei', 5)", "city = true", "city", "high_tech = city"):
        with pytest.raises(InvalidArgument):
            typecheck.check(parse(f"SELECT COUNT(*) FROM t WHERE {where}"), _DESC)
        with pytest.raises(duckdb.ConversionException, match="Shanghai"):
            con.execute(f"SELECT COUNT(*) FROM t WHERE {where}").fetchall()


def test_place_names_the_columns_the_failure_can_come_from() -> None:
    plan = parse(
        "SELECT COUNT(*), SUM(revenue) FROM t WHERE city = 'x' AND employees * employees > 0"
    )
    assert typecheck.place(plan, Failure.OVERFLOW) == (
        " in the WHERE clause's arithmetic, over 'employees'"
    )
    assert typecheck.place(plan, Failure.CONVERSION) == (
        " in the WHERE clause, over 'city' and 'employees'"
    )
    assert typecheck.place(plan, Failure.TYPES) == " over 'city', 'employees' and 'revenue'"
    assert typecheck.place(plan, Failure.OTHER) == ""
    no_where = parse("SELECT SUM(employees) FROM t")
    assert typecheck.place(no_where, Failure.OVERFLOW) == " in an aggregate, over 'employees'"
    assert typecheck.place(no_where, Failure.CONVERSION) == " in an aggregate, over 'employees'"


# --- the owner: refused or mapped, audited with the sanitised reason -----------------------


def test_the_owner_refuses_a_mismatch_at_decide_and_audits_no_value(
    parts: test_owner.Parts,
) -> None:
    grant = test_owner._grant(
        parts, columns={"city": ("group_by", "filter"), "employees": ("aggregate", "filter")}
    )
    answer = parts.owner.execute(test_owner._env("SELECT COUNT(*) FROM firms WHERE city = 5"))
    report = answer.owners[0]
    assert report.error is not None and report.error.code == Code.INVALID_ARGUMENT
    assert report.error.reason == "column 'city' is a string: compare it with a string"
    refused = [e.data for e in parts.audit.entries() if e.data["kind"] == "query.refused"]
    assert refused[-1]["reason"] == report.error.reason
    assert parts.grants.get(grant.id).uses == 0


def test_a_where_that_fails_on_some_rows_matches_none_of_them(
    parts: test_owner.Parts, caplog: pytest.LogCaptureFixture
) -> None:
    """Declared bounds the data exceed (employees declared 0-1, up to 19 in the file): the
    static check passes, and the arithmetic overflows on some rows. An error would tell
    that such a row exists (a one-bit answer past k and DP); under TRY those rows are not
    matched, and the count that changes is released like any other, k applied."""
    desc = test_owner._descriptor(parts.data / "firms.parquet")
    narrow = tuple(
        dataclasses.replace(c, lower=0.0, upper=1.0) if c.name == "employees" else c
        for c in desc.columns
    )
    operator = identity.Identity("operator", "op@anhui", "Anhui bureau", "1", clock.now())
    parts.catalog.register(
        dataclasses.replace(desc, name="firms_narrow", columns=narrow),
        by=operator,
        when="2026-01-01T00:00:00Z",
    )
    grant = test_owner._grant(
        parts,
        dataset="firms_narrow",
        columns={"city": ("group_by", "filter"), "employees": ("aggregate", "filter")},
        exact=True,  # the count compared below is exact
    )
    sql = (
        "SELECT COUNT(*) FROM firms_narrow WHERE city = 'hefei' "
        "AND employees * 1000000000 * 1000000000 > 5"
    )
    with caplog.at_level(logging.WARNING, logger="fedgate.engine"):
        answer = parts.owner.execute(test_owner._env(sql))
    report = answer.owners[0]
    assert report.error is None and "engine error" not in caplog.text
    # hefei's employees are 0..11: 1..9 match, 10 and 11 overflow and are not matched.
    assert from_ipc(answer.payload).column("__n").to_pylist() == [9]
    assert parts.grants.get(grant.id).uses == 1
