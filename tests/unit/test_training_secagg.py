"""SecAgg+ rounds (Flower's workflow and mod) over an in-process Grid carrying bytes.

The home gets the same model as a plain FedAvg run, up to SecAgg+'s quantisation, while
no reply it receives holds an owner's own model; an owner that drops out below the
minimum stops the run, naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message

from federation.training import client_app, secagg, server
from federation.training.config import TrainConfig
from federation.training.errors import TooFewNodes, TrainingError
from gateway.training.grid import from_bytes
from tests.unit.training_grid import LocalGrid, server_identity

NODES = (11, 12, 13, 14)


@pytest.fixture(autouse=True)
def _home_identity() -> Iterator[None]:
    with server_identity():
        yield


def _data(seed: int = 3, n: int = 2400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)) * [1, 10, 100, 0.1, 3] + [0, 50, -20, 1, 0]
    y = (X - X.mean(0)) / X.std(0) @ rng.normal(size=5) + rng.logistic(size=n) > 0
    return X, y.astype(np.float64)


class _Recording(LocalGrid):
    """A LocalGrid that keeps every reply the home received, as the home decoded it."""

    def __init__(self, apps: dict[int, client_app.ClientApp]) -> None:
        super().__init__(apps)
        self.replies: list[Message] = []

    def _deliver_here(self, out, timeout):  # noqa: ANN001, ANN202
        got = super()._deliver_here(out, timeout)
        self.replies.extend(from_bytes(data) for _, data in got)
        return got


def _grid(X: np.ndarray, y: np.ndarray, *, secure: bool) -> _Recording:
    parts = np.array_split(np.random.default_rng(0).permutation(len(y)), len(NODES))

    def app(idx: np.ndarray) -> client_app.ClientApp:
        def load(_: ConfigRecord) -> tuple[np.ndarray, np.ndarray]:
            return X[idx], y[idx]

        return client_app.make_client_app(load, secagg=secure)

    return _Recording({node: app(p) for node, p in zip(NODES, parts, strict=True)})


def _run(grid: LocalGrid, *, secure: bool, rounds: int = 5, strategy: str = "fedavg"):  # noqa: ANN202
    cfg = TrainConfig(task="logreg", n_classes=2, lr=0.5, epochs=1, seed=1)
    stats = server.federated_stats(grid, cfg.to_record(), min_nodes=len(NODES))
    scaled = replace(cfg, mean=tuple(stats.mean), std=tuple(stats.std)).to_record()
    initial = server.initial_arrays("logreg", 5, 2, seed=1)
    if secure:
        settings = secagg.SecAggSettings(max_weight=float(stats.count))
        return secagg.run_secagg(
            grid, strategy, initial, rounds, scaled, settings=settings, min_nodes=len(NODES)
        )
    opts = server.StrategyOptions(min_nodes=len(NODES))
    return server.run(grid, server.make_strategy(strategy, opts), initial, rounds, scaled)


def test_secagg_gives_the_plain_fedavg_model_up_to_quantisation() -> None:
    X, y = _data()
    plain = _run(_grid(X, y, secure=False), secure=False)
    grid = _grid(X, y, secure=True)
    secure = _run(grid, secure=True)
    for a, b in zip(plain.arrays, secure.arrays, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)
    assert not all(np.array_equal(a, b) for a, b in zip(plain.arrays, secure.arrays, strict=True))
    history = secure.history
    assert [r.server_round for r in history] == [1, 2, 3, 4, 5]
    assert all(r.train_nodes == NODES and r.eval_nodes == NODES for r in history)
    assert history[-1].eval_metrics["eval_acc"] > 0.7
    assert history[-1].train_metrics["train_loss"] < history[0].train_metrics["train_loss"]
    # four exchanges then the evaluation, every round
    stages = [kind for node, kind in grid.sent if node == NODES[0]]
    assert stages[1:6] == ["train"] * 4 + ["evaluate"]


def test_no_reply_the_home_receives_holds_an_owner_model() -> None:
    X, y = _data()
    grid = _grid(X, y, secure=True)
    _run(grid, secure=True, rounds=2)
    trained = [r for r in grid.replies if r.metadata.message_type == "train"]
    assert len(trained) == 2 * 4 * len(NODES)
    for reply in trained:
        assert all(len(rec) == 0 for rec in reply.content.array_records.values())
        masked = reply.content.config_records["secaggplus_configs"].get("masked_params")
        if masked is not None:  # uniform integers mod 2**32, not model values
            arrays = [np.load(__import__("io").BytesIO(b)) for b in masked]
            assert all(a.dtype.kind in "iu" for a in arrays)


def test_an_owner_dropping_below_the_minimum_stops_the_run_naming_it() -> None:
    X, y = _data()
    grid = _grid(X, y, secure=True)

    grid.failing.add(NODES[2])
    with pytest.raises(TooFewNodes) as info:
        _run(grid, secure=True, rounds=2)
    assert info.value.missing == (NODES[2],)


def test_secagg_refuses_a_strategy_that_needs_single_updates() -> None:
    X, y = _data()
    with pytest.raises(TrainingError, match="weighted sum"):
        _run(_grid(X, y, secure=True), secure=True, strategy="krum")


def test_a_majority_threshold() -> None:
    assert [secagg.threshold(n) for n in (3, 4, 5, 6)] == [2, 3, 3, 4]
