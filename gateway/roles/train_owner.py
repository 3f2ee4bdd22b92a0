"""The owner's side of a training run: one Flower message in, one release out.

Each message from the run's home is decided again under this owner's grants
(``release.train``), answered by the built-in ClientApp (``federation.training``) on
exactly the granted feature and label columns, and released through the pipeline: an
audit entry and a signed receipt for every round this owner joined. The run's rows and
Flower ``Context`` are kept between messages, for a bounded number of runs.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from flwr.app import ConfigRecord, Context, Message, RecordDict
from numpy.typing import NDArray
from sqlglot import exp

from federation.envelope import Envelope
from federation.outcome import Error
from federation.reports import OwnerReport
from federation.sql import generate
from federation.training import features
from federation.training.client_app import (
    CONFIG,
    METRICS,
    NUM_EXAMPLES,
    STATS_MESSAGE,
    make_client_app,
)
from federation.training.config import server_round as server_round_of
from federation.training.errors import TrainingError
from gateway.catalog import Catalog, CatalogEntry
from gateway.engine import Engine
from gateway.errors import FailedPrecondition, FedgateError, InvalidArgument, NotFound
from gateway.policy.model import Decision
from gateway.policy.store import GrantStore
from gateway.release.pipeline import Protected, Released, ReleasePipeline
from gateway.release.train import Step, TrainRelease
from gateway.training.grid import from_bytes, to_bytes
from gateway.training.spec import TrainSpec

RUNS_KEPT = 8  # runs whose rows and Context an owner keeps between messages
MAX_ROWS = 2_000_000  # rows one run may train on at one owner
KINDS = ("train", "evaluate", STATS_MESSAGE)


@dataclass
class _Run:
    context: Context
    rows: tuple[NDArray[np.float64], NDArray[np.generic]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _typed(exc: TrainingError) -> FedgateError:
    return FedgateError.of(Error(exc.code, exc.reason))


class TrainOwner:
    def __init__(
        self,
        node_id: str,
        catalog: Catalog,
        grants: GrantStore,
        engine: Engine,
        pipeline: ReleasePipeline,
    ) -> None:
        self.node_id = node_id
        self.catalog = catalog
        self.grants = grants
        self.engine = engine
        self.pipeline = pipeline
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._lock = threading.Lock()

    def step(self, env: Envelope, message: bytes) -> tuple[bytes, OwnerReport]:
        """This owner's answer to one message of a run (its caller is vouched for)."""
        spec, entry, msg, step = self._read(env, message)
        run = self._run(env, msg)

        def compute(decision: Decision, deadline: float) -> Protected:
            return self._compute(spec, entry, decision, deadline, env, msg, run)

        released = self.pipeline.run(TrainRelease(spec, step, entry, self.grants, compute), env)
        if not isinstance(released, Released):
            raise InvalidArgument("a training message cannot be a dry run")
        report = OwnerReport(
            self.node_id,
            epsilon=released.protected.epsilon,
            grant_id=released.grant.id,
            receipt=released.receipt.to_json(),
        )
        return released.protected.payload, report

    def _read(self, env: Envelope, message: bytes) -> tuple[TrainSpec, CatalogEntry, Message, Step]:
        """The spec the home signed, the dataset, and the message, each checked; a
        refusal here is audited as one."""
        subject: dict[str, str] = {}
        try:
            spec = TrainSpec.parse(env.body)
            subject = {"dataset": spec.dataset, "task": spec.task}
            entry = self.catalog.get(spec.dataset)
            if entry is None or entry.descriptor.level == "L4":
                raise NotFound(f"no dataset {spec.dataset!r} at {self.node_id}")
            try:
                msg = from_bytes(message)
            except Exception:  # any undecodable input is the sender's error
                raise InvalidArgument("not a Flower message") from None
            kind = msg.metadata.message_type
            if kind not in KINDS or not msg.has_content():
                raise InvalidArgument(f"a training run does not send {kind!r} messages")
            config = msg.content.config_records.get(CONFIG)
            try:
                server_round = server_round_of(config) if config is not None else 0
            except TrainingError as exc:
                raise _typed(exc) from None
            if not 0 <= server_round <= spec.rounds:
                raise InvalidArgument(f"round {server_round} of a run of {spec.rounds} rounds")
        except FedgateError as exc:
            self.pipeline.refused("train", env, subject, exc)
            raise
        return spec, entry, msg, Step(kind, server_round)

    def _run(self, env: Envelope, msg: Message) -> _Run:
        key = f"{env.home_node}/{env.request_id}"
        with self._lock:
            run = self._runs.get(key)
            if run is None:
                ctx = Context(
                    run_id=msg.metadata.run_id,
                    node_id=msg.metadata.dst_node_id,
                    node_config={},
                    state=RecordDict(),
                    run_config={},
                )
                run = self._runs[key] = _Run(ctx)
                while len(self._runs) > RUNS_KEPT:
                    self._runs.popitem(last=False)
            self._runs.move_to_end(key)
            return run

    def _compute(
        self,
        spec: TrainSpec,
        entry: CatalogEntry,
        decision: Decision,
        deadline: float,
        env: Envelope,
        msg: Message,
        run: _Run,
    ) -> Protected:
        def load(_: ConfigRecord) -> tuple[NDArray[np.generic], NDArray[np.generic]]:
            if run.rows is None:
                run.rows = self._rows(spec, entry, decision, deadline, env.request_id)
            return run.rows

        app = make_client_app(load)
        with run.lock:
            try:
                reply = app(msg, run.context)
            except TrainingError as exc:
                raise _typed(exc) from None
        if reply.has_error():
            raise InvalidArgument(f"the training step failed: {reply.error.reason}")
        facts: dict[str, Any] = {}
        content = reply.content
        if METRICS in content.metric_records:
            metrics = content.metric_records[METRICS]
            examples, norm = metrics.get(NUM_EXAMPLES), metrics.get("update_norm")
            if isinstance(examples, int | float):
                facts["examples"] = int(examples)
            if isinstance(norm, int | float):
                facts["update_norm"] = float(norm)
        return Protected(to_bytes(reply), 0.0, facts)

    def _rows(
        self,
        spec: TrainSpec,
        entry: CatalogEntry,
        decision: Decision,
        deadline: float,
        request_id: str,
    ) -> tuple[NDArray[np.float64], NDArray[np.generic]]:
        """The granted columns of the rows that hold all of them, in a fixed order."""
        columns = [*spec.features, spec.label]
        table = self.engine.ensure_loaded(entry)
        present = exp.and_(
            *[
                exp.Not(this=exp.Is(this=exp.column(c, quoted=True), expression=exp.Null()))
                for c in columns
            ]
        )
        tree = (
            exp.select(*[exp.column(c, quoted=True) for c in columns])
            .from_(exp.table_(table, quoted=True))
            .where(present)
            .order_by(exp.column("rowid"))  # the same rows in the same order every run
            .limit(MAX_ROWS + 1)
        )
        got = self.engine.run(
            generate.sql(tree),
            timeout=max(0.01, deadline - time.monotonic()),
            request_id=request_id,
        )
        if got.num_rows > MAX_ROWS:
            raise FailedPrecondition(f"more than {MAX_ROWS:,} rows: a training run takes fewer")
        if got.num_rows < decision.min_group_size:
            raise FailedPrecondition(
                f"fewer rows than the grant's minimum of {decision.min_group_size}: nothing "
                "is trained on"
            )
        limit = decision.grant.max_examples
        if limit and got.num_rows > limit:  # the same rows every round of the run
            rng = np.random.default_rng(spec.seed)
            got = got.take(pa.array(np.sort(rng.permutation(got.num_rows)[:limit])))
        try:
            X = features.encode({c: got.column(c) for c in spec.features}, spec.features)
        except TrainingError as exc:
            raise _typed(exc) from None
        label = got.column(spec.label)
        if pa.types.is_boolean(label.type):
            label = pc.cast(label, pa.int64())
        y = np.asarray(label.to_numpy(), dtype=np.float64)
        return X, y
