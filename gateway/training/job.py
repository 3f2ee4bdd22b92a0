"""What a run's server process is given, and where it starts: light, so that a home node
never imports Flower for a run. Only the forkserver (which preloads the worker) and the
run's process forked from it do (``gateway/training/worker.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing.connection import Connection

from gateway.training.loading import load
from gateway.training.spec import TrainSpec


@dataclass(frozen=True)
class Job:
    run_id: int
    spec: TrainSpec
    node_ids: tuple[int, ...]
    min_nodes: int
    timeout: float  # seconds a round may wait for its replies


def start(conn: Connection, job: Job) -> None:
    """The run's process's entry point (already imported by its forkserver)."""
    load("gateway.training.worker").main(conn, job)
