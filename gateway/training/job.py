"""What a run's server process is given, and where it starts: light, so that a home node
never imports Flower for a run. Only the forkserver (which preloads the worker) and the
run's process forked from it do (``gateway/training/worker.py``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from multiprocessing.connection import Connection

from federation.outcome import Code, Error
from gateway.training.loading import load
from gateway.training.spec import TrainSpec

log = logging.getLogger("fedgate.train")


@dataclass(frozen=True)
class Job:
    run_id: int
    spec: TrainSpec
    node_ids: tuple[int, ...]
    min_nodes: int
    timeout: float  # seconds a round may wait for its replies


def start(conn: Connection, job: Job) -> None:
    """The run's process's entry point (the worker already imported by its forkserver,
    which ignores a failed import: then it is imported, or fails, here)."""
    try:
        worker = load("gateway.training.worker")
    except Exception:  # logged here (the node's stderr); the analyst gets a clear error
        log.exception("training run %d could not load its worker", job.run_id)
        conn.send(("error", Error(Code.INTERNAL, "the run's server process could not start"), []))
        conn.close()
        return
    worker.main(conn, job)
