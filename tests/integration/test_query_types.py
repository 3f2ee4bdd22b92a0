"""Every declared type through real nodes: registered, queried, merged, equal to DuckDB.

Five owners (shanghai, jiangsu, zhejiang, and anhui with its city hefei behind it, so a
relay merges too) each register their own Parquet file of one dataset declared with
``decimal(15,2)``, ``int8``/``int16``/``int32``, ``float32``, ``timestamp``,
``timestamptz`` (the file in Shanghai time, milliseconds), ``date``, ``bool`` and a
dictionary-encoded ``string``. Grouped and filtered SUM/AVG/COUNT/MIN/MAX (and a decimal
expression) over the federation equal DuckDB's answer on the pooled rows, loaded in the
declared types: decimals and integers exactly and in their type, floats within 1e-9
relative, timestamps, dates and decimals of MIN/MAX exactly and in their type.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from decimal import Decimal

import duckdb
import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway import descriptor
from gateway.client import ClientError
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.quality import arrow_schema
from tests.conftest import RunningFederation

pytestmark = pytest.mark.integration

OWNERS = ("shanghai", "jiangsu", "zhejiang", "anhui", "hefei")
DATASET = "typed_sales"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
COLUMNS = (
    ColumnSpec("region", "string"),
    ColumnSpec("category", "string"),
    ColumnSpec("price", "decimal(15,2)", lower=-1e6, upper=1e9),
    ColumnSpec("discount", "decimal(4,2)", lower=0, upper=0.1),
    ColumnSpec("qty", "int8", lower=-100, upper=100),
    ColumnSpec("units", "int16", lower=-30000, upper=30000),
    ColumnSpec("visits", "int32", lower=0, upper=2e9),
    ColumnSpec("ratio", "float32", lower=0, upper=100),
    ColumnSpec("seen", "timestamp"),
    ColumnSpec("seen_tz", "timestamptz"),
    ColumnSpec("day", "date"),
    ColumnSpec("flag", "bool"),
)
CONTROLS = {
    "region": "group_by,filter",
    "category": "group_by,filter",
    "price": "aggregate,filter,extremes",
    "discount": "aggregate,filter",
    "qty": "aggregate,filter,extremes",
    "units": "aggregate,filter",
    "visits": "aggregate,filter",
    "ratio": "aggregate,filter,extremes",
    "seen": "filter,extremes",
    "seen_tz": "filter,extremes",
    "day": "filter,extremes",
    "flag": "filter",
}


def _rows(seed: int, n: int) -> pa.Table:
    """One owner's rows, each column in a lossless form other than the declared one where
    there is one (the registration and the engine convert)."""
    rng = random.Random(seed)

    def maybe(value: object) -> object:
        return None if rng.random() < 0.05 else value

    start = dt.datetime(2024, 1, 1)
    return pa.table(
        {
            "region": pa.array(
                [rng.choice(["east", "west", "north", "south"]) for _ in range(n)]
            ).dictionary_encode(),
            "category": pa.array([maybe(rng.choice(["a", "b", "c"])) for _ in range(n)]),
            "price": pa.array(
                [maybe(Decimal(rng.randint(-(10**8), 10**11)) / 100) for _ in range(n)],
                pa.decimal128(15, 2),
            ),
            "discount": pa.array(
                [Decimal(rng.randint(0, 10)) / 100 for _ in range(n)], pa.decimal128(4, 2)
            ),
            "qty": pa.array([maybe(rng.randint(-100, 100)) for _ in range(n)], pa.int8()),
            "units": pa.array([rng.randint(-30000, 30000) for _ in range(n)], pa.int16()),
            "visits": pa.array([rng.randint(0, 2 * 10**9) for _ in range(n)], pa.int32()),
            "ratio": pa.array([maybe(rng.uniform(0, 100)) for _ in range(n)], pa.float32()),
            "seen": pa.array(
                [
                    maybe(start + dt.timedelta(microseconds=rng.randint(0, 10**13)))
                    for _ in range(n)
                ],
                pa.timestamp("us"),
            ),
            "seen_tz": pa.array(
                [
                    maybe(
                        (start + dt.timedelta(milliseconds=rng.randint(0, 10**10))).replace(
                            tzinfo=SHANGHAI
                        )
                    )
                    for _ in range(n)
                ],
                pa.timestamp("ms", tz="Asia/Shanghai"),
            ),
            "day": pa.array(
                [
                    maybe(dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 500)))
                    for _ in range(n)
                ],
                pa.date32(),
            ),
            "flag": pa.array([maybe(rng.random() < 0.5) for _ in range(n)]),
        }
    )


@pytest.fixture(scope="module")
def pooled(federation: RunningFederation) -> duckdb.DuckDBPyConnection:
    """Each owner registers its own file and grants it; the rows pooled in one DuckDB, in
    the declared types, in UTC (as every node's engine runs)."""
    tables = []
    for i, node in enumerate(OWNERS):
        root = federation.fed.data_dir(node)
        rows = _rows(seed=100 + i, n=1500 + 200 * i)
        pq.write_table(rows, root / f"{DATASET}.parquet")
        desc = DatasetDescriptor(
            name=DATASET,
            title="Sales of every type",
            description="",
            department="Test",
            level="L1",
            update_frequency="static",
            path=f"{DATASET}.parquet",
            format="parquet",
            columns=COLUMNS,
        )
        path = root / f"{DATASET}.toml"
        path.write_text(descriptor.dumps(desc))
        with federation.client(f"ops@{node}") as ops:
            ops.register(path)
        federation.grant(
            node,
            dataset=DATASET,
            grantee_kind="user",
            grantee="li.wei@shanghai",
            min_group_size=1,
            columns=CONTROLS,
        )
        tables.append(rows.cast(arrow_schema(desc)))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register(DATASET, pa.concat_tables(tables))
    return con


def _same(got: object, want: object) -> bool:
    """Floats within 1e-9 relative; integers, decimals, dates and timestamps exactly and
    of the same Python type (a decimal that came back as a float is a mismatch). DuckDB's
    pooled SUM of integers is a HUGEINT: an int here too."""
    if got is None or want is None:
        return got is None and want is None
    if isinstance(got, float) or isinstance(want, float):
        if not (isinstance(got, float) and isinstance(want, float)):
            return False
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(got, int) and isinstance(want, Decimal) and want.as_tuple().exponent == 0:
        return got == want  # an integer sum: BIGINT here, HUGEINT (DECIMAL(38,0)) pooled
    return type(got) is type(want) and got == want


def _check(federation: RunningFederation, pooled: duckdb.DuckDBPyConnection, sql: str) -> None:
    with federation.client("li.wei@shanghai") as c:
        result = c.query(sql)
    want = pooled.sql(sql).to_arrow_table()
    assert sorted(result.contributors) == sorted(OWNERS), sql

    def rows(table: pa.Table) -> list[tuple]:
        return sorted(
            (tuple(r.values()) for r in table.to_pylist()),
            key=lambda r: tuple((v is None, str(v)) for v in r),
        )

    got, expected = rows(result.table), rows(want)
    assert len(got) == len(expected), sql
    for g, w in zip(got, expected, strict=True):
        bad = [(i, x, y) for i, (x, y) in enumerate(zip(g, w, strict=True)) if not _same(x, y)]
        assert not bad, (sql, bad)
    for name in want.column_names:  # decimals, timestamps, dates keep their type
        wanted, typed = want.schema.field(name).type, result.table.schema.field(name).type
        if wanted == pa.decimal128(38, 0) and typed == pa.int64():
            continue  # an integer sum: exact as BIGINT (DuckDB's HUGEINT pooled)
        if pa.types.is_decimal(wanted) or pa.types.is_temporal(wanted):
            assert typed == wanted, (sql, name)


@pytest.mark.parametrize(
    "sql",
    [
        # every aggregate of every type, by a dictionary-encoded string
        "SELECT region, COUNT(*) AS n, COUNT(price) AS cp, SUM(price) AS sp, AVG(price) AS ap, "
        "MIN(price) AS lp, MAX(price) AS hp, SUM(qty) AS sq, AVG(qty) AS aq, MIN(qty) AS lq, "
        "MAX(qty) AS hq, SUM(units) AS su, AVG(units) AS au, SUM(visits) AS sv, "
        "AVG(visits) AS av, SUM(ratio) AS sr, AVG(ratio) AS ar, MIN(ratio) AS lr, "
        "MAX(ratio) AS hr, MIN(seen) AS ls, MAX(seen) AS hs, MIN(seen_tz) AS lt, "
        "MAX(seen_tz) AS ht, MIN(day) AS ld, MAX(day) AS hd "
        f"FROM {DATASET} GROUP BY region",
        # filtered on a decimal, a date, a zoned timestamp (a UTC literal) and an int8
        "SELECT category, COUNT(*) AS n, SUM(price) AS sp, AVG(price) AS ap, SUM(qty) AS sq, "
        "MIN(seen_tz) AS lt, MAX(day) AS hd "
        f"FROM {DATASET} WHERE price > 1000.50 AND day >= '2024-06-01' "
        "AND seen_tz < '2024-09-01 12:00:00' AND qty BETWEEN -50 AND 50 GROUP BY category",
        # two keys, a float32 filter and a naive timestamp filter
        "SELECT region, category, SUM(price) AS sp, SUM(visits) AS sv, MAX(seen) AS hs, "
        "VAR_POP(price) AS vp, STDDEV_SAMP(units) AS ds "
        f"FROM {DATASET} WHERE region IN ('east', 'west') AND ratio > 10.5 "
        "AND seen >= '2024-03-01 00:00:00' GROUP BY region, category",
        # no group, a boolean condition
        f"SELECT COUNT(price) AS cp, SUM(price) AS sp, AVG(price) AS ap, SUM(units) AS su "
        f"FROM {DATASET} WHERE flag",
        # HAVING and ORDER BY over a decimal sum, run by the home after the merge
        f"SELECT region, SUM(price) AS sp FROM {DATASET} GROUP BY region "
        "HAVING SUM(price) > 1000 ORDER BY sp DESC",
    ],
)
def test_typed_columns_answer_as_duckdb_on_the_pooled_rows(
    federation: RunningFederation, pooled: duckdb.DuckDBPyConnection, sql: str
) -> None:
    _check(federation, pooled, sql)


def test_a_decimal_expression_sums_exactly(
    federation: RunningFederation, pooled: duckdb.DuckDBPyConnection
) -> None:
    """Revenue as analysts write it: a DECIMAL(18,4) per row, summed as DECIMAL(38,4)."""
    _check(
        federation,
        pooled,
        "SELECT region, SUM(price * (1 - discount)) AS revenue, AVG(price * discount) AS ad, "
        f"SUM(CAST(qty AS INTEGER) * 2 + units) AS w FROM {DATASET} GROUP BY region",
    )


def test_the_catalog_shows_the_declared_types(
    federation: RunningFederation, pooled: duckdb.DuckDBPyConnection
) -> None:
    with federation.client("ops@jiangsu") as ops:
        listed = ops.catalog()
    (info,) = [d for d in listed.datasets if d.name == DATASET]
    assert [(c.name, c.type) for c in info.columns] == [(c.name, c.type) for c in COLUMNS]


def test_what_duckdb_would_overflow_on_is_refused_by_each_owner(
    federation: RunningFederation, pooled: duckdb.DuckDBPyConnection
) -> None:
    """``qty`` is an int8 declared within ±100: DuckDB computes ``qty * 2`` in int8 and
    fails on 100 * 2 (telling that such a row exists). The owner refuses it before
    anything runs, and nothing is released."""
    sql = f"SELECT SUM(qty * 2) AS s FROM {DATASET}"
    with pytest.raises(duckdb.OutOfRangeException):
        pooled.sql(sql).fetchall()
    releases = federation.releases()
    with federation.client("li.wei@shanghai") as c, pytest.raises(ClientError) as info:
        c.query(sql)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "column 'qty' can exceed an 8-bit integer" in str(info.value)
    assert federation.releases() == releases


def test_a_decimal_file_declared_as_a_float_is_refused_naming_both(
    federation: RunningFederation,
) -> None:
    root = federation.fed.data_dir("jiangsu")
    pq.write_table(
        pa.table({"price": pa.array([Decimal("1.50")], pa.decimal128(15, 2))}),
        root / "money.parquet",
    )
    desc = DatasetDescriptor(
        "money",
        "Money",
        "",
        "Test",
        "L1",
        "static",
        "money.parquet",
        "parquet",
        (ColumnSpec("price", "float64"),),
    )
    (root / "money.toml").write_text(descriptor.dumps(desc))
    with federation.client("ops@jiangsu") as ops, pytest.raises(ClientError) as info:
        ops.register(root / "money.toml")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        "column 'price' is declared float64 but the file holds decimal128(15, 2): "
        "declare it decimal(15,2)"
    ) in str(info.value)
