"""The L2 noise on an owner's partial, computed by DuckDB from the owner's own SQL."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from federation.sql import parse, partial_query
from gateway import sticky_noise

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
    """k + floor(3|z|): a group of exactly k is released about 1 time in 4 (over many
    seeds), always the same way for the same rows and condition; a large one always."""
    table = pa.table({"g": ["small"] * 5 + ["large"] * 40, "v": [1.0] * 45})
    raw, _ = _partial("SELECT g, SUM(v) FROM t GROUP BY g", table)
    released = []
    for i in range(400):
        kept = sticky_noise.over_threshold(raw, k=5, key=KEY, version=str(i), leaves=())
        assert "large" in kept.column("g").to_pylist()
        released.append("small" in kept.column("g").to_pylist())
        again = sticky_noise.over_threshold(raw, k=5, key=KEY, version=str(i), leaves=())
        assert again.equals(kept)
    assert 0.18 < sum(released) / len(released) < 0.34
