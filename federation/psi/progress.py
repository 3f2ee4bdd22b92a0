"""How far a PSI session is, as the matcher tells its home and the analyst's progress bar.

Progress must say how far, never how many: a stage is told in tenths of itself (0, 100,
... 1000 of 1000), each tenth once. Its start and its end are always told; the tenths
between only once the stage has run ``after`` seconds. A short stage so shows what it
always did (which batches a set spans is not told by its events), and a long one, whose
length the session's timing tells anyway, gets a bar that moves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from federation.psi.frames import Progress

STEPS = 10  # tenths
AFTER_SECONDS = 0.5


@dataclass
class StageProgress:
    node_id: str
    emit: Callable[[Progress], None]
    clock: Callable[[], float] = time.monotonic
    after: float = AFTER_SECONDS
    _shown: dict[str, tuple[int, float]] = field(default_factory=dict)  # tenth, start

    def __call__(self, stage: str, fraction: float) -> None:
        """``fraction`` of ``stage`` is done (0 when it starts, 1 when it ends)."""
        step = min(STEPS, max(0, int(fraction * STEPS)))
        now = self.clock()
        last, began = self._shown.get(stage, (-1, now))
        if last >= step or (0 < step < STEPS and now - began < self.after):
            return
        self._shown[stage] = (step, began)
        self.emit(Progress(self.node_id, stage, 1000 * step // STEPS, 1000))
