"""SecAgg+ rounds: the home learns only the weighted sum of the owners' updates.

Flower's SecAgg+ exists only for its legacy API: ``SecAggPlusWorkflow`` on the server
(four exchanges a round: setup, share keys, collect masked vectors, unmask) and
``secaggplus_mod`` on the client. ``run_secagg`` drives that workflow round by round over
any ``Grid`` with a legacy FedAvg (or FedProx) that samples every node, then evaluates
the new global model with the new-API FedAvg's evaluate step (the same messages and
metrics as a plain run). The owner's side is ``client_app.make_client_app(secagg=True)``.

Each owner's update is scaled by its share of ``max_weight``, clipped to
``±clipping_range``, quantised to ``quantization_range`` levels and masked; the sum is
exact modulo ``modulus_range``, so the only error is the quantisation step
(2 · clipping_range / quantization_range per value, about 3e-5 at the defaults).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig, SimpleClientManager
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.strategy import FedProx as LegacyFedProx
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.run import Run

from federation.outcome import Code
from federation.training.client_app import (
    KEY_STATEMENT,
    KEY_STATEMENTS,
    METRICS,
    MODEL_STATEMENT,
    MODEL_STATEMENTS,
    stage_of,
)
from federation.training.client_app import NUM_EXAMPLES as NUM
from federation.training.config import SECAGG_MIN_NODES as MIN_NODES
from federation.training.config import SECAGG_STRATEGIES as STRATEGIES
from federation.training.config import SERVER_ROUND
from federation.training.errors import TooFewNodes, TrainingError, invalid
from federation.training.server import (
    Metrics,
    RoundReport,
    Shapes,
    TrainingResult,
    common_names,
    eval_limits,
    examples_ok,
    metrics_ok,
    shapes_of,
)

FITRES_EXAMPLES = "fitres.num_examples"  # where a legacy FitRes keeps its example count


@dataclass(frozen=True)
class SecAggSettings:
    """Quantisation of SecAgg+. ``max_weight`` is the largest weight (examples) any
    owner may give its update; the home sets it from the statistics round."""

    max_weight: float = 1.0
    clipping_range: float = 64.0
    quantization_range: int = 2**22
    modulus_range: int = 2**32


def threshold(n: int) -> int:
    """Shares needed to rebuild a secret: a strict majority, so that no home can gather
    both an owner's mask seed and its key from the owners' single unmask answers."""
    return n // 2 + 1


def run_secagg(
    grid: Grid,
    strategy: str,
    initial: ArrayRecord,
    rounds: int,
    config: ConfigRecord,
    on_round: Callable[[RoundReport], None] | None = None,
    *,
    settings: SecAggSettings = SecAggSettings(),  # noqa: B008 - frozen
    min_nodes: int = 2,
    evaluate: bool = True,
    proximal_mu: float = 0.1,
    examples: Mapping[int, int] | None = None,
    timeout: float = 3600.0,
) -> TrainingResult:
    """``rounds`` rounds of SecAgg+ over every node of ``grid`` (at least ``min_nodes``,
    and at least 3: with two, each learns the other's update from the sum).

    ``examples`` (``server.weight_limits``) bounds the example count each node may give
    beside its masked update and in its evaluation, as in ``server.run``: a reply
    claiming more (or not a whole number) counts as that node missing the stage. The
    weight inside the masked vector is bounded only by ``settings.max_weight``'s
    quantisation, which each owner applies to itself."""
    if strategy not in STRATEGIES:
        raise invalid(
            f"--secagg needs a strategy that averages a weighted sum ({', '.join(STRATEGIES)}),"
            f" not {strategy!r}: the home sees no single update to take a median or a score of"
        )
    if rounds < 1:
        raise invalid("a run has at least one round")
    min_nodes = max(min_nodes, MIN_NODES)
    limits = None if examples is None else (dict(examples), eval_limits(examples, config))
    watched = _Watched(grid, limits)
    legacy = _legacy_strategy(strategy, config, min_nodes, proximal_mu)
    manager = SimpleClientManager()
    ctx = LegacyContext(
        Context(
            run_id=grid.run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}
        ),
        config=ServerConfig(num_rounds=rounds),
        strategy=legacy,
        client_manager=manager,
    )
    current = ArrayRecord(initial.to_numpy_ndarrays())
    evaluator = FedAvg(
        fraction_evaluate=1.0, min_evaluate_nodes=min_nodes, min_available_nodes=min_nodes
    )
    history: list[RoundReport] = []
    t0 = time.monotonic()
    for server_round in range(1, rounds + 1):
        nodes = _register(watched, manager, min_nodes, server_round)
        workflow = SecAggPlusWorkflow(
            num_shares=1.0,  # every sampled owner holds a share of every other's secrets
            reconstruction_threshold=threshold(len(nodes)),
            max_weight=settings.max_weight,
            clipping_range=settings.clipping_range,
            quantization_range=settings.quantization_range,
            modulus_range=settings.modulus_range,
            timeout=timeout,
        )
        ctx.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
            {WorkflowKey.CURRENT_ROUND: server_round}
        )
        ctx.state.array_records[MAIN_PARAMS_RECORD] = current
        watched.start_round(shapes_of(current), settings.modulus_range)
        workflow(watched, ctx)
        watched.check(server_round, min_nodes)
        updated = ctx.state.array_records[MAIN_PARAMS_RECORD]
        if updated is current:
            raise TrainingError(Code.ABORTED, f"secure aggregation halted in round {server_round}")
        current = ArrayRecord(updated.to_numpy_ndarrays())
        train_metrics = _train_metrics(ctx, server_round)
        eval_metrics: Metrics = {}
        eval_nodes: tuple[int, ...] = ()
        if evaluate:
            messages = list(evaluator.configure_evaluate(server_round, current, config, watched))
            replies = sorted(
                watched.send_and_receive(messages, timeout=timeout),
                key=lambda m: m.metadata.src_node_id,
            )
            watched.check(server_round, min_nodes)
            eval_nodes = tuple(m.metadata.src_node_id for m in replies if not m.has_error())
            agg = evaluator.aggregate_evaluate(server_round, replies)
            eval_metrics = {} if agg is None else dict(agg)
        report = RoundReport(
            server_round=server_round,
            rounds=rounds,
            train_nodes=watched.answered.get("train", ()),
            eval_nodes=eval_nodes,
            failed=tuple(sorted(watched.failed)),
            train_metrics=train_metrics,
            eval_metrics=eval_metrics,
            arrays=current.to_numpy_ndarrays(),
            elapsed=time.monotonic() - t0,
        )
        history.append(report)
        if on_round is not None:
            on_round(report)
    return TrainingResult(current.to_numpy_ndarrays(), tuple(history), None)


def _legacy_strategy(
    name: str, config: ConfigRecord, min_nodes: int, proximal_mu: float
) -> LegacyFedAvg:
    base = dict(config)

    def fit_config(server_round: int) -> dict[str, Any]:
        return {**base, SERVER_ROUND: server_round}

    common: dict[str, Any] = {
        "fraction_fit": 1.0,
        "fraction_evaluate": 0.0,  # evaluated with the new API after each round
        "min_fit_clients": min_nodes,
        "min_evaluate_clients": 0,
        "min_available_clients": min_nodes,
        "on_fit_config_fn": fit_config,
        "fit_metrics_aggregation_fn": _weighted_loss,
        "inplace": False,
    }
    if name == "fedprox":
        return LegacyFedProx(**common, proximal_mu=proximal_mu)
    return LegacyFedAvg(**common)


def _weighted_loss(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    total = sum(n for n, _ in results)
    losses = [(n, m.get("train_loss")) for n, m in results]
    if not total or any(not isinstance(v, int | float) for _, v in losses):
        return {}
    return {"train_loss": sum(n * float(cast(float, v)) for n, v in losses) / total}


def _train_metrics(ctx: LegacyContext, server_round: int) -> Metrics:
    out: Metrics = {}
    for key, values in ctx.history.metrics_distributed_fit.items():
        for r, v in values:
            if r == server_round and isinstance(v, int | float):
                out[key] = v
    return out


def _register(grid: _Watched, manager: SimpleClientManager, min_nodes: int, r: int) -> list[int]:
    """Every listed node as a client of the legacy strategy (it samples them all)."""
    nodes = sorted(grid.get_node_ids())
    if len(nodes) < min_nodes:
        missing = tuple(n for n in grid.known if n not in nodes)
        raise TooFewNodes("connect", r, len(nodes), min_nodes, missing)
    grid.known = tuple(sorted({*grid.known, *nodes}))
    for proxy in list(manager.all().values()):
        manager.unregister(proxy)
    for node in nodes:
        manager.register(GridClientProxy(node, grid, grid.run.run_id))
    return nodes


class _Watched(Grid):
    """Delegates to a Grid; notes who was asked and who answered each stage of a round."""

    def __init__(
        self, inner: Grid, limits: tuple[dict[int, int], dict[int, int]] | None = None
    ) -> None:
        self.inner = inner
        self.limits = limits  # the most examples each node may claim: (train, evaluate)
        self.model: Shapes = ()  # the round's model, which each masked vector must fit
        self.modulus = 0
        self.known: tuple[int, ...] = ()
        self.asked: dict[str, tuple[int, ...]] = {}
        self.answered: dict[str, tuple[int, ...]] = {}
        self.failed: set[int] = set()
        self.statements: dict[int, str] = {}  # each owner's signed keys, from its setup
        self.models: dict[int, str] = {}  # each owner's signed model digest, from its train

    def start_round(self, model: Shapes = (), modulus: int = 0) -> None:
        """A new round, whose masked vectors must be of ``model`` (its names and shapes)
        with integers below ``modulus``."""
        self.model, self.modulus = model, modulus
        self.asked, self.answered, self.failed = {}, {}, set()
        self.statements, self.models = {}, {}

    def check(self, server_round: int, min_nodes: int) -> None:
        """Stop the run (naming who did not answer) when a stage had too few answers."""
        for stage, asked in self.asked.items():
            ok = self.answered.get(stage, ())
            if len(ok) < min_nodes:
                missing = tuple(n for n in asked if n not in ok)
                raise TooFewNodes(stage, server_round, len(ok), min_nodes, missing)

    @property
    def run(self) -> Run:
        return self.inner.run

    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        out = list(messages)
        stage = stage_of(out[0]) if out else ""
        # every owner checks the others' keys are theirs, and that all got its model
        relay = {"secagg.share_keys": (KEY_STATEMENTS, self.statements)}
        relay["secagg.unmask"] = (MODEL_STATEMENTS, self.models)
        if stage in relay:
            name, statements = relay[stage]
            for m in out:
                m.content.config_records[name] = ConfigRecord(
                    {str(n): s for n, s in statements.items()}
                )
        replies = [
            r
            for r in self.inner.send_and_receive(out, timeout=timeout)
            if r.has_error() or self._usable(stage, r)
        ]
        if stage == "evaluate":  # Flower's FedAvg aggregates these, as without SecAgg+
            replies = common_names(replies)
        keep = {"secagg.setup": (KEY_STATEMENT, self.statements)}
        keep["train"] = (MODEL_STATEMENT, self.models)
        if stage in keep:
            name, statements = keep[stage]
            for r in replies:
                rec = r.content.config_records.get(name) if r.has_content() else None
                if rec is not None and isinstance(rec.get("statement"), str):
                    statements[r.metadata.src_node_id] = str(rec["statement"])
        asked = tuple(sorted(m.metadata.dst_node_id for m in out))
        ok = tuple(sorted(m.metadata.src_node_id for m in replies if not m.has_error()))
        self.asked[stage] = asked
        self.answered[stage] = ok
        self.failed.update(n for n in asked if n not in ok)
        return replies

    def _usable(self, stage: str, reply: Message) -> bool:
        """A reply the workflow may use; one that fails here is left out, so that Flower
        sees its node as dropped (its masks rebuilt from the others' shares)."""
        if stage not in ("train", "evaluate"):
            return True
        if not reply.has_content():
            return False
        if stage == "train" and not self._masked_ok(reply.content):
            return False
        if stage == "evaluate" and not metrics_ok(reply.content):
            return False
        name, key = (FITRES_EXAMPLES, "num_examples") if stage == "train" else (METRICS, NUM)
        record: MetricRecord | None = reply.content.metric_records.get(name)
        node = reply.metadata.src_node_id
        limits = None if self.limits is None else self.limits[stage != "train"]
        if limits is not None and node not in limits:
            return False
        limit = None if limits is None else limits[node]
        return record is not None and examples_ok(record.get(key), limit)

    def _masked_ok(self, content: RecordDict) -> bool:
        """A masked training reply Flower's workflow can use: a FitRes it reads, and one
        masked vector per array of the round's model (after the weight's), integers below
        the modulus, each of its array's shape. The workflow adds the vectors up as they
        come: one of another shape ended the run INTERNAL, or broadcast into the sum
        unseen (review, 2026-12-05)."""
        try:
            compat.recorddict_to_fitres(content, keep_input=True)
        except Exception:  # a record missing or of another kind: Flower would raise
            return False
        configs = content.config_records.get(RECORD_KEY_CONFIGS)
        masked = configs.get(Key.MASKED_PARAMETERS) if configs is not None else None
        shapes = [(1,), *(shape for _, shape in self.model)]
        if not isinstance(masked, list) or len(masked) != len(shapes):
            return False
        for data, shape in zip(masked, shapes, strict=True):
            try:
                a = bytes_to_ndarray(data) if isinstance(data, bytes) else None
            except Exception:  # not an array numpy reads
                return False
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype.kind not in "iu":
                return False
            if a.size and (int(a.min()) < 0 or int(a.max()) >= self.modulus):
                return False
        return True
