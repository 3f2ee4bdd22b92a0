"""Four holes of the federated SQL path a security review confirmed, each through the real
planner and a real owner (grants, release pipeline, DuckDB), none of them mocked:

1. an out-of-range ``substr`` position raised only when a row passed the WHERE;
2. ``substr(CASE ... END, ...)`` carried a CASE past the bucket and type checks;
3. several coarse keys of one filter-only column made one fine bucket;
4. an overflowing ``SUM`` on an exact grant raised only when rows passed the WHERE.

Each answer must be the same whether or not the row the WHERE describes exists: a
refusal before anything runs, or the same (suppressed) answer."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlglot import exp, parse_one

from federation.envelope import Envelope, Requester
from federation.partials import from_ipc
from federation.sql import parse, partial_query
from federation.sql.plan import Bucket
from gateway import typecheck
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.errors import InvalidArgument
from gateway.policy.store import GrantStore
from gateway.roles.owner import Owner
from tests.unit.owner_parts import OPERATOR, org_grant, owner_parts

ORG = "Shanghai Big Data Center"
ANALYST = Requester("analyst", "li.wei@shanghai", ORG)
ROWS = 60
CITIES = ("c0", "c1", "c2")
# idn 17 is in c2 and has 17 * 37 % 1000 = 629 employees; idn 3 and 6 are both in c0.
EMPLOYEES_OF_17 = 629

COLUMNS = (
    ColumnSpec("city", "string"),
    ColumnSpec("code", "string"),
    ColumnSpec("idn", "int64", lower=0.0, upper=100000.0),
    ColumnSpec("employees", "int64", lower=0.0, upper=100000.0),
    ColumnSpec("revenue", "float64", lower=0.0, upper=1000000.0),
    ColumnSpec("tag", "string"),
    ColumnSpec("ts", "timestamp"),
)
GRANTED = {
    "city": ("group_by", "filter"),
    "code": ("group_by",),
    "idn": ("filter",),
    "employees": ("aggregate", "filter"),
    "revenue": ("aggregate",),
    "tag": ("filter",),
    "ts": ("filter",),
}
# fx: L2 exact (k only); fs: L2 under the sticky noise; fd: L3 under DP.
DATASETS = {
    "fx": ("L2", {"exact": True}),
    "fs": ("L2", {}),
    "fd": ("L3", {"dp_epsilon": 1.0, "dp_budget": 1e9, "min_group_size": 10}),
}


@dataclass
class Node:
    owner: Owner
    grants: GrantStore


def _write(path: Path) -> None:
    rows = range(ROWS)
    start = dt.datetime(2020, 1, 1)
    pq.write_table(
        pa.table(
            {
                "city": [CITIES[i % 3] for i in rows],
                "code": [f"C{i % 7}{i:03d}" for i in rows],
                "idn": pa.array(list(rows), pa.int64()),
                "employees": pa.array([(i * 37) % 1000 for i in rows], pa.int64()),
                "revenue": pa.array([float((i * 7919) % 100000) for i in rows]),
                "tag": [f"t{i:04d}" for i in rows],
                "ts": pa.array([start + dt.timedelta(hours=i) for i in rows], pa.timestamp("us")),
            }
        ),
        path,
    )


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with owner_parts(tmp_path_factory.mktemp("review")) as parts:
        _write(parts.data / "firms.parquet")
        base = DatasetDescriptor(
            name="fx",
            title="Firms",
            description="test firms",
            department="test",
            level="L2",
            update_frequency="static",
            path=str(parts.data / "firms.parquet"),
            format="parquet",
            columns=COLUMNS,
        )
        for name, (level, extra) in DATASETS.items():
            desc = dataclasses.replace(base, name=name, level=level)
            parts.catalog.register(desc, by=OPERATOR, when="2026-01-01T00:00:00Z")
            parts.grants.add(org_grant(name, ORG, dict(GRANTED), **extra))
        yield Node(parts.owner, parts.grants)


def _ask(node: Node, sql: str) -> tuple[bool, str, list[dict]]:
    """(released, the refusal's reason or "", the released rows) of one query."""
    env = Envelope(
        request_id=f"r-{uuid.uuid4().hex[:12]}",  # one release per request id
        requester=ANALYST,
        home_node="shanghai",
        operation="query",
        body=sql,
        deadline=time.monotonic() + 20,
    )
    answer = node.owner.execute(env)
    report = answer.owners[0]
    if report.error is not None:
        return False, f"{report.error.code.name}: {report.error.reason}", []
    return True, "", from_ipc(answer.payload).to_pylist() if answer.payload else []


def _refused(node: Node, sql: str) -> str:
    """The subset's refusal of ``sql`` (the owner re-plans it: InvalidArgument)."""
    with pytest.raises(InvalidArgument) as info:
        _ask(node, sql)
    return str(info.value)


# --- 1. substr positions ---------------------------------------------------------------------

SUBSTR_ORACLE = (
    "SELECT substr(code, 1, {length}) AS p, COUNT(*) FROM {ds} "
    "WHERE idn = 17 AND employees > {v} GROUP BY p"
)


@pytest.mark.parametrize("ds", sorted(DATASETS))
def test_a_huge_substr_length_is_refused_whether_or_not_the_row_exists(node: Node, ds: str) -> None:
    """DuckDB raised "Substring length outside of supported range" only on a row that
    passed the WHERE: a binary search over ``employees > V`` read one firm's value."""
    said = set()
    for v in (EMPLOYEES_OF_17 - 1, EMPLOYEES_OF_17):  # the row passes; it does not
        said.add(_refused(node, SUBSTR_ORACLE.format(length=5000000000, ds=ds, v=v)))
    assert said == {
        "substr in GROUP BY takes whole-number positions from 1 to 1000: its length is 5000000000"
    }


@pytest.mark.parametrize(
    ("key", "what"),
    [
        ("substr(code, -1)", "its start is -1"),
        ("substr(code, 0, 2)", "its start is 0"),
        ("substr(code, 1, 0)", "its length is 0"),
        ("substr(code, 1.5, 2)", "its start is 1.5"),
        ("substr(code, 1, 1001)", "its length is 1001"),
        ("substring(code, 2e0, 1)", "its start is 2e0"),
    ],
)
def test_substr_positions_are_whole_numbers_from_1_to_1000(node: Node, key: str, what: str) -> None:
    message = _refused(node, f"SELECT COUNT(*) FROM fx GROUP BY {key}")
    assert message == f"substr in GROUP BY takes whole-number positions from 1 to 1000: {what}"


def test_a_substr_key_within_the_limits_is_answered_and_runs_under_try(node: Node) -> None:
    ok, reason, rows = _ask(node, "SELECT substr(code, 1, 1000) AS p, COUNT(*) FROM fx GROUP BY p")
    assert ok and rows == [], reason  # every code is a group of its own: all under k
    ok, _, rows = _ask(node, "SELECT substr(code, 1, 2) AS p, COUNT(*) AS n FROM fx GROUP BY p")
    assert ok and sorted(r["__g0"] for r in rows) == [f"C{i}" for i in range(7)]
    # A key that could fail on some row never raises there: it is NULL under TRY.
    sql = partial_query(parse("SELECT substr(code, 1, 2), COUNT(*) FROM t GROUP BY 1"), "t")
    assert "TRY(SUBSTRING(" in sql.upper()


# --- 2. substr over a CASE --------------------------------------------------------------------


@pytest.mark.parametrize("ds", sorted(DATASETS))
def test_substr_of_a_case_is_refused_like_the_bare_case(node: Node, ds: str) -> None:
    """``tag`` has filter, not group_by: the bare CASE is refused for it, and substr over
    the CASE carried it past that check."""
    bare = f"SELECT COUNT(*) FROM {ds} GROUP BY CASE WHEN tag = 't0017' THEN 'a' ELSE 'b' END"
    ok, reason, _ = _ask(node, bare)
    assert not ok and "column 'tag'" in reason and "group_by" in reason
    wrapped = (
        f"SELECT COUNT(*) FROM {ds} "
        "GROUP BY substr(CASE WHEN tag = 't0017' THEN 'a' ELSE 'b' END, 1, 1)"
    )
    assert _refused(node, wrapped) == (
        "substr in GROUP BY takes a column, not CASE: write substr(col, start, length)"
    )


@pytest.mark.parametrize("ds", sorted(DATASETS))
def test_days_of_a_timestamp_through_substr_of_a_case_are_refused(node: Node, ds: str) -> None:
    branches = " ".join(
        f"WHEN ts < TIMESTAMP '2020-01-0{d} 00:00:00' THEN 'd{d}'" for d in range(2, 5)
    )
    sql = f"SELECT substr(CASE {branches} ELSE 'later' END, 1, 9) AS day, COUNT(*) FROM {ds} "
    assert "takes a column, not CASE" in _refused(node, sql + "GROUP BY day")


@pytest.mark.parametrize("ds", sorted(DATASETS))
def test_a_conversion_inside_substr_is_no_existence_oracle(node: Node, ds: str) -> None:
    """``tag = 5`` converted every tag only where a row passed the WHERE (an error under
    DP exactly when idn 17 had more than V employees)."""
    sql = (
        "SELECT substr(CASE WHEN tag = 5 THEN code ELSE code END, 1, 2) AS p, COUNT(*) "
        f"FROM {ds} WHERE idn = 17 AND employees > {{v}} GROUP BY p"
    )
    said = {_refused(node, sql.format(v=v)) for v in (EMPLOYEES_OF_17 - 1, EMPLOYEES_OF_17)}
    assert said == {"substr in GROUP BY takes a column, not CASE: write substr(col, start, length)"}


def test_the_type_check_looks_inside_key_functions() -> None:
    """Whatever reaches the type check inside a key's function is typed like any value."""
    desc = DatasetDescriptor(
        name="fx",
        title="F",
        description="f",
        department="t",
        level="L2",
        update_frequency="static",
        path="/nowhere.parquet",
        format="parquet",
        columns=COLUMNS,
    )
    inner = parse_one("substr(CASE WHEN tag = 5 THEN code ELSE code END, 1, 2)", read="duckdb")
    assert isinstance(inner, exp.Substring)
    with pytest.raises(InvalidArgument, match="column 'tag' is a string: compare it with a string"):
        typecheck.value_kind(inner, desc)
    with pytest.raises(InvalidArgument, match=r"substr\(employees\) in GROUP BY: column"):
        typecheck.value_kind(parse_one("substr(employees, 1, 2)", read="duckdb"), desc)
    assert typecheck.value_kind(parse_one("substr(code, 1, 2)", read="duckdb"), desc).kind == (
        typecheck.STRING
    )


# --- 3. several coarse keys of one filter-only column ---------------------------------------

THRESHOLDS = ", ".join(f"CASE WHEN employees < {v} THEN 1 ELSE 0 END" for v in range(600, 610))
SHIFTED = ", ".join(f"width_bucket(employees, {o}, {100000 + o}, 500)" for o in (0, 50, 100))


@pytest.mark.parametrize("ds", sorted(DATASETS))
@pytest.mark.parametrize(("keys", "count"), [(THRESHOLDS, 10), (SHIFTED, 3)])
def test_a_filter_only_column_may_be_in_one_group_key_only(
    node: Node, ds: str, keys: str, count: int
) -> None:
    ok, reason, _ = _ask(node, f"SELECT COUNT(*) FROM {ds} GROUP BY {keys}")
    assert not ok
    assert reason == (
        f"PERMISSION_DENIED: column 'employees' is bucketed by {count} group keys; without the "
        "group_by control a column may be in one group key only (coarse keys of one column "
        "together make a fine one)"
    )


def test_one_coarse_key_of_a_filter_only_column_is_still_answered(node: Node) -> None:
    for key in (
        "CASE WHEN employees < 600 THEN 1 ELSE 0 END",
        "width_bucket(employees, 0, 100000, 500)",
    ):
        ok, reason, rows = _ask(node, f"SELECT city, COUNT(*) FROM fx GROUP BY city, {key}")
        assert ok and rows, reason
    # a group_by column may be in any number of keys
    two = "CASE WHEN city = 'c0' THEN 1 ELSE 0 END, CASE WHEN city = 'c1' THEN 1 ELSE 0 END"
    ok, reason, rows = _ask(node, f"SELECT COUNT(*) FROM fx GROUP BY {two}")
    assert ok and sum(r["__n"] for r in rows) == ROWS, reason


def test_date_parts_of_a_filter_only_column_count_as_one_key(node: Node) -> None:
    """year, quarter and month are each a function of the month: together no finer than
    ``date_trunc('month', ts)``, which a filter-only timestamp allows alone."""
    parts = "year(ts), quarter(ts), month(ts), date_trunc('month', ts)"
    ok, reason, rows = _ask(node, f"SELECT COUNT(*) FROM fx GROUP BY {parts}")
    assert ok and sum(r["__n"] for r in rows) == ROWS, reason
    ok, reason, _ = _ask(
        node, "SELECT COUNT(*) FROM fx GROUP BY month(ts), CASE WHEN ts IS NULL THEN 1 ELSE 0 END"
    )
    assert not ok and "column 'ts' is bucketed by 2 group keys" in reason


def test_every_key_of_a_column_is_one_bucket_of_it_in_the_plan() -> None:
    """What the owner counts: a single threshold is a bucket too (of two groups)."""
    plan = parse(f"SELECT COUNT(*) FROM t GROUP BY {THRESHOLDS}, city")
    assert plan.buckets == tuple(Bucket("employees", count=2) for _ in range(10))


# --- 4. sums that overflow ------------------------------------------------------------------


def test_an_overflowing_sum_says_nothing_of_one_row(node: Node) -> None:
    """``SUM(99999999999999999999)`` failed only where idn 17 passed ``employees > V``
    (the owner cast the HUGEINT sum to BIGINT); now the group is NULL-valued and goes
    through k like any other."""
    sql = (
        "SELECT city, SUM({value}) AS s, COUNT(*) AS n FROM fx "
        "WHERE idn = 17 AND employees > {v} GROUP BY city"
    )
    for v in (EMPLOYEES_OF_17 - 1, EMPLOYEES_OF_17):
        assert _ask(node, sql.format(value=99999999999999999999, v=v)) == (True, "", [])
    # without GROUP BY: the same answer as a sum that cannot overflow, row or no row
    total = "SELECT SUM({value}) FROM fx WHERE idn = 17 AND employees > {v}"
    for v in (EMPLOYEES_OF_17 - 1, EMPLOYEES_OF_17):
        huge = _ask(node, total.format(value=99999999999999999999, v=v))
        assert huge[0] and huge == _ask(node, total.format(value=1, v=v))


def test_a_sum_past_64_bits_over_two_rows_says_nothing(node: Node) -> None:
    sql = "SELECT city, SUM(9223372036854775807) FROM fx WHERE idn IN ({ids}) GROUP BY city"
    assert _ask(node, sql.format(ids="3, 6")) == (True, "", [])  # two rows of c0: under k
    assert _ask(node, sql.format(ids="1003, 1006")) == (True, "", [])  # no rows
    total = "SELECT SUM({value}) FROM fx WHERE idn IN (3, 6)"
    huge = _ask(node, total.format(value=9223372036854775807))
    assert huge[0] and huge == _ask(node, total.format(value=1))


def test_a_large_group_whose_sum_leaves_64_bits_gets_null(node: Node) -> None:
    ok, reason, rows = _ask(
        node, "SELECT city, SUM(9223372036854775807) AS s, COUNT(*) AS n FROM fx GROUP BY city"
    )
    assert ok, reason
    assert sorted((r["city"], r["__n"], r["__s___v0"]) for r in rows) == [
        (c, ROWS // 3, None) for c in CITIES
    ]


@pytest.mark.parametrize("city", ["c0", "nowhere"])
def test_a_decimal_sum_that_could_overflow_is_refused_before_it_runs(node: Node, city: str) -> None:
    """DuckDB raises on a DECIMAL(38, 30) sum past 10^8: whether it did said how large
    the matching rows' sum was. Refused, rows or none."""
    ok, reason, _ = _ask(
        node, f"SELECT SUM(CAST(revenue * 99 AS DECIMAL(38,30))) FROM fx WHERE city = '{city}'"
    )
    assert not ok
    assert reason == (
        "INVALID_ARGUMENT: SUM(CAST(revenue * 99 AS DECIMAL(38, 30))): its sum can exceed "
        "DECIMAL(38,30), the type DuckDB sums it in, for values within the declared bounds: "
        "cast it to a DECIMAL with fewer digits after the point, or to DOUBLE"
    )


def test_sums_that_fit_stay_exact(node: Node) -> None:
    ok, reason, rows = _ask(
        node,
        "SELECT SUM(CAST(revenue AS DECIMAL(18,2))) AS r, SUM(employees) AS e FROM fx",
    )
    assert ok, reason
    (row,) = rows
    assert row["__s_employees"] == sum((i * 37) % 1000 for i in range(ROWS))
    assert float(row["__s___v0"]) == sum(float((i * 7919) % 100000) for i in range(ROWS))
    ok, reason, _ = _ask(node, "SELECT SUM(100000000000000000000000000000) FROM fx")
    assert not ok and "can exceed a 128-bit integer" in reason
