"""The kept results count what an entry really costs (its key, ~4 KiB besides its
value's bytes) and are capped in number: distinct one-row questions no longer grow memory
far past the byte bound while counting 8 bytes each."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from federation.partials import to_ipc
from federation.sql import parse
from gateway.cache import ENTRY_OVERHEAD_BYTES, BoundedCache, entry_cost
from gateway.engine import RESULT_CACHE_ENTRIES, Engine, data_version
from gateway.roles.home import ANSWER_CACHE_ENTRIES, Home
from tests.unit.test_engine import _entry

PAD = "x" * 4000  # a long literal: what distinct questions of an analyst look like


def test_twenty_thousand_distinct_entries_stay_under_the_count_cap() -> None:
    cache = BoundedCache(64 << 20, max_entries=4096, per_entry=entry_cost)
    for i in range(20_000):
        cache.put((f"SELECT {i} WHERE c <> '{PAD}'", "v1"), i, 8)  # a one-row result
    assert len(cache) == 4096
    assert cache.get((f"SELECT {19_999} WHERE c <> '{PAD}'", "v1")) == 19_999
    assert cache.get((f"SELECT {0} WHERE c <> '{PAD}'", "v1")) is None  # the oldest went
    # each counts its key and the overhead, not 8 bytes
    assert cache.nbytes >= 4096 * (ENTRY_OVERHEAD_BYTES + len(PAD))
    assert cache.nbytes <= 64 << 20


def test_the_key_and_the_overhead_count_against_the_bytes() -> None:
    cache = BoundedCache(1 << 20, per_entry=entry_cost)
    for i in range(20_000):
        cache.put((f"q{i}-{PAD}", b"\x00" * 32), i, 8)
    each = 8 + ENTRY_OVERHEAD_BYTES + len(f"q{19_999}-{PAD}") + 32
    assert len(cache) <= (1 << 20) // (8 + ENTRY_OVERHEAD_BYTES + len(PAD)) and len(cache) > 0
    assert cache.nbytes <= 1 << 20 and cache.nbytes >= len(cache) * (each - 8)
    # an entry whose key alone is over the item limit is not kept
    cache.put("k" * (1 << 20), 1, 8)
    assert cache.get("k" * (1 << 20)) is None


def test_the_engine_keeps_at_most_its_count_of_results(tmp_path: Path) -> None:
    """One-row results of distinct queries: the first is recomputed once more than
    RESULT_CACHE_ENTRIES others came after it (it counted 8 bytes of 64 MiB before)."""
    engine = Engine(1)
    entry = _entry(tmp_path, "firms", list(range(100)))
    version = data_version(entry)
    try:
        table = engine.ensure_loaded(entry)

        def ask(i: int) -> pa.Table:
            return engine.run(f"SELECT COUNT(*) AS n FROM {table} WHERE x > {i}", version=version)

        first = ask(0)
        assert ask(0) is first  # kept
        for i in range(1, RESULT_CACHE_ENTRIES + 1):
            last = ask(i)
        assert ask(RESULT_CACHE_ENTRIES) is last  # the newest is kept
        again = ask(0)
        assert again is not first and again.equals(first)  # the oldest was dropped
    finally:
        engine.close()


def test_the_home_keeps_at_most_its_count_of_answers() -> None:
    engine = Engine(1)
    home = Home("home", None, None, None, None, None, engine.run_on_table, 1 << 22)  # type: ignore[arg-type]
    plan = parse("SELECT g, SUM(x) AS s FROM t GROUP BY g")

    def partial(total: int) -> pa.Table:
        one = pa.array([1], pa.int64())
        return pa.table({"g": ["p"], "__n": one, "__c_x": one, "__s_x": pa.array([total])})

    def merged(total: int) -> pa.Table:
        t = partial(total)
        return home._answer(plan, [t], [to_ipc(t)], noisy=False)[0]

    try:
        first = merged(0)
        assert merged(0) is first  # kept
        for i in range(1, ANSWER_CACHE_ENTRIES + 1):
            merged(i)
        again = merged(0)
        assert again is not first and again.equals(first)  # dropped, merged again
    finally:
        engine.close()
