"""Real Flower strategies over an in-process Grid that carries every message as bytes.

Each owner is the ClientApp of ``federation.training.client_app`` on its own partition;
the home is ``federation.training.server``. The pooled baseline is the same task trained
on all rows at once with the same epochs and learning rate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from federation.outcome import Code
from federation.training import client_app, features, server
from federation.training.config import TrainConfig
from federation.training.errors import TooFewNodes, TrainingError
from federation.training.tasks import TASKS
from tests.unit.training_grid import LocalGrid, server_identity

NODES = (11, 12, 13)


@pytest.fixture(autouse=True)
def _home_identity() -> Iterator[None]:
    with server_identity():
        yield


def _grid(
    X: np.ndarray, y: np.ndarray, shares: Sequence[float], *, reverse: bool = False
) -> LocalGrid:
    """Owners holding disjoint random partitions of (X, y) in the given shares; with
    ``reverse`` the grid lists (and so asks and hears) the nodes in the opposite order."""
    order = np.random.default_rng(0).permutation(len(y))
    cuts = (np.cumsum(shares)[:-1] * len(y)).astype(int)
    apps = [(node, _app(X[p], y[p])) for node, p in zip(NODES, np.split(order, cuts), strict=True)]
    return LocalGrid(dict(reversed(apps) if reverse else apps))


def _app(X: np.ndarray, y: np.ndarray) -> client_app.ClientApp:
    def load(config: ConfigRecord) -> tuple[np.ndarray, np.ndarray]:
        return X, y

    return client_app.make_client_app(load)


def _split(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[: len(y) // 4], order[len(y) // 4 :]
    return X[train], y[train], X[test], y[test]


def _federated(
    grid: LocalGrid,
    cfg: TrainConfig,
    rounds: int,
    n_features: int,
    n_outputs: int,
    strategy: str = "fedavg",
    on_round: Callable[[server.RoundReport], None] | None = None,
) -> tuple[server.TrainingResult, TrainConfig]:
    """Standardise from the owners' stats, then train: what the home does for a run."""
    stats = server.federated_stats(grid, cfg.to_record(), min_nodes=len(NODES))
    scaled = replace(cfg, mean=tuple(stats.mean), std=tuple(stats.std))
    result = server.run(
        grid,
        server.make_strategy(strategy, server.StrategyOptions(min_nodes=len(NODES))),
        server.initial_arrays(cfg.task, n_features, n_outputs, cfg.seed),
        rounds,
        scaled.to_record(),
        on_round,
    )
    return result, scaled


def _pooled(cfg: TrainConfig, X: np.ndarray, y: np.ndarray, epochs: int, n_out: int):  # noqa: ANN202
    task = TASKS[cfg.task]
    Z = features.standardise(X, X.mean(axis=0), X.std(axis=0))
    w, _ = task.fit(
        task.init(X.shape[1], n_out, cfg.seed),
        Z,
        y,
        epochs=epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
    )
    return w, (X.mean(axis=0), X.std(axis=0))


def _accuracy(task: str, w: list[np.ndarray], X: np.ndarray, y: np.ndarray, scale) -> float:  # noqa: ANN001
    return float(np.mean(TASKS[task].predict(w, features.standardise(X, *scale)) == y))


def _tabular(seed: int, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Correlated features on different scales, a logistic label with overlap."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 6))
    mix = rng.normal(size=(6, 10))
    X = latent @ mix * rng.uniform(0.5, 50, size=10) + rng.uniform(-100, 100, size=10)
    score = latent @ rng.normal(size=6)
    y = (score + rng.logistic(scale=0.7, size=n) > 0).astype(np.float64)
    return X, y


def _parity(
    X: np.ndarray, y: np.ndarray, cfg: TrainConfig, rounds: int, *, held_out: bool
) -> tuple[float, float]:
    """Accuracy of the federated and of the pooled model: on a held-out quarter, or (for a
    small dataset, where one row is a large share of a quarter) on all the rows."""
    Xtr, ytr, Xte, yte = _split(X, y, seed=1) if held_out else (X, y, X, y)
    grid = _grid(Xtr, ytr, (0.5, 0.3, 0.2))
    result, scaled = _federated(grid, cfg, rounds, X.shape[1], 2)
    scale = (np.array(scaled.mean), np.array(scaled.std))
    fed = _accuracy(cfg.task, result.arrays, Xte, yte, scale)
    w, pooled_scale = _pooled(cfg, Xtr, ytr, rounds * cfg.epochs, 2)
    return fed, _accuracy(cfg.task, w, Xte, yte, pooled_scale)


def test_federated_logreg_matches_pooled_accuracy_on_tabular_data() -> None:
    X, y = _tabular(seed=2)
    cfg = TrainConfig(task="logreg", n_classes=2, lr=0.05, epochs=1, batch_size=32, seed=3)
    fed, pooled = _parity(X, y, cfg, rounds=30, held_out=True)
    majority = max(np.mean(y), 1 - np.mean(y))
    assert pooled > majority + 0.1  # the model learned something to be at parity with
    assert abs(fed - pooled) <= 0.01


def test_federated_logreg_matches_pooled_accuracy_on_breast_cancer() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.load_breast_cancer(return_X_y=True)
    cfg = TrainConfig(task="logreg", n_classes=2, lr=0.05, epochs=3, batch_size=16, seed=3)
    fed, pooled = _parity(X.astype(np.float64), y.astype(np.float64), cfg, 40, held_out=False)
    assert pooled > 0.95
    assert abs(fed - pooled) <= 0.01


def test_fedavg_of_one_full_batch_step_is_pooled_gradient_descent() -> None:
    """With full-batch steps FedAvg's num-examples weighting is exactly the pooled
    gradient, so the weights agree to rounding: the weighting key is the right one."""
    X, y = _tabular(seed=4, n=1500)
    grid = _grid(X, y, (0.6, 0.25, 0.15))
    cfg = TrainConfig(task="logreg", n_classes=2, lr=0.5, epochs=1, batch_size=0, seed=0)
    result, _ = _federated(grid, cfg, 12, X.shape[1], 2)
    w, _ = _pooled(cfg, X, y, 12, 2)
    for a, b in zip(result.arrays, w, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def _blobs(seed: int, k: int, n: int = 1800) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(k, size=n, p=np.linspace(1, 2, k) / np.linspace(1, 2, k).sum())
    centres = rng.normal(scale=2.0, size=(k, 4))
    return centres[y] + rng.normal(size=(n, 4)), y.astype(np.float64)


def _xor(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    return X, (X[:, 0] * X[:, 1] > 0).astype(np.float64)


def _learns(X: np.ndarray, y: np.ndarray, cfg: TrainConfig, n_out: int, rounds: int) -> float:
    """Train federated; check eval loss fell; return held-out accuracy (or -MSE)."""
    Xtr, ytr, Xte, yte = _split(X, y, seed=5)
    result, scaled = _federated(_grid(Xtr, ytr, (0.4, 0.35, 0.25)), cfg, rounds, X.shape[1], n_out)
    losses = [r.eval_metrics["eval_loss"] for r in result.history]
    assert losses[-1] < 0.7 * losses[0]
    scale = (np.array(scaled.mean), np.array(scaled.std))
    if TASKS[cfg.task].classification:
        return _accuracy(cfg.task, result.arrays, Xte, yte, scale)
    pred = TASKS[cfg.task].predict(result.arrays, features.standardise(Xte, *scale))
    return -float(np.mean((pred[:, 0] - yte) ** 2))


def test_multinomial_logreg_learns() -> None:
    X, y = _blobs(seed=6, k=4)
    cfg = TrainConfig(task="logreg", n_classes=4, lr=0.05, epochs=1, batch_size=32, seed=1)
    acc = _learns(X, y, cfg, 4, rounds=8)
    assert acc > np.bincount(y.astype(int)).max() / len(y) + 0.3


def test_linreg_learns() -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(10, 4, size=(1500, 5))
    y = X @ rng.normal(size=5) + rng.normal(scale=0.5, size=1500)
    cfg = TrainConfig(task="linreg", lr=0.02, epochs=1, batch_size=32, seed=1)
    neg_mse = _learns(X, y, cfg, 1, rounds=10)
    assert -neg_mse < 0.05 * np.var(y)  # far below the constant predictor's error


@pytest.mark.parametrize("task", ["mlp", "mlp_relu"])
def test_mlp_learns_what_logreg_cannot(task: str) -> None:
    X, y = _xor(seed=8)
    mlp = _learns(
        X, y, TrainConfig(task=task, n_classes=2, lr=0.1, epochs=2, batch_size=16, seed=2), 2, 15
    )
    Xtr, ytr, Xte, yte = _split(X, y, seed=5)
    linear, scale = _pooled(TrainConfig(task="logreg", n_classes=2, lr=0.1), Xtr, ytr, 30, 2)
    baseline = max(np.mean(yte), 1 - np.mean(yte), _accuracy("logreg", linear, Xte, yte, scale))
    assert mlp > baseline + 0.25


def test_same_seed_same_weights_whatever_order_replies_arrive_in() -> None:
    X, y = _xor(seed=9, n=900)
    cfg = TrainConfig(task="mlp", n_classes=2, lr=0.1, epochs=1, batch_size=16, seed=4)

    def final(seed: int, reverse: bool) -> list[np.ndarray]:
        grid = _grid(X, y, (0.5, 0.3, 0.2), reverse=reverse)
        run_cfg = replace(cfg, seed=seed)
        return _federated(grid, run_cfg, 4, 2, 2)[0].arrays

    a, b, c = final(4, False), final(4, True), final(5, False)
    assert all(np.array_equal(x, z) for x, z in zip(a, b, strict=True))
    assert not all(np.array_equal(x, z) for x, z in zip(a, c, strict=True))


@pytest.mark.parametrize("name", list(server.STRATEGIES))
def test_each_strategy_runs_two_rounds(name: str) -> None:
    X, y = _tabular(seed=10, n=600)
    cfg = TrainConfig(task="logreg", n_classes=2, lr=0.05, epochs=1, batch_size=32, seed=1)
    reports: list[server.RoundReport] = []
    result, _ = _federated(
        _grid(X, y, (0.4, 0.3, 0.3)), cfg, 2, X.shape[1], 2, name, reports.append
    )
    start = TASKS["logreg"].init(X.shape[1], 2, 1)
    assert [r.server_round for r in reports] == [1, 2] == [r.server_round for r in result.history]
    for r in reports:
        assert r.train_nodes == r.eval_nodes == NODES and r.failed == ()
        assert {"train_loss", "update_norm"} <= set(r.train_metrics)
        assert {"eval_loss", "eval_acc"} <= set(r.eval_metrics)
    assert [a.shape for a in result.arrays] == [a.shape for a in start]
    assert all(np.isfinite(a).all() for a in result.arrays)
    assert not np.array_equal(result.arrays[0], start[0])
    assert all(np.array_equal(a, b) for a, b in zip(reports[-1].arrays, result.arrays, strict=True))


def test_fedprox_sends_its_mu_and_the_owners_apply_it() -> None:
    X, y = _tabular(seed=11, n=900)
    cfg = TrainConfig(task="logreg", n_classes=2, lr=0.1, epochs=5, batch_size=32, seed=1)
    norms = {}
    for name, mu in (("fedavg", 0.0), ("fedprox", 1.0)):
        grid = _grid(X, y, (0.4, 0.3, 0.3))
        opts = server.StrategyOptions(min_nodes=3, proximal_mu=mu)
        result = server.run(
            grid,
            server.make_strategy(name, opts),
            server.initial_arrays("logreg", X.shape[1], 2, 1),
            1,
            replace(cfg, mean=tuple(X.mean(0)), std=tuple(X.std(0))).to_record(),
        )
        norms[name] = result.history[0].train_metrics["update_norm"]
    assert norms["fedprox"] < 0.8 * norms["fedavg"]


def test_a_failing_owner_is_left_out_above_the_minimum_and_stops_the_run_below_it() -> None:
    X, y = _tabular(seed=12, n=600)
    cfg = TrainConfig(task="logreg", n_classes=2, lr=0.05, seed=1).to_record()
    grid = _grid(X, y, (0.4, 0.3, 0.3))
    grid.failing = {12}
    start = server.initial_arrays("logreg", X.shape[1], 2, 1)
    result = server.run(grid, server.make_strategy("fedavg"), start, 2, cfg)  # min 2
    assert [r.failed for r in result.history] == [(12,), (12,)]
    assert [r.train_nodes for r in result.history] == [(11, 13), (11, 13)]
    with pytest.raises(TooFewNodes) as info:
        server.run(grid, server.make_strategy("fedavg", server.StrategyOptions(3)), start, 2, cfg)
    assert info.value.missing == (12,)
    assert info.value.code is Code.UNAVAILABLE
    assert "needs 3" in info.value.reason


def test_an_owner_dropping_out_mid_run_stops_it_naming_the_owner() -> None:
    X, y = _tabular(seed=13, n=600)
    grid = _grid(X, y, (0.4, 0.3, 0.3))
    cfg = TrainConfig(task="logreg", n_classes=2, lr=0.05, seed=1).to_record()

    def drop(report: server.RoundReport) -> None:
        grid.down = {13}

    with pytest.raises(TooFewNodes) as info:
        server.run(
            grid,
            server.make_strategy("fedavg", server.StrategyOptions(min_nodes=3)),
            server.initial_arrays("logreg", X.shape[1], 2, 1),
            5,
            cfg,
            drop,
        )
    assert info.value.server_round == 2 and info.value.missing == (13,)


def test_raising_from_on_round_cancels_the_run() -> None:
    class Cancelled(Exception):
        pass

    X, y = _tabular(seed=14, n=300)
    grid = _grid(X, y, (0.4, 0.3, 0.3))
    seen: list[int] = []

    def cancel_after_two(report: server.RoundReport) -> None:
        seen.append(report.server_round)
        if report.server_round == 2:
            raise Cancelled

    cfg = TrainConfig(task="logreg", n_classes=2, lr=0.05, seed=1).to_record()
    with pytest.raises(Cancelled):
        server.run(
            grid,
            server.make_strategy("fedavg"),
            server.initial_arrays("logreg", X.shape[1], 2, 1),
            10,
            cfg,
            cancel_after_two,
        )
    assert seen == [1, 2]
    assert sum(kind == "train" for _, kind in grid.sent) == 2 * len(NODES)


def test_stats_over_the_wire_equal_numpys_and_count_no_classes() -> None:
    X, y = _blobs(seed=15, k=3)
    grid = _grid(X, y, (0.5, 0.2, 0.3))
    cfg = TrainConfig(task="logreg", n_classes=3, seed=1).to_record()
    stats = server.federated_stats(grid, cfg, min_nodes=3)
    np.testing.assert_allclose(stats.mean, X.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.std, X.std(axis=0), rtol=1e-12, atol=1e-12)
    assert stats.count == len(y) and stats.nodes == NODES
    # no count per class is released (a class under k would be an exact count)
    rec = client_app.stats_content(lambda _: (X, y), RecordDict({"config": cfg}))
    assert set(rec[client_app.STATS].keys()) == {"count", "shift", "sum", "sumsq"}


def test_holdout_splits_each_owners_rows_between_train_and_evaluate() -> None:
    X, y = _tabular(seed=16, n=400)
    X[:, 0] = np.arange(len(y))  # a row id, to see which rows each step used
    cfg = TrainConfig(task="logreg", n_classes=2, seed=1, holdout=0.25)
    rec = cfg.to_record()

    def load(config: ConfigRecord) -> tuple[np.ndarray, np.ndarray]:
        return X, y

    train_rows = client_app._rows(load, rec, cfg, evaluation=False)[0][:, 0]
    eval_rows = client_app._rows(load, rec, cfg, evaluation=True)[0][:, 0]
    assert len(train_rows) == 300 and len(eval_rows) == 100
    assert sorted([*train_rows, *eval_rows]) == list(range(400))
    model = ArrayRecord(TASKS["logreg"].init(X.shape[1], 2, 0))
    train = client_app.train_content(load, RecordDict({"arrays": model, "config": rec}))
    ev = client_app.evaluate_content(load, RecordDict({"arrays": model, "config": rec}))
    assert train["metrics"]["num-examples"] == 300 and ev["metrics"]["num-examples"] == 100
    stats = client_app.read_stats(client_app.stats_content(load, RecordDict({"config": rec})))
    assert stats.count == 300
    np.testing.assert_allclose(stats.shift[0], train_rows.mean())


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"config": {"task": "logreg", "n_classes": 2}}, "no ArrayRecord"),
        ({"arrays": [np.zeros((3, 1)), np.zeros(1)]}, "no ConfigRecord"),
        ({"arrays": [np.zeros((3, 1)), np.zeros(1)], "config": {"task": "svm"}}, "unknown"),
        (
            {"arrays": [np.zeros((3, 1)), np.zeros(1)], "config": {"task": "logreg"}},
            "n_classes",
        ),
        (
            {
                "arrays": [np.zeros((3, 1)), np.zeros(1)],
                "config": {"task": "logreg", "n_classes": 2, "epochs": 10**6},
            },
            "epochs",
        ),
        (
            {
                "arrays": [np.zeros((5, 1)), np.zeros(1)],
                "config": {"task": "logreg", "n_classes": 2},
            },
            "not the run's",
        ),
        (  # a binary run's model with a thousand outputs: scores of rows x 1000
            {
                "arrays": [np.zeros((3, 1000)), np.zeros(1000)],
                "config": {"task": "logreg", "n_classes": 2},
            },
            r"not the run's \(\(3, 1\), \(1,\)\)",
        ),
        (  # an MLP wider than the task's: one hidden unit per row is a copy of the rows
            {
                "arrays": [np.zeros((3, 1024)), np.zeros(1024), np.zeros((1024, 1)), np.zeros(1)],
                "config": {"task": "mlp", "n_classes": 2},
            },
            r"not the run's \(\(3, 16\)",
        ),
        (
            {
                "arrays": [np.zeros((3, 1)), np.zeros(1)],
                "config": {"task": "logreg", "n_classes": 2, "mean": [0.0], "std": [1.0]},
            },
            "standardising",
        ),
        (
            {
                "arrays": [np.zeros((3, 1)), np.zeros(1)],
                "config": {"task": "logreg", "n_classes": 2, "lr": "fast"},
            },
            "lr",
        ),
    ],
)
def test_the_owner_refuses_malformed_messages(content: dict, reason: str) -> None:
    X = np.zeros((10, 3))
    y = np.zeros(10)
    rd = RecordDict()
    if "arrays" in content:
        rd["arrays"] = ArrayRecord(content["arrays"])
    if "config" in content:
        rd["config"] = ConfigRecord(content["config"])
    with pytest.raises(TrainingError, match=reason) as info:
        client_app.train_content(lambda c: (X, y), rd)
    assert info.value.code is Code.INVALID_ARGUMENT


def test_an_array_that_is_not_numpy_data_is_refused() -> None:
    bad = ArrayRecord(
        {
            "0": Array(dtype="float64", shape=(3, 1), stype="numpy.ndarray", data=b"junk"),
            "1": Array(np.zeros(1)),
        }
    )
    rd = RecordDict({"arrays": bad, "config": ConfigRecord({"task": "logreg", "n_classes": 2})})
    with pytest.raises(TrainingError, match="cannot be read"):
        client_app.train_content(lambda c: (np.zeros((4, 3)), np.zeros(4)), rd)


def test_flowers_client_side_clipping_wraps_the_owners_app_and_the_strategy() -> None:
    """The DP wrapper finds its minimum inside, sends its clipping norm, and the owners'
    ``fixedclipping_mod`` clips each update: the global step is at most the norm."""
    from flwr.clientapp.mod import fixedclipping_mod
    from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping

    X, y = _tabular(seed=17, n=600)
    order = np.array_split(np.random.default_rng(0).permutation(len(y)), 3)
    grid = LocalGrid(
        {
            node: client_app.make_client_app(
                lambda c, p=p: (X[p], y[p]), train_mods=[fixedclipping_mod]
            )
            for node, p in zip(NODES, order, strict=True)
        }
    )
    clip = 0.02
    strategy = DifferentialPrivacyClientSideFixedClipping(
        server.make_strategy("fedavg", server.StrategyOptions(min_nodes=3)),
        noise_multiplier=0.0,
        clipping_norm=clip,
        num_sampled_clients=3,
    )
    cfg = TrainConfig(task="logreg", n_classes=2, lr=0.1, epochs=3, batch_size=32, seed=1)
    start = server.initial_arrays("logreg", X.shape[1], 2, 1)
    scaled = replace(cfg, mean=tuple(X.mean(0)), std=tuple(X.std(0))).to_record()
    result = server.run(grid, strategy, start, 1, scaled)
    step = np.sqrt(
        sum(
            np.sum((a - b) ** 2)
            for a, b in zip(result.arrays, start.to_numpy_ndarrays(), strict=True)
        )
    )
    assert result.history[0].train_metrics["update_norm"] > 10 * clip  # before clipping
    assert 0.5 * clip < step <= clip * (1 + 1e-9)
    grid.down = {13}
    with pytest.raises(TooFewNodes):  # the wrapped FedAvg's minimum of 3 holds
        server.run(grid, strategy, start, 1, scaled)
