"""The vetted tasks: exact gradients, learning, determinism, FedProx, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from federation.outcome import Code
from federation.training import tasks
from federation.training.errors import TrainingError
from federation.training.tasks import MLP, TASKS, Task


def _data(task: Task, n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if task.classification:
        return X, rng.integers(0, k, size=n).astype(np.float64)
    return X, rng.normal(size=(n, k))


def _numeric_grads(task: Task, arrays: list[np.ndarray], batch, eps: float = 1e-6):  # noqa: ANN001
    grads = []
    for i, a in enumerate(arrays):
        g = np.zeros_like(a)
        for j in np.ndindex(a.shape):
            plus = [b.copy() for b in arrays]
            minus = [b.copy() for b in arrays]
            plus[i][j] += eps
            minus[i][j] -= eps
            g[j] = (task.loss_and_grads(plus, batch)[0] - task.loss_and_grads(minus, batch)[0]) / (
                2 * eps
            )
        grads.append(g)
    return grads


CASES = [
    ("logreg", 2),
    ("logreg", 4),
    ("linreg", 1),
    ("linreg", 3),
    ("mlp", 2),
    ("mlp", 3),
    ("mlp_relu", 3),
]


@pytest.mark.parametrize(("name", "k"), CASES)
def test_gradients_match_finite_differences(name: str, k: int) -> None:
    task = TASKS[name]
    X, y = _data(task, 40, 3, k, seed=1)
    rng = np.random.default_rng(2)
    # Away from zero so every head and activation is exercised off its symmetric point.
    arrays = [a + rng.normal(scale=0.5, size=a.shape) for a in task.init(3, k, seed=3)]
    weights = rng.uniform(0.5, 2.0, size=k) if task.classification else None
    batch = task.batch(arrays, X, y, weights)
    _, grads = task.loss_and_grads(arrays, batch)
    for g, num in zip(grads, _numeric_grads(task, arrays, batch), strict=True):
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(("name", "k"), CASES)
def test_fit_is_deterministic_for_a_seed(name: str, k: int) -> None:
    task = TASKS[name]
    X, y = _data(task, 200, 4, k, seed=4)
    kw = dict(epochs=3, lr=0.05, batch_size=16)
    a, loss_a = task.fit(task.init(4, k, seed=5), X, y, seed=6, **kw)
    b, loss_b = task.fit(task.init(4, k, seed=5), X, y, seed=6, **kw)
    c, _ = task.fit(task.init(4, k, seed=5), X, y, seed=7, **kw)
    assert loss_a == loss_b
    assert all(np.array_equal(x, z) for x, z in zip(a, b, strict=True))
    assert not all(np.array_equal(x, z) for x, z in zip(a, c, strict=True))


def test_mlp_init_depends_on_the_seed_and_only_on_it() -> None:
    task = TASKS["mlp"]
    a, b, c = task.init(5, 3, 1), task.init(5, 3, 1), task.init(5, 3, 2)
    assert all(np.array_equal(x, z) for x, z in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_full_batch_fit_is_plain_gradient_descent() -> None:
    """batch_size 0: each epoch is one step of w - lr * grad on all rows."""
    task = TASKS["logreg"]
    X, y = _data(task, 100, 3, 3, seed=8)
    w = task.init(3, 3, seed=0)
    expected = [a.copy() for a in w]
    for _ in range(4):
        _, grads = task.loss_and_grads(expected, task.batch(expected, X, y))
        expected = [a - 0.3 * g for a, g in zip(expected, grads, strict=True)]
    got, _ = task.fit(w, X, y, epochs=4, lr=0.3, batch_size=0, seed=0)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_proximal_term_keeps_the_model_near_its_start() -> None:
    task = TASKS["logreg"]
    rng = np.random.default_rng(9)
    X = rng.normal(size=(300, 4))
    y = (X @ np.array([2.0, -1.0, 0.5, 0.0]) > 0).astype(np.float64)
    start = task.init(4, 2, seed=0)

    def drift(mu: float) -> float:
        w, _ = task.fit(start, X, y, epochs=20, lr=0.5, batch_size=0, seed=0, proximal_mu=mu)
        return float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(w, start, strict=True))))

    assert drift(1.0) < 0.5 * drift(0.0)  # lr * mu < 1: the pull itself stays stable


def test_class_weights_move_the_decision_towards_the_rare_class() -> None:
    task = TASKS["logreg"]
    rng = np.random.default_rng(10)
    X = np.concatenate([rng.normal(0, 1, size=(900, 2)), rng.normal(1, 1, size=(100, 2))])
    y = np.concatenate([np.zeros(900), np.ones(100)])
    counts = np.bincount(y.astype(int))
    balanced = len(y) / (2 * counts)
    kw = dict(epochs=200, lr=0.5, batch_size=0, seed=0)
    plain, _ = task.fit(task.init(2, 2, 0), X, y, **kw)
    weighted, _ = task.fit(task.init(2, 2, 0), X, y, class_weight=balanced, **kw)
    rare = y == 1
    recall = [float(np.mean(task.predict(w, X[rare]) == 1)) for w in (plain, weighted)]
    assert recall[1] > recall[0] + 0.3


def test_evaluate_reports_accuracy_for_classifiers_and_none_for_regression() -> None:
    X, y = _data(TASKS["logreg"], 50, 2, 2, seed=11)
    loss, acc = TASKS["logreg"].evaluate(TASKS["logreg"].init(2, 2, 0), X, y)
    assert loss == pytest.approx(np.log(2))  # zero weights: p = 1/2 for every row
    assert acc == np.mean(y == 0)  # ties (score 0) predict class 0
    Xr, yr = _data(TASKS["linreg"], 50, 2, 1, seed=12)
    loss, acc = TASKS["linreg"].evaluate(TASKS["linreg"].init(2, 1, 0), Xr, yr[:, 0])
    assert acc is None
    assert loss == pytest.approx(np.mean(yr**2))


@pytest.mark.parametrize(
    ("arrays", "X", "y", "reason"),
    [
        ([np.zeros((3, 1))], np.zeros((4, 3)), np.zeros(4), "not its model"),
        ([np.zeros((3, 1)), np.zeros(2)], np.zeros((4, 3)), np.zeros(4), "not its model"),
        ([np.full((3, 1), np.nan), np.zeros(1)], np.zeros((4, 3)), np.zeros(4), "not finite"),
        ([np.zeros((3, 1)), np.zeros(1)], np.zeros((4, 2)), np.zeros(4), "do not fit"),
        ([np.zeros((3, 1)), np.zeros(1)], np.zeros((4, 3)), np.array([0, 1, 2, 0]), "0..1"),
        ([np.zeros((3, 1)), np.zeros(1)], np.zeros((4, 3)), np.array([0, 0.5, 1, 0]), "0..1"),
        ([np.zeros((3, 1)), np.zeros(1)], np.zeros((0, 3)), np.zeros(0), "no rows"),
        ([np.array(["a"]), np.zeros(1)], np.zeros((4, 3)), np.zeros(4), "numeric"),
    ],
)
def test_bad_models_and_rows_are_refused(
    arrays: list[np.ndarray], X: np.ndarray, y: np.ndarray, reason: str
) -> None:
    with pytest.raises(TrainingError, match=reason) as info:
        TASKS["logreg"].fit(arrays, X, y, epochs=1, lr=0.1, batch_size=0, seed=0)
    assert info.value.code is Code.INVALID_ARGUMENT


def test_an_oversized_hidden_layer_is_refused() -> None:
    big = MLP(hidden=2000).init(2, 2, 0)
    with pytest.raises(TrainingError, match="not its model"):
        TASKS["mlp"].check(big)


def test_divergence_is_reported_not_returned() -> None:
    task = TASKS["linreg"]
    X, y = _data(task, 50, 3, 1, seed=13)
    with pytest.raises(TrainingError, match="diverged"):
        task.fit(task.init(3, 1, 0), X * 1e3, y, epochs=50, lr=10.0, batch_size=0, seed=0)


def test_a_run_that_must_not_refuse_stays_where_it_started_when_it_diverges() -> None:
    """Under DP the owner answers a diverging round with the model it got (loss NaN):
    whether it diverged depends on the rows, and a refusal would tell it."""
    task = TASKS["linreg"]
    X, y = _data(task, 50, 3, 1, seed=13)
    start = [a + 0.5 for a in task.init(3, 1, 0)]
    got, loss = task.fit(
        start, X * 1e3, y, epochs=50, lr=10.0, batch_size=0, seed=0, stay_if_diverged=True
    )
    assert math.isnan(loss)
    assert all(np.array_equal(a, b) for a, b in zip(got, start, strict=True))
    calm, calm_loss = task.fit(
        start, X, y, epochs=5, lr=0.01, batch_size=0, seed=0, stay_if_diverged=True
    )
    assert math.isfinite(calm_loss) and not np.array_equal(calm[0], start[0])


def test_a_step_over_many_rows_holds_its_scores_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review (2026-12-04): the owner bounds rows x inputs, but a softmax over 1 000
    classes held several rows x classes float64 arrays at once (~224 GiB for the 10 M
    rows of one feature it allows). A step now goes in chunks of rows: one epoch over
    20 000 rows x 1 000 classes (160 MB an array unchunked) peaks under a third of one
    such array, and the chunks' result is the single pass's."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n, k = 20_000, 1000
    X, y = rng.normal(size=(n, 1)), rng.integers(0, k, size=n).astype(np.float64)
    task = tasks.task_named("logreg")
    start = task.init(1, k, 0)
    tracemalloc.start()
    try:
        task.fit(start, X, y, epochs=1, lr=0.1, batch_size=0, seed=0)
        task.evaluate(start, X, y)
        task.predict(start, X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 << 20  # a few chunks' arrays of 8 MB (unchunked: ~3 x 160 MB)
    X, y = X[:3000], y[:3000]  # three chunks against one pass
    chunked, loss = task.fit(start, X, y, epochs=1, lr=0.1, batch_size=0, seed=0)
    ev_loss, acc = task.evaluate(chunked, X, y)
    predicted = task.predict(chunked, X)
    monkeypatch.setattr(tasks, "STEP_CELLS", 3000 * (k + 1))
    whole, whole_loss = task.fit(start, X, y, epochs=1, lr=0.1, batch_size=0, seed=0)
    for a, b in zip(chunked, whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert loss == pytest.approx(whole_loss, rel=1e-12)
    assert (ev_loss, acc) == pytest.approx(task.evaluate(whole, X, y), rel=1e-12)
    np.testing.assert_array_equal(predicted, task.predict(whole, X))
    # the mlp's hidden layer and a regression's targets the same way
    monkeypatch.setattr(tasks, "STEP_CELLS", 64)
    for name, target, outputs in (("mlp", y % 3, 3), ("linreg", X[:, 0] * 2.0, 1)):
        t = tasks.task_named(name)
        w0 = t.init(1, outputs, 0)
        small = t.fit(w0, X[:500], target[:500], epochs=2, lr=0.1, batch_size=0, seed=0)
        monkeypatch.setattr(tasks, "STEP_CELLS", 1 << 30)
        big = t.fit(w0, X[:500], target[:500], epochs=2, lr=0.1, batch_size=0, seed=0)
        monkeypatch.setattr(tasks, "STEP_CELLS", 64)
        for a, b in zip(small[0], big[0], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
