"""How far a PSI session is, as the matcher tells its home and the analyst's progress bar.

Progress must say how far, never how many. A stage is told in tenths of itself (``done``
0, 100, ... 1000 of 1000): its start and its end always, and the tenths between only
once the stage has worked ``after`` seconds *from its first batch* (the wait for a peer
before it does not count). A stage that is short once it has begun, however many
batches it spans (a set returned in one burst, a small set), so tells that it started
and ended and nothing else. On a long stage the tenths come one by one, none skipped,
so which tenths appear says nothing; when each comes marks the batches done by then,
which for a set of a few batches tells about how many it spans: about what the length
of the stage tells anyway (docs/psi.md, what each party learns).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from federation.psi.frames import Progress

STEPS = 10  # tenths
AFTER_SECONDS = 0.5


@dataclass
class _Stage:
    shown: int = 0  # the last tenth told (the start, 0, is told on the first call)
    first_batch: float | None = None  # when the first batch was done


@dataclass
class StageProgress:
    node_id: str
    emit: Callable[[Progress], None]
    clock: Callable[[], float] = time.monotonic
    after: float = AFTER_SECONDS
    _stages: dict[str, _Stage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # stages on two threads

    def __call__(self, stage: str, fraction: float) -> None:
        """``fraction`` of ``stage`` is done: 0 when it starts, then after each batch,
        1 when it ends."""
        step = min(STEPS, max(0, int(fraction * STEPS)))
        with self._lock:
            told = self._told(stage, step, fraction)
        for tenth in told:
            self.emit(Progress(self.node_id, stage, 1000 * tenth // STEPS, 1000))

    def _told(self, stage: str, step: int, fraction: float) -> list[int]:
        s = self._stages.get(stage)
        told = [] if s is not None else [0]  # a stage's first call is its start
        if s is None:
            s = self._stages[stage] = _Stage()
        if s.shown >= STEPS or fraction <= 0:
            return told
        if step >= STEPS:  # the end: tenths not yet told too, if any were (none skipped)
            told += list(range(s.shown + 1, STEPS + 1)) if s.shown > 0 else [STEPS]
            s.shown = STEPS
            return told
        now = self.clock()
        if s.first_batch is None:
            s.first_batch = now
        if now - s.first_batch >= self.after and step > s.shown:
            told += list(range(s.shown + 1, step + 1))
            s.shown = step
        return told
