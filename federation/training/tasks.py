"""The vetted training tasks: small numpy models an owner can allow without reading code.

Each task is plain float64 gradient descent on a fixed model family: logistic regression
(binary with a sigmoid, multinomial with a softmax: chosen by the number of classes),
linear regression (mean squared error) and a one-hidden-layer MLP classifier (tanh or
relu). Nothing is regularised (no L2); FedProx's proximal term is the only extra.

A model is a list of float64 arrays (weights then bias, per layer) so it travels as a
Flower ``ArrayRecord`` and averages element-wise. ``fit`` and ``init`` are deterministic
for a given seed: the only randomness is the MLP's initial weights and the order of
mini-batches, both drawn from ``numpy.random.default_rng(seed)``.

Labels of a classification task are class indices 0..K-1 (``features.label_index``
turns declared class names into them); a regression target is a float column (n,) or
(n, m).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from federation.training.errors import invalid

FloatArray = NDArray[np.float64]
Arrays = list[FloatArray]
Head = Literal["binary", "softmax", "mse"]

MAX_CLASSES = 1000
MAX_HIDDEN = 1024
MAX_EPOCHS = 1000
# Per-row values (scores, hidden activations) one pass holds per array: a step over more
# rows goes in chunks of rows. Unchunked, a softmax over 1 000 classes held several
# rows x classes arrays: ~224 GiB for the 10 M rows of one feature an owner loads
# (review, 2026-12-04); now each is at most 8 MB, whatever the rows.
STEP_CELLS = 1 << 20


@dataclass(frozen=True)
class Batch:
    """Rows checked once for a task: float64 features, labels as the head needs them."""

    X: FloatArray
    y: FloatArray  # class index (as float) for classification, targets (n, m) otherwise
    weight: FloatArray | None  # per-row weight (class balance), None for all ones


class Task(ABC):
    """A model family: its shapes, loss and gradients; fit and evaluate are shared."""

    name: str
    classification: bool

    @abstractmethod
    def init(self, n_features: int, n_outputs: int, seed: int) -> Arrays:
        """Initial weights; ``n_outputs`` is the number of classes or of targets."""

    @abstractmethod
    def _shapes_ok(self, arrays: Arrays) -> bool:
        """Whether the arrays have this family's layout (count, ranks, matching sizes)."""

    @abstractmethod
    def _forward(self, arrays: Arrays, X: FloatArray) -> tuple[FloatArray, FloatArray | None]:
        """Output scores, and what backprop needs (the hidden activations) if anything."""

    @abstractmethod
    def _backward(
        self, arrays: Arrays, X: FloatArray, hidden: FloatArray | None, dz: FloatArray
    ) -> Arrays:
        """Gradients of the loss for the gradient ``dz`` at the output scores."""

    def n_features(self, arrays: Arrays) -> int:
        """The input width a model expects (its first weight matrix's rows)."""
        return int(arrays[0].shape[0])

    def n_outputs(self, arrays: Arrays) -> int:
        """Number of classes (classification) or of targets (regression) of a model."""
        width = int(arrays[-1].shape[0])
        return 2 if self.classification and width == 1 else width

    def head(self, arrays: Arrays) -> Head:
        if not self.classification:
            return "mse"
        return "binary" if arrays[-1].shape[0] == 1 else "softmax"

    def shapes(self, n_features: int, n_outputs: int) -> list[tuple[int, ...]]:
        """The shapes of this family's model for these inputs and outputs (its ``init``'s)."""
        return [a.shape for a in self.init(n_features, n_outputs, 0)]

    def check(
        self, arrays: Sequence[NDArray[Any]], shapes: Sequence[tuple[int, ...]] | None = None
    ) -> Arrays:
        """The model as float64 copies, or a refusal: a peer's arrays are never trusted.
        ``shapes``: exactly these (a home's model of another width, e.g. a thousand hidden
        units each firing on one row, would make the update a copy of rows)."""
        if not arrays or not all(isinstance(a, np.ndarray) for a in arrays):
            raise invalid(f"task {self.name}: the model has no arrays")
        if not all(a.dtype.kind in "fiu" for a in arrays):
            raise invalid(f"task {self.name}: the model's arrays must be numeric")
        out = [np.array(a, dtype=np.float64) for a in arrays]
        got = ", ".join(str(a.shape) for a in out)
        if not self._shapes_ok(out):
            raise invalid(f"task {self.name}: arrays of shapes {got} are not its model")
        if shapes is not None and [a.shape for a in out] != [tuple(s) for s in shapes]:
            want = ", ".join(str(tuple(s)) for s in shapes)
            raise invalid(f"task {self.name}: a model of shapes {got}, not the run's ({want})")
        if not all(np.isfinite(a).all() for a in out):
            raise invalid(f"task {self.name}: the model holds a value that is not finite")
        return out

    def batch(
        self,
        arrays: Arrays,
        X: NDArray[np.generic],
        y: NDArray[np.generic],
        class_weight: FloatArray | None = None,
    ) -> Batch:
        """Rows checked against the model: shapes, finite values, labels in range."""
        Xf = np.asarray(X, dtype=np.float64)
        if Xf.ndim != 2 or Xf.shape[1] != self.n_features(arrays):
            raise invalid(
                f"task {self.name}: rows of shape {Xf.shape} do not fit a model "
                f"of {self.n_features(arrays)} features"
            )
        if Xf.shape[0] == 0:
            raise invalid(f"task {self.name}: there are no rows")
        if not np.isfinite(Xf).all():
            raise invalid(f"task {self.name}: a feature value is missing or not finite")
        yf = np.asarray(y, dtype=np.float64)
        if yf.shape[0] != Xf.shape[0]:
            raise invalid(f"task {self.name}: {Xf.shape[0]} rows but {yf.shape[0]} labels")
        if not np.isfinite(yf).all():
            raise invalid(f"task {self.name}: a label is missing or not finite")
        if not self.classification:
            yf = yf.reshape(Xf.shape[0], -1)
            if yf.shape[1] != self.n_outputs(arrays):
                raise invalid(
                    f"task {self.name}: {yf.shape[1]} targets but the model has "
                    f"{self.n_outputs(arrays)}"
                )
            return Batch(Xf, yf, None)
        k = self.n_outputs(arrays)
        if yf.ndim != 1 or not (np.all(yf == np.round(yf)) and yf.min() >= 0 and yf.max() < k):
            raise invalid(f"task {self.name}: labels must be class indices 0..{k - 1}")
        weight = None
        if class_weight is not None:
            cw = np.asarray(class_weight, dtype=np.float64)
            if cw.shape != (k,) or not np.isfinite(cw).all() or (cw < 0).any():
                raise invalid(f"task {self.name}: class weights must be {k} numbers >= 0")
            weight = cw[yf.astype(np.int64)]
        return Batch(Xf, yf, weight)

    def loss_and_grads(self, arrays: Arrays, batch: Batch) -> tuple[float, Arrays]:
        """Mean loss over the rows (weighted by class weight) and its gradients: each
        chunk's mean weighted by its share of the rows (both are linear in them)."""
        n = batch.X.shape[0]
        if n <= _chunk_rows(arrays):
            return self._loss_and_grads(arrays, batch)
        loss, grads = 0.0, [np.zeros_like(a) for a in arrays]
        for part in _chunks(batch, arrays):
            share = part.X.shape[0] / n
            part_loss, part_grads = self._loss_and_grads(arrays, part)
            loss += share * part_loss
            for total, g in zip(grads, part_grads, strict=True):
                total += share * g
        return loss, grads

    def _loss_and_grads(self, arrays: Arrays, batch: Batch) -> tuple[float, Arrays]:
        z, hidden = self._forward(arrays, batch.X)
        loss, dz = _head(self.head(arrays), z, batch.y, batch.weight)
        return loss, self._backward(arrays, batch.X, hidden, dz)

    def fit(
        self,
        arrays: Sequence[NDArray[Any]],
        X: NDArray[np.generic],
        y: NDArray[np.generic],
        *,
        epochs: int,
        lr: float,
        batch_size: int,
        seed: int,
        proximal_mu: float = 0.0,
        class_weight: FloatArray | None = None,
        stay_if_diverged: bool = False,
    ) -> tuple[Arrays, float]:
        """Gradient descent from ``arrays``: the new arrays and the mean training loss.

        ``batch_size`` 0 (or at least the number of rows) is full-batch descent, rows in
        their given order; otherwise each epoch visits the rows in a fresh order drawn
        from the seed. ``proximal_mu`` adds FedProx's mu/2 * ||w - w_start||^2. The loss
        returned is the data loss (no proximal term) of each batch before its step,
        averaged over every row visited: what the local model paid while it trained.
        ``stay_if_diverged``: a run that diverges ends where it started (loss NaN) instead of being
        refused, so that whether it diverged (which depends on the rows) is not told
        apart from an update: under DP the owner's noise then covers both alike.
        """
        start = self.check(list(arrays))
        _check_fit_args(epochs, lr, batch_size, proximal_mu)
        data = self.batch(start, X, y, class_weight)
        n = data.X.shape[0]
        step = n if batch_size <= 0 or batch_size >= n else batch_size
        rng = np.random.default_rng(seed)
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is checked below
            w, total, seen = self._descend(start, data, epochs, lr, step, rng, proximal_mu)
        if not all(np.isfinite(a).all() for a in w):
            if stay_if_diverged:
                return [a.copy() for a in start], math.nan
            raise invalid(f"task {self.name}: training diverged (lower the learning rate)")
        return w, total / seen

    def _descend(
        self,
        start: Arrays,
        data: Batch,
        epochs: int,
        lr: float,
        batch_size: int,
        rng: np.random.Generator,
        proximal_mu: float,
    ) -> tuple[Arrays, float, int]:
        """The steps of ``fit``: the final weights, summed batch losses and rows seen."""
        n = data.X.shape[0]
        full = batch_size >= n
        w = [a.copy() for a in start]
        total, seen = 0.0, 0
        for _ in range(epochs):
            order = None if full else rng.permutation(n)
            for lo in range(0, n, batch_size):
                part = data if order is None else _rows(data, order[lo : lo + batch_size])
                loss, grads = self.loss_and_grads(w, part)
                rows = part.X.shape[0]
                total += loss * rows
                seen += rows
                for i, g in enumerate(grads):
                    if proximal_mu:
                        g = g + proximal_mu * (w[i] - start[i])
                    w[i] = w[i] - lr * g
        return w, total, seen

    def evaluate(
        self, arrays: Sequence[NDArray[Any]], X: NDArray[np.generic], y: NDArray[np.generic]
    ) -> tuple[float, float | None]:
        """Mean loss on the rows, and accuracy (None for regression). No class weights."""
        w = self.check(list(arrays))
        data = self.batch(w, X, y)
        n = data.X.shape[0]
        loss, right = 0.0, 0
        for part in _chunks(data, w):
            z, _ = self._forward(w, part.X)
            part_loss, _ = _head(self.head(w), z, part.y, None)
            loss += part.X.shape[0] / n * part_loss
            if self.classification:
                right += int(np.count_nonzero(_classes(z) == part.y))
        return loss, (right / n if self.classification else None)

    def predict(self, arrays: Sequence[NDArray[Any]], X: NDArray[np.generic]) -> FloatArray:
        """Class indices (classification) or predicted targets (n, m) (regression)."""
        w = self.check(list(arrays))
        Xf = np.asarray(X, dtype=np.float64)
        step = _chunk_rows(w)

        def each(z: FloatArray) -> FloatArray:
            return _classes(z) if self.classification else z

        out = [each(self._forward(w, Xf[lo : lo + step])[0]) for lo in range(0, len(Xf), step)]
        return np.concatenate(out) if out else each(self._forward(w, Xf)[0])


class _Linear(Task):
    """A weight matrix and a bias: the forward and backward steps both linear tasks share."""

    def _forward(self, arrays: Arrays, X: FloatArray) -> tuple[FloatArray, FloatArray | None]:
        return X @ arrays[0] + arrays[1], None

    def _backward(
        self, arrays: Arrays, X: FloatArray, hidden: FloatArray | None, dz: FloatArray
    ) -> Arrays:
        return [X.T @ dz, dz.sum(axis=0)]


@dataclass(frozen=True)
class LogisticRegression(_Linear):
    """Binary (sigmoid, one output) for 2 classes, multinomial (softmax) for more."""

    name: str = "logreg"
    classification: bool = True

    def init(self, n_features: int, n_outputs: int, seed: int) -> Arrays:
        width = _class_width(n_features, n_outputs)
        return [np.zeros((n_features, width)), np.zeros(width)]

    def _shapes_ok(self, arrays: Arrays) -> bool:
        return _linear_ok(arrays) and arrays[1].shape[0] <= MAX_CLASSES


@dataclass(frozen=True)
class LinearRegression(_Linear):
    """Least squares: the loss is the mean squared error over rows and targets."""

    name: str = "linreg"
    classification: bool = False

    def init(self, n_features: int, n_outputs: int, seed: int) -> Arrays:
        _check_sizes(n_features, n_outputs)
        return [np.zeros((n_features, n_outputs)), np.zeros(n_outputs)]

    def _shapes_ok(self, arrays: Arrays) -> bool:
        return _linear_ok(arrays)


@dataclass(frozen=True)
class MLP(Task):
    """One hidden layer classifier; Glorot-uniform weights drawn from the seed."""

    name: str = "mlp"
    classification: bool = True
    hidden: int = 16
    activation: Literal["tanh", "relu"] = "tanh"

    def init(self, n_features: int, n_outputs: int, seed: int) -> Arrays:
        width = _class_width(n_features, n_outputs)
        rng = np.random.default_rng(seed)
        return [
            _glorot(rng, n_features, self.hidden),
            np.zeros(self.hidden),
            _glorot(rng, self.hidden, width),
            np.zeros(width),
        ]

    def _shapes_ok(self, arrays: Arrays) -> bool:
        return (
            len(arrays) == 4
            and _linear_ok(arrays[:2])
            and _linear_ok(arrays[2:])
            and arrays[0].shape[1] == arrays[2].shape[0]
            and arrays[1].shape[0] <= MAX_HIDDEN
            and arrays[3].shape[0] <= MAX_CLASSES
        )

    def _forward(self, arrays: Arrays, X: FloatArray) -> tuple[FloatArray, FloatArray | None]:
        a = X @ arrays[0] + arrays[1]
        h = np.tanh(a) if self.activation == "tanh" else np.maximum(a, 0.0)
        return h @ arrays[2] + arrays[3], h

    def _backward(
        self, arrays: Arrays, X: FloatArray, hidden: FloatArray | None, dz: FloatArray
    ) -> Arrays:
        if hidden is None:
            raise ValueError("MLP backprop needs the hidden activations")
        dh = dz @ arrays[2].T
        da = dh * (1.0 - hidden**2) if self.activation == "tanh" else dh * (hidden > 0)
        return [X.T @ da, da.sum(axis=0), hidden.T @ dz, dz.sum(axis=0)]


TASKS: Mapping[str, Task] = MappingProxyType(
    {
        "logreg": LogisticRegression(),
        "linreg": LinearRegression(),
        "mlp": MLP(),
        "mlp_relu": MLP(name="mlp_relu", activation="relu"),
    }
)


def task_named(name: str) -> Task:
    """The registered task, or a refusal naming the ones there are."""
    task = TASKS.get(name)
    if task is None:
        raise invalid(f"unknown training task {name!r} (known: {', '.join(sorted(TASKS))})")
    return task


def _head(
    head: Head, z: FloatArray, y: FloatArray, weight: FloatArray | None
) -> tuple[float, FloatArray]:
    """Mean loss at the output scores ``z`` and its gradient with respect to them."""
    n = z.shape[0]
    if head == "mse":
        diff = z - y
        return float(np.mean(diff**2)), 2.0 * diff / diff.size
    w = np.ones(n) if weight is None else weight
    if head == "binary":
        s = z[:, 0]
        losses = np.logaddexp(0.0, s) - y * s
        dz = (_sigmoid(s) - y) * w / n
        return float(np.mean(w * losses)), dz[:, None]
    top = z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    idx = y.astype(np.int64)
    losses = log_norm - z[np.arange(n), idx]
    p = np.exp(z - log_norm[:, None])
    p[np.arange(n), idx] -= 1.0
    return float(np.mean(w * losses)), p * (w / n)[:, None]


def _sigmoid(s: FloatArray) -> FloatArray:
    """1 / (1 + e^-s) without overflow for large |s|."""
    e = np.exp(-np.abs(s))
    out: FloatArray = np.where(s >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return out


def _classes(z: FloatArray) -> FloatArray:
    if z.shape[1] == 1:
        return (z[:, 0] > 0).astype(np.float64)
    return z.argmax(axis=1).astype(np.float64)


def _chunk_rows(arrays: Arrays) -> int:
    """Rows per pass: each layer's activations (a value per row and bias entry) stay
    within ``STEP_CELLS``."""
    width = sum(int(a.shape[0]) for a in arrays if a.ndim == 1)
    return max(1, STEP_CELLS // max(1, width))


def _chunks(data: Batch, arrays: Arrays) -> list[Batch]:
    """The rows in consecutive chunks of ``_chunk_rows`` (views: nothing is copied)."""
    step, n = _chunk_rows(arrays), data.X.shape[0]
    w = data.weight
    return [
        Batch(
            data.X[lo : lo + step], data.y[lo : lo + step], None if w is None else w[lo : lo + step]
        )
        for lo in range(0, n, step)
    ]


def _rows(data: Batch, idx: NDArray[np.intp]) -> Batch:
    return Batch(data.X[idx], data.y[idx], None if data.weight is None else data.weight[idx])


def _linear_ok(arrays: Arrays) -> bool:
    """A weight matrix (d, k) and a bias (k,)."""
    return (
        len(arrays) == 2
        and arrays[0].ndim == 2
        and arrays[1].ndim == 1
        and arrays[0].shape[1] == arrays[1].shape[0]
        and arrays[0].shape[0] >= 1
        and arrays[1].shape[0] >= 1
    )


def _class_width(n_features: int, n_classes: int) -> int:
    """Output width for ``n_classes``: one sigmoid for two, one score per class above."""
    _check_sizes(n_features, n_classes)
    if not 2 <= n_classes <= MAX_CLASSES:
        raise invalid(f"a classifier needs 2..{MAX_CLASSES} classes, not {n_classes}")
    return 1 if n_classes == 2 else n_classes


def _check_sizes(n_features: int, n_outputs: int) -> None:
    if n_features < 1 or n_outputs < 1:
        raise invalid("a model needs at least one feature and one output")


def _glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> FloatArray:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def _check_fit_args(epochs: int, lr: float, batch_size: int, proximal_mu: float) -> None:
    if not 1 <= epochs <= MAX_EPOCHS:
        raise invalid(f"epochs must be 1..{MAX_EPOCHS}, not {epochs}")
    if not (math.isfinite(lr) and lr > 0):
        raise invalid("the learning rate must be a positive number")
    if batch_size < 0:
        raise invalid("batch_size must be 0 (full batch) or positive")
    if not (math.isfinite(proximal_mu) and proximal_mu >= 0):
        raise invalid("proximal_mu must be a number >= 0")
