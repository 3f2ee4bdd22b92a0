"""The L2 noise on an owner's partial, computed by DuckDB from the owner's own SQL."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from federation.sql import parse, partial_query
from gateway import sticky_noise
from gateway.errors import InvalidArgument

KEY = b"k" * 32


def _partial(sql: str, table: pa.Table) -> tuple[pa.Table, object]:
    plan = parse(sql)
    con = duckdb.connect()
    con.register("staging", table)
    con.execute("CREATE TABLE ds_t AS SELECT * FROM staging")
    text = partial_query(plan, "ds_t", integer_columns=["e"], hidden=True)
    return con.sql(text).to_arrow_table(), plan


def test_a_group_without_values_keeps_its_zero_count_and_null_sum() -> None:
    table = pa.table(
        {
            "g": ["a"] * 6 + ["b"] * 6,
            "v": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] + [None] * 6,
            "e": pa.array([1, 2, 3, 4, 5, 6] + [None] * 6, pa.int64()),
        }
    )
    raw, plan = _partial("SELECT g, SUM(v), AVG(e) FROM t GROUP BY g", table)
    out = sticky_noise.add_sticky_noise(raw, plan, key=KEY, version="x", leaf_fingerprints=())
    b = next(r for r in out.to_pylist() if r["g"] == "b")
    assert (b["__c_v"], b["__s_v"], b["__c_e"], b["__s_e"]) == (0, None, 0, None)
    assert not [c for c in out.column_names if c.startswith(("__fp", "__lo", "__hi", "__top"))]


def test_the_same_rows_draw_the_same_noise_whatever_the_version_name_or_ties() -> None:
    """Ties for the largest value are broken by row id: run twice (with threads), the
    same row is named, so the same answer comes out."""
    rows = 50_000
    table = pa.table({"g": ["a"] * rows, "v": np.full(rows, 7.0)})  # every value ties
    answers = set()
    for _ in range(3):
        raw, plan = _partial("SELECT g, SUM(v) FROM t GROUP BY g", table)
        out = sticky_noise.add_sticky_noise(raw, plan, key=KEY, version="x", leaf_fingerprints=())
        answers.add(out.column("__s_v")[0].as_py())
    assert len(answers) == 1 and answers != {7.0 * rows}
    other = sticky_noise.add_sticky_noise(raw, plan, key=KEY, version="y", leaf_fingerprints=())
    assert other.column("__s_v")[0].as_py() not in answers  # new data, new draws


def test_groups_just_over_k_pass_a_sticky_noisy_threshold() -> None:
    """k + u, u uniform over 0..30: a group of exactly k is released 1 time in 31 (over
    many seeds), one of k + 15 about half the time, always the same way for the same rows
    and condition; one of k + 30 always."""
    sizes = {"k": 5, "mid": 20, "top": 35}
    table = pa.table(
        {"g": [g for g, n in sizes.items() for _ in range(n)], "v": [1.0] * sum(sizes.values())}
    )
    raw, _ = _partial("SELECT g, SUM(v) FROM t GROUP BY g", table)
    released = {g: 0 for g in sizes}
    seeds = 1000
    for i in range(seeds):
        kept = sticky_noise.over_threshold(raw, k=5, key=KEY, version=str(i), leaves=())
        for g in kept.column("g").to_pylist():
            released[g] += 1
        again = sticky_noise.over_threshold(raw, k=5, key=KEY, version=str(i), leaves=())
        assert again.equals(kept)
    spread = sticky_noise.THRESHOLD_SPREAD
    assert spread == 30 and released["top"] == seeds
    assert abs(released["k"] / seeds - 1 / (spread + 1)) < 0.02
    assert abs(released["mid"] / seeds - 16 / (spread + 1)) < 0.06


def test_a_decimal_sum_stays_a_decimal_with_its_scale_and_sticky_noise() -> None:
    import datetime as dt
    from decimal import Decimal

    rows = 40
    table = pa.table(
        {
            "g": ["a"] * rows,
            "p": pa.array(
                [Decimal("1234567890123.45") + i for i in range(rows)], pa.decimal128(15, 2)
            ),
            "at": pa.array(
                [dt.datetime(2025, 1, 1 + i % 28) for i in range(rows)], pa.timestamp("us")
            ),
        }
    )
    plan = parse("SELECT g, SUM(p), MIN(at) FROM t GROUP BY g")
    con = duckdb.connect()
    con.register("staging", table)
    con.execute("CREATE TABLE ds_t AS SELECT * FROM staging")
    raw = con.sql(partial_query(plan, "ds_t", decimals=["p"], hidden=True)).to_arrow_table()
    exact = raw.column("__s_p")[0].as_py()
    assert raw.schema.field("__s_p").type == pa.decimal128(38, 2)
    outs = [
        sticky_noise.add_sticky_noise(raw, plan, key=KEY, version="x", leaf_fingerprints=())
        for _ in range(2)
    ]
    noisy = outs[0].column("__s_p")[0].as_py()
    assert outs[0].schema.field("__s_p").type == pa.decimal128(38, 2)
    assert noisy.as_tuple().exponent == -2 and noisy != exact
    assert outs[1].column("__s_p")[0].as_py() == noisy  # the same rows, the same noise
    # noise on the scale of the largest value (SUM_SCALE per layer), not of the sum
    largest = float(table.column("p").to_pylist()[-1])
    assert abs(float(noisy - exact)) < 10 * sticky_noise.SUM_SCALE * largest
    assert outs[0].column("__min_at").type == pa.timestamp("us")  # MIN as it is
    assert outs[0].column("__min_at")[0].as_py() == dt.datetime(2025, 1, 1)


def test_rewriting_a_value_draws_no_new_noise_and_a_case_condition_gets_its_leaves() -> None:
    """SUM(v), SUM(v * 1), SUM(v / 1) and SUM(v) * 2 as SUM(v * 2): the same rows and the
    same columns draw the same layers (scaled by the value's own magnitude), so averaging
    rewrites of a question gains nothing. A condition inside CASE adds its leaves to the
    noise as a WHERE does."""
    rng = np.random.default_rng(7)
    table = pa.table(
        {"g": ["a"] * 200, "v": rng.uniform(1, 100, 200), "c": rng.integers(0, 9, 200)}
    )

    def noised(sql: str, name: str, leaves: tuple[object, ...] = ()) -> float:
        raw, plan = _partial(sql, table)
        out = sticky_noise.add_sticky_noise(
            raw, plan, key=KEY, version="x", leaf_fingerprints=leaves
        )
        return float(out.column(name)[0].as_py())

    exact = float(np.sum(table.column("v").to_numpy()))
    plain = noised("SELECT SUM(v) FROM t", "__s_v")
    assert plain != exact
    for sql in ("SELECT SUM(v * 1) FROM t", "SELECT SUM(v / 1) FROM t", "SELECT SUM((v)) FROM t"):
        assert abs(noised(sql, "__s___v0") - plain) < 1e-6 * abs(plain), sql
    doubled = noised("SELECT SUM(v * 2) FROM t", "__s___v0")
    assert abs(doubled - 2 * plain) < 1e-6 * abs(plain)  # the same draw, twice the scale
    case = "SELECT SUM(CASE WHEN c > 3 THEN v END) FROM t"
    assert parse(case).conditions  # its leaf is seeded like a WHERE leaf
    assert noised(case, "__s___v0", ("leaf-1",)) != noised(case, "__s___v0", ("leaf-2",))


def test_a_sum_of_a_constant_draws_the_counts_noise() -> None:
    """Review (2026-12-05): ``SUM(1)`` was labelled apart from ``COUNT(*)`` and drew
    layers of its own, a second independent sample of every count (averaging the two cut
    each layer's SD by a square root of two). Now a value that reads no column draws the
    count's layers: across 400 groups their errors move together."""
    groups = 400
    table = pa.table({"g": [f"g{i % groups:03d}" for i in range(groups * 100)]})
    raw, plan = _partial("SELECT g, COUNT(*), SUM(1), SUM(2) FROM t GROUP BY g", table)
    out = sticky_noise.add_sticky_noise(raw, plan, key=KEY, version="x", leaf_fingerprints=())
    names = out.column_names
    counts = np.array(out.column("__n").to_pylist(), dtype=float) - 100
    sums = [np.array(out.column(n).to_pylist(), dtype=float) for n in names if "__s_" in n]
    assert len(sums) == 2
    one, two = sums[0] - 100, sums[1] - 200
    assert np.std(counts) > 0.3  # noised at all
    assert np.corrcoef(counts, one)[0, 1] > 0.5, np.corrcoef(counts, one)
    assert np.corrcoef(one, two)[0, 1] > 0.9  # SUM(2) is SUM(1)'s draw, scaled


def test_values_the_noise_cannot_protect_are_refused_on_l2() -> None:
    """The noise is seeded by rows and columns, not by values: SUM(x) and SUM(CASE WHEN
    id = 17 THEN 0 ELSE x END) would draw the same noise and differ by exactly one
    entity's x; SUM(x) and SUM(-x) would average to the exact sum. Only scaled columns,
    positive constants and CASE WHEN ... THEN <one of them> END (FILTER) pass."""
    from federation.sql.plan import noise_safe
    from gateway.errors import PermissionDenied
    from gateway.release.query import noised_values

    safe = ["x * 2", "x / 4", "CASE WHEN id <> 17 THEN x END", "CASE WHEN a > 1 THEN 1 END"]
    safe += ["x * 1000 * 1000", "x / 1000000 * 3", "x / 10000 / 10000", "x / 1e6 / 1e6"]
    unsafe = ["-x", "x + 0", "x * 0", "CASE WHEN id = 17 THEN 0 ELSE x END", "x * y", "ABS(x)"]
    # each factor moderate, their product not: a scale that reaches an overflow (review)
    unsafe += ["x * 1000000 * 7 * 123456", "x / 0.000001 / 0.001", "(x * 1000) * 1001"]
    unsafe += ["x / 1e6 / 1e6 / 10"]  # toward an underflow, which would tell the largest x
    for value in safe:
        assert all(noise_safe(v) for v in parse(f"SELECT SUM({value}) FROM t").aggregate.values)
    for value in unsafe:
        plan = parse(f"SELECT SUM({value}) FROM t")
        assert not all(noise_safe(v) for v in plan.aggregate.values), value
        with pytest.raises(PermissionDenied, match="DP or the exact option"):
            noised_values(plan)
    noised_values(parse("SELECT SUM(x) FILTER (WHERE a > 1), COUNT(*) FILTER (WHERE b) FROM t"))


def test_a_conditioned_value_under_its_threshold_is_withheld_whether_or_not_rows_match() -> None:
    """COUNT(*) FILTER (WHERE <one entity>) reads NULL (0) whether the entity exists or not:
    no existence oracle, no exact count under k."""
    table = pa.table({"g": ["a"] * 40, "id": list(range(40)), "v": [1.0] * 40})
    outs = []
    for test in ("id = 17", "id = 1000"):
        sql = f"SELECT g, COUNT(*) FILTER (WHERE {test}), SUM(v) FROM t GROUP BY g"
        raw, plan = _partial(sql, table)
        noisy = sticky_noise.add_sticky_noise(
            raw, plan, key=KEY, version="x", leaf_fingerprints=("l",)
        )
        out = sticky_noise.withhold_small_values(
            noisy, raw, plan, k=5, key=KEY, version="x", leaf_fingerprints=("l",)
        )
        outs.append(out.column("__c___v0")[0].as_py())
        assert out.column("__s_v")[0].as_py() is not None  # the rest of the group stays
    assert outs == [None, None]


def test_second_review_holes_stay_closed() -> None:
    """Found in a review of the first fixes: a CASE key's tests had no noise layer; a sum
    scaled to overflow read the exact sum; CASE keys hid fine buckets; a sum of a constant
    carried a third of a count's noise."""
    from federation.sql import QueryError
    from federation.sql.plan import noise_safe

    keyed = parse(
        "SELECT CASE WHEN u <> 3 AND id <> 17 THEN 1 ELSE 0 END AS g, SUM(x) FROM t GROUP BY g"
    )
    by_leaf = {
        leaf.sql(): f"fp{i}"
        for i, leaf in enumerate(sticky_noise.conditions.leaves(*keyed.conditions))
    }
    assert len(by_leaf) == 2
    assert sticky_noise.state_leaves(keyed, "x", by_leaf) == ["fp0", "fp1"]
    assert sticky_noise.state_leaves(keyed, None, by_leaf) == ["fp0", "fp1"]  # the threshold too
    for factor in ("1e308", "1e999", "1e-300"):
        assert not noise_safe(parse(f"SELECT SUM(x * {factor}) FROM t").aggregate.values[0])
    with pytest.raises(QueryError, match="must be the whole group key"):
        parse("SELECT (CASE WHEN id = 1 THEN 1 END) + 0 AS g, COUNT(*) FROM t GROUP BY g")
    scaled = parse("SELECT CASE WHEN id * 1000 = 5000 THEN 1 END AS g, COUNT(*) FROM t GROUP BY g")
    assert "group_by" in scaled.column_roles["id"]
    dated = parse(
        "SELECT CASE WHEN d = DATE '2024-01-01' THEN 1 END AS g, COUNT(*) FROM t GROUP BY g"
    )
    assert "group_by" in dated.column_roles["d"]

    table = pa.table({"g": ["a"] * 40, "v": [1e308] * 40, "c": list(range(40))})
    raw, plan = _partial("SELECT g, SUM(v) FROM t GROUP BY g", table)
    out = sticky_noise.add_sticky_noise(raw, plan, key=KEY, version="x", leaf_fingerprints=())
    assert out.column("__s_v")[0].as_py() is None  # inf: withheld, never noised

    ones = pa.table({"g": ["a"] * 200, "c": [i % 2 for i in range(200)]})
    spreads = []
    for sql in (
        "SELECT g, COUNT(*) FILTER (WHERE c = 1) FROM t GROUP BY g",
        "SELECT g, SUM(1) FILTER (WHERE c = 1) FROM t GROUP BY g",
    ):
        draws = []
        raw, plan = _partial(sql, ones)  # the same partial, noised under 200 keys
        name = [n for n in raw.column_names if n.startswith(("__c___v", "__s___v"))][-1]
        for i in range(200):
            out = sticky_noise.add_sticky_noise(
                raw, plan, key=bytes([i]) * 32, version="x", leaf_fingerprints=()
            )
            draws.append(float(out.column(name)[0].as_py()) - 100.0)
        spreads.append(float(np.std(draws)))
    assert spreads[1] > 0.6 * spreads[0]  # a sum of ones is noised as a count


def test_a_groups_conditioned_values_share_its_threshold_draw() -> None:
    """Eight values over the same 20 rows, each padded differently, are shown or withheld
    together (the group's draw): one draw each would make one query eight tries of the k
    oracle. Over many keys both happen, about as often as a group of 20 is shown."""
    table = pa.table({"g": ["a"] * 45, "c": ["x"] * 20 + ["y"] * 25, "v": [1.0] * 45})
    pads = " ".join(f", COUNT(*) FILTER (WHERE c = 'x' AND c <> 'p{i}')" for i in range(8))
    raw, plan = _partial(f"SELECT g{pads} FROM t GROUP BY g", table)
    shown = 0
    for i in range(200):
        version = f"v{i}"
        noisy = sticky_noise.add_sticky_noise(
            raw, plan, key=KEY, version=version, leaf_fingerprints=()
        )
        out = sticky_noise.withhold_small_values(
            noisy, raw, plan, k=5, key=KEY, version=version, leaf_fingerprints=()
        )
        values = [out.column(c)[0].as_py() for c in out.column_names if c.startswith("__c___v")]
        assert len(values) == 8 and len({v is None for v in values}) == 1, values
        shown += values[0] is not None
    assert abs(shown / 200 - 16 / 31) < 0.15


def test_a_conditioned_value_of_few_rows_does_not_withhold_its_group() -> None:
    """Dropping the group when a value had 0 < n < k rows, and keeping it (the value
    blanked) from k rows on, answered the k oracle exactly with the group's presence."""
    from gateway.release.query import sticky_released

    table = pa.table({"g": ["a"] * 40, "id": list(range(40)), "v": [1.0] * 40})
    seen = []
    for ids in ("(1, 2, 3, 4)", "(1, 2, 3, 4, 5)"):  # 4 rows (under k), 5 rows
        sql = f"SELECT g, COUNT(*) FILTER (WHERE id IN {ids}), SUM(v) FROM t GROUP BY g"
        raw, plan = _partial(sql, table)
        for i in range(40):
            released, _ = sticky_released(raw, plan, 5, KEY, f"v{i}", ("l",))
            assert released.table.num_rows == 1  # the group of 40 stays either way
            seen.append((ids, released.table.column("__c___v0")[0].as_py()))
    assert all(v is None for ids, v in seen if ids == "(1, 2, 3, 4)")


def test_l2_values_test_only_group_by_columns() -> None:
    """A filter-only column inside FILTER or CASE WHEN is refused under the L2 noise."""
    from gateway.errors import PermissionDenied
    from gateway.policy.model import Grant
    from gateway.release.query import tested_in_values

    grant = Grant(
        id="g-1", dataset="t", grantee_kind="org", grantee="o", operations=("query",),
        columns={"city": ("group_by", "filter"), "e": ("aggregate", "filter")}, min_group_size=5,
    )  # fmt: skip
    for sql in (
        "SELECT COUNT(*) FILTER (WHERE e <= 10) FROM t",
        "SELECT SUM(CASE WHEN e <= 10 AND city = 'a' THEN 1 END) FROM t",
    ):
        with pytest.raises(PermissionDenied, match="'e' may not be tested inside an aggregate"):
            tested_in_values(parse(sql), grant)
    tested_in_values(parse("SELECT COUNT(*) FILTER (WHERE city = 'a') FROM t WHERE e <= 10"), grant)


def test_a_value_with_few_non_null_rows_does_not_withhold_its_group() -> None:
    """Review finding: SUM(revenue) where 40 padding rows have no revenue and 4 known
    firms (plus the victim, when a test holds) have one: withholding the group at 4
    non-NULL rows and keeping it at 5 was the exact k oracle. The value is blanked."""
    from gateway.release.query import sticky_released

    for with_victim in (False, True):
        present = 5 if with_victim else 4
        table = pa.table({"g": ["a"] * 45, "v": [1.0] * present + [None] * (45 - present)})
        raw, plan = _partial("SELECT g, COUNT(*), SUM(v) FROM t GROUP BY g", table)
        for i in range(40):
            released, _ = sticky_released(raw, plan, 5, KEY, f"v{i}", ())
            assert released.table.num_rows == 1  # the group of 45 stays either way
            if not with_victim:
                assert released.table.column("__s_v")[0].as_py() is None


@pytest.mark.parametrize("sql", ["SELECT SUM(e) FROM t", "SELECT g, SUM(e) FROM t GROUP BY g"])
def test_an_integer_total_past_64_bits_is_decided_on_the_noisy_total(sql: str) -> None:
    """Review finding (2026-12-04): an owner's exact integer total past 2^63 was NULL and
    withheld, so ``SUM(x * c)`` for a search over c read the exact total. Under the noise
    the owner sums in a HUGEINT and decides on the noisy total: two totals on either side
    of 2^63 over the same rows draw the same noise and come out alike (both an int64, 2
    apart, or both refused), never one released and one withheld."""
    outcomes = []
    for last in (2**62 - 1, 2**62 + 1):  # totals 2^63 - 1 and 2^63 + 1
        table = pa.table({"g": ["a", "a"], "e": pa.array([2**62, last], pa.int64())})
        plan = parse(sql)
        con = duckdb.connect()
        con.register("staging", table)
        con.execute("CREATE TABLE ds_t AS SELECT * FROM staging")
        text = partial_query(plan, "ds_t", integer_columns=["e"], hidden=True)
        assert "TRY_CAST" not in text
        raw = con.sql(text).to_arrow_table()
        try:
            out = sticky_noise.add_sticky_noise(
                raw, plan, key=KEY, version="x", leaf_fingerprints=(), integer_sums=frozenset("e")
            )
        except InvalidArgument as exc:
            outcomes.append(str(exc))
            continue
        assert out.schema.field("__s_e").type == pa.int64()
        outcomes.append(out.column("__s_e")[0].as_py())
    if isinstance(outcomes[0], str):
        assert outcomes[1] == outcomes[0] and "does not fit a 64-bit integer" in outcomes[0]
    else:
        assert outcomes[1] - outcomes[0] == 2
