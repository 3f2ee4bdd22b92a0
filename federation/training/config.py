"""The training settings every train, evaluate and stats message carries, typed and bounded.

They travel as Flower's ``ConfigRecord`` under the key ``config`` (Flower's strategies
read and write that key: they add ``server-round`` and, for FedProx, ``proximal-mu``).
The owner reads them back with ``TrainConfig.from_record``, which refuses anything out
of bounds: the home is a peer, not a trusted party. Keys it does not know (the node's
own, e.g. the dataset and columns its loader needs) pass through untouched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from federation.training.app_bundle import is_app_task
from federation.training.errors import invalid
from federation.training.tasks import MAX_CLASSES, MAX_EPOCHS, task_named

if TYPE_CHECKING:  # the client and the CLI read these settings without loading Flower
    from flwr.app import ConfigRecord

# Flower's own keys (flwr.serverapp.strategy: FedAvg.configure_train, FedProx)
SERVER_ROUND = "server-round"
FLOWER_PROXIMAL_MU = "proximal-mu"

# SecAgg+ (``federation.training.secagg``): the strategies that aggregate by a weighted
# sum, all the home gets; with two owners each learns the other's update from the sum.
SECAGG_STRATEGIES = ("fedavg", "fedprox")
SECAGG_MIN_NODES = 3

MAX_FEATURES = 100_000
MAX_SEED = 2**63 - 1
MAX_HOLDOUT = 0.9
MAX_LR = 1e3


@dataclass(frozen=True)
class TrainConfig:
    """What an owner needs to train or evaluate a round; bounded on arrival.

    ``n_classes`` is 0 for regression. ``batch_size`` 0 is full batch. ``mean``/``std``
    (empty: no standardisation) are the federation's, from ``features.combine``.
    ``holdout`` is the share of each owner's rows kept out of training and used by
    evaluate (0: evaluate on the training rows). ``class_weight`` (empty: none) weighs
    each class's rows in the training loss.
    """

    task: str
    n_classes: int = 0
    lr: float = 0.1
    epochs: int = 1
    batch_size: int = 0
    seed: int = 0
    proximal_mu: float = 0.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    holdout: float = 0.0
    class_weight: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if is_app_task(self.task):  # a custom app: classes if it says so
            if self.n_classes and not 2 <= self.n_classes <= MAX_CLASSES:
                raise invalid(f"n_classes must be 0 (a regression) or in 2..{MAX_CLASSES}")
        elif task_named(self.task).classification:
            if not 2 <= self.n_classes <= MAX_CLASSES:
                raise invalid(f"task {self.task} needs n_classes in 2..{MAX_CLASSES}")
        elif self.n_classes != 0:
            raise invalid(f"task {self.task} is a regression: n_classes must be 0")
        if not (math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):
            raise invalid(f"lr must be in (0, {MAX_LR:g}]")
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise invalid(f"epochs must be 1..{MAX_EPOCHS}")
        if self.batch_size < 0:
            raise invalid("batch_size must be 0 (full batch) or positive")
        if not 0 <= self.seed <= MAX_SEED:
            raise invalid("seed must be a non-negative 64-bit integer")
        if not (math.isfinite(self.proximal_mu) and self.proximal_mu >= 0):
            raise invalid("proximal_mu must be a number >= 0")
        if len(self.mean) != len(self.std) or len(self.mean) > MAX_FEATURES:
            raise invalid("mean and std must have one value per feature each")
        if not all(math.isfinite(m) for m in self.mean) or not all(
            math.isfinite(s) and s > 0 for s in self.std
        ):
            raise invalid("standardisation needs finite means and positive stds")
        if not 0 <= self.holdout <= MAX_HOLDOUT:
            raise invalid(f"holdout must be in [0, {MAX_HOLDOUT}]")
        if self.class_weight and (
            len(self.class_weight) != self.n_classes
            or not all(math.isfinite(w) and w >= 0 for w in self.class_weight)
        ):
            raise invalid("class_weight must hold one number >= 0 per class")

    def to_record(self, extra: Mapping[str, Any] | None = None) -> ConfigRecord:
        """The ConfigRecord to send (``extra``: the node's own keys, e.g. the dataset)."""
        from flwr.app import ConfigRecord  # only where a run sends them

        rec = ConfigRecord(dict(extra or {}))
        rec.update(
            {
                "task": self.task,
                "n_classes": self.n_classes,
                "lr": float(self.lr),
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "seed": self.seed,
                "proximal_mu": float(self.proximal_mu),
                "holdout": float(self.holdout),
            }
        )
        if self.mean:
            rec["mean"] = [float(m) for m in self.mean]
            rec["std"] = [float(s) for s in self.std]
        if self.class_weight:
            rec["class_weight"] = [float(w) for w in self.class_weight]
        return rec

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> TrainConfig:
        """Read and bound a received ConfigRecord; FedProx's ``proximal-mu`` wins."""
        mu = rec.get(FLOWER_PROXIMAL_MU, rec.get("proximal_mu", 0.0))
        return cls(
            task=_get(rec, "task", str),
            n_classes=_get(rec, "n_classes", int, 0),
            lr=_get(rec, "lr", float, 0.1),
            epochs=_get(rec, "epochs", int, 1),
            batch_size=_get(rec, "batch_size", int, 0),
            seed=_get(rec, "seed", int, 0),
            proximal_mu=_number(mu, "proximal_mu"),
            mean=_floats(rec, "mean"),
            std=_floats(rec, "std"),
            holdout=_get(rec, "holdout", float, 0.0),
            class_weight=_floats(rec, "class_weight"),
        )


def classifies(task: str, n_classes: int) -> bool:
    """Whether a run of ``task`` is a classification (a custom app's: it has classes)."""
    return n_classes > 0 if is_app_task(task) else task_named(task).classification


def server_round(rec: Mapping[str, Any]) -> int:
    """The round Flower's strategy wrote into the config (0 when there is none)."""
    value = rec.get(SERVER_ROUND, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"{SERVER_ROUND} must be a non-negative integer")
    return value


def _get(rec: Mapping[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = rec.get(key, default)
    if value is None:
        raise invalid(f"the training config has no {key!r}")
    if kind is float:
        return _number(value, key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise invalid(f"{key!r} must be of type {kind.__name__}")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{key!r} must be a number")
    return float(value)


def _floats(rec: Mapping[str, Any], key: str) -> tuple[float, ...]:
    value = rec.get(key, [])
    if not isinstance(value, list) or len(value) > MAX_FEATURES:
        raise invalid(f"{key!r} must be a list of numbers")
    return tuple(_number(v, key) for v in value)
