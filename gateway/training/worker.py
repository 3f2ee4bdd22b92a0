"""One training run's server side, in its own process (forked from a forkserver).

Flower keeps the run's identity (``TaskIdentity``) in process-global state that every
new ``Message`` reads, so each run gets a process of its own. The process holds no key
and opens no port: it talks to the home node only through its end of a pipe, asking it
to carry messages (``exchange``) and telling it each finished round and the result.
"""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from federation.outcome import Code, Error
from federation.training import secagg, server
from federation.training.app_bundle import is_app_task
from federation.training.errors import TooFewNodes, TrainingError
from federation.training.tasks import task_named
from gateway.training.grid import Exchange, ExchangeGrid
from gateway.training.job import Job
from gateway.training.settings import train_config

log = logging.getLogger("fedgate.train")


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

    def exchange(out: Any, timeout: float | None) -> list[tuple[int, bytes]]:
        conn.send(("exchange", list(out), timeout))
        kind, replies = conn.recv()
        if kind != "replies":
            raise SystemExit(0)  # the home ended the run
        return list(replies)

    try:
        conn.send(("result", run(job, exchange, lambda r: conn.send(("round", r)))))
    except TooFewNodes as exc:
        conn.send(("error", Error(exc.code, exc.reason), list(exc.missing)))
    except TrainingError as exc:
        conn.send(("error", Error(exc.code, exc.reason), []))
    except Exception:  # logged here (the node's stderr); the user gets no trace
        log.exception("training run %d failed in its server process", job.run_id)
        conn.send(("error", Error(Code.INTERNAL, "the run's server process failed"), []))
    finally:
        conn.close()


def run(job: Job, exchange: Exchange, report: Any) -> dict[str, Any]:
    spec = job.spec
    grid = ExchangeGrid(Run.create_empty(job.run_id), job.node_ids, exchange)
    base = train_config(spec)
    stats = server.federated_stats(
        grid, base.to_record(), min_nodes=job.min_nodes, timeout=job.timeout
    )
    config = replace(base, mean=tuple(stats.mean), std=tuple(stats.std))
    if is_app_task(spec.task):  # the app's own init, run by an owner's approved copy
        first = stats.nodes[0]  # an owner that answered the statistics
        initial = server.app_initial(grid, config.to_record(), first, timeout=job.timeout)
    else:
        n_outputs = base.n_classes if task_named(spec.task).classification else 1
        width = len(stats.mean)  # a categorical feature is one input per declared value
        initial = server.initial_arrays(spec.task, width, n_outputs, spec.seed)
    evaluate = spec.dp_clip == 0  # an owner under DP answers no evaluation
    # no owner's reply weighs more than the rows it declared (1 each under DP)
    examples = server.weight_limits(stats, dp=spec.dp_clip > 0)
    privacy: tuple[float, float] | None = None  # Flower's central DP: (epsilon, delta)
    if spec.secagg:
        # Under DP every update weighs 1; otherwise no owner weighs more than all rows.
        weight = 1.0 if spec.dp_clip > 0 else float(max(stats.count, 1))
        result = secagg.run_secagg(
            grid,
            spec.strategy,
            initial,
            spec.rounds,
            config.to_record(),
            lambda r: report(round_summary(r)),
            settings=secagg.SecAggSettings(max_weight=weight),
            min_nodes=job.min_nodes,
            evaluate=evaluate,
            examples=examples,
            timeout=job.timeout,
        )
    else:
        strategy = server.make_strategy(
            spec.strategy, server.StrategyOptions(min_nodes=job.min_nodes, evaluate=evaluate)
        )
        if spec.dp_noise > 0:
            strategy = server.with_central_dp(
                strategy, spec.dp_noise, spec.dp_clip, len(job.node_ids)
            )
        result = server.run(
            grid,
            strategy,
            initial,
            spec.rounds,
            config.to_record(),
            lambda r: report(round_summary(r)),
            min_nodes=job.min_nodes,
            examples=examples,
            timeout=job.timeout,
        )
        privacy = server.privacy_spent(strategy)
    return {
        "model": model_npz(result.arrays, stats.mean, stats.std),
        "mean": [float(m) for m in stats.mean],
        "std": [float(s) for s in stats.std],
        "examples": int(stats.count),
        "features": list(stats.names or spec.features),
        "privacy": privacy,
    }
