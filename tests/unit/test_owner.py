"""The owner and its release pipeline, with real parts: SQLite state, grants, audit log,
DuckDB, the node's key and a CA-issued certificate. No network: the owner has no
children here, so its relay never calls out."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from federation.envelope import Envelope, Requester
from federation.membership import Member, Membership
from federation.outcome import Code
from federation.partials import from_ipc
from gateway import identity, limits, receipts
from gateway.audit import AuditLog
from gateway.catalog import Catalog
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.errors import DeadlineExceeded, ResourceExhausted
from gateway.policy.model import Grant
from gateway.receipts import Signer
from gateway.release import pipeline
from gateway.roles.relay import Relay
from tests.unit.owner_parts import OPERATOR, OwnerParts, org_grant, owner_parts

ORG = "Shanghai Big Data Center"
ANALYST = Requester("analyst", "li.wei@shanghai", ORG)
SQL = "SELECT city, COUNT(*) AS n, SUM(revenue) AS r FROM firms GROUP BY city"


Parts = OwnerParts


def _firms(path: Path) -> None:
    cities = ["hefei"] * 40 + ["wuhu"] * 6 + ["bengbu"] * 2  # bengbu is under k = 5
    pq.write_table(
        pa.table(
            {
                "city": cities,
                "revenue": pa.array([float(i * 10) for i in range(len(cities))]),
                "employees": pa.array(list(range(len(cities))), pa.int64()),
            }
        ),
        path,
    )


def _descriptor(path: Path, level: str = "L2") -> DatasetDescriptor:
    return DatasetDescriptor(
        name="firms" if level != "L4" else "core_firms",
        title="Firms",
        description="test firms",
        department="test",
        level=level,
        update_frequency="static",
        path=str(path),
        format="parquet",
        columns=(
            ColumnSpec("city", "string"),
            ColumnSpec("revenue", "float64", lower=0.0, upper=1000.0),
            ColumnSpec("employees", "int64", lower=0.0, upper=100.0),
        ),
    )


@pytest.fixture()
def parts(tmp_path: Path) -> Iterator[Parts]:
    with owner_parts(tmp_path) as made:
        _firms(made.data / "firms.parquet")
        made.catalog.register(
            _descriptor(made.data / "firms.parquet"), by=OPERATOR, when="2026-01-01T00:00:00Z"
        )
        yield made


def _grant(parts: Parts, **overrides: object) -> Grant:
    fields: dict = {
        "dataset": "firms",
        "columns": {"city": ("group_by",), "revenue": ("aggregate",)},
    }
    fields |= overrides
    return parts.grants.add(org_grant(fields.pop("dataset"), ORG, fields.pop("columns"), **fields))


def _env(sql: str = SQL, *, explain: bool = False, seconds: float = 10.0) -> Envelope:
    return Envelope(
        request_id=f"r-{uuid.uuid4().hex[:12]}",  # one release per request id
        requester=ANALYST,
        home_node="shanghai",
        operation="query",
        body=sql,
        explain=explain,
        deadline=time.monotonic() + seconds,
    )


def _kinds(audit: AuditLog) -> list[str]:
    return [e.data["kind"] for e in audit.entries()]


def test_a_release_is_suppressed_spent_logged_and_signed(parts: Parts) -> None:
    grant = _grant(parts, exact=True)  # the owner's opt-out of L2 noise: exact, k only
    answer = parts.owner.execute(_env())
    assert answer.published and len(answer.owners) == 1
    report = answer.owners[0]
    assert report.ok and report.grant_id == grant.id
    got = sorted(from_ipc(answer.payload).to_pylist(), key=lambda r: r["city"])
    con = duckdb.connect()
    want = con.execute(
        "SELECT city, COUNT(*), SUM(revenue) FROM read_parquet(?) GROUP BY city "
        "HAVING COUNT(*) >= 5 ORDER BY city",
        [str(parts.data / "firms.parquet")],
    ).fetchall()
    assert [(r["city"], r["__n"]) for r in got] == [(c, n) for c, n, _ in want]
    assert report.groups_released == 2 and not report.l2_noise  # bengbu: 2 < 5
    assert parts.grants.get(grant.id).uses == 1
    receipt = receipts.Receipt.from_json(report.receipt)
    assert receipts.verify(receipt, parts.bundle) == "anhui"
    entry = next(e for e in parts.audit.entries() if e.data["kind"] == "release")
    assert receipt.body["audit_seq"] == entry.seq and receipt.body["audit_hash"] == entry.hash
    assert entry.data["result_digest"] == receipts.digest(answer.payload)
    assert entry.data["requester"] == str(ANALYST) and entry.data["operation"] == "query"


def _counts(payload: bytes) -> dict[str, tuple[int, float]]:
    return {r["city"]: (r["__n"], r["__s_revenue"]) for r in from_ipc(payload).to_pylist()}


def test_l2_answers_carry_sticky_noise_by_default(parts: Parts) -> None:
    """No opt-out: counts and sums are noised, the same way every time the same rows are
    asked for (however the question is written), and the hidden columns stay home."""
    _grant(parts, columns={"city": ("group_by", "filter"), "revenue": ("aggregate",)})
    first = parts.owner.execute(_env())
    assert first.owners[0].l2_noise
    table = from_ipc(first.payload)
    assert not [c for c in table.column_names if c.startswith(("__fp", "__lo", "__hi"))]
    got = _counts(first.payload)
    # bengbu (2 rows) is withheld; hefei (40) passes the noisy threshold k + u (u at most
    # 30) always; wuhu (6) may go either way
    assert "hefei" in got and "bengbu" not in got
    exact = {"hefei": (40, sum(i * 10.0 for i in range(40)))}
    assert got["hefei"] != exact["hefei"]  # noised (a zero draw on both is ~impossible)
    assert _counts(parts.owner.execute(_env()).payload) == got  # asked again: the same
    rewritten = "SELECT city, SUM(revenue) AS r, COUNT(*) AS n FROM firms GROUP BY city"
    assert _counts(parts.owner.execute(_env(rewritten)).payload) == got
    # A condition matching every row adds its own layer: a different answer.
    padded = parts.owner.execute(_env(SQL.replace("GROUP BY", "WHERE city <> 'x' GROUP BY")))
    assert _counts(padded.payload) != got


def test_an_l2_total_of_no_rows_is_withheld_like_one_of_a_few(parts: Parts) -> None:
    """A "0" beside a withheld "1" would tell whether the one entity described exists."""
    _grant(parts, columns={"city": ("filter",), "revenue": ("aggregate",)})
    for city in ("nowhere", "bengbu"):  # no rows; 2 rows (under k = 5)
        sql = f"SELECT COUNT(*), SUM(revenue) FROM firms WHERE city = '{city}'"
        answer = parts.owner.execute(_env(sql))
        assert answer.owners[0].ok and from_ipc(answer.payload).num_rows == 0


def _register(parts: Parts, name: str, **changes: object) -> None:
    """Another name for the firms file, its descriptor changed as asked."""
    desc = dataclasses.replace(_descriptor(parts.data / "firms.parquet"), name=name, **changes)
    operator = OPERATOR
    parts.catalog.register(desc, by=operator, when="2026-01-01T00:00:00Z")


def test_l2_noise_is_drawn_for_the_data_not_its_name(parts: Parts) -> None:
    """The same file under two names draws the same noise: an analyst granted both has
    nothing to average."""
    _register(parts, "firms_copy")
    for dataset in ("firms", "firms_copy"):
        _grant(parts, dataset=dataset, columns={"city": ("group_by",), "revenue": ("aggregate",)})
    first = parts.owner.execute(_env())
    copy = parts.owner.execute(_env(SQL.replace("FROM firms", "FROM firms_copy")))
    assert first.owners[0].l2_noise and _counts(first.payload) == _counts(copy.payload)


def test_l2_noise_leaves_min_max_and_empty_columns_as_they_are(parts: Parts) -> None:
    """MIN and MAX of an L1 column in an L2 query pass through (they are L1 only), and a
    group whose aggregated column has no value keeps its 0 count and NULL sum."""
    columns = tuple(
        dataclasses.replace(c, level="L1" if c.name == "employees" else "L2")
        for c in _descriptor(parts.data / "firms.parquet").columns
    )
    _register(parts, "firms_mixed", level="L1", columns=columns)
    _grant(
        parts,
        dataset="firms_mixed",
        columns={"city": ("group_by",), "employees": ("aggregate",), "revenue": ("aggregate",)},
    )
    sql = (
        "SELECT city, MIN(employees) AS lo, MAX(employees) AS hi, SUM(revenue) AS r, "
        "COUNT(employees) AS c FROM firms_mixed GROUP BY city"
    )
    answer = parts.owner.execute(_env(sql))
    assert answer.owners[0].ok and answer.owners[0].l2_noise, answer.owners[0].error
    rows = {r["city"]: r for r in from_ipc(answer.payload).to_pylist()}
    assert (rows["hefei"]["__min_employees"], rows["hefei"]["__max_employees"]) == (0, 39)
    if "wuhu" in rows:  # 6 rows: under the noisy threshold or not
        assert (rows["wuhu"]["__min_employees"], rows["wuhu"]["__max_employees"]) == (40, 45)


def test_a_bucket_is_judged_over_the_data_beyond_its_declared_bounds_on_l1(
    parts: Parts,
) -> None:
    """Declared bounds are clamping bounds nobody checks against the data: employees
    declared [0, 10] hold values to 47, so ``floor(employees / 0.045)`` makes over 1 000
    buckets of a filter-only column (about 223 over the declared bounds alone); on L1,
    where the measured range is public, refused. Over bounds that hold the data the check
    is as before."""
    for name, upper in (("firms_narrow", 10.0), ("firms_wide", 40.0)):
        columns = tuple(
            dataclasses.replace(c, upper=upper) if c.name == "employees" else c
            for c in _descriptor(parts.data / "firms.parquet").columns
        )
        _register(parts, name, columns=columns, level="L1")
        _grant(parts, dataset=name, columns={"employees": ("filter",)}, exact=True)
    sql = "SELECT floor(employees / {}) AS b, COUNT(*) AS n FROM {} GROUP BY b"
    refused = parts.owner.execute(_env(sql.format(0.045, "firms_narrow"))).owners[0]
    assert not refused.ok and "about 1045 groups" in str(refused.error), refused.error
    # 47 / 0.05 + 1 = 941 buckets over the data (40 / 0.05 + 1 = 801 over the bounds)
    allowed = parts.owner.execute(_env(sql.format(0.05, "firms_wide"))).owners[0]
    assert allowed.ok, allowed.error


@pytest.mark.parametrize("level", ["L2", "L3"])
def test_a_bucket_refusal_beyond_l1_says_nothing_of_the_measured_range(
    parts: Parts, level: str
) -> None:
    """Beyond L1 the measured minimum and maximum are never shown: ``floor(staff /
    0.001)`` was refused with "about 5115001 groups", the measured span (3 to 5118) to
    the bucket's width, through --explain and under DP, for nothing (review, 2026-12-05).
    Two files of different measured ranges, one declaration: the same answers, from the
    declared bounds alone; a column without them has no range beyond L1."""
    outcomes = []
    for name, staff in (("small", [3, 5118]), ("large", [-40, 90000])):
        rows = [staff[i % 2] for i in range(40)]
        pq.write_table(
            pa.table({"city": ["hefei"] * 40, "staff": pa.array(rows, pa.int64())}),
            parts.data / f"{name}.parquet",
        )
        for bounded in (True, False):
            dataset = f"{name}_{'bounded' if bounded else 'free'}"
            spec = ColumnSpec("staff", "int64", lower=0.0, upper=5000.0)
            if not bounded:
                spec = ColumnSpec("staff", "int64")
            desc = dataclasses.replace(
                _descriptor(parts.data / f"{name}.parquet"),
                name=dataset,
                level=level,
                columns=(ColumnSpec("city", "string"), spec),
            )
            parts.catalog.register(desc, by=OPERATOR, when="2026-01-01T00:00:00Z")
            dp = {"dp_epsilon": 0.5, "dp_budget": 1e9, "min_group_size": 10}
            _grant(
                parts,
                dataset=dataset,
                columns={"staff": ("filter",)},
                **(dp if level == "L3" else {"exact": True}),
            )
        seen = []
        for bounded in ("bounded", "free"):
            for width in (0.001, 1, 5, 50):
                sql = (
                    f"SELECT floor(staff / {width}) AS b, COUNT(*) FROM {name}_{bounded} GROUP BY b"
                )
                for explain in (True, False):
                    report = parts.owner.execute(_env(sql, explain=explain)).owners[0]
                    seen.append((report.ok, str(report.error)))
        outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
    assert "about 5000001 groups" in outcomes[0][0][1]  # the declared [0, 5000]
    assert "no declared bounds" in outcomes[0][8][1]  # no range without them beyond L1
    assert outcomes[0][6][0]  # width 50 over [0, 5000]: 101 buckets, allowed


@pytest.mark.parametrize(
    ("sql", "grant"),
    [
        (  # L2 noise: a value's condition tests a group_by column, however it is spelled
            "SELECT city, COUNT(*) FILTER (WHERE {employees} > 5) AS n FROM firms GROUP BY city",
            {"columns": {"city": ("group_by",), "employees": ("group_by", "filter")}},
        ),
        (  # DP: the expression's interval from the column's declared bounds
            "SELECT SUM({revenue} * 2) AS s FROM firms",
            {
                "columns": {"revenue": ("aggregate",)},
                "dp_epsilon": 0.5,
                "dp_budget": 100.0,
                "min_group_size": 10,
            },
        ),
    ],
)
def test_a_columns_spelling_does_not_change_the_decision(
    parts: Parts, sql: str, grant: dict
) -> None:
    """Identifiers ignore case: ``Staff`` is ``staff``. The L2 noise's check of a value's
    condition and the DP interval of an expression keyed columns by the name as written,
    so ``COUNT(*) FILTER (WHERE Staff > 5)`` was refused under L2 though staff had
    group_by, and ``SUM(Revenue * 2)`` under DP with "column Revenue has no declared
    bounds" (review, 2026-12-05)."""
    _grant(parts, **grant)
    outcomes = []
    for spelling in ({"employees": "employees", "revenue": "revenue"},
                     {"employees": "Employees", "revenue": "REVENUE"}):  # fmt: skip
        report = parts.owner.execute(_env(sql.format(**spelling))).owners[0]
        outcomes.append((report.ok, report.error))
    assert outcomes[0] == outcomes[1] and outcomes[0][0], outcomes


def test_too_many_tests_in_a_condition_are_refused_before_anything_runs(parts: Parts) -> None:
    grant = _grant(parts, columns={"city": ("filter",), "revenue": ("aggregate",)})
    names = ", ".join(f"'c{i}'" for i in range(70))
    answer = parts.owner.execute(_env(f"SELECT SUM(revenue) FROM firms WHERE city IN ({names})"))
    report = answer.owners[0]
    assert report.error is not None and report.error.code == Code.INVALID_ARGUMENT
    assert "more than 64 single tests" in report.error.reason
    assert parts.grants.get(grant.id).uses == 0 and "release" not in _kinds(parts.audit)


def test_no_grant_is_refused_audited_and_releases_nothing(parts: Parts) -> None:
    answer = parts.owner.execute(_env())
    report = answer.owners[0]
    assert not report.ok and report.error is not None
    assert report.error.code == Code.PERMISSION_DENIED and "no grant" in report.error.reason
    assert answer.payload == b"" and "release" not in _kinds(parts.audit)
    refused = next(e.data for e in parts.audit.entries() if e.data["kind"] == "query.refused")
    assert refused["code"] == "PERMISSION_DENIED" and refused["dataset"] == "firms"


def test_a_forbidden_column_is_refused_and_spends_nothing(parts: Parts) -> None:
    grant = _grant(parts)
    answer = parts.owner.execute(_env("SELECT SUM(revenue) FROM firms WHERE employees > 3"))
    report = answer.owners[0]
    assert report.error is not None and "may not be used as filter" in report.error.reason
    assert parts.grants.get(grant.id).uses == 0 and "release" not in _kinds(parts.audit)


def test_a_dry_run_explains_and_spends_nothing(parts: Parts) -> None:
    grant = _grant(parts)
    answer = parts.owner.execute(_env(explain=True))
    report = answer.owners[0]
    assert report.ok and report.explanation is not None and answer.payload == b""
    assert report.explanation.grant_id == grant.id and report.explanation.min_group_size == 5
    assert dict(report.explanation.columns) == {"city": ("group_by",), "revenue": ("aggregate",)}
    assert parts.grants.get(grant.id).uses == 0 and "release" not in _kinds(parts.audit)


def test_a_release_past_its_deadline_spends_nothing(parts: Parts) -> None:
    grant = _grant(parts)
    answer = parts.owner.execute(_env(seconds=0.0))
    report = answer.owners[0]
    assert report.error is not None and report.error.code == Code.DEADLINE_EXCEEDED
    assert parts.grants.get(grant.id).uses == 0 and "release" not in _kinds(parts.audit)


def test_a_used_up_grant_stops_the_second_release(parts: Parts) -> None:
    grant = _grant(parts, max_uses=1)
    assert parts.owner.execute(_env()).owners[0].ok
    second = parts.owner.execute(_env()).owners[0]
    assert second.error is not None and second.error.code == Code.PERMISSION_DENIED
    assert parts.grants.get(grant.id).uses == 1 and _kinds(parts.audit).count("release") == 1


def test_core_data_is_not_published(parts: Parts) -> None:
    operator = OPERATOR
    core = _descriptor(parts.data / "firms.parquet", level="L4")
    parts.catalog.register(core, by=operator, when="2026-01-01T00:00:00Z")
    answer = parts.owner.execute(_env("SELECT COUNT(*) FROM core_firms"))
    assert not answer.published and answer.owners == () and answer.payload == b""
    refused = [e.data for e in parts.audit.entries() if e.data["kind"] == "query.refused"]
    assert refused and refused[-1]["dataset"] == "core_firms" and refused[-1]["code"] == "NOT_FOUND"


# --- the pipeline's own steps ---------------------------------------------------------------


def test_check_size_refuses_an_oversized_payload() -> None:
    limits.check_size(b"x" * 10, 10)
    with pytest.raises(ResourceExhausted, match="11 bytes, over the 10-byte"):
        limits.check_size(b"x" * 11, 10)


def test_check_deadline_refuses_a_late_release() -> None:
    pipeline.check_deadline(time.monotonic() + 5)
    with pytest.raises(DeadlineExceeded):
        pipeline.check_deadline(time.monotonic() - 0.001)


def test_an_owner_refuses_an_overlong_purpose_even_from_a_member_home(tmp_path: Path) -> None:
    """The purpose is signed, logged and audited: an owner caps it whatever the home sent."""
    from federation.envelope import MAX_PURPOSE_CHARS
    from gateway.errors import InvalidArgument
    from gateway.roles.vouching import Vouching

    ca = tmp_path / "ca"
    identity.init_ca(ca)
    key_pem, csr = identity.make_csr("node", "shanghai", ORG, ["127.0.0.1"])
    identity.write_private(tmp_path / "home.key", key_pem)
    signer = Signer(identity.load_key(tmp_path / "home.key"), identity.sign_csr(ca, csr))
    members = Membership(
        "test",
        1,
        "2026-01-01T00:00:00Z",
        (
            Member("shanghai", ORG, "127.0.0.1:1", "province"),
            Member("anhui", "Anhui bureau", "127.0.0.1:2", "province"),
        ),
    )
    bundle = identity.load_bundle(ca / identity.CA_CERT)
    home = Vouching("shanghai", lambda: members, signer, bundle)
    owner = Vouching("anhui", lambda: members, signer, bundle)
    fine = home.sign(_env())
    assert owner.check("shanghai", fine) == ANALYST
    long = home.sign(
        Envelope(
            request_id="r-2",
            requester=ANALYST,
            home_node="shanghai",
            operation="query",
            body=SQL,
            purpose="x" * (MAX_PURPOSE_CHARS + 1),
        )
    )
    with pytest.raises(InvalidArgument, match="purpose may be at most"):
        owner.check("shanghai", long)


def test_a_relayed_request_needs_its_homes_certificate_in_force(tmp_path: Path) -> None:
    """Review (2026-12-04): a relayed request's home signature was checked against the
    CA only, so a province could pass on what a home signed with a revoked key."""
    from gateway.errors import PermissionDenied
    from gateway.roles.vouching import Vouching

    ca = tmp_path / "ca"
    identity.init_ca(ca)
    key_pem, csr = identity.make_csr("node", "shanghai", ORG, ["127.0.0.1"])
    identity.write_private(tmp_path / "home.key", key_pem)
    home_cert = identity.sign_csr(ca, csr)
    signer = Signer(identity.load_key(tmp_path / "home.key"), home_cert)
    members = Membership(
        "test",
        1,
        "2026-01-01T00:00:00Z",
        (
            Member("shanghai", ORG, "127.0.0.1:1", "province"),
            Member("anhui", "Anhui bureau", "127.0.0.1:2", "province"),
            Member("hefei", "Hefei bureau", "127.0.0.1:3", "city", parent="anhui"),
        ),
    )
    bundle = identity.load_bundle(ca / identity.CA_CERT)
    crl = identity.RevocationList(ca / identity.CA_CRL, bundle)
    crl.load()
    home = Vouching("shanghai", lambda: members, signer, bundle)
    city = Vouching(
        "hefei", lambda: members, signer, bundle, lambda c: identity.not_in_force(c, crl)
    )
    signed = home.sign(_env())
    assert city.check("anhui", signed) == ANALYST  # relayed by its parent, in force
    serial = identity.identity_of_pem(home_cert).serial
    identity.revoke(ca, int(serial, 16))
    with pytest.raises(PermissionDenied) as info:
        city.check("anhui", signed)
    assert info.value.message == (
        "relayed request not vouched for by home node shanghai: "
        f"signer certificate {serial} has been revoked"
    )


def test_declared_categories_survive_a_restart(parts: Parts, tmp_path: Path) -> None:
    """The catalog keeps descriptors as JSON in its state; read back (a node's restart)
    a column's categories are a tuple again, so a descriptor stays hashable."""
    desc = _descriptor(tmp_path / "data" / "firms.parquet")
    columns = (ColumnSpec("city", "string", categories=("Hefei", "Wuhu")), *desc.columns[1:])
    _register(parts, "firms_cat", columns=columns)
    again = Catalog(parts.state, (tmp_path / "data",), "Anhui bureau")
    entry = again.get("firms_cat")
    assert entry is not None
    assert entry.descriptor.columns[0].categories == ("Hefei", "Wuhu")
    assert hash(entry.descriptor)


def test_equal_rows_by_different_means_are_not_equal_answers(parts: Parts) -> None:
    """Review finding: ``X OR (v AND t)`` and ``X AND NOT (v AND t)`` select the same rows
    exactly when t fails for v, and drew the same noise (same rows, same tests): equal
    answers read t. A layer seeded by the WHERE's logic draws them apart; spellings of
    one condition still draw alike."""
    _grant(
        parts,
        columns={"city": ("filter",), "employees": ("filter",), "revenue": ("aggregate",)},
    )

    def answer(where: str) -> object:
        payload = parts.owner.execute(_env(f"SELECT SUM(revenue) AS r FROM firms WHERE {where}"))
        return from_ipc(payload.payload).column("__s_revenue")[0].as_py()

    test = "city = 'wuhu' AND employees <= 20"  # wuhu's employees are 40..45: never holds
    either, neither = (
        answer(f"city = 'hefei' OR ({test})"),
        answer(f"city = 'hefei' AND NOT ({test})"),
    )
    assert either is not None and neither is not None and either != neither
    assert answer(f"city = 'hefei' OR ({test})") == either  # sticky
    for spelling in (  # the same condition, spelled otherwise: the same answer
        "(employees <= 20 AND city = 'wuhu') OR city = 'hefei'",
        "city IN ('hefei') OR (city IN ('wuhu') AND employees <= 20)",
    ):
        assert answer(spelling) == either, spelling
    # A second review: every test given a twin (another spelling of it) defeated a layer
    # seeded by the rows with each test forced; the logic itself tells these apart.
    for bound in (40, 45):  # the one wuhu firm with 45 employees: the test fails, holds
        twins = (
            f"employees = 45 AND employees BETWEEN 45 AND 45 AND city = 'wuhu' "
            f"AND employees <= {bound} AND NOT (employees > {bound})"
        )
        assert answer(f"city = 'hefei' OR ({twins})") != answer(
            f"city = 'hefei' AND NOT ({twins})"
        ), bound


def test_logic_hidden_in_one_test_or_in_a_case_key_draws_its_own_noise(parts: Parts) -> None:
    """Review (2026-12-04, night): a single test can hold logic of its own (a CASE, or
    arithmetic), and a CASE key chooses groups as a WHERE chooses rows; named by their
    rows alone, "X" and "one test holding X OR (v AND t)" drew the same noise exactly
    when t failed, and equal answers read an employee count in 17 queries."""
    _grant(
        parts,
        columns={
            "city": ("filter", "group_by"),
            "employees": ("filter",),
            "revenue": ("aggregate",),
        },
    )

    def answer(sql: str) -> list[object]:
        payload = parts.owner.execute(_env(sql)).payload
        return from_ipc(payload).column("__s_revenue").to_pylist()

    def where(condition: str) -> list[object]:
        return answer(f"SELECT SUM(revenue) AS r FROM firms WHERE {condition}")

    test = "city = 'wuhu' AND employees <= 20"  # never holds: the same rows as hefei's
    plain = where("city = 'hefei'")
    assert plain[0] is not None
    assert where(f"CASE WHEN city = 'hefei' OR ({test}) THEN 1 ELSE 0 END = 1") != plain
    ten_up = where("employees >= 10")  # 38 rows: over any threshold's draw
    assert ten_up and ten_up[0] is not None
    assert where("LEAST(GREATEST(employees - 9, 0), 1) >= 1") != ten_up
    assert where("10 <= employees") == ten_up  # plain spellings still draw alike

    def by_case(logic: str) -> list[object]:
        return answer(
            f"SELECT CASE WHEN {logic} THEN 1 ELSE 0 END AS g, SUM(revenue) AS r "
            "FROM firms GROUP BY g ORDER BY g"
        )

    either = by_case(f"city = 'hefei' OR ({test})")
    neither = by_case(f"city = 'hefei' AND NOT ({test})")
    assert either and neither and either != neither  # group 1: hefei's 40 rows in both
    assert by_case(f"city = 'hefei' OR ({test})") == either  # sticky

    # The same conditions mapped to other labels choose other groups: a second review
    # read t from a key whose one THEN label changed (1 or 0 for the rows of t).
    def labelled(label: int) -> list[object]:
        return answer(
            f"SELECT CASE WHEN city = 'hefei' THEN 1 WHEN {test} THEN {label} ELSE 0 END "
            "AS g, SUM(revenue) AS r FROM firms GROUP BY g ORDER BY g"
        )

    assert labelled(1) and labelled(0) and labelled(1) != labelled(0)


def test_a_values_own_condition_draws_its_own_meaning(parts: Parts) -> None:
    """Review (2026-12-04, night): a value's CASE or FILTER chooses its rows as a WHERE
    does; ``SUM(CASE WHEN X OR (v AND t) ...)`` and its AND NOT twin were equal exactly
    when t failed."""
    _grant(
        parts,
        columns={
            "city": ("filter", "group_by"),
            "employees": ("filter", "group_by"),
            "revenue": ("aggregate",),
        },
    )
    test = "city = 'wuhu' AND employees <= 20"  # never holds

    def value(sql: str) -> list[object]:
        table = from_ipc(parts.owner.execute(_env(sql)).payload)
        return [table.column(c).to_pylist() for c in table.column_names if c.startswith("__s")]

    either = value(f"SELECT SUM(CASE WHEN city = 'hefei' OR ({test}) THEN revenue END) FROM firms")
    neither = value(
        f"SELECT SUM(CASE WHEN city = 'hefei' AND NOT ({test}) THEN revenue END) FROM firms"
    )
    assert either and neither and either != neither
    counted = value(
        f"SELECT SUM(revenue) FILTER (WHERE city = 'hefei' OR ({test})) AS r FROM firms"
    )
    assert counted and counted != value(
        f"SELECT SUM(revenue) FILTER (WHERE city = 'hefei' AND NOT ({test})) AS r FROM firms"
    )


def test_a_nan_row_is_no_value_under_the_l2_noise(parts: Parts) -> None:
    """Review (2026-12-04, night): a NaN made the exact sum NaN, and a sum that is not a
    number was withheld: whether one row of the group was NaN was an exact bit past the
    noise. Now a row whose value is not finite is not a value (not summed, not counted)."""
    cities = ["hefei"] * 40 + ["bengbu"] * 2
    revenue = [float(i * 10) for i in range(40)] + [float("nan"), 5.0]
    pq.write_table(
        pa.table({"city": cities, "revenue": revenue, "employees": list(range(42))}),
        parts.data / "nan.parquet",
    )
    operator = OPERATOR
    parts.catalog.register(
        _descriptor(parts.data / "nan.parquet"), by=operator, when="2026-01-02T00:00:00Z"
    )
    _grant(parts, columns={"city": ("filter",), "revenue": ("aggregate",)})
    sql = (
        "SELECT SUM(revenue) AS r, COUNT(revenue) AS n FROM firms WHERE city IN ('hefei', 'bengbu')"
    )
    got = from_ipc(parts.owner.execute(_env(sql)).payload).to_pylist()[0]
    assert got["__s_revenue"] is not None and math.isfinite(got["__s_revenue"])
    # the finite rows, noised: three layers of SD 0.25 x 390 (one row, one leaf, the
    # meaning), so 8 of them is 4.6 SD (6 failed once in a full run: 5e-4 a run)
    assert abs(got["__s_revenue"] - 7805.0) < 0.25 * 390 * 8
    # Counted the same with or without a sum beside it (a second review: COUNT alone
    # counted the NaN row, COUNT beside SUM did not, and equal answers said "no NaN").
    where = "FROM firms WHERE city IN ('hefei', 'bengbu')"
    alone = from_ipc(parts.owner.execute(_env(f"SELECT COUNT(revenue) AS n {where}")).payload)
    beside = from_ipc(
        parts.owner.execute(_env(f"SELECT COUNT(revenue) AS n, SUM(revenue) AS r {where}")).payload
    )
    assert alone.column("__c_revenue").to_pylist() == beside.column("__c_revenue").to_pylist()


def test_a_relay_merges_its_cities_only_where_their_kinds_of_value_agree(parts: Parts) -> None:
    """Review (2026-12-04): a relay whose own partial's keys were of another kind than its
    cities' failed as a whole (its own release and every city's lost); now the partials of
    most owners merge, its own counted with its cities' in one vote (a vote among the
    cities first had tied 1 to 1 and refused both), and the one that differs fails alone,
    its receipt kept."""
    from federation.partials import to_ipc
    from federation.reports import OwnerReport, PartialAnswer

    _grant(parts, exact=True)
    members = Membership(
        "test",
        1,
        "2026-01-01T00:00:00Z",
        (
            Member("anhui", "Anhui bureau", "127.0.0.1:1", "province"),
            Member("hefei", "H", "127.0.0.1:2", "city", parent="anhui"),
            Member("wuhu", "W", "127.0.0.1:3", "city", parent="anhui"),
        ),
    )
    keys = {"hefei": pa.array(["chaohu"]), "wuhu": pa.array([1], pa.int64())}

    def ask(member: Member, env: Envelope) -> PartialAnswer:
        partial = pa.table(
            {
                "city": keys[member.id],
                "__n": pa.array([9], pa.int64()),
                "__c_revenue": pa.array([9], pa.int64()),
                "__s_revenue": pa.array([90.0], pa.float64()),
            }
        )
        report = OwnerReport(member.id, receipt="{}")
        return PartialAnswer(member.id, True, to_ipc(partial), (report,))

    with ThreadPoolExecutor(2) as pool:
        parts.owner.relay = Relay("anhui", lambda: members, ask, pool)
        answer = parts.owner.execute(_env())
    by_node = {r.node_id: r for r in answer.owners}
    assert by_node["anhui"].ok and by_node["hefei"].ok  # two owners hold strings
    wuhu = by_node["wuhu"]
    assert wuhu.error is not None and wuhu.receipt  # its release stands, unmerged
    assert wuhu.error.reason == (
        "the partial from wuhu: the group key city holds a number where the partials of 2 "
        "other owners hold a string"
    )
    cities = from_ipc(answer.payload).column("city").to_pylist()
    assert "chaohu" in cities and 1 not in cities


def test_a_release_is_checked_at_the_time_it_is_stamped_with(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (2026-12-05): the spend re-checked the grant at a time read before it waited
    in the group commit, and its entry was stamped at the commit: under contention a
    release landed after its grant's ``expires``, and the auditor's replay flagged an
    honest release. The grant expires here while the release waits behind another commit;
    it is checked at the commit, at the time its entry would bear."""
    import threading

    from gateway import grant_replay
    from gateway.clock import now, utc

    expires = utc(now() + dt.timedelta(hours=1))
    _grant(parts, exact=True, expires=expires)
    clock = [utc()]  # the pipeline's clock: before the grant expires, then after
    monkeypatch.setattr(pipeline, "utc", lambda: clock[0])
    inside, go = threading.Event(), threading.Event()

    def busy(db: object) -> None:  # another commit, long under way
        inside.set()
        go.wait(30)

    holder = threading.Thread(target=parts.state.group, args=(busy,))
    holder.start()
    assert inside.wait(30)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(parts.owner.execute, _env())
        deadline = time.monotonic() + 30
        while not parts.state._pending and time.monotonic() < deadline:
            time.sleep(0.01)  # until the release waits in the group commit
        clock[0] = utc(now() + dt.timedelta(hours=2))
        go.set()
        report = answer.result(30).owners[0]
    holder.join(30)
    logged = [
        (e.seq, e.data["kind"], e.body)
        for e in parts.audit.entries()
        if e.data["kind"] in grant_replay.KINDS
    ]
    assert grant_replay.violations(logged) == []  # what the auditor replays holds
    assert report.error is not None and report.error.code == Code.PERMISSION_DENIED
    assert "is expired (checked again at release)" in report.error.reason
