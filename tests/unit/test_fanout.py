"""Fan-out keeps every member's outcome and never waits past its deadline."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from federation.fanout import fan_out


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
