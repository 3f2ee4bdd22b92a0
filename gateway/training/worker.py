"""One training run's server side, in its own process (``multiprocessing``, spawn).

Flower keeps the run's identity (``TaskIdentity``) in process-global state that every
new ``Message`` reads, so each run gets a process of its own. The process holds no key
and opens no port: it talks to the home node only through its end of a pipe, asking it
to carry messages (``exchange``) and telling it each finished round and the result.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

# Flower reads these at import time: no telemetry, no update check, ever.
os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
os.environ["FLWR_DISABLE_UPDATE_CHECK"] = "1"

import numpy as np  # noqa: E402
from flwr.common.constant import SUPERLINK_NODE_ID  # noqa: E402
from flwr.supercore.run import Run  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from federation.outcome import Code  # noqa: E402
from federation.training import server  # noqa: E402
from federation.training.config import TrainConfig  # noqa: E402
from federation.training.errors import TooFewNodes, TrainingError  # noqa: E402
from federation.training.tasks import task_named  # noqa: E402
from gateway.training.grid import ExchangeGrid  # noqa: E402


@dataclass(frozen=True)
class Job:
    run_id: int
    spec: dict[str, Any]  # TrainSpec.as_dict()
    node_ids: tuple[int, ...]
    min_nodes: int
    timeout: float  # seconds a round may wait for its replies


def round_summary(r: server.RoundReport) -> dict[str, Any]:
    """What the home shows of a round (plain values through the pipe)."""

    def number(metrics: dict[str, Any], key: str) -> float:
        v = metrics.get(key)
        return float(v) if isinstance(v, int | float) else float("nan")

    return {
        "round": r.server_round,
        "rounds": r.rounds,
        "answered": len(r.train_nodes),
        "failed": list(r.failed),
        "train_loss": number(r.train_metrics, "train_loss"),
        "eval_loss": number(r.eval_metrics, "eval_loss"),
        "eval_accuracy": number(r.eval_metrics, "eval_acc"),
        "elapsed": r.elapsed,
    }


def model_npz(arrays: list[np.ndarray], mean: np.ndarray, std: np.ndarray) -> bytes:
    out = io.BytesIO()
    named: dict[str, Any] = {f"w{i}": a for i, a in enumerate(arrays)}
    np.savez(out, mean=mean, std=std, **named)
    return out.getvalue()


def main(conn: Connection, job: Job) -> None:
    """The process's entry point: run the strategy, report through ``conn``."""
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = job.run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID

    def exchange(out: Any, timeout: float | None) -> list[bytes]:
        conn.send(("exchange", list(out), timeout))
        kind, replies = conn.recv()
        if kind != "replies":
            raise SystemExit(0)  # the home ended the run
        return list(replies)

    try:
        conn.send(("result", run(job, exchange, lambda r: conn.send(("round", r)))))
    except TooFewNodes as exc:
        conn.send(("error", exc.code.name, exc.reason, list(exc.missing)))
    except TrainingError as exc:
        conn.send(("error", exc.code.name, exc.reason, []))
    except Exception as exc:  # the home logs it; the user sees a reference, not a trace
        conn.send(("error", Code.INTERNAL.name, f"{type(exc).__name__}: {exc}", []))
    finally:
        conn.close()


def run(job: Job, exchange: Any, report: Any) -> dict[str, Any]:
    spec = job.spec
    grid = ExchangeGrid(Run.create_empty(job.run_id), job.node_ids, exchange)
    task = task_named(spec["task"])
    n_classes = spec["n_classes"] if task.classification else 0
    base = TrainConfig(
        task=spec["task"],
        n_classes=n_classes,
        lr=spec["learning_rate"] or 0.1,
        epochs=spec["local_epochs"] or 1,
        seed=spec["seed"],
    )
    stats = server.federated_stats(
        grid, base.to_record(), min_nodes=job.min_nodes, timeout=job.timeout
    )
    config = TrainConfig(**{**base.__dict__, "mean": tuple(stats.mean), "std": tuple(stats.std)})
    strategy = server.make_strategy(
        spec["strategy"], server.StrategyOptions(min_nodes=job.min_nodes)
    )
    n_outputs = n_classes if task.classification else 1
    initial = server.initial_arrays(spec["task"], len(spec["features"]), n_outputs, spec["seed"])
    result = server.run(
        grid,
        strategy,
        initial,
        spec["rounds"],
        config.to_record(),
        lambda r: report(round_summary(r)),
        min_nodes=job.min_nodes,
        timeout=job.timeout,
    )
    return {
        "model": model_npz(result.arrays, stats.mean, stats.std),
        "mean": [float(m) for m in stats.mean],
        "std": [float(s) for s in stats.std],
        "examples": int(stats.count),
    }
