"""Fan-out keeps every member's outcome and never waits past its deadline."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from federation.fanout import fan_out
from federation.outcome import Code


def test_outcomes_in_order_with_errors_and_timeouts() -> None:
    release = threading.Event()

    def call(x: int) -> int:
        if x == 2:
            raise ValueError("boom")
        if x == 3:
            release.wait(10)
        return x * 10

    with ThreadPoolExecutor(4) as pool:
        t0 = time.monotonic()
        outs = fan_out(pool, [1, 2, 3, 4], call, timeout=2.0)  # 1 and 4 answer at once
        elapsed = time.monotonic() - t0
        release.set()
    assert [o.target for o in outs] == [1, 2, 3, 4]
    assert [o.value for o in outs] == [10, None, None, 40]
    assert outs[1].error is not None and outs[1].error.reason == "boom"
    assert outs[2].error is not None and "no answer within 2s" in outs[2].error.reason
    assert outs[0].ok and not outs[2].ok
    assert elapsed < 6


def test_a_target_never_called_is_not_reported_late() -> None:
    """Review (2026-12-04): with the shared pool busy, a target whose call never started
    was reported as having given no answer in time (blamed for the node's own load)."""
    release = threading.Event()

    def call(x: int) -> int:
        release.wait(10)
        return x

    with ThreadPoolExecutor(1) as pool:  # one thread: the second call waits in the queue
        outs = fan_out(pool, [1, 2], call, timeout=0.3)
        release.set()
    assert outs[0].error is not None and outs[0].error.code is Code.DEADLINE_EXCEEDED
    assert outs[1].error is not None and outs[1].error.code is Code.UNAVAILABLE
    assert outs[1].error.reason == "not asked: this node was too busy to call it"
