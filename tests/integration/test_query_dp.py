"""Differential privacy at the owner: noise, thresholds and a budget that never overruns."""

from __future__ import annotations

import threading

import duckdb
import grpc
import pyarrow.parquet as pq
import pytest

from gateway.client import ClientError
from tests.conftest import RunningFederation

pytestmark = pytest.mark.integration

SQL = (
    "SELECT insurance_type, COUNT(*) AS n, AVG(monthly_wage) AS w FROM zhejiang.{ds} "
    "GROUP BY insurance_type"
)


def _grant(federation: RunningFederation, dataset: str, epsilon: float, budget: float):  # type: ignore[no-untyped-def]
    federation.register_copy("zhejiang", "social_insurance", dataset)
    return federation.grant(
        "zhejiang",
        dataset=dataset,
        grantee_kind="user",
        grantee="li.wei@shanghai",
        min_group_size=10,
        dp_epsilon=epsilon,
        dp_budget=budget,
        columns={"insurance_type": "group_by", "monthly_wage": "aggregate"},
    )


def _spent(federation: RunningFederation, dataset: str) -> tuple[float, int]:
    with federation.client("ops@zhejiang") as ops:
        (g,) = ops.list_grants(dataset)
    return g.epsilon_spent, g.uses


def test_noisy_answers_are_close_but_not_exact(federation: RunningFederation) -> None:
    con = duckdb.connect()
    con.register(
        "data", pq.read_table(federation.fed.data_dir("zhejiang") / "social_insurance.parquet")
    )
    _grant(federation, "si_noise", epsilon=1.0, budget=10.0)
    exact = dict(
        con.sql("SELECT insurance_type, COUNT(*) FROM data GROUP BY insurance_type").fetchall()
    )
    with federation.client("li.wei@shanghai") as c:
        a = c.query(SQL.format(ds="si_noise"))
        b = c.query(SQL.format(ds="si_noise"))
    noisy_a = {r["insurance_type"]: r["n"] for r in a.table.to_pylist()}
    noisy_b = {r["insurance_type"]: r["n"] for r in b.table.to_pylist()}
    assert a.epsilon_spent == pytest.approx(1.0) and b.epsilon_spent == pytest.approx(1.0)
    assert noisy_a != noisy_b  # fresh noise each time
    for key, n in noisy_a.items():
        assert abs(n - exact[key]) < 40  # Laplace scale 3/1.0 per count: far inside
    # The wage sum is clamped to the declared [0, 200000] and noised with scale
    # 200000 * 3 / epsilon: with a few hundred rows per group the average is very noisy.
    assert all(isinstance(row["w"], float) for row in a.table.to_pylist())


def test_budget_survives_restart_and_is_never_exceeded(federation: RunningFederation) -> None:
    _grant(federation, "si_restart", epsilon=0.5, budget=1.5)
    with federation.client("li.wei@shanghai") as c:
        for _ in range(3):
            c.query(SQL.format(ds="si_restart"))
        with pytest.raises(ClientError) as info:
            c.query(SQL.format(ds="si_restart"))
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _spent(federation, "si_restart") == (pytest.approx(1.5), 3)
    proc = federation.procs["zhejiang"]
    proc.process.terminate()
    assert proc.process.wait(timeout=15) == 0
    federation.start("zhejiang")
    assert _spent(federation, "si_restart") == (pytest.approx(1.5), 3)
    with federation.client("li.wei@shanghai") as c, pytest.raises(ClientError) as info:
        c.query(SQL.format(ds="si_restart"))
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "budget" in str(info.value)


def test_concurrent_queries_never_overspend(federation: RunningFederation) -> None:
    """More releases at once than the budget holds: 8 queries of one analyst in flight
    together (the home's calls_per_caller, so none is refused for that), room for 3.
    Exactly 3 are answered and every other one is refused for the budget, whatever
    interleaving of check and spend the 8 meet; the spend is the budget, never above."""
    _grant(federation, "si_race", epsilon=0.25, budget=0.75)  # room for exactly 3
    in_flight = 8
    outcomes: list[ClientError | None] = []
    lock = threading.Lock()
    together = threading.Barrier(in_flight, timeout=60)

    def ask() -> None:
        with federation.client("li.wei@shanghai") as c:
            together.wait()
            try:
                c.query(SQL.format(ds="si_race"))
                result = None
            except ClientError as exc:
                result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=ask) for _ in range(in_flight)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(outcomes) == in_flight
    refused = [o for o in outcomes if o is not None]
    assert len(refused) == in_flight - 3, [str(o) for o in refused]
    for exc in refused:  # the budget's refusal, not a per-caller limit's
        assert exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
        assert "privacy budget of grant" in str(exc), exc
        assert "limit" not in exc.details and "calls in progress" not in str(exc), exc
    spent, uses = _spent(federation, "si_race")
    assert uses == 3 and spent == 0.75  # exactly: 3 x 0.25 is exact in binary


def test_non_dyadic_epsilon_fits_its_budget_exactly(federation: RunningFederation) -> None:
    """0.1 is not exact in binary and OpenDP rounds its charge up: ten releases of 0.1
    must still fit a budget of 1.0, the eleventh must not, and the total never goes over."""
    _grant(federation, "si_tenth", epsilon=0.1, budget=1.0)
    with federation.client("li.wei@shanghai") as c:
        for _ in range(10):
            c.query(SQL.format(ds="si_tenth"))
        with pytest.raises(ClientError) as info:
            c.query(SQL.format(ds="si_tenth"))
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    spent, uses = _spent(federation, "si_tenth")
    assert uses == 10 and spent <= 1.0 and spent == pytest.approx(1.0)
    charged = [
        e["epsilon"] for e in federation.audit("zhejiang", "release") if e["dataset"] == "si_tenth"
    ]
    assert len(charged) == 10 and all(0 < e <= 0.1 for e in charged)


def test_l3_grant_without_dp_is_refused_when_written(federation: RunningFederation) -> None:
    federation.register_copy("zhejiang", "social_insurance", "si_nodp")
    with pytest.raises(ClientError) as info:
        federation.grant(
            "zhejiang",
            dataset="si_nodp",
            grantee_kind="user",
            grantee="li.wei@shanghai",
            min_group_size=10,
            columns={"insurance_type": "group_by"},
        )
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "needs differential privacy" in str(info.value)


def test_grant_cannot_go_under_the_l2_floor(federation: RunningFederation) -> None:
    with pytest.raises(ClientError) as info:
        federation.grant(
            "zhejiang",
            dataset="enterprise_registry",
            grantee_kind="org",
            grantee="x",
            min_group_size=2,
            columns={"city": "group_by"},
        )
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "at least 5" in str(info.value)


def test_small_groups_are_suppressed_at_the_source(federation: RunningFederation) -> None:
    """k = 5 on L2: a group of fewer than 5 enterprises at an owner never leaves it."""
    con = duckdb.connect()
    con.register(
        "data", pq.read_table(federation.fed.data_dir("wuhu") / "enterprise_registry.parquet")
    )
    counts = dict(
        con.sql("SELECT industry_code, COUNT(*) FROM data GROUP BY industry_code").fetchall()
    )
    small = {k for k, n in counts.items() if n < 5}
    assert small, "sample data should have some small groups at wuhu"
    with federation.client("li.wei@shanghai") as c:
        r = c.query(
            "SELECT industry_code, COUNT(*) AS n FROM wuhu.enterprise_registry "
            "GROUP BY industry_code"
        )
        total = c.query("SELECT COUNT(*) AS n FROM wuhu.enterprise_registry")
    got = {row["industry_code"]: row["n"] for row in r.table.to_pylist()}
    assert not small & set(got)
    # k applies to the true counts, then a sticky noisy threshold k + u (u uniform over
    # 0..30): a group of n >= k rows is released with probability (n - k + 1) / 31, one
    # of 35 rows or more always (wuhu's 100 rows); the values carry the L2 noise
    assert r.noised == ["wuhu"] and total.noised == ["wuhu"]
    assert abs(total.table.column("n")[0].as_py() - sum(counts.values())) <= 6
    assert set(got) <= {k for k, n in counts.items() if n >= 5}
    assert all(abs(got[k] - counts[k]) <= 6 for k in got)
    # Noised, not exact. A count's noise has SD 0.7 or more and rounds back to the exact
    # count at most about half the time (P(|N(0, 0.7)| < 0.5) = 0.52), so "one differs"
    # needs many independent draws: 30 counts of different row sets, each of 35 rows or
    # more (always released). Each row set draws its own layer from the owner's key, new
    # each session; all 30 exact has a probability under 0.52^30 = 3e-9.
    row_sets: dict[tuple[str, ...], str] = {}
    for column, op in (("founding_year", ">="), ("employees", "<=")):
        for (value,) in con.sql(f"SELECT DISTINCT {column} FROM data ORDER BY 1").fetchall():
            where = f"{column} {op} {value}"
            ((rows,),) = con.sql(
                f"SELECT list(credit_code ORDER BY credit_code) FROM data WHERE {where}"
            ).fetchall()
            if len(rows or ()) >= 35:
                row_sets.setdefault(tuple(rows), where)
    wheres = list(row_sets.values())[:30]
    assert len(wheres) == 30, f"sample data should have 30 row sets of 35+ rows: {wheres}"
    noisy, exact = [], []
    with federation.client("li.wei@shanghai") as c:
        for where in wheres:
            answer = c.query(f"SELECT COUNT(*) AS n FROM wuhu.enterprise_registry WHERE {where}")
            assert answer.noised == ["wuhu"], where
            noisy.append(answer.table.column("n")[0].as_py())
            exact.append(con.sql(f"SELECT COUNT(*) FROM data WHERE {where}").fetchall()[0][0])
    assert all(abs(n - e) <= 8 for n, e in zip(noisy, exact, strict=True)), (noisy, exact)
    assert noisy != exact, "30 counts of different row sets, every one exact: not noised"


def test_a_repeated_question_is_checked_protected_and_spent_every_time(
    federation: RunningFederation,
) -> None:
    """The owner keeps the exact result and its suppressed form for a repeated question,
    and the home its merged answer: a new grant's k still applies, every release still
    spends and is audited, and a revoked grant still stops the release."""
    federation.register_copy("wuhu", "enterprise_registry", "er_repeat")
    sql = "SELECT industry_code, COUNT(*) AS n FROM wuhu.er_repeat GROUP BY industry_code"
    columns = {"industry_code": "group_by"}
    first = federation.grant(
        "wuhu",
        dataset="er_repeat",
        grantee_kind="user",
        grantee="li.wei@shanghai",
        min_group_size=5,
        columns=columns,
        exact=True,  # k below is chosen from the exact counts
    )
    with federation.client("li.wei@shanghai") as c:
        a, b = c.query(sql), c.query(sql)
    assert a.table.equals(b.table) and a.request_id != b.request_id
    assert a.receipts["wuhu"] != b.receipts["wuhu"]  # each release has its own receipt
    counts = {r["industry_code"]: r["n"] for r in a.table.to_pylist()}
    with federation.client("ops@wuhu") as ops:
        assert ops.list_grants("er_repeat")[0].uses == 2
        ops.revoke_grant(first.id)
    bigger_k = max(counts.values())  # only the largest group(s) pass
    federation.grant(
        "wuhu",
        dataset="er_repeat",
        grantee_kind="user",
        grantee="li.wei@shanghai",
        min_group_size=bigger_k,
        columns=columns,
        exact=True,
    )
    with federation.client("li.wei@shanghai") as c:
        strict = c.query(sql)
    got = {r["industry_code"]: r["n"] for r in strict.table.to_pylist()}
    assert got == {k: n for k, n in counts.items() if n >= bigger_k}
    assert strict.owners[0].groups_released == len(got) < a.owners[0].groups_released
    releases = federation.releases()
    with federation.client("ops@wuhu") as ops:
        (active,) = [g for g in ops.list_grants("er_repeat") if not g.revoked_at]
        ops.revoke_grant(active.id)
    with federation.client("li.wei@shanghai") as c, pytest.raises(ClientError) as info:
        c.query(sql)
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert federation.releases() == releases
    mine = [e for e in federation.audit("wuhu", "release") if e["dataset"] == "er_repeat"]
    assert len(mine) == 3


def test_no_budget_is_spent_for_a_query_the_home_will_not_answer(
    federation: RunningFederation,
) -> None:
    """Check first, release second: one of two owners refuses (its grant is revoked), so
    the home answers nothing, and the other owner spends neither a use nor epsilon. Once
    both grant it, the same query is answered and both spend."""
    dataset, owners = "si_check", ("jiangsu", "zhejiang")
    grants = {}
    for node in owners:
        federation.register_copy(node, "social_insurance", dataset)
        grants[node] = federation.grant(
            node,
            dataset=dataset,
            grantee_kind="user",
            grantee="li.wei@shanghai",
            min_group_size=10,
            dp_epsilon=0.5,
            dp_budget=5.0,
            columns={"insurance_type": "group_by", "monthly_wage": "aggregate"},
        )
    sql = f"SELECT insurance_type, AVG(monthly_wage) AS w FROM {dataset} GROUP BY insurance_type"

    def spent(node: str) -> tuple[float, int]:
        with federation.client(f"ops@{node}") as ops:
            (g,) = [g for g in ops.list_grants(dataset) if g.id == grants[node].id]
        return g.epsilon_spent, g.uses

    with federation.client("li.wei@shanghai") as c:
        c.query(sql, nodes=owners)  # both answer: both spend
        assert spent("jiangsu") == spent("zhejiang") == (0.5, 1)
        with federation.client("ops@zhejiang") as ops:
            ops.revoke_grant(grants["zhejiang"].id)
        for _ in range(3):
            with pytest.raises(ClientError) as info:
                c.query(sql, nodes=owners)
            assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
            assert info.value.details["owner"] == "zhejiang"
    assert spent("jiangsu") == (0.5, 1)  # nothing more: no release for an unanswered query
    refusals = [
        e
        for e in federation.audit("zhejiang", "query.refused")
        if e.get("dataset") == dataset and not e["dry_run"]
    ]
    assert len(refusals) == 3  # the check's refusals are real ones, audited as such
