"""The home's training runs: what ``fedgate train list|status|cancel`` shows and stops.

A run lives as long as the analyst's ``Train`` call; the home remembers the newest runs
(bounded) so that the analyst can look at them from another terminal and cancel one.
Only the analyst who started a run sees or cancels it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

from federation.envelope import Requester
from gateway.clock import utc
from gateway.errors import NotFound

KEEP = 200  # runs a home remembers (running ones are never forgotten before they end)


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    requester: str
    org: str
    dataset: str
    task: str
    rounds: int
    started: str
    state: str = "running"  # running | finished | failed | cancelled
    round: int = 0  # rounds finished
    train_loss: float = float("nan")
    eval_accuracy: float = float("nan")
    reason: str = ""


class Runs:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, RunStatus] = OrderedDict()
        self._stops: dict[str, threading.Event] = {}

    def start(
        self, run_id: str, requester: Requester, dataset: str, task: str, rounds: int,
        stop: threading.Event,
    ) -> None:  # fmt: skip
        with self._lock:
            self._runs[run_id] = RunStatus(
                run_id, str(requester), requester.org, dataset, task, rounds, utc()
            )
            self._stops[run_id] = stop
            ended = [k for k, r in self._runs.items() if r.state != "running"]
            for key in ended[: max(0, len(self._runs) - KEEP)]:
                del self._runs[key]

    def round(self, run_id: str, done: int, train_loss: float, eval_accuracy: float) -> None:
        with self._lock:
            r = self._runs.get(run_id)
            if r is not None:
                self._runs[run_id] = replace(
                    r, round=done, train_loss=train_loss, eval_accuracy=eval_accuracy
                )

    def end(self, run_id: str, state: str, reason: str = "") -> None:
        with self._lock:
            r = self._runs.get(run_id)
            if r is not None:
                self._runs[run_id] = replace(r, state=state, reason=reason[:300])
            self._stops.pop(run_id, None)

    def mine(self, requester: Requester) -> list[RunStatus]:
        with self._lock:
            return [r for r in self._runs.values() if _theirs(r, requester)]

    def get(self, run_id: str, requester: Requester) -> RunStatus:
        with self._lock:
            r = self._runs.get(run_id)
        if r is None or not _theirs(r, requester):
            raise NotFound(f"no training run {run_id!r} of yours at this node")
        return r

    def cancel(self, run_id: str, requester: Requester) -> RunStatus:
        """Stop a running run (it ends at every node at its next step)."""
        r = self.get(run_id, requester)
        with self._lock:
            stop = self._stops.get(run_id)
        if stop is not None:
            stop.set()
        return r


def _theirs(run: RunStatus, requester: Requester) -> bool:
    return run.requester == str(requester) and run.org == requester.org
