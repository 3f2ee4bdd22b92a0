"""The demo's training run: which enterprises are high-tech, learned across provinces.

Each province's registry stays at its node; the analyst's home runs logistic regression
on Flower over them (``fedgate train``). The demo then trains the same task on the pooled
rows, which only a demo can do (it wrote every node's data), to show how close the
federated model comes.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from federation.training import features
from federation.training.tasks import task_named
from gateway.client import Client, ClientError
from gateway.roles.train_home import TrainAsk, TrainResult, TrainRound
from gateway.training.spec import TrainSpec

OWNERS = ("anhui", "jiangsu", "shanghai", "zhejiang")
FEATURES = ("employees", "revenue", "registered_capital")
LABEL = "high_tech"
ROUNDS, LR, EPOCHS, SEED = 10, 0.5, 5, 7


def _pooled(written: Mapping[str, Sequence[Path]]) -> tuple[np.ndarray, np.ndarray]:
    cols = [*FEATURES, LABEL]
    tables = [
        pq.read_table(p.with_suffix(".parquet"), columns=cols)
        for node in OWNERS
        for p in written.get(node, ())
        if p.stem == "enterprise_registry"
    ]
    X = np.column_stack(
        [np.concatenate([t[f].to_numpy(zero_copy_only=False) for t in tables]) for f in FEATURES]
    ).astype(np.float64)
    y = np.concatenate([t[LABEL].to_numpy(zero_copy_only=False) for t in tables])
    keep = ~np.isnan(X).any(axis=1)  # the owners train on rows holding every column
    return X[keep], y[keep].astype(np.float64)


def accuracy(weights: list[np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
    _, acc = task_named("logreg").evaluate(weights, X, y)
    return float(acc or 0.0)


@dataclass(frozen=True)
class Comparison:
    result: TrainResult
    federated: float  # accuracy of the federated model on every owner's rows
    pooled: float  # the same task trained on the pooled rows


def train_and_compare(
    client: Client, written: Mapping[str, Sequence[Path]], on_round: Callable[[TrainRound], None]
) -> Comparison:
    spec = TrainSpec(
        task="logreg", dataset="enterprise_registry", features=FEATURES, label=LABEL,
        rounds=ROUNDS, seed=SEED, learning_rate=LR, local_epochs=EPOCHS, n_classes=2,
    )  # fmt: skip
    ask = TrainAsk(spec, OWNERS)
    result = client.train(ask, on_round=on_round).result(timeout=300)
    with np.load(io.BytesIO(result.model_npz)) as z:
        weights = [z[f"w{i}"] for i in range(len(z.files) - 2)]
        mean, std = z["mean"], z["std"]
    X, y = _pooled(written)
    Xs = features.standardise(X, mean, std)
    task = task_named("logreg")
    pooled, _ = task.fit(
        task.init(len(FEATURES), 2, SEED), Xs, y, epochs=ROUNDS * EPOCHS, lr=LR,
        batch_size=0, seed=SEED,
    )  # fmt: skip
    return Comparison(result, accuracy(weights, Xs, y), accuracy(pooled, Xs, y))


def run_training(client: Client, written: Mapping[str, Sequence[Path]]) -> tuple[str, bool]:
    """The run's per-round lines and the comparison with pooled training."""
    cmd = (
        f"   fedgate train --task logreg --dataset enterprise_registry --features "
        f"{','.join(FEATURES)} --label {LABEL} --rounds {ROUNDS} --lr {LR} --epochs {EPOCHS} "
        f"--seed {SEED} --nodes {','.join(OWNERS)} --out run/"
    )
    head = f"-- Which enterprises are high-tech, learned across {len(OWNERS)} provinces\n{cmd}"
    lines: list[str] = []

    def show(r: TrainRound) -> None:
        lines.append(
            f"   round {r.round:>2}/{r.rounds}: {r.answered} owners, train loss "
            f"{r.train_loss:.4f}, accuracy {r.eval_accuracy:.4f} ({r.elapsed:.1f} s)"
        )

    t0 = time.monotonic()
    try:
        c = train_and_compare(client, written, show)
    except ClientError as exc:
        return f"{head}\n   FAILED: {exc}", False
    receipts = sum(1 for o in c.result.owners if o.receipt)
    lines.append(
        f"   federated accuracy {c.federated:.4f} on all rows; pooled training reaches "
        f"{c.pooled:.4f} (difference {100 * abs(c.federated - c.pooled):.2f} points); "
        f"only model updates left the owners; {receipts} signed receipts; "
        f"{time.monotonic() - t0:.1f} s"
    )
    return "\n".join([head, *lines]), True
