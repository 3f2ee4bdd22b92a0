"""The local engine: locked down, and a query that outlives its deadline is interrupted."""

from __future__ import annotations

import time

import pytest

from gateway.engine import Engine
from gateway.errors import DeadlineExceeded, InvalidArgument


def test_deadline_interrupts_a_long_query() -> None:
    engine = Engine()
    try:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            engine.run("SELECT COUNT(*) FROM range(1000000000) a, range(1000) b", timeout=0.2)
        assert time.monotonic() - t0 < 5
    finally:
        engine.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "COPY (SELECT 1) TO '/tmp/fedgate-should-not-exist.csv'",
        "INSTALL httpfs",
        "SET enable_external_access = true",
    ],
)
def test_engine_refuses_files_extensions_and_settings(sql: str) -> None:
    """Second line of defence: even SQL that skipped the parser cannot reach the outside."""
    engine = Engine()
    try:
        with pytest.raises(InvalidArgument):
            engine.run(sql, timeout=5)
    finally:
        engine.close()


def test_derived_values_are_kept_only_beside_the_very_cached_result() -> None:
    """Suppression is computed once per cached result and per tag (k); a table that is not
    the cached result (or a run without a data version) is always computed afresh."""
    engine = Engine(1)
    calls: list[int] = []

    def compute(table):  # type: ignore[no-untyped-def]
        calls.append(table.num_rows)
        return ("protected", table.num_rows)

    sql = "SELECT range AS x FROM range(3)"
    try:
        raw = engine.run(sql, version="v1")
        assert engine.run(sql, version="v1") is raw  # the exact result is kept
        assert engine.derive(sql, "v1", raw, ("k", 5), compute) == ("protected", 3)
        assert engine.derive(sql, "v1", raw, ("k", 5), compute) == ("protected", 3)
        assert calls == [3]
        engine.derive(sql, "v1", raw, ("k", 10), compute)  # another k: computed again
        assert calls == [3, 3]
        other = engine.run(sql)  # no version: not the cached table
        assert other is not raw
        engine.derive(sql, "v1", other, ("k", 5), compute)
        engine.derive(sql, "", other, ("k", 5), compute)
        assert calls == [3, 3, 3, 3]
        fresh = engine.run(sql, version="v2")  # new data digest: a new slot
        assert fresh is not raw
        engine.derive(sql, "v2", fresh, ("k", 5), compute)
        assert calls == [3, 3, 3, 3, 3]
    finally:
        engine.close()
