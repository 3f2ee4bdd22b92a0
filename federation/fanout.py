"""Call many members at once with one deadline, and keep every member's outcome.

A slow or dead member must never make the whole answer fail or wait past the deadline:
each outcome holds either the member's value or a structured ``Error`` saying why not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

from federation.outcome import Code, Error

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    target: T
    value: R | None
    error: Error | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


def internal(exc: BaseException) -> Error:
    """The default mapping: an exception nobody typed is an internal error."""
    return Error(Code.INTERNAL, str(exc) or type(exc).__name__)


def fan_out(
    executor: Executor,
    targets: Sequence[T],
    call: Callable[[T], R],
    *,
    timeout: float,
    to_error: Callable[[BaseException], Error] = internal,
) -> list[Outcome[T, R]]:
    """Run ``call(target)`` for every target; outcomes come back in target order."""
    start = time.monotonic()

    def timed(target: T) -> tuple[R, float]:
        t0 = time.monotonic()
        value = call(target)
        return value, time.monotonic() - t0

    futures = [executor.submit(timed, t) for t in targets]
    wait(futures, timeout=timeout)
    outcomes: list[Outcome[T, R]] = []
    for target, fut in zip(targets, futures, strict=True):
        if not fut.done() and fut.cancel():  # it never started: the pool was busy
            busy = Error(Code.UNAVAILABLE, "not asked: this node was too busy to call it")
            outcomes.append(Outcome(target, None, busy, time.monotonic() - start))
            continue
        if not fut.done():  # still running (an answer that came meanwhile is taken below)
            late = Error(Code.DEADLINE_EXCEEDED, f"no answer within {timeout:g}s")
            outcomes.append(Outcome(target, None, late, time.monotonic() - start))
            continue
        if fut.cancelled():  # a node that is stopping cancelled it: the call never ran
            stopped = Error(Code.UNAVAILABLE, "not asked: this node is stopping")
            outcomes.append(Outcome(target, None, stopped, 0.0))
        elif (exc := fut.exception()) is not None:
            outcomes.append(Outcome(target, None, to_error(exc), 0.0))
        else:
            value, seconds = fut.result()
            outcomes.append(Outcome(target, value, None, seconds))
    return outcomes
