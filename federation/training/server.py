"""The home's side of a training run: Flower's strategies by name and the observed loop.

``run`` drives a real Flower ``Strategy.start`` over whatever ``Grid`` the node gives it
(the gateway's, carrying each message over mTLS; a test's, in-process) and reports each
round as it ends. It wraps the strategy in a thin delegate that

- hands the inner strategy the replies sorted by node id, so aggregation does not depend
  on the order replies arrive in (same seed, same final weights);
- stops the run with ``TooFewNodes`` (naming the node ids that did not answer) when fewer
  nodes than the strategy's minimum are connected or answer a round, instead of Flower's
  sampling, which waits for nodes forever in 1 s sleeps;
- calls ``on_round`` with the round's aggregated metrics after its evaluation; raising
  from ``on_round`` (e.g. on cancel) ends the run with that exception.

``federated_stats`` asks every node for its ``query.stats`` and combines them into the
standardisation that goes into the training config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, RdpAccountant
from flwr.serverapp.exception import AggregationError, InconsistentMessageReplies
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    Result,
    Strategy,
)
from flwr.serverapp.strategy.dp_fixed_clipping import DifferentialPrivacyFixedClippingBase
from flwr.supercore.privacy_accounting import (
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from numpy.typing import NDArray

from federation.outcome import Code
from federation.training import features
from federation.training.client_app import (
    ARRAYS,
    CONFIG,
    INIT_MESSAGE,
    METRICS,
    NUM_EXAMPLES,
    STATS_MESSAGE,
    plain_floats,
    read_names,
    read_stats,
)
from federation.training.errors import TooFewNodes, TrainingError, invalid
from federation.training.tasks import FloatArray, task_named

Metrics = dict[str, float | int | list[float] | list[int]]


@dataclass(frozen=True)
class StrategyOptions:
    """Settings of the named strategies; None keeps Flower's default for that strategy."""

    min_nodes: int = 2
    proximal_mu: float = 0.1  # fedprox
    server_lr: float | None = None  # eta of fedadam, fedyogi, fedadagrad
    trim_beta: float = 0.2  # fedtrimmedavg: share cut at each end
    num_malicious: int = 0  # krum
    evaluate: bool = True  # False: no federated evaluation (an owner under DP answers none)


def _nodes(o: StrategyOptions) -> dict[str, Any]:
    if o.min_nodes < 1:
        raise invalid("a run needs at least one node")
    return {
        "fraction_train": 1.0,
        "fraction_evaluate": 1.0 if o.evaluate else 0.0,
        "min_train_nodes": o.min_nodes,
        "min_evaluate_nodes": o.min_nodes if o.evaluate else 0,
        "min_available_nodes": o.min_nodes,
    }


def _eta(o: StrategyOptions) -> dict[str, Any]:
    return {} if o.server_lr is None else {"eta": o.server_lr}


STRATEGIES: Mapping[str, Callable[[StrategyOptions], Strategy]] = MappingProxyType(
    {
        "fedavg": lambda o: FedAvg(**_nodes(o)),
        "fedprox": lambda o: FedProx(**_nodes(o), proximal_mu=o.proximal_mu),
        "fedadam": lambda o: FedAdam(**_nodes(o), **_eta(o)),
        "fedyogi": lambda o: FedYogi(**_nodes(o), **_eta(o)),
        "fedadagrad": lambda o: FedAdagrad(**_nodes(o), **_eta(o)),
        "fedmedian": lambda o: FedMedian(**_nodes(o)),
        "fedtrimmedavg": lambda o: FedTrimmedAvg(**_nodes(o), beta=o.trim_beta),
        "krum": lambda o: Krum(**_nodes(o), num_malicious_nodes=o.num_malicious),
    }
)


DP_DELTA = 1e-5  # the delta Flower's accountant reports epsilon at


def with_central_dp(
    strategy: Strategy, noise_multiplier: float, clip: float, nodes: int
) -> DifferentialPrivacyClientSideFixedClipping:
    """Flower's central DP around ``strategy``: each owner clips its update to an L2 norm
    of ``clip`` (and weighs it 1), the home adds Gaussian noise of ``noise_multiplier`` x
    ``clip`` / ``nodes`` to their average, and Flower's RDP accountant (client-level,
    every owner every round: no sampling amplification) tracks (epsilon, delta)."""
    accountant = RdpAccountant(
        PrivacyConfig(
            target_delta=DP_DELTA,
            population_size=nodes,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )
    try:
        return DifferentialPrivacyClientSideFixedClipping(
            strategy, noise_multiplier, clip, nodes, accountant=accountant
        )
    except ValueError as e:
        raise invalid(f"Flower's DP: {e}") from e


def privacy_spent(strategy: Strategy) -> tuple[float, float] | None:
    """The run's (epsilon, delta) from Flower's accountant, if it has one."""
    spent = (
        strategy.privacy_spent()
        if isinstance(strategy, DifferentialPrivacyFixedClippingBase)
        else None
    )
    return None if spent is None else (float(spent.epsilon), float(spent.delta))


def make_strategy(name: str, options: StrategyOptions | None = None) -> Strategy:
    """The named Flower strategy, sampling every node, or a refusal naming the known ones."""
    factory = STRATEGIES.get(name)
    if factory is None:
        raise invalid(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
    return factory(options or StrategyOptions())


@dataclass(frozen=True)
class RoundReport:
    """One finished round: who answered, the aggregated metrics, the global model."""

    server_round: int
    rounds: int
    train_nodes: tuple[int, ...]  # node ids whose training reply was used
    eval_nodes: tuple[int, ...]
    failed: tuple[int, ...]  # asked this round but answered with an error or not at all
    train_metrics: Metrics  # weighted by num-examples: train_loss, update_norm
    eval_metrics: Metrics  # eval_loss, eval_acc
    arrays: list[FloatArray]
    elapsed: float  # seconds since the run started


@dataclass(frozen=True)
class TrainingResult:
    arrays: list[FloatArray]  # the final global model
    history: tuple[RoundReport, ...]
    flower: Result | None  # Flower's own record of the run (None: a SecAgg+ run)


def initial_arrays(task: str, n_features: int, n_outputs: int, seed: int) -> ArrayRecord:
    """The task's initial model as the ArrayRecord a strategy starts from."""
    return ArrayRecord(task_named(task).init(n_features, n_outputs, seed))


def run(
    grid: Grid,
    strategy: Strategy,
    initial: ArrayRecord | Sequence[NDArray[np.generic]],
    rounds: int,
    config: ConfigRecord,
    on_round: Callable[[RoundReport], None] | None = None,
    *,
    evaluate_config: ConfigRecord | None = None,
    min_nodes: int | None = None,
    examples: Mapping[int, int] | None = None,
    timeout: float = 3600.0,
) -> TrainingResult:
    """Train for ``rounds`` rounds with ``strategy.start`` over ``grid``.

    ``config`` goes to every train message (and, unless ``evaluate_config`` is given, to
    every evaluate message: the owners need the task and standardisation there too).
    ``min_nodes`` (the fewest nodes connected and answering each round before the run
    stops with ``TooFewNodes``) defaults to the strategy's own minimums.

    ``examples`` (``weight_limits``) holds the most examples each node may weigh a train
    reply with (and, through ``config``'s held-out share, an evaluate reply): a reply
    claiming more, or a node it does not name, counts as that node failing the round.
    Without it a weight must still be a finite whole number of at least one.
    """
    if rounds < 1:
        raise invalid("a run has at least one round")
    start = initial if isinstance(initial, ArrayRecord) else ArrayRecord(list(initial))
    limits = None
    if examples is not None:
        limits = (dict(examples), eval_limits(examples, evaluate_config or config))
    observed = _Observed(strategy, rounds, min_nodes or _min_nodes(strategy), on_round, limits)
    observed.check_available(grid, 0)
    try:
        result = observed.start(
            grid=grid,
            initial_arrays=start,
            num_rounds=rounds,
            timeout=timeout,
            train_config=ConfigRecord(dict(config)),
            evaluate_config=ConfigRecord(dict(evaluate_config or config)),
        )
    except (InconsistentMessageReplies, AggregationError) as e:
        raise TrainingError(Code.ABORTED, f"the strategy could not aggregate: {e}") from e
    final = result.arrays if len(result.arrays) else start
    return TrainingResult(final.to_numpy_ndarrays(), tuple(observed.history), result)


@dataclass(frozen=True)
class FederatedStats:
    mean: FloatArray
    std: FloatArray
    count: int
    nodes: tuple[int, ...]
    names: tuple[str, ...] = ()  # the model's inputs as the owners encode them
    counts: Mapping[int, int] = field(default_factory=dict)  # each node's own row count


def weight_limits(stats: FederatedStats, *, dp: bool) -> dict[int, int]:
    """The most examples each owner may weigh its replies with: the row count it declared
    in its own statistics reply, or exactly 1 under DP (where every owner reports 1).
    Each owner's claim weighs the global model, so one claiming 10**15 would otherwise
    make it that owner's update alone (review, 2026-12-05)."""
    return {node: 1 if dp else count for node, count in stats.counts.items()}


def eval_limits(examples: Mapping[int, int], config: ConfigRecord) -> dict[int, int]:
    """The most evaluation rows each owner can hold, given the most training rows: all of
    them, or under the config's held-out share h (``int(h n)`` of its n rows, the rest
    training) at most h / (1 - h) times its training rows."""
    holdout = config.get("holdout", 0.0)
    h = float(holdout) if isinstance(holdout, int | float) else 0.0
    if h <= 0 or h >= 1:
        return dict(examples)
    return {n: max(c, math.ceil(c * h / (1 - h))) for n, c in examples.items()}


def app_initial(
    grid: Grid, config: ConfigRecord, node: int, *, timeout: float = 600.0
) -> ArrayRecord:
    """A custom app's initial model: its own ``init``, run by ``node``'s approved copy
    (every owner holds the same code: the digest says so)."""
    content = RecordDict({CONFIG: config})
    replies = list(grid.send_and_receive([Message(content, node, INIT_MESSAGE)], timeout=timeout))
    good = [r for r in replies if not r.has_error() and r.has_content()]
    rec = good[0].content.array_records.get(ARRAYS) if good else None
    if rec is None or not len(rec):
        raise TrainingError(Code.ABORTED, f"node {node} gave no initial model for the app")
    return ArrayRecord(rec.to_numpy_ndarrays())


def federated_stats(
    grid: Grid, config: ConfigRecord, *, min_nodes: int = 1, timeout: float = 600.0
) -> FederatedStats:
    """Ask every node for ``query.stats`` and combine: pooled mean and std."""
    nodes = sorted(grid.get_node_ids())
    content = RecordDict({CONFIG: config})
    messages = [Message(content, node, STATS_MESSAGE) for node in nodes]
    replies = _by_node(grid.send_and_receive(messages, timeout=timeout))
    read = [(r, _usable_stats(r)) for r in replies if not r.has_error()]
    good = [r for r, stats in read if stats is not None]
    parts = [stats for _, stats in read if stats is not None]
    answered = tuple(r.metadata.src_node_id for r in good)
    if len(good) < max(min_nodes, 1):
        missing = tuple(n for n in nodes if n not in answered)
        raise TooFewNodes("stats", 0, len(good), min_nodes, missing)
    names = {read_names(r.content) for r in good}
    if len(names) > 1:
        raise TrainingError(
            Code.FAILED_PRECONDITION,
            "the owners encode the features differently (their declared categories differ): "
            + "; ".join(", ".join(n) or "-" for n in sorted(names))[:400],
        )
    mean, std = features.combine(parts)
    counts = {node: s.count for node, s in zip(answered, parts, strict=True)}
    return FederatedStats(mean, std, sum(s.count for s in parts), answered, names.pop(), counts)


def _usable_stats(reply: Message) -> features.Stats | None:
    """A stats reply's moments if they can join the pool: readable, at least one row. An
    owner always has (k, or 1 under DP); one claiming none would have the pool be the
    other owners' exact moments, which every owner is then sent (review, 2026-12-04). A
    reply that is not usable counts as that owner missing, not as the run failing."""
    try:
        stats = read_stats(reply.content)
    except TrainingError:
        return None
    return stats if stats.count >= 1 else None


def _weighted(reply: Message, limit: int | None = None) -> bool:
    """A reply whose ``num-examples`` is a weight its owner may claim (``examples_ok``)."""
    if not reply.has_content():
        return False
    metrics = reply.content.metric_records.get(METRICS)
    return examples_ok(metrics.get(NUM_EXAMPLES) if metrics is not None else None, limit)


def examples_ok(examples: object, limit: int | None) -> bool:
    """A weight that is a whole number of examples, at least one (with 0, FedAvg's global
    model is exactly the other owners' updates: review, 2026-12-04) and at most ``limit``,
    what the owner declared (one claiming 10**15 made the global model its own update, and
    inf made it NaN: review, 2026-12-05). ``None``: no bound declared."""
    if isinstance(examples, bool) or not isinstance(examples, int | float):
        return False
    if isinstance(examples, float) and not (math.isfinite(examples) and examples.is_integer()):
        return False
    return examples >= 1 and (limit is None or examples <= limit)


def metrics_ok(content: RecordDict) -> bool:
    """One metric record, ``METRICS``, of single finite numbers: Flower's aggregation read
    a list as a number (a TypeError: the run ended INTERNAL) and a second record aborted
    the round for every owner (review, 2026-12-05)."""
    if set(content.metric_records) != {METRICS}:
        return False
    return all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in content.metric_records[METRICS].values()
    )


def common_names(replies: list[Message]) -> list[Message]:
    """The replies (each ``metrics_ok``), each answered one's metrics cut to the names all
    of them have (``num-examples`` among them: each reply's weight was checked): Flower
    aborts the round for everyone when the names differ, which one owner adding or
    leaving out a metric did (review, 2026-12-05). Choosing the names most replies have
    let a hostile owner win a tie (of two, by its node id or by answering first)."""
    answered = [m for m in replies if not m.has_error()]
    if not answered:
        return replies
    names = [frozenset(m.content.metric_records[METRICS].keys()) for m in answered]
    common = frozenset.intersection(*names)
    for m, has in zip(answered, names, strict=True):
        if has != common:
            record = m.content.metric_records[METRICS]
            m.content[METRICS] = MetricRecord({k: v for k, v in record.items() if k in common})
    return replies


Shapes = tuple[tuple[str, tuple[int, ...]], ...]  # a model's array names and shapes, in order


def shapes_of(arrays: ArrayRecord) -> Shapes:
    """The names and shapes of the model a round sends (ours: its metadata is trusted)."""
    return tuple((k, tuple(int(d) for d in a.shape)) for k, a in arrays.items())


def same_model(record: ArrayRecord | None, sent: Shapes) -> bool:
    """Whether a reply's arrays are a model of the one sent: the same names in the same
    order, each of the same shape, of floats, finite. Flower's own check compares names
    only: a (5, 7) array ended the run INTERNAL as numpy could not broadcast it, and a
    () one broadcast into the average unseen (review, 2026-12-05)."""
    if record is None or [k for k, _ in sent] != list(record.keys()):
        return False
    for key, shape in sent:
        try:
            a = record[key].numpy()
        except Exception:  # not an array numpy reads (an archive, a pickle, garbage)
            return False
        if not isinstance(a, np.ndarray) or a.shape != shape or not plain_floats(a):
            return False
    return True


class _Observed(Strategy):
    """Delegates to a Flower strategy; orders replies, enforces the minimum, reports."""

    def __init__(
        self,
        inner: Strategy,
        rounds: int,
        min_nodes: int,
        on_round: Callable[[RoundReport], None] | None,
        limits: tuple[dict[int, int], dict[int, int]] | None = None,
    ) -> None:
        self.inner = inner
        self.limits = limits  # (train, evaluate): the most examples per node
        self.rounds = rounds
        self.min_nodes = min_nodes
        self.on_round = on_round
        self.history: list[RoundReport] = []
        self._t0 = time.monotonic()
        self._known: tuple[int, ...] = ()
        self._asked: tuple[int, ...] = ()
        self._train_nodes: tuple[int, ...] = ()
        self._train_metrics: Metrics = {}
        self._failed: set[int] = set()
        self._arrays: ArrayRecord | None = None
        self._sent: Shapes = ()  # the model this round's train messages carried

    def check_available(self, grid: Grid, server_round: int) -> None:
        """Refuse to sample below the minimum (Flower would wait for nodes forever)."""
        nodes = tuple(sorted(grid.get_node_ids()))
        if len(nodes) < self.min_nodes:
            missing = tuple(n for n in self._known if n not in nodes)
            raise TooFewNodes("connect", server_round, len(nodes), self.min_nodes, missing)
        self._known = tuple(sorted({*self._known, *nodes}))

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.check_available(grid, server_round)
        self._arrays = arrays
        self._failed = set()
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._asked = tuple(sorted(m.metadata.dst_node_id for m in messages))
        self._sent = shapes_of(arrays)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        ordered = self._answered("train", server_round, replies)
        self._train_nodes = tuple(m.metadata.src_node_id for m in ordered if not m.has_error())
        arrays, metrics = self.inner.aggregate_train(server_round, ordered)
        if arrays is not None:
            self._arrays = arrays
        self._train_metrics = _plain(metrics)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.check_available(grid, server_round)
        messages = list(self.inner.configure_evaluate(server_round, arrays, config, grid))
        self._asked = tuple(sorted(m.metadata.dst_node_id for m in messages))
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        ordered = self._answered("evaluate", server_round, replies)
        metrics = self.inner.aggregate_evaluate(server_round, ordered)
        report = RoundReport(
            server_round=server_round,
            rounds=self.rounds,
            train_nodes=self._train_nodes,
            eval_nodes=tuple(m.metadata.src_node_id for m in ordered if not m.has_error()),
            failed=tuple(sorted(self._failed)),
            train_metrics=self._train_metrics,
            eval_metrics=_plain(metrics),
            arrays=self._arrays.to_numpy_ndarrays() if self._arrays is not None else [],
            elapsed=time.monotonic() - self._t0,
        )
        self.history.append(report)
        if self.on_round is not None:
            self.on_round(report)
        return metrics

    def summary(self) -> None:
        self.inner.summary()

    def _answered(self, stage: str, server_round: int, replies: Iterable[Message]) -> list[Message]:
        """Replies in node order, a reply the strategy may not use dropped (as missing): a
        weight not its owner's to claim, a train reply that is no model of the one sent;
        the run stops if fewer than the minimum succeeded."""
        ordered = [m for m in _by_node(replies) if m.has_error() or self._usable(stage, m)]
        ordered = common_names(ordered)
        ok = {m.metadata.src_node_id for m in ordered if not m.has_error()}
        missing = tuple(n for n in self._asked if n not in ok)
        self._failed.update(missing)
        if self._asked and len(ok) < self.min_nodes:
            raise TooFewNodes(stage, server_round, len(ok), self.min_nodes, missing)
        return ordered

    def _usable(self, stage: str, reply: Message) -> bool:
        if not reply.has_content() or not metrics_ok(reply.content):
            return False  # Flower's consistency check would abort the round for everyone
        if stage == "train":
            records = reply.content.array_records
            if len(records) != 1 or not same_model(records.get(ARRAYS), self._sent):
                return False
        node = reply.metadata.src_node_id
        if self.limits is None:
            return _weighted(reply, None)
        limits = self.limits[0] if stage == "train" else self.limits[1]
        return node in limits and _weighted(reply, limits[node])


def _by_node(replies: Iterable[Message]) -> list[Message]:
    return sorted(replies, key=lambda m: m.metadata.src_node_id)


def _plain(record: MetricRecord | None) -> Metrics:
    return {} if record is None else dict(record)


def _min_nodes(strategy: Strategy) -> int:
    """The most of the strategy's ``min_train_nodes`` and ``min_available_nodes`` (below
    the latter Flower's sampling would wait forever), looking inside the DP wrappers."""
    s: object = strategy
    for _ in range(4):
        found = [getattr(s, a, None) for a in ("min_train_nodes", "min_available_nodes")]
        if any(isinstance(f, int) for f in found):
            return max([1, *(f for f in found if isinstance(f, int))])
        s = getattr(s, "strategy", None)
        if s is None:
            break
    return 1
