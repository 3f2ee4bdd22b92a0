"""The demo's training run: which enterprises are high-tech, learned across provinces.

Each province's registry stays at its node; the analyst's home runs logistic regression
on Flower over them (``fedgate train``). The demo then trains the same task on the pooled
rows, which only a demo can do (it wrote every node's data), to show how close the
federated model comes.
"""

from __future__ import annotations

import functools
import io
import queue
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from federation.training import features
from federation.training.tasks import task_named
from gateway.client import Client, ClientError, TrainRun
from gateway.demo.sample_data import INDUSTRY_CODES
from gateway.roles.train_home import TrainAsk, TrainResult, TrainRound
from gateway.training.spec import TrainSpec

OWNERS = ("anhui", "jiangsu", "shanghai", "zhejiang")
NUMERIC = ("employees", "revenue", "registered_capital")
CATEGORICAL = {"industry_code": INDUSTRY_CODES}  # one-hot, from the declared categories
FEATURES = ("industry_code", *NUMERIC)
LABEL = "high_tech"
ROUNDS, LR, EPOCHS, SEED = 10, 0.5, 5, 7
# The run's deadline at the home, and so how long the demo waits for it: the client's
# default (30 s) would end a slower run long before (the call's deadline is what ends it).
TRAIN_SECONDS = 300.0


def _pooled(written: Mapping[str, Sequence[Path]]) -> tuple[np.ndarray, np.ndarray]:
    """Every owner's rows encoded as the owners encode theirs: numbers, then one-hot."""
    tables = [
        pq.read_table(p.with_suffix(".parquet"), columns=[*FEATURES, LABEL])
        for node in OWNERS
        for p in written.get(node, ())
        if p.stem == "enterprise_registry"
    ]
    pooled = pa.concat_tables(tables)
    held = functools.reduce(pc.and_, [pc.is_valid(pooled[f]) for f in FEATURES])
    pooled = pooled.filter(held)  # the owners train on rows holding every column
    X = features.encode({f: pooled[f] for f in FEATURES}, NUMERIC, CATEGORICAL)
    return X, pooled[LABEL].to_numpy(zero_copy_only=False).astype(np.float64)


def accuracy(weights: list[np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
    _, acc = task_named("logreg").evaluate(weights, X, y)
    return float(acc or 0.0)


@dataclass(frozen=True)
class Comparison:
    result: TrainResult
    federated: float  # accuracy of the federated model on every owner's rows
    pooled: float  # the same task trained on the pooled rows
    majority: float  # always answering the commoner class: what a model must beat


def start(client: Client, on_round: Callable[[TrainRound], None]) -> TrainRun:
    """The demo's run, begun; ``on_round`` sees each round as it ends (on the run's thread)."""
    spec = TrainSpec(
        task="logreg", dataset="enterprise_registry", features=FEATURES, label=LABEL,
        rounds=ROUNDS, seed=SEED, learning_rate=LR, local_epochs=EPOCHS, n_classes=2,
    )  # fmt: skip
    return client.train(TrainAsk(spec, OWNERS), timeout=TRAIN_SECONDS, on_round=on_round)


def compare(result: TrainResult, written: Mapping[str, Sequence[Path]]) -> Comparison:
    """The federated model next to the same task trained on the pooled rows."""
    with np.load(io.BytesIO(result.model_npz)) as z:
        weights = [z[f"w{i}"] for i in range(len(z.files) - 2)]
        mean, std = z["mean"], z["std"]
    X, y = _pooled(written)
    Xs = features.standardise(X, mean, std)
    task = task_named("logreg")
    pooled, _ = task.fit(
        task.init(X.shape[1], 2, SEED), Xs, y, epochs=ROUNDS * EPOCHS, lr=LR,
        batch_size=0, seed=SEED,
    )  # fmt: skip
    majority = float(max(y.mean(), 1.0 - y.mean())) if len(y) else 0.0
    return Comparison(result, accuracy(weights, Xs, y), accuracy(pooled, Xs, y), majority)


def train_and_compare(
    client: Client, written: Mapping[str, Sequence[Path]], on_round: Callable[[TrainRound], None]
) -> Comparison:
    # past the run's own deadline, which ends it with DEADLINE_EXCEEDED first
    result = start(client, on_round).result(timeout=TRAIN_SECONDS + 30)
    return compare(result, written)


def round_line(r: TrainRound) -> str:
    return (
        f"   round {r.round:>2}/{r.rounds}: {r.answered} owners, train loss "
        f"{r.train_loss:.4f}, accuracy {r.eval_accuracy:.4f} ({r.elapsed:.1f} s)"
    )


def _as_they_end(run: TrainRun, ended: queue.SimpleQueue[TrainRound]) -> Iterator[TrainRound]:
    """The run's rounds, handed over from its thread, until it is done: they are printed
    here, on the thread that a stop interrupts, not on the run's (where it would kill the
    reader and lose the result)."""
    while not (run.done and ended.empty()):  # done is set after the last round is put
        try:
            r = ended.get(timeout=0.2)
        except queue.Empty:
            continue
        yield r


def run_training(
    client: Client, written: Mapping[str, Sequence[Path]], say: Callable[[str], None]
) -> bool:
    """Say the run's command, then each round as it ends, then the comparison with pooled
    training; whether the run went through."""
    cmd = (
        f"   fedgate train --task logreg --dataset enterprise_registry --features "
        f"{','.join(FEATURES)} --label {LABEL} --rounds {ROUNDS} --lr {LR} --epochs {EPOCHS} "
        f"--seed {SEED} --nodes {','.join(OWNERS)} --out run/"
    )
    say(f"-- Which enterprises are high-tech, learned across {len(OWNERS)} provinces\n{cmd}")
    t0 = time.monotonic()
    ended: queue.SimpleQueue[TrainRound] = queue.SimpleQueue()
    run = start(client, ended.put)
    try:
        for r in _as_they_end(run, ended):
            say(round_line(r))
        c = compare(run.result(), written)
    except ClientError as exc:
        say(f"   FAILED: {exc}")
        return False
    except BaseException:  # a stop: the home ends the run at every node
        run.cancel()
        raise
    receipts = sum(1 for o in c.result.owners if o.receipt)
    say(
        f"   federated accuracy {c.federated:.4f} on all rows; pooled training reaches "
        f"{c.pooled:.4f} (difference {100 * abs(c.federated - c.pooled):.2f} points; always "
        f"answering the commoner class: {c.majority:.4f}); "
        f"only model updates left the owners; {receipts} signed receipts; "
        f"{time.monotonic() - t0:.1f} s"
    )
    return True
