"""A training run's spec: what the home signs and every owner re-checks on every message.

It travels as the envelope's body (canonical JSON), so a relay or a peer cannot change
the task, the columns or the number of rounds an owner agreed to under its grant.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from federation.training.app_bundle import is_app_task
from federation.training.config import SECAGG_MIN_NODES, SECAGG_STRATEGIES
from federation.training.tasks import MAX_CLASSES, TASKS
from gateway.errors import InvalidArgument

MAX_ROUNDS = 1000
# the longest one exchange of a run waits for its replies (a whole run: 590 s): the home
# bounds each exchange by it, an owner drops a run idle twice as long
ROUND_SECONDS = 300.0
MAX_FEATURES = 256
MAX_EPOCHS = 100  # local epochs a message may ask (the tasks themselves allow more)
MAX_NAME_CHARS = 128  # a dataset, column or member name: an audit entry quotes them
MAX_SEED = 2**63 - 1
FLOWER_DP_STRATEGIES = ("fedavg", "fedprox")  # aggregate with FedAvg.aggregate_train


@dataclass(frozen=True)
class TrainSpec:
    task: str
    dataset: str
    features: tuple[str, ...]
    label: str
    rounds: int
    strategy: str = "fedavg"
    seed: int = 0
    learning_rate: float = 0.0  # 0: the task's default
    local_epochs: int = 0  # 0: the task's default
    min_nodes: int = 0  # 0: every node asked
    n_classes: int = 0  # classification: the label's classes, 0..n-1; 0 for a regression
    dp_clip: float = 0.0  # > 0: differential privacy, each update clipped to this L1 norm
    secagg: bool = False  # SecAgg+: owners mask their updates, the home sees only the sum
    # > 0 (with dp_clip): Flower's central DP, the home adding Gaussian noise of this
    # multiplier to the average of updates each owner clipped to L2 dp_clip
    dp_noise: float = 0.0
    # the owners the home named, as member ids (the home fills them in before it signs):
    # an owner trains only in a run that names it, and SecAgg+ keys only of these count
    nodes: tuple[str, ...] = ()

    def body(self) -> str:
        """The canonical text the home signs."""
        return json.dumps({"train": asdict(self)}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> TrainSpec:
        try:
            raw = json.loads(text)["train"]
            spec = cls(
                task=str(raw["task"]),
                dataset=str(raw["dataset"]),
                features=tuple(str(f) for f in raw["features"]),
                label=str(raw["label"]),
                rounds=int(raw["rounds"]),
                strategy=str(raw["strategy"]),
                seed=int(raw["seed"]),
                learning_rate=float(raw["learning_rate"]),
                local_epochs=int(raw["local_epochs"]),
                min_nodes=int(raw["min_nodes"]),
                n_classes=int(raw["n_classes"]),
                dp_clip=float(raw["dp_clip"]),
                secagg=raw["secagg"] is True,
                dp_noise=float(raw["dp_noise"]),
                nodes=tuple(str(n) for n in raw["nodes"]),
            )
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
            # the exception's own text may quote the input: only its kind is told
            raise InvalidArgument(f"not a training run's spec ({type(exc).__name__})") from None
        spec.check()
        return spec

    def check(self) -> None:
        """Bounds every party applies; the grant's own limits are the owner's (policy)."""
        if self.task not in TASKS and not is_app_task(self.task):
            raise InvalidArgument(
                f"unknown task {self.task!r} (built in: {', '.join(TASKS)}; or a custom "
                "app as app:<digest>)"
            )
        if is_app_task(self.task) and self.secagg:
            raise InvalidArgument("--secagg with a custom app is not built yet")
        if not self.dataset:
            raise InvalidArgument("a training run names a dataset")
        names = (self.dataset, self.label, *self.features, *self.nodes)
        if any(len(n) > MAX_NAME_CHARS for n in names):
            raise InvalidArgument(f"a name in a training run is longer than {MAX_NAME_CHARS}")
        if not 0 <= self.seed <= MAX_SEED:
            raise InvalidArgument(f"the seed must be between 0 and {MAX_SEED}")
        if not self.features:
            raise InvalidArgument("a training run names at least one feature")
        if len(self.features) > MAX_FEATURES:
            raise InvalidArgument(f"at most {MAX_FEATURES} features")
        if len(set(self.features)) != len(self.features):
            raise InvalidArgument("a feature is named twice")
        if not self.label:
            raise InvalidArgument("a training run names a label column")
        if self.label in self.features:
            raise InvalidArgument(f"column {self.label!r} cannot be both a feature and the label")
        if not 1 <= self.rounds <= MAX_ROUNDS:
            raise InvalidArgument(f"rounds must be between 1 and {MAX_ROUNDS}")
        if not (math.isfinite(self.learning_rate) and 0 <= self.learning_rate <= 10):
            raise InvalidArgument("the learning rate must be between 0 (default) and 10")
        if not 0 <= self.local_epochs <= MAX_EPOCHS:
            raise InvalidArgument(f"local epochs must be between 0 (default) and {MAX_EPOCHS}")
        if self.min_nodes < 0:
            raise InvalidArgument("min nodes cannot be negative")
        if not (math.isfinite(self.dp_clip) and 0 <= self.dp_clip <= 1e6):
            raise InvalidArgument("the DP clipping bound is a number between 0 (no DP) and 1e6")
        if self.secagg and self.strategy not in SECAGG_STRATEGIES:
            raise InvalidArgument(
                f"--secagg needs a strategy that averages a weighted sum "
                f"({', '.join(SECAGG_STRATEGIES)}), not {self.strategy!r}: the home sees no "
                "single update to take a median or a score of"
            )
        if self.secagg and self.min_nodes and self.min_nodes < SECAGG_MIN_NODES:
            raise InvalidArgument(
                f"--secagg needs at least {SECAGG_MIN_NODES} owners (with two, each learns "
                "the other's update from the sum)"
            )
        if not (math.isfinite(self.dp_noise) and 0 <= self.dp_noise <= 100):
            raise InvalidArgument("the DP noise multiplier is a number between 0 and 100")
        if self.dp_noise and not self.dp_clip:
            raise InvalidArgument("Flower's DP needs a clipping norm: --dp NOISE,CLIP")
        if self.dp_noise and self.secagg:
            raise InvalidArgument("--dp NOISE,CLIP with --secagg is not built yet")
        if self.dp_noise and self.strategy not in FLOWER_DP_STRATEGIES:
            raise InvalidArgument(
                "Flower's DP accounting needs FedAvg's aggregation "
                f"({', '.join(FLOWER_DP_STRATEGIES)}), not {self.strategy!r}"
            )
        if self.dp_noise and self.min_nodes:
            raise InvalidArgument(
                "Flower's DP accounting needs every owner each round: leave --min-nodes out"
            )
        if not 0 <= self.n_classes <= MAX_CLASSES:
            raise InvalidArgument(f"a label has at most {MAX_CLASSES} classes")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
