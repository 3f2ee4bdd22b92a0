"""Disclosure control at the source: suppression, clamping and OpenDP's Laplace noise."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from federation.sql import parse, partial_query
from gateway import privacy
from gateway.errors import InvalidArgument


def test_small_groups_are_suppressed_and_an_empty_total_is_kept() -> None:
    table = pa.table({"g": ["a", "b", "c"], "__n": [3, 12, 0], "__c_w": [3, 4, 0]})
    released = privacy.suppress(table, 10)
    # b has 12 rows but only 4 with a wage: an average over 4 would show too much.
    assert released.table.column("g").to_pylist() == ["c"] and released.suppressed == 2
    assert privacy.suppress(table, 1).suppressed == 0


def test_values_are_clamped_to_the_declared_bounds_in_the_owners_sql() -> None:
    con = duckdb.connect()
    con.register("t", pa.table({"w": [100.0, 200.0, 1e9]}))  # one outlier
    plan = parse("SELECT SUM(w), AVG(w) FROM t")
    sql = partial_query(plan, "t", clamp={"w": (0.0, 1000.0)})
    (row,) = con.sql(sql).fetchall()
    names = [d[0] for d in con.sql(sql).description]
    assert dict(zip(names, row, strict=True))["__s_w"] == 100.0 + 200.0 + 1000.0


def test_charged_epsilon_is_opendps_and_never_above_the_grant() -> None:
    groups = 3000
    table = pa.table(
        {
            "g": [str(i) for i in range(groups)],
            "__n": pa.array([100] * groups, pa.int64()),
            "__c_w": pa.array([100] * groups, pa.int64()),
            "__s_w": pa.array([5000.0] * groups),
        }
    )
    plan = parse("SELECT g, SUM(w) FROM t GROUP BY g")  # the partial's states: n, c_w, s_w
    for epsilon in (0.1, 0.3, 1.0):
        released = privacy.add_noise(table, plan, epsilon=epsilon, k=0, clamp={"w": (0.0, 100.0)})
        assert 0 < released.epsilon <= epsilon
        assert released.epsilon == pytest.approx(epsilon, rel=1e-9)
    # Laplace noise on the counts: scale = sensitivity 1 / (epsilon / 3 columns).
    released = privacy.add_noise(table, plan, epsilon=1.0, k=0, clamp={"w": (0.0, 100.0)})
    noise = np.array(released.table.column("__n").to_pylist(), dtype=float) - 100
    assert np.mean(np.abs(noise)) == pytest.approx(3.0, rel=0.15)  # E|Laplace(b)| = b
    sums = np.array(released.table.column("__s_w").to_pylist()) - 5000.0
    assert np.mean(np.abs(sums)) == pytest.approx(300.0, rel=0.15)  # sensitivity 100


def test_groups_under_k_after_noise_are_withheld() -> None:
    table = pa.table({"g": ["big", "tiny"], "__n": pa.array([10_000, 1], pa.int64())})
    plan = parse("SELECT g, COUNT(*) FROM t GROUP BY g")
    released = privacy.add_noise(table, plan, epsilon=1.0, k=10, clamp={})
    assert released.table.column("g").to_pylist() == ["big"] and released.suppressed == 1


@pytest.mark.parametrize("epsilon", [0.1, 0.2, 0.3, 0.7, 1.1, 0.05, 0.09999999999999999])
def test_budget_accounting_is_decimal_and_never_over(epsilon: float) -> None:
    """k releases of epsilon fit a budget of k * epsilon exactly: never k - 1 (binary
    rounding: 0.1 + 0.1 + 0.1 > 0.3) and never k + 1 or a total above the budget."""
    from gateway.policy.budget import add_epsilon, within_budget

    for k in range(1, 31):
        budget = round(k * epsilon, 10)
        spent, releases = 0.0, 0
        while within_budget(spent, epsilon, budget) and releases <= k:
            spent = add_epsilon(spent, epsilon)
            releases += 1
        assert releases == k and spent <= budget, (epsilon, k, spent, budget)


def test_noise_follows_the_plans_typed_states_and_variance_leaves_as_m2() -> None:
    from federation.partials import expected_columns

    con = duckdb.connect()
    con.register("t", pa.table({"g": ["a"] * 50 + ["b"] * 50, "w": [float(i) for i in range(100)]}))
    plan = parse("SELECT g, COUNT(*), AVG(w), VAR_SAMP(w) FROM t GROUP BY g")
    raw = con.sql(partial_query(plan, "t", clamp={"w": (0.0, 100.0)})).to_arrow_table()
    assert "__q_w" in raw.column_names  # the sum of squares, noised as a sum...
    released = privacy.add_noise(raw, plan, epsilon=1.0, k=0, clamp={"w": (0.0, 100.0)})
    assert released.table.column_names == expected_columns(plan)  # ...leaves as M2
    assert released.table.column("__n").type == pa.int64()
    assert min(released.table.column("__m2_w").to_pylist()) >= 0.0
    assert released.epsilon == pytest.approx(1.0, rel=1e-9)  # 4 states: __n, c, s, q


def test_a_decimal_sum_is_noised_and_released_as_a_float() -> None:
    """Under DP every sum leaves as float64, a decimal one too: noised, it is not exact."""
    from decimal import Decimal

    con = duckdb.connect()
    data = pa.table(
        {
            "g": ["a"] * 200 + ["b"] * 200,
            "p": pa.array([Decimal(i) / 100 for i in range(400)], pa.decimal128(15, 2)),
        }
    )
    con.register("t", data)
    plan = parse("SELECT g, SUM(p), AVG(p) FROM t GROUP BY g")
    raw = con.sql(partial_query(plan, "t", clamp={"p": (0.0, 10.0)})).to_arrow_table()
    exact = dict(con.sql("SELECT g, SUM(p) FROM t GROUP BY g").fetchall())
    released = privacy.add_noise(raw, plan, epsilon=1.0, k=0, clamp={"p": (0.0, 10.0)})
    assert released.table.column("__s_p").type == pa.float64()
    for g, s in zip(
        released.table.column("g").to_pylist(),
        released.table.column("__s_p").to_pylist(),
        strict=True,
    ):
        # Laplace(10 / (1/3)): far from exact would mean a wrong scale, exact no noise
        assert s != float(exact[g]) and abs(s - float(exact[g])) < 30 * 20


def test_a_sum_without_bounds_is_never_released_under_dp() -> None:
    from gateway.errors import FailedPrecondition

    table = pa.table(
        {"__n": pa.array([100], pa.int64()), "__c_w": pa.array([100]), "__s_w": pa.array([5.0])}
    )
    plan = parse("SELECT SUM(w) FROM t")
    with pytest.raises(FailedPrecondition, match="no declared bounds"):
        privacy.add_noise(table, plan, epsilon=1.0, k=0, clamp={})


def test_noise_that_would_be_infinite_is_refused_not_crashed_on() -> None:
    """A variance of values near 1e200 has squares past the largest double: refused with
    a typed error naming the aggregate, before OpenDP is asked for an infinite scale."""
    con = duckdb.connect()
    con.register("t", pa.table({"w": [1.0, 2.0, 3.0]}))
    plan = parse("SELECT VAR_POP(w) FROM t")
    clamp = {"w": (0.0, 1e200)}
    raw = con.sql(partial_query(plan, "t", clamp=clamp)).to_arrow_table()
    with pytest.raises(InvalidArgument, match=r"var_pop\(w\) under DP: no finite bound"):
        privacy.add_noise(raw, plan, epsilon=1.0, k=0, clamp=clamp)
