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
