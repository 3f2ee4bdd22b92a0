"""The matcher's progress: how far, in tenths, and for a short stage no more than its ends."""

from __future__ import annotations

from federation.psi.frames import Progress
from federation.psi.progress import StageProgress


def _run(calls: list[tuple[float, float]]) -> list[int]:
    """``(time, fraction)`` calls on one stage; the ``done`` values told."""
    seen: list[Progress] = []
    now = [0.0]
    progress = StageProgress("n1", seen.append, clock=lambda: now[0], after=0.5)
    for t, fraction in calls:
        now[0] = t
        progress("received", fraction)
    assert all(p.total == 1000 and p.stage == "received" for p in seen)
    return [p.done for p in seen]


def _stage(batches: int, wait: float, per_batch: float) -> list[tuple[float, float]]:
    """Start, ``wait`` seconds with nothing, the batches, then the end."""
    calls = [(0.0, 0.0)]
    calls += [(wait + per_batch * (i + 1), (i + 1) / batches) for i in range(batches)]
    return calls + [(calls[-1][0], 1.0)]


def test_a_short_stage_tells_only_its_start_and_end_whatever_its_batches() -> None:
    """However many batches, and however long the wait before the first (a set sent
    back in one burst after the peer's whole upload), the same two events."""
    for batches in (1, 2, 3, 4, 7, 9, 10, 40):
        for wait in (0.0, 0.6, 30.0):
            assert _run(_stage(batches, wait, 0.004)) == [0, 1000], (batches, wait)


def test_a_long_stage_tells_every_tenth_once_none_skipped() -> None:
    """Its clock starts at the first batch: with two batches nothing lies between."""
    assert _run(_stage(2, 0.3, 1.0)) == [0, 1000]
    for batches in (3, 4, 7, 13, 100):
        done = _run(_stage(batches, 0.3, 2.0 / batches))
        assert done == list(range(0, 1001, 100)), (batches, done)


def test_an_empty_stage_and_stages_told_apart() -> None:
    assert _run([(0.0, 0.0), (0.0, 1.0)]) == [0, 1000]
    seen: list[Progress] = []
    progress = StageProgress("n1", seen.append, clock=lambda: 0.0)
    progress("received", 0.0)
    progress("reblinded", -1.0)
    progress("received", 7.0)  # out of range: clamped
    progress("received", 1.0)  # told once
    assert [(p.stage, p.done) for p in seen] == [
        ("received", 0),
        ("reblinded", 0),
        ("received", 1000),
    ]
