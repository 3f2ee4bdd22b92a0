"""The matcher's progress: how far, in tenths, and for a short stage no more than its ends."""

from __future__ import annotations

from federation.psi.frames import Progress
from federation.psi.progress import StageProgress


def _run(times: list[float], fractions: list[float]) -> list[Progress]:
    seen: list[Progress] = []
    clock = iter(times)
    progress = StageProgress("n1", seen.append, clock=lambda: next(clock), after=0.5)
    for fraction in fractions:
        progress("blinded", fraction)
    return seen


def test_a_short_stage_tells_only_its_start_and_end() -> None:
    """However many batches, a stage done within ``after`` shows the same two events."""
    for batches in (1, 3, 10, 40):
        fractions = [0.0] + [i / batches for i in range(batches)] + [1.0]
        seen = _run([0.01 * i for i in range(len(fractions))], fractions)
        assert [p.done for p in seen] == [0, 1000], batches
        assert all(p.total == 1000 and p.stage == "blinded" for p in seen)


def test_a_long_stage_moves_in_tenths_each_once() -> None:
    fractions = [0.0] + [i / 100 for i in range(100)] + [1.0]
    seen = _run([0.1 * i for i in range(len(fractions))], fractions)
    done = [p.done for p in seen]
    assert done == sorted(set(done)) and done[0] == 0 and done[-1] == 1000
    assert set(done) <= set(range(0, 1001, 100)) and len(done) >= 8


def test_stages_are_told_apart_and_out_of_range_is_clamped() -> None:
    seen: list[Progress] = []
    progress = StageProgress("n1", seen.append, clock=lambda: 0.0)
    progress("received", 0.0)
    progress("reblinded", -1.0)
    progress("received", 7.0)
    assert [(p.stage, p.done) for p in seen] == [
        ("received", 0),
        ("reblinded", 0),
        ("received", 1000),
    ]
