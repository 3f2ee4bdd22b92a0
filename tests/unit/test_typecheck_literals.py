"""A string literal DuckDB cannot convert to the column it is compared with fails only once
a row reaches it: ``WHERE id = 17 AND wage > 100 AND age = '1e400'`` (age an int8) raised
a conversion error exactly when person 17 existed with a wage over 100, a free one-bit
answer past k and DP (review, 2026-12-05). Both ways closed:

- the type check refuses a literal that does not convert to the column's type exactly and
  within its range (integers by range, decimals by precision and scale, dates and
  timestamps by a full match), quoting the literal;
- the owner's SQL runs every comparison that converts a string literal under TRY, so that
  whatever the check lets through cannot fail on a row either.

Real DuckDB throughout: the generated SQL on a connection of its own, and a real owner
(grants, release pipeline, engine) under a DP grant on L3 data."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from federation.envelope import Envelope, Requester
from federation.sql import parse, partial_query
from federation.sql.generate import Typed
from federation.sql.join import parse_join
from gateway import typecheck
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.errors import InvalidArgument
from gateway.roles.owner import Owner
from tests.unit.owner_parts import OPERATOR, org_grant, owner_parts

ORG = "Shanghai Big Data Center"
ANALYST = Requester("analyst", "li.wei@shanghai", ORG)
ROWS = 60  # people 0..59; person 17 earns 1 700

COLUMNS = (
    ColumnSpec("id", "int32", lower=0.0, upper=100000.0),
    ColumnSpec("wage", "float64", lower=0.0, upper=100000.0),
    ColumnSpec("age", "int8", lower=0.0, upper=120.0),
    ColumnSpec("price", "decimal(5,2)", lower=0.0, upper=999.0),
    ColumnSpec("city", "string"),
    ColumnSpec("day", "date"),
    ColumnSpec("at", "timestamp"),
)
DESC = DatasetDescriptor(
    "people", "t", "t", "t", "L3", "static", "people.parquet", "parquet", COLUMNS
)


def _table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(ROWS), pa.int32()),
            "wage": pa.array([100.0 * i for i in range(ROWS)], pa.float64()),
            "age": pa.array([20 + i % 50 for i in range(ROWS)], pa.int8()),
            "price": pa.array([i for i in range(ROWS)], pa.decimal128(5, 2)),
            "city": pa.array([f"c{i % 3}" for i in range(ROWS)]),
            "day": pa.array([10957 + i for i in range(ROWS)], pa.int32()).cast(pa.date32()),
            "at": pa.array([10**15 + i for i in range(ROWS)], pa.timestamp("us")),
        }
    )


# Literals that read as the column's kind but do not convert to its type, each as a test
# of the WHERE (and inside IN, BETWEEN, a simple CASE, a FILTER, a CASE of a value).
FAILING = [
    "age = '1e400'",
    "id = '99999999999'",
    "age = '300'",
    "age IN ('20', '300')",
    "age BETWEEN '1' AND '300'",
    "price = '1234.5'",
    "price < '999.995'",
    "day = '9999999-01-01'",
    "day > DATE '9999999-01-01'",
    "at = '2025-01-01 25:00:00'",
    "at = '2025-01-01x'",
    "at < TIMESTAMP '2025-01-01 25:00:00'",
    "CAST('300' AS TINYINT) = age",
    "CASE age WHEN '300' THEN 1 ELSE 0 END = 1",
]


def _types() -> dict[str, str]:
    return typecheck.column_families(DESC)


@pytest.fixture(scope="module")
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    con.register("people_arrow", _table())
    con.execute("CREATE TABLE people AS SELECT * FROM people_arrow")
    yield con
    con.close()


def _run(db: duckdb.DuckDBPyConnection, sql: str) -> str:
    try:
        return repr(db.execute(sql).fetchall())
    except duckdb.Error as exc:
        return f"error: {type(exc).__name__}"


@pytest.mark.parametrize("test", FAILING)
def test_the_owners_sql_fails_on_no_row_for_a_literal_that_does_not_convert(
    db: duckdb.DuckDBPyConnection, test: str
) -> None:
    """Whether person 17 exists (with a wage over 100) or not, the same answer, never an
    error: the comparison that converts the literal runs under TRY."""

    def answer(who: int, sql: str) -> str:
        plan = parse(sql.format(who=who))
        return _run(db, partial_query(plan, "people", types=_types()))

    for sql in (
        f"SELECT COUNT(*) FROM people WHERE id = {{who}} AND wage > 100 AND {test}",
        f"SELECT COUNT(*) FILTER (WHERE id = {{who}} AND {test}) FROM people",
        f"SELECT SUM(CASE WHEN id = {{who}} AND {test} THEN wage END) FROM people",
        f"SELECT CASE WHEN id = {{who}} AND {test} THEN 'y' ELSE 'n' END AS g, COUNT(*) "
        "FROM people GROUP BY g",
    ):
        present, absent = answer(17, sql), answer(-17, sql)
        assert not present.startswith("error"), (sql, present)
        assert not absent.startswith("error"), (sql, absent)
        if "GROUP BY" not in sql:
            assert present == absent, (sql, present, absent)


def test_a_join_sides_filter_converting_a_literal_is_pinned(
    db: duckdb.DuckDBPyConnection,
) -> None:
    join = (
        "SELECT COUNT(*) FROM anhui.people AS a JOIN hefei.people AS b ON a.city = b.city "
        "WHERE a.id = {who} AND a.age = '300'"
    )
    for who in (17, -17):
        sql = parse_join(join.format(who=who)).side_sql(0, "people", _types())
        assert "TRY_CAST('300' AS TINYINT)" in sql  # NULL whatever row: no error to tell
        assert not _run(db, sql).startswith("error")


def test_plain_comparisons_of_their_own_type_stay_as_they_are() -> None:
    """A string column against a string, a number against a number: nothing to convert,
    no TRY (it costs a filtered scan about 12 %). Without the types, any string literal
    beside a column runs under TRY."""
    plan = parse("SELECT COUNT(*) FROM people WHERE city = 'c1' AND city IN ('a', 'b') AND id > 5")
    assert "TRY(" not in partial_query(plan, "people", types=_types())
    assert "TRY(" in partial_query(plan, "people")
    keyed = parse(
        "SELECT CASE WHEN age < 30 THEN 'young' ELSE 'old' END AS g, COUNT(*) FROM t GROUP BY g"
    )
    assert "TRY(" not in partial_query(keyed, "people", types=_types())


def test_a_date_range_is_pinned_and_still_filters_the_scan(
    db: duckdb.DuckDBPyConnection,
) -> None:
    """A string or DATE literal against a DATE column is converted once, by TRY_CAST to
    the column's own type: no error whatever the literal, and no TRY around the condition,
    which made DuckDB read a date range row by row (2 to 4 times slower) instead of
    filtering the scan by it."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS events AS "
        "SELECT DATE '2024-01-01' + i::INTEGER AS day FROM range(50) r(i)"
    )
    types = {"day": Typed("date", "DATE")}
    plan = parse(
        "SELECT COUNT(*) FROM events WHERE day >= DATE '2024-01-10' AND day < '2024-01-20'"
    )
    sql = partial_query(plan, "events", types=types)
    assert "TRY(" not in sql
    assert "TRY_CAST('2024-01-10' AS DATE)" in sql and "TRY_CAST('2024-01-20' AS DATE)" in sql
    assert db.execute(sql).fetchall() == [(10,)]
    explained = "".join(str(r) for r in db.execute("EXPLAIN " + sql).fetchall())
    assert "Filters:" in explained  # pushed into the scan
    bad = parse(
        "SELECT COUNT(*) FROM events WHERE day >= DATE '2024-01-10' AND day < '9999999-01-01'"
    )
    assert db.execute(partial_query(bad, "events", types=types)).fetchall() == [(0,)]


# --- the type check --------------------------------------------------------------------

REFUSED = [
    ("age = '1e400'", "column 'age' is an 8-bit integer: the string '1e400' is not a whole"),
    ("age = '300'", "the string '300' is not a whole number from -128 to 127"),
    ("age = '-129'", "the string '-129' is not a whole number from -128 to 127"),
    ("age = '20.5'", "the string '20.5' is not a whole number, so it does not convert"),
    ("id = '99999999999'", "column 'id' is a 32-bit integer: the string '99999999999'"),
    ("age IN ('20', '300')", "the string '300' is not a whole number"),
    ("age BETWEEN '1' AND '300'", "the string '300' is not a whole number"),
    ("CASE age WHEN '300' THEN 1 ELSE 0 END = 1", "the string '300' is not a whole number"),
    ("CAST('300' AS TINYINT) = age", "a string cast to an 8-bit integer: the string '300'"),
    ("price = '1234.5'", "column 'price' is a DECIMAL(5,2): the string '1234.5' has more than 3"),
    ("price = '1e400'", "the string '1e400' has more than 3 digit(s) before the point"),
    ("price < '999.995'", "the string '999.995' has more than 2 digit(s) after the point"),
    ("day = '9999999-01-01'", "column 'day' is a date: the string '9999999-01-01' is not"),
    ("day > DATE '9999999-01-01'", "a string cast to a date: the string '9999999-01-01'"),
    ("day = '2025-01-01x'", "the string '2025-01-01x' is not written 'YYYY-MM-DD'"),
    ("at = '2025-01-01 25:00:00'", "column 'at' is a timestamp: the string '2025-01-01 25:00"),
    ("at = '2025-01-01x'", "the string '2025-01-01x' is not written"),
    ("at = '2025-01-01 10'", "the string '2025-01-01 10' is not written"),
    ("at < TIMESTAMP '2025-01-01 10:61:00'", "a string cast to a timestamp: the string"),
]
ACCEPTED = [
    "age = '120'",
    "age = '-128' OR age = ' 5 ' OR age = '+7' OR age = '1e2' OR age = '20.0'",
    "id = '2147483647'",
    "price = '999.99' OR price = '-999.99' OR price = '.5' OR price = '12'",
    "day = '2025-01-03' OR day > '2025/1/3 10:00' OR day < 'infinity' OR day = '0001-01-01'",
    "at = '2025-01-01' OR at = '2025-01-01 10:00' OR at = '2025-01-01T23:59:59.123456'",
    "at = '2025-01-01 10:00:00+08' OR at = '2025-01-01 10:00:00Z' OR at = 'epoch'",
    "at > TIMESTAMP '2025-01-01 10:00:00' AND day > DATE '2025-01-01'",
    "city = '300' AND wage > '1e5'",
]


@pytest.mark.parametrize(("where", "refusal"), REFUSED)
def test_a_literal_that_does_not_convert_exactly_is_refused_quoted(
    where: str, refusal: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        typecheck.check(parse(f"SELECT COUNT(*) FROM people WHERE {where}"), DESC)
    assert refusal in caught.value.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) FILTER (WHERE age = '300') FROM people",
        "SELECT SUM(CASE WHEN at = '2025-01-01 25:00:00' THEN wage END) FROM people",
        "SELECT CASE WHEN price > '1234.5' THEN 'a' ELSE 'b' END AS g, COUNT(*) FROM people "
        "GROUP BY g",
    ],
)
def test_values_and_keys_are_checked_the_same(sql: str) -> None:
    with pytest.raises(InvalidArgument, match="does not convert to it exactly"):
        typecheck.check(parse(sql), DESC)


@pytest.mark.parametrize("where", ACCEPTED)
def test_literals_that_convert_exactly_pass(where: str) -> None:
    typecheck.check(parse(f"SELECT COUNT(*) FROM people WHERE {where}"), DESC)


# --- a real owner, L3 under DP ---------------------------------------------------------


@pytest.fixture(scope="module")
def owner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Owner]:
    with owner_parts(tmp_path_factory.mktemp("literals")) as parts:
        pq.write_table(_table(), parts.data / "people.parquet")
        desc = dataclasses.replace(DESC, path=str(Path(parts.data / "people.parquet")))
        parts.catalog.register(desc, by=OPERATOR, when="2026-01-01T00:00:00Z")
        columns = {c: ("filter",) for c in ("id", "age", "price", "day", "at", "city")}
        columns["wage"] = ("filter", "aggregate")
        grant = org_grant("people", ORG, columns, dp_epsilon=0.5, dp_budget=1e9, min_group_size=10)
        parts.grants.add(grant)
        yield parts.owner


def _ask(owner: Owner, sql: str) -> tuple[str, str]:
    env = Envelope(
        request_id=f"r-{uuid.uuid4().hex[:12]}",
        requester=ANALYST,
        home_node="shanghai",
        operation="query",
        body=sql,
        explain=False,
        deadline=time.monotonic() + 20,
    )
    report = owner.execute(env).owners[0]
    if report.error is None:
        return ("OK", "")
    return (report.error.code.name, report.error.reason)


@pytest.mark.parametrize("test", FAILING)
def test_the_reviewers_existence_test_gets_one_answer_under_dp(owner: Owner, test: str) -> None:
    def outcome(who: int) -> tuple[str, str]:
        sql = f"SELECT COUNT(*), AVG(wage) FROM people WHERE id = {who} AND wage > 100 AND {test}"
        return _ask(owner, sql)

    present, absent = outcome(17), outcome(-17)
    assert present == absent
    code, reason = present
    assert code == "INVALID_ARGUMENT", present
    assert "does not convert" in reason or "a string cast to" in reason, reason


def test_pinning_keeps_the_answers_of_timestamp_literals_with_an_offset(
    db: duckdb.DuckDBPyConnection,
) -> None:
    """Review (2026-12-05): a typed literal pinned to a column of another timestamp type
    changed answers (TIMESTAMP '... +08' is read without its offset, as TIMESTAMPTZ it is
    not); and a pinned timestamp literal still put its condition under TRY."""
    db.execute("SET TimeZone = 'UTC'")
    db.execute(
        "CREATE TABLE IF NOT EXISTS hours AS SELECT "
        "TIMESTAMPTZ '2001-09-09 00:00:00+00' + to_hours(i::INTEGER) AS tz, "
        "TIMESTAMP '2001-09-09 00:00:00' + to_hours(i::INTEGER) AS ts FROM range(48) r(i)"
    )
    types = {
        "tz": Typed("timestamp", "TIMESTAMP WITH TIME ZONE"),
        "ts": Typed("timestamp", "TIMESTAMP"),
    }
    for sql in (
        "SELECT COUNT(*) FROM hours WHERE tz > TIMESTAMP '2001-09-09 10:00:00+08'",
        "SELECT COUNT(*) FROM hours WHERE ts > TIMESTAMPTZ '2001-09-09 10:00:00+08'",
        "SELECT COUNT(*) FROM hours WHERE tz BETWEEN TIMESTAMP '2001-09-09 10:00:00+08' "
        "AND TIMESTAMPTZ '2001-09-10 01:00:00+08'",
        "SELECT COUNT(*) FROM hours WHERE tz >= '2001-09-09 10:00+08'",
        "SELECT COUNT(*) FROM hours WHERE tz >= TIMESTAMPTZ '2001-09-09 10:00+08'",
    ):
        generated = partial_query(parse(sql), "hours", types=types)
        assert db.execute(generated).fetchall() == db.execute(sql).fetchall(), generated
    ranged = parse("SELECT COUNT(*) FROM hours WHERE ts >= '2001-09-09' AND ts < '2001-09-10'")
    generated = partial_query(ranged, "hours", types=types)
    assert "TRY(" not in generated and "TRY_CAST('2001-09-09' AS TIMESTAMP)" in generated
    assert db.execute(generated).fetchall() == [(24,)]


def test_a_try_cast_the_analyst_wrote_is_no_pin() -> None:
    """Review (2026-12-05): every TRY_CAST counted as one the owner had pinned to a column
    of its type, so ``day IN (TRY_CAST('...' AS TIMESTAMP))`` of a DATE column ran outside
    TRY, and casting a date past year 294 247 to a timestamp failed on that row only."""
    types = {"day": Typed("date", "DATE"), "id": Typed("int", "BIGINT")}
    for sql in (
        "SELECT COUNT(*) FROM t WHERE id = 17 AND day IN (TRY_CAST('2025-01-01' AS TIMESTAMP))",
        "SELECT COUNT(*) FROM t WHERE id = 17 AND day < TRY_CAST('2025-01-01' AS TIMESTAMPTZ)",
    ):
        assert "WHERE TRY(" in partial_query(parse(sql), "t", types=types), sql
