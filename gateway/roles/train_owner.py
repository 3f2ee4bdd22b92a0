"""The owner's side of a training run: one Flower message in, one release out.

Each message from the run's home is decided again under this owner's grants
(``release.train``), answered by the built-in ClientApp (``federation.training``) on
exactly the granted feature and label columns, with the settings of the signed spec
(``training.settings``), and released through the pipeline: an audit entry and a signed
receipt for every message this owner answered. A run's rows and Flower ``Context`` are
kept between its messages, for a bounded number of runs and cells, and each message of
a run is answered once (statistics once, then train and evaluate per round, in order),
so a home cannot ask the same rows the same question twice.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.fernet import InvalidToken
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from numpy.typing import NDArray
from sqlglot import exp

from federation.envelope import Envelope
from federation.outcome import Error
from federation.reports import OwnerReport
from federation.sql import generate
from federation.training import features
from federation.training.app_bundle import MAX_ARRAYS, digest_of, is_app_task, short
from federation.training.client_app import (
    ARRAYS,
    CONFIG,
    INIT_MESSAGE,
    KEY_STATEMENT,
    KEY_STATEMENTS,
    LEGACY_ARRAYS,
    LEGACY_CONFIG,
    METRICS,
    MODEL_STATEMENT,
    MODEL_STATEMENTS,
    NUM_EXAMPLES,
    STATS,
    STATS_FEATURES,
    STATS_MESSAGE,
    Protect,
    make_client_app,
    plain_floats,
    stage_of,
)
from federation.training.config import SECAGG_MIN_NODES, classifies, server_round
from federation.training.errors import TrainingError
from gateway.catalog import Catalog, CatalogEntry
from gateway.column_types import FLOAT, parse_type
from gateway.engine import Engine
from gateway.errors import (
    Aborted,
    DeadlineExceeded,
    FailedPrecondition,
    FedgateError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from gateway.policy.model import Decision
from gateway.policy.store import GrantStore
from gateway.release.pipeline import Protected, Released, ReleasePipeline
from gateway.release.train import Step, TrainRelease
from gateway.roles.vouching import Vouching
from gateway.training import dp
from gateway.training.app_host import AppHost, AppLimits
from gateway.training.apps import AppStore
from gateway.training.grid import from_bytes, to_bytes
from gateway.training.secagg_guard import (
    SecAggRound,
    check_same_model,
    check_signed_keys,
    check_stage,
    key_statement,
    model_statement,
    round_digest,
    stage_round,
)
from gateway.training.settings import bound_record
from gateway.training.spec import ROUND_SECONDS, TrainSpec
from gateway.training.transfers import MAX_MESSAGE_BYTES, PIECE_BYTES, Answer, Piece, Transfers

RUNS_KEPT = 4  # runs whose rows and Context an owner keeps between messages
# A run with no message answered this long is dropped (rows, Context, app process): one
# cancelled, failed at another owner or refused sends none again. A live run cannot get
# there: an exchange waits at most ROUND_SECONDS for its replies, a run lasts 590 s.
IDLE_SECONDS = 2 * ROUND_SECONDS
# rows x (inputs + label) one run may hold (160 MB of float64); what a training step holds
# per row and output on top (scores, hidden units) goes in chunks (tasks.STEP_CELLS)
MAX_CELLS = 20_000_000
KINDS = ("train", "evaluate", STATS_MESSAGE, INIT_MESSAGE)
# A SecAgg+ round's steps after its setup, each after the one named
SECAGG_AFTER = {
    "secagg.share_keys": "secagg.setup",
    "train": "secagg.share_keys",
    "secagg.unmask": "train",
}

log = logging.getLogger("fedgate.owner")


def last_step(spec: TrainSpec) -> str:
    """The kind of a run's last message: its rows are not kept after it (a DP run has
    no evaluation)."""
    if spec.dp_clip == 0:
        return "evaluate"
    return "secagg.unmask" if spec.secagg else "train"


@dataclass
class _Run:
    """One run at this owner: its rows (loaded under ``grant_id``) and what was asked."""

    context: Context
    grant_id: str = ""
    rows: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None
    asked: set[tuple[str, int]] = field(default_factory=set)
    last_train: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    host: AppHost | None = None  # a custom app's process, for this run only
    secagg: SecAggRound = field(default_factory=SecAggRound)
    names: tuple[str, ...] = ()  # the model's inputs (one-hot columns as name=value)
    closed: bool = False  # dropped: no app process may start for it again
    home: str = ""  # the run's home node: when runs must go, the busiest home's go first
    touched: float = field(default_factory=time.monotonic)  # its last message answered

    def close(self) -> None:
        """Drop the run and stop its app, also from another thread while it answers
        (that call then fails: the run was dropped)."""
        self.closed = True  # before the host is read: see ``_app_answer``
        self.stop_app()

    def stop_app(self) -> None:
        host, self.host = self.host, None
        if host is not None:
            host.close()


def _typed(exc: TrainingError) -> FedgateError:
    return FedgateError.of(Error(exc.code, exc.reason))


def encoding(spec: TrainSpec, entry: CatalogEntry) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """The spec's features as this owner encodes them: numeric columns as they are, a
    column declaring categories one-hot (numeric first, then each categorical block)."""
    declared = {c.name: c.categories for c in entry.descriptor.columns}
    numeric = [f for f in spec.features if not declared.get(f)]
    return numeric, {f: declared[f] for f in spec.features if declared.get(f)}


def _dp_bounds(
    spec: TrainSpec, entry: CatalogEntry, decision: Decision
) -> list[tuple[float, float]]:
    """Each model input's bounds under a DP grant: a numeric feature's declared ones (a
    feature without is refused), 0 and 1 for a one-hot column."""
    clamp = decision.clamp or {}
    numeric, categorical = encoding(spec, entry)
    missing = [f for f in numeric if f not in clamp]
    if missing:
        raise FailedPrecondition(f"feature {missing[0]!r} declares no bounds to clamp to")
    bounds = [clamp[f] for f in numeric]
    return bounds + [(0.0, 1.0)] * sum(len(vs) for vs in categorical.values())


def run_key(env: Envelope) -> str:
    """A run is its home, request id, signed spec and requester: a message that differs
    in any of them is another run (and loads its own rows under its own decision)."""
    parts = (env.home_node, env.request_id, env.body, str(env.requester), env.requester.org)
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def check_order(run: _Run, step: Step, rounds: int, *, secagg: bool = False) -> None:
    """Statistics once, before round 1; each round's train once, in order (under SecAgg+
    after its setup and key sharing, and followed by its unmask), then its evaluate once.
    Anything else asks the same rows, or the same shares, again."""
    kind, r = step.kind, step.round
    if (kind, r) in run.asked:
        raise FailedPrecondition(f"{kind} of round {r} was already answered")
    if kind in (STATS_MESSAGE, INIT_MESSAGE):
        if r != 0:
            raise InvalidArgument(f"{kind} comes before round 1")
    elif kind == "evaluate":
        if r < 1 or r != run.last_train:  # no evaluation of a model nobody trained here
            raise FailedPrecondition(f"evaluate of round {r} before its training")
    elif kind == ("secagg.setup" if secagg else "train"):
        if not (r == run.last_train + 1 and r <= rounds):
            raise FailedPrecondition(f"round {r} out of order")
    elif not secagg or (SECAGG_AFTER.get(kind), r) not in run.asked:
        raise FailedPrecondition(f"{kind} of round {r} out of order")


def _bottom_k(rows: NDArray[np.float64], limit: int, seed: int) -> NDArray[np.intp]:
    """The indices of ``limit`` rows picked by their own values only: ordered by a seeded
    random projection of each row, ties broken by the values themselves (a total order
    on content), the first ``limit`` kept. One row added or removed then changes the
    pick by at most one swap (the row in, the last one out), where a permutation of the
    row count (or the row ids) swapped many rows: ``noisy_stats`` scales to a swap."""
    weights = np.random.default_rng(seed).standard_normal((rows.shape[1],))
    key = np.zeros(rows.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):  # an inf or NaN key sorts alike
        for j, w in enumerate(weights):  # column by column: no row's key depends on another
            key += rows[:, j] * w
    order = np.lexsort((*rows.T[::-1], key))
    picked: NDArray[np.intp] = order[:limit]
    return picked


class TrainOwner:
    """Answers ``Peer/TrainStep`` for this node's datasets (see the module docstring)."""

    def __init__(
        self,
        node_id: str,
        catalog: Catalog,
        grants: GrantStore,
        engine: Engine,
        pipeline: ReleasePipeline,
        apps: AppStore,
        vouching: Vouching,
        limits: AppLimits = AppLimits(),  # noqa: B008 - frozen
        piece_bytes: int = PIECE_BYTES,  # of a reply in pieces: fits this node's messages
    ) -> None:
        self.piece_bytes = piece_bytes
        self.node_id = node_id
        self.vouching = vouching
        self.apps = apps
        self.transfers = Transfers()
        self.app_limits = limits
        self.catalog = catalog
        self.grants = grants
        self.engine = engine
        self.pipeline = pipeline
        self._runs: OrderedDict[str, _Run] = OrderedDict()  # least recently active first
        self._starting: dict[str, _Run] = {}  # runs whose first message is being answered
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop every run's app process (the node is stopping)."""
        with self._lock:
            runs = [self._closed(r) for r in (*self._runs.values(), *self._starting.values())]
            self._runs.clear()
            self._starting.clear()
        for run in runs:
            run.close()

    def sweep(self, now: float | None = None) -> None:
        """Drop the runs no message reached for ``IDLE_SECONDS`` (their rows, Context and
        app process) and the pieces held past their time (``Transfers.sweep``). The node's
        housekeeping calls it: a run cancelled at its home, failed at another owner or
        refused here sends no last message, and its rows stayed until newer runs pushed
        them out or the node stopped (review, 2026-12-05)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [k for k, r in self._runs.items() if now - r.touched > IDLE_SECONDS]
            dropped = [self._closed(self._runs.pop(k)) for k in idle]
        for run in dropped:  # outside the lock: stopping an app waits for its process
            run.close()
        if dropped:
            log.info("dropped %d training run(s) idle for %.0f s", len(dropped), IDLE_SECONDS)
        self.transfers.sweep(now)

    @staticmethod
    def _closed(run: _Run) -> _Run:
        """Marked dropped (under the owner's lock, so that ``_keep`` cannot keep it
        again); the caller stops its app outside the lock."""
        run.closed = True
        return run

    def receive(self, caller: str, env: Envelope, piece: Piece) -> Answer:
        """One ``Peer/TrainStep`` call: a whole message, one of its pieces (answered once
        the last arrives), or a fetch of a large reply's next piece."""
        if not piece.transfer:
            raise InvalidArgument("a training step names its transfer")
        key = (caller, env.request_id, piece.transfer)
        if piece.fetch:
            data, total, report = self.transfers.fetch(key, piece.fetch, self.piece_bytes)
            return Answer(data, report, total, piece.fetch)
        message = piece.data
        if piece.total:
            if piece.offset == 0:  # nothing is held for a run this owner would refuse
                self._precheck(env)
            whole = self.transfers.put(key, piece.total, piece.offset, piece.data)
            if whole is None:
                return Answer(b"", None)
            message = whole
        reply, report = self.step(env, message)
        if len(reply) <= self.piece_bytes:
            return Answer(reply, report)
        self.transfers.hold_reply(key, reply, report)
        return Answer(reply[: self.piece_bytes], report, len(reply), 0)

    def _precheck(self, env: Envelope) -> None:
        """Before holding a message's pieces: the run names this owner, its dataset is
        here, and a grant allows it now (decided again on the whole message). A refusal
        here is audited and lets the rows go, as one of ``_read``'s (review, 2026-12-04:
        a grant revoked mid-run went unaudited, and a custom app kept the rows 900 s)."""
        subject: dict[str, str] = {}
        try:
            spec = TrainSpec.parse(env.body)
            subject = {"dataset": spec.dataset, "task": spec.task}
            entry = self._entry(spec)

            def never(decision: Decision, deadline: float) -> Protected:
                raise AssertionError("a precheck computes nothing")

            TrainRelease(spec, Step("train", 0), entry, self.grants, never).decide(env)
        except FedgateError as exc:
            self._refused(env, subject, exc)
            raise

    def _refused(self, env: Envelope, subject: dict[str, str], exc: FedgateError) -> None:
        """A refusal before the pipeline ran: its audit entry; the run's rows (and a
        custom app's process, which holds them) go with it."""
        self.pipeline.refused("train", env, subject, exc)
        self._let_rows_go(env)

    def _entry(self, spec: TrainSpec) -> CatalogEntry:
        """The run's dataset here, in a run that names this owner (L4 is absent)."""
        if self.node_id not in spec.nodes:
            raise PermissionDenied(f"a run that does not name {self.node_id} as an owner")
        entry = self.catalog.get(spec.dataset)
        if entry is None or entry.descriptor.level == "L4":
            raise NotFound(f"no dataset {spec.dataset!r} at {self.node_id}")
        return entry

    def step(self, env: Envelope, message: bytes) -> tuple[bytes, OwnerReport]:
        """This owner's answer to one message of a run (its caller is vouched for)."""
        spec, entry, msg, step = self._read(env, message)

        def compute(decision: Decision, deadline: float) -> Protected:
            return self._compute(spec, entry, decision, deadline, env, msg, step)

        try:
            released = self.pipeline.run(
                TrainRelease(spec, step, entry, self.grants, compute),
                env,
                max_payload_bytes=MAX_MESSAGE_BYTES,
            )
        except FedgateError:  # the rows (and an app's process) go with a refusal (a
            self._let_rows_go(env)  # revoked grant or app, a message out of order ...)
            raise
        assert isinstance(released, Released)  # dry runs are refused in ``_read``
        report = OwnerReport(
            self.node_id,
            epsilon=released.protected.epsilon,
            grant_id=released.grant.id,
            receipt=released.receipt.to_json(),
        )
        return released.protected.payload, report

    def _read(self, env: Envelope, message: bytes) -> tuple[TrainSpec, CatalogEntry, Message, Step]:
        """The spec the home signed, the dataset, and the message with the spec's settings
        in place of its own, each checked; a refusal here is audited as one."""
        subject: dict[str, str] = {}
        try:
            spec = TrainSpec.parse(env.body)
            subject = {"dataset": spec.dataset, "task": spec.task}
            if env.explain or env.check:
                raise InvalidArgument("a training run has no dry run: ask with --explain later")
            entry = self._entry(spec)
            if is_app_task(spec.task) and self.apps.folder(digest_of(spec.task)) is None:
                raise FailedPrecondition(
                    f"app {short(digest_of(spec.task))} is not approved at {self.node_id} "
                    "(its operator reviews it and runs: fedgate app approve DIR)"
                )
            try:
                msg = from_bytes(message)
            except Exception:  # any undecodable input is the sender's error
                raise InvalidArgument("not a Flower message") from None
            kind = msg.metadata.message_type
            if kind not in KINDS or not msg.has_content():
                raise InvalidArgument(f"a training run does not send {kind!r} messages")
            step = self._step(spec, msg)
        except FedgateError as exc:
            self._refused(env, subject, exc)  # an app no longer approved: its process goes
            raise
        return spec, entry, msg, step

    @staticmethod
    def _step(spec: TrainSpec, msg: Message) -> Step:
        """The step the message asks, its settings replaced by the spec's. A SecAgg+ run
        trains only in masked stages; a plain run never speaks SecAgg+."""
        kind, content = stage_of(msg), msg.content
        if msg.metadata.message_type != "train" and RECORD_KEY_CONFIGS in content.config_records:
            raise InvalidArgument("a SecAgg+ stage travels only in a train message")
        if kind == INIT_MESSAGE and not is_app_task(spec.task):
            raise InvalidArgument("only a custom app's run asks for an initial model")
        masked = kind.startswith("secagg.") or (
            kind == "train" and RECORD_KEY_CONFIGS in content.config_records
        )
        if masked and not spec.secagg:
            raise InvalidArgument("a SecAgg+ stage in a run not signed for --secagg")
        if spec.secagg and msg.metadata.message_type == "train" and not masked:
            raise InvalidArgument(
                "a SecAgg+ run trains only in SecAgg+ stages: no unmasked update is released"
            )
        if kind.startswith("secagg."):
            if kind not in SECAGG_AFTER and kind != "secagg.setup":
                raise InvalidArgument("an unknown SecAgg+ stage")
            return Step(kind, stage_round(msg.metadata.group_id))
        key = LEGACY_CONFIG if masked else CONFIG
        config = content.config_records.get(key)
        if config is None:
            raise InvalidArgument("a training message without its settings")
        content.config_records[key] = bound_record(spec, config)
        try:
            step = Step(kind, server_round(config))
        except TrainingError as exc:
            raise _typed(exc) from None
        if masked and step.round != stage_round(msg.metadata.group_id):
            raise InvalidArgument("a SecAgg+ round whose settings name another round")
        return step

    def _open(self, env: Envelope, msg: Message) -> _Run:
        """The run's state: the one kept, or one whose first message another call is
        answering, else a new one (kept only once its first message was answered, by
        ``_keep``; until then it counts for no bound and pushes no other run out)."""
        key = run_key(env)
        with self._lock:
            run = self._runs.get(key) or self._starting.get(key)
            if run is None:
                ctx = Context(
                    run_id=msg.metadata.run_id,
                    node_id=msg.metadata.dst_node_id,
                    node_config={},
                    state=RecordDict(),
                    run_config={},
                )
                run = self._starting[key] = _Run(ctx, home=env.home_node)
            return run

    def _keep(self, key: str, run: _Run) -> None:
        """A message of the run was answered: it is kept (the most recently active), and
        if that makes more than ``RUNS_KEPT``, runs of the home holding the most go, its
        least recently active first (a home's runs push out its own before any other's;
        among homes holding as many, the least recently active run goes)."""
        evicted: list[_Run] = []
        with self._lock:
            if self._starting.get(key) is run:
                del self._starting[key]
            if run.closed:  # dropped while it answered (pushed out, idle, the node stops)
                return
            if self._runs.setdefault(key, run) is run:
                self._runs.move_to_end(key)
            while len(self._runs) > RUNS_KEPT:
                evicted.append(self._closed(self._runs.pop(self._victim(key))))
        for old in evicted:  # outside the lock: stopping an app waits for its process
            old.close()

    def _victim(self, keep: str) -> str:
        """The run to push out (not ``keep``): the least recently active of the home that
        holds the most runs here."""
        held = Counter(r.home for r in self._runs.values())
        most = max(held.values())
        return next(k for k, r in self._runs.items() if k != keep and held[r.home] == most)

    def _abandon(self, key: str, run: _Run) -> None:
        """The first message of a run not kept yet was refused: nothing of it stays."""
        with self._lock:
            if self._starting.get(key) is not run or run.asked:
                return
            del self._starting[key]
            self._closed(run)
        run.close()

    def _let_rows_go(self, env: Envelope) -> None:
        """Stop the run's app process and drop its rows, keeping what orders the run's
        messages (forgetting the run would let its messages be asked anew: review,
        2026-12-04); the next message reads the rows again if it is answered."""
        with self._lock:
            run = self._runs.get(run_key(env))
        if run is not None:
            with run.lock:
                run.stop_app()
                run.rows, run.grant_id = None, ""

    def _forget(self, env: Envelope) -> None:
        with self._lock:
            key = run_key(env)
            run = self._runs.pop(key, None) or self._starting.pop(key, None)
            if run is not None:
                self._closed(run)
        if run is not None:
            run.close()

    def _compute(
        self,
        spec: TrainSpec,
        entry: CatalogEntry,
        decision: Decision,
        deadline: float,
        env: Envelope,
        msg: Message,
        step: Step,
    ) -> Protected:
        """The run's answer to the message, on the run's state. A run is kept once one of
        its messages was answered: a message refused (out of order, to another node id,
        anything the rows or the app refuse) leaves nothing of a run not kept yet and
        pushes no other run out (review, 2026-12-05: refused first messages of new runs,
        free for their home, evicted other homes' runs, whose rounds could then be asked
        again)."""
        key, last = run_key(env), step.kind == last_step(spec) and step.round == spec.rounds
        facts: dict[str, Any] = {}
        answered: tuple[Message, list[float]] | None = None
        while answered is None:
            run = self._open(env, msg)
            with run.lock:
                if run.closed:  # dropped while this call waited for it: look again
                    continue
                try:
                    answered = self._answer_run(
                        spec, entry, decision, deadline, env, msg, step, run, facts
                    )
                except BaseException:
                    self._abandon(key, run)
                    raise
                run.touched = time.monotonic()
                if not last:
                    self._keep(key, run)
        reply, spent = answered
        if last:
            self._forget(env)  # the run's last message: its rows are not kept
        if step.kind == "evaluate" and METRICS in reply.content.metric_records:
            examples = reply.content.metric_records[METRICS].get(NUM_EXAMPLES)
            if isinstance(examples, int | float):
                facts["examples"] = int(examples)
        return Protected(to_bytes(reply), sum(spent), facts)

    def _answer_run(
        self,
        spec: TrainSpec,
        entry: CatalogEntry,
        decision: Decision,
        deadline: float,
        env: Envelope,
        msg: Message,
        step: Step,
        run: _Run,
        facts: dict[str, Any],
    ) -> tuple[Message, list[float]]:
        """The reply and the epsilons it spends, under the run's lock: the message in
        order, on the run's rows (read under the decision's grant), marked answered."""
        if msg.metadata.dst_node_id != run.context.node_id:
            raise InvalidArgument("a run's messages go to one node id at this owner")
        check_order(run, step, spec.rounds, secagg=spec.secagg)
        if spec.secagg and (step.kind.startswith("secagg.") or step.kind == "train"):
            configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
            least = max(SECAGG_MIN_NODES, spec.min_nodes or len(spec.nodes))
            check_stage(step.kind, configs, run.context.node_id, run.secagg, least)
            if step.kind == "secagg.share_keys" and configs is not None:
                self._check_keys(spec, env, step, run, configs, msg)
            if step.kind == "train":  # what it masks its update of, for the others
                arrays = msg.content.array_records.get(LEGACY_ARRAYS)
                given = msg.content.config_records.get(LEGACY_CONFIG)
                run.secagg.model = round_digest(run.secagg.setup, arrays, given) if arrays else ""
            if step.kind == "secagg.unmask":  # only if every owner got that model too
                check_same_model(
                    msg.content.config_records.get(MODEL_STATEMENTS),
                    run.secagg,
                    run_key(env),
                    step.round,
                    self.vouching.member_statement,
                )
        if decision.grant.uses_dp and step.kind == "evaluate":
            raise FailedPrecondition(
                "under differential privacy an owner answers no evaluation (a loss over "
                "its rows would be one more exact release)"
            )
        # the grant's DP, not the step's epsilon: a SecAgg+ stage charges 0 but is DP's
        bounds = _dp_bounds(spec, entry, decision) if decision.grant.uses_dp else None
        if run.rows is None or run.grant_id != decision.grant.id:
            run.stop_app()  # an app process holds the rows of the grant it started under
            X, y, run.names = self._rows(spec, entry, decision, deadline, env.request_id)
            run.rows = (X if bounds is None else dp.clamp_rows(X, bounds), y)
            run.grant_id = decision.grant.id
        rows = run.rows
        if bounds is not None:  # nothing the rows decide may refuse the message
            settings = msg.content.config_records
            dp.bound_standardisation(
                [settings[k] for k in (CONFIG, LEGACY_CONFIG) if k in settings], bounds
            )
        spent: list[float] = []
        protect = self._protect(spec, decision, facts, spent)
        if bounds is not None and step.kind == STATS_MESSAGE:
            reply, epsilon = self._dp_stats(bounds, decision, msg, rows[0])
            spent.append(epsilon)
        elif is_app_task(spec.task) and step.kind != STATS_MESSAGE:
            reply = self._app_answer(spec, run, msg, deadline, protect, stay=spec.dp_clip > 0)
        else:
            reply = self._answer(
                msg, run.context, rows, spec.secagg, protect, stay_if_diverged=spec.dp_clip > 0
            )
        if step.kind == "secagg.setup":  # its keys, signed: no home can pass off others
            keys = reply.content.config_records[RECORD_KEY_CONFIGS]
            pk1, pk2 = keys[Key.PUBLIC_KEY_1], keys[Key.PUBLIC_KEY_2]
            assert isinstance(pk1, bytes) and isinstance(pk2, bytes)
            body = key_statement(run_key(env), step.round, run.context.node_id, pk1, pk2)
            reply.content.config_records[KEY_STATEMENT] = ConfigRecord(
                {"statement": self.vouching.state(body)}
            )
        if spec.secagg and step.kind == "train" and run.secagg.model:
            body = model_statement(run_key(env), step.round, run.context.node_id, run.secagg.model)
            reply.content.config_records[MODEL_STATEMENT] = ConfigRecord(
                {"statement": self.vouching.state(body)}
            )
        if step.kind == STATS_MESSAGE:  # the model's inputs, for the home to agree on
            reply.content.config_records[STATS_FEATURES] = ConfigRecord({"names": list(run.names)})
        run.asked.add((step.kind, step.round))
        if step.kind == "train":
            run.last_train = step.round
        return reply, spent

    @staticmethod
    def _answer(
        msg: Message,
        context: Context,
        rows: tuple[NDArray[np.float64], NDArray[np.float64]],
        secagg: bool,
        protect: Protect,
        *,
        stay_if_diverged: bool = False,
    ) -> Message:
        """The built-in ClientApp's reply, on exactly these rows."""

        def load(_: ConfigRecord) -> tuple[NDArray[np.generic], NDArray[np.generic]]:
            return rows

        try:
            app = make_client_app(
                load, secagg=secagg, protect=protect, stay_if_diverged=stay_if_diverged
            )
            reply = app(msg, context)
        except TrainingError as exc:
            raise _typed(exc) from None
        except (LookupError, TypeError, ValueError, InvalidToken) as exc:
            # what secaggplus_mod raises on a stage it cannot use (a garbled ciphertext ...)
            what = "SecAgg+ stage" if secagg else "training step"
            raise InvalidArgument(f"the {what} failed ({type(exc).__name__})") from None
        if reply.has_error():
            raise InvalidArgument(f"the training step failed: {reply.error.reason}")
        return reply

    def _check_keys(
        self,
        spec: TrainSpec,
        env: Envelope,
        step: Step,
        run: _Run,
        configs: ConfigRecord,
        msg: Message,
    ) -> None:
        """Every owner's keys signed by a distinct member for this run and round, this
        owner's own by itself."""
        statements = msg.content.config_records.get(KEY_STATEMENTS)
        signers = check_signed_keys(
            configs, statements, run_key(env), step.round, self.vouching.member_statement
        )
        if not set(signers.values()) <= set(spec.nodes):  # a home or colluding member
            raise PermissionDenied("SecAgg+ keys signed by a member that is no owner of the run")
        if signers.get(str(run.context.node_id)) != self.node_id:
            raise PermissionDenied("this owner's own SecAgg+ keys come signed by another")
        run.secagg.signers = signers

    def _app_answer(
        self,
        spec: TrainSpec,
        run: _Run,
        msg: Message,
        deadline: float,
        protect: Protect,
        *,
        stay: bool = False,
    ) -> Message:
        """A custom app's reply from its own process (started for the run on its first
        message), allowed out only in the shape a model update or evaluation has.
        ``stay`` (a DP run): a training round the app fails on, whatever the reason,
        answers the model it got, clipped and noised like any update: whether an app
        fails can depend on the rows, and a refusal would tell it outside the noise."""
        folder = self.apps.folder(digest_of(spec.task))
        if folder is None:  # revoked during the run
            raise FailedPrecondition(f"app {short(digest_of(spec.task))} is no longer approved")
        assert run.rows is not None
        if msg.metadata.message_type == INIT_MESSAGE:
            # ``init`` runs in a process of its own that never holds a row: only the
            # rows' width, so that no row can come back inside an "initial model"
            width = run.rows[0].shape[1]
            empty = (np.zeros((0, width)), np.zeros((0,)))
            host = AppHost(folder, *empty, self.app_limits)
        else:
            host = run.host or AppHost(folder, *run.rows, self.app_limits)
            run.host = host
            if run.closed:  # dropped while its process started: ``close`` may have missed it
                run.stop_app()
                raise Aborted("the run was dropped at this owner (too many runs at once)")
        try:
            # a margin before the deadline: under DP a step the app does not finish is
            # answered unchanged and noised, which must still be released in time (it
            # was always too late, a free refusal whose cause the rows decide; review)
            left = deadline - time.monotonic()
            data = host.call(to_bytes(msg), left - min(APP_MARGIN_SECONDS, left / 10))
            try:
                reply = from_bytes(data)
            except Exception:
                msg_ = "the app's reply is not a Flower message"
                raise Aborted(msg_) from None
            if reply.has_error() or not reply.has_content():
                raise Aborted("the app answered with an error")
            if spec.dp_clip > 0 and METRICS in reply.content.metric_records:
                # under DP its metrics are replaced when protected: none of its numbers is
                # released, so none may cost the update (review, 2026-12-04)
                reply.content.metric_records[METRICS] = MetricRecord({NUM_EXAMPLES: 1})
            content = check_app_reply(msg, reply.content, len(run.rows[1]))
        except FedgateError as exc:
            run.stop_app()  # a step this owner refused goes no further here: nor does its app
            # what the app's own run on the rows can end in (not, say, a node that cannot
            # sandbox it, which no row decides and its operator must see)
            rows_may_decide = isinstance(exc, Aborted | ResourceExhausted | DeadlineExceeded)
            if not (stay and rows_may_decide and msg.metadata.message_type == "train"):
                raise
            log.info(  # the owner's own log: the operator sees why it trained nothing
                "train app step answered unchanged under DP: %s", exc.code.name
            )
            content = _unchanged(msg)
        finally:
            if host is not run.host:
                host.close()
        if msg.metadata.message_type == "train":
            content = protect(msg.content, content)
        return Message(content, reply_to=msg)

    @staticmethod
    def _protect(
        spec: TrainSpec, decision: Decision, facts: dict[str, Any], spent: list[float]
    ) -> Protect:
        """What happens to a trained model before it leaves (or is masked): its facts
        noted for the receipt; in a DP run clipped, noised under a DP grant, weighted
        one (an owner without DP still clips: its update then counts as the others')."""

        def protect(received: RecordDict, reply: RecordDict) -> RecordDict:
            before, after = received.array_records[ARRAYS], reply.array_records[ARRAYS]
            keys = list(after.keys())
            old = [np.asarray(before[k].numpy(), dtype=np.float64) for k in keys]
            new = [np.asarray(after[k].numpy(), dtype=np.float64) for k in keys]
            metrics = dict(reply.metric_records[METRICS])
            if spec.dp_clip > 0 and (spec.dp_noise == 0 or decision.epsilon > 0):
                new, epsilon = dp.noisy_update(old, new, spec.dp_clip, decision.epsilon)
                spent.append(epsilon)
            if spec.dp_noise > 0:  # the home's central DP counts on an L2 bound, weight 1
                new = dp.clip_l2(old, new, spec.dp_clip)
            if spec.dp_clip > 0:
                metrics = {NUM_EXAMPLES: 1}
            facts["examples"] = int(cast(int, metrics[NUM_EXAMPLES]))
            if not spec.secagg:  # under SecAgg+ the norm, like the update, stays hidden
                moved = zip(old, new, strict=True)
                norm = float(np.sqrt(sum(float(((n - o) ** 2).sum()) for o, n in moved)))
                metrics["update_norm"] = facts["update_norm"] = norm
            return RecordDict(
                {
                    ARRAYS: ArrayRecord({k: Array(a) for k, a in zip(keys, new, strict=True)}),
                    METRICS: MetricRecord(metrics),
                }
            )

        return protect

    @staticmethod
    def _dp_stats(
        bounds: list[tuple[float, float]],
        decision: Decision,
        msg: Message,
        X: NDArray[np.float64],
    ) -> tuple[Message, float]:
        """The statistics under DP: noised moments about the declared bounds' midpoints
        (a one-hot column's are 0 and 1)."""
        s, epsilon = dp.noisy_stats(
            X, bounds, decision.epsilon, sampled=decision.grant.max_examples > 0
        )
        arrays = ArrayRecord(
            {
                "count": Array(np.array(s.count, dtype=np.int64)),
                "shift": Array(s.shift),
                "sum": Array(s.sum),
                "sumsq": Array(s.sumsq),
            }
        )
        return Message(RecordDict({STATS: arrays}), reply_to=msg), epsilon

    def _rows(
        self,
        spec: TrainSpec,
        entry: CatalogEntry,
        decision: Decision,
        deadline: float,
        request_id: str,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[str, ...]]:
        """The granted columns of the rows that hold all of them, in table order, at
        least k of them (after ``max_examples``), the label as class indices; and the
        model's input names (a declared categorical feature one-hot: ``name=value``)."""
        columns = [*spec.features, spec.label]
        numeric, categorical = encoding(spec, entry)
        width = len(numeric) + sum(len(v) for v in categorical.values()) + 1  # one-hot too
        max_rows = MAX_CELLS // width
        table = self.engine.ensure_loaded(entry)
        floats = {c.name for c in entry.descriptor.columns if parse_type(c.type).family == FLOAT}
        present = exp.and_(  # a NaN or infinity is missing too, as NULL is
            *[
                exp.Not(this=exp.Is(this=exp.column(c, quoted=True), expression=exp.Null()))
                for c in columns
            ],
            *[exp.func("isfinite", exp.column(c, quoted=True)) for c in columns if c in floats],
        )
        tree = (
            exp.select(*[exp.column(c, quoted=True) for c in columns])
            .from_(exp.table_(table, quoted=True))
            .where(present)
            .order_by(exp.column("rowid"))  # the same rows in the same order every run
            .limit(max_rows + 1)
        )
        got = self.engine.run(
            generate.sql(tree),
            timeout=max(0.01, deadline - time.monotonic()),
            request_id=request_id,
            max_bytes=None,  # its LIMIT bounds the rows: MAX_CELLS
        )
        if got.num_rows > max_rows:
            raise FailedPrecondition(
                f"more than {max_rows:,} rows of {width} inputs: a run holds at most "
                f"{MAX_CELLS:,} values of its rows in memory, so it takes fewer"
            )
        limit = decision.grant.max_examples
        if min(got.num_rows, limit or got.num_rows) < decision.min_group_size:
            raise FailedPrecondition(
                f"fewer rows than the grant's minimum of {decision.min_group_size}: nothing "
                "is trained on"
            )
        try:
            X = features.encode({c: got.column(c) for c in spec.features}, numeric, categorical)
        except TrainingError as exc:
            raise _typed(exc) from None
        y = self._labels(spec, entry, got.column(spec.label))
        if limit and got.num_rows > limit:  # the same rows every round of the run
            keep = np.sort(_bottom_k(np.column_stack([X, y]), limit, spec.seed))
            X, y = X[keep], y[keep]
        # Without DP a category held by fewer than k rows here is encoded as undeclared
        # (all zeros), as a query suppresses a group under k: its exact count would show in
        # the moments. Under DP the noise covers the counts, and blanking would not be
        # covered by it: one more row lifting a category to k changes k - 1 rows' inputs.
        if not decision.grant.uses_dp:
            hot = X[:, len(numeric) :]
            rare = (hot.sum(axis=0) > 0) & (hot.sum(axis=0) < decision.min_group_size)
            hot[:, rare] = 0.0
        names = (*numeric, *(f"{c}={v}" for c, vs in categorical.items() for v in vs))
        return X, y, names

    def _labels(self, spec: TrainSpec, entry: CatalogEntry, label: Any) -> NDArray[np.float64]:
        """Targets of a regression; class indices 0..n-1 of a classification, whose
        classes the label column must declare (a bool, or bounds 0 and n-1): a refusal
        that depended on the values would tell them."""
        if not classifies(spec.task, spec.n_classes):
            if not (pa.types.is_integer(label.type) or pa.types.is_floating(label.type)):
                raise FailedPrecondition(f"the label {spec.label!r} of a regression is a number")
            return np.asarray(label.to_numpy(), dtype=np.float64)
        col = next(c for c in entry.descriptor.columns if c.name == spec.label)
        if col.categories:  # classes by name, in their declared order
            if spec.n_classes != len(col.categories):
                raise InvalidArgument(
                    f"the label {spec.label!r} declares {len(col.categories)} classes, not "
                    f"{spec.n_classes}"
                )
            try:
                return features.label_index(label, col.categories).astype(np.float64)
            except TrainingError:
                raise FailedPrecondition(
                    f"the label {spec.label!r} holds values outside its declared classes"
                ) from None
        if pa.types.is_boolean(label.type):
            declared = 2
        elif pa.types.is_integer(label.type) and col.lower == 0 and col.upper is not None:
            declared = int(col.upper) + 1
        else:
            raise FailedPrecondition(
                f"the label {spec.label!r} must be a bool, an integer column declaring its "
                "classes as bounds 0..n-1, or a string column declaring them as categories"
            )
        if spec.n_classes != declared:
            raise InvalidArgument(
                f"the label {spec.label!r} declares {declared} classes, not {spec.n_classes}"
            )
        y = np.asarray(pc.cast(label, pa.int64()).to_numpy(), dtype=np.float64)
        if ((y < 0) | (y >= declared)).any():
            raise FailedPrecondition(
                f"the label {spec.label!r} holds values outside its declared classes"
            )
        return y


# How long before a step's deadline an app must have answered (at most a tenth of it).
APP_MARGIN_SECONDS = 1.0

APP_METRICS = frozenset({NUM_EXAMPLES, "train_loss", "eval_loss", "eval_acc"})


def _unchanged(msg: Message) -> RecordDict:
    """A training round's answer that trained nothing: the model received, weight one."""
    sent = msg.content.array_records.get(ARRAYS)
    if sent is None:
        raise InvalidArgument("a training message without its model")
    return RecordDict({ARRAYS: sent, METRICS: MetricRecord({NUM_EXAMPLES: 1})})


def check_app_reply(msg: Message, content: RecordDict, n_rows: int) -> RecordDict:
    """What a custom app may send out: for ``train`` the received model's arrays (same
    names, shapes, finite) and ``APP_METRICS`` (single finite numbers, ``num-examples``
    among them, at most the ``n_rows`` it holds: it weighs the update and goes into the
    receipt); for ``evaluate`` those metrics only. Anything else (another array, a config
    record, text, a list, NaN with its payload bits) could carry rows, and is refused."""
    if msg.metadata.message_type == INIT_MESSAGE:
        return _checked_init(content)
    metrics = content.metric_records.get(METRICS)
    if content.config_records or set(content.metric_records) != {METRICS} or metrics is None:
        raise Aborted("the app's reply holds more than metrics")
    examples = metrics.get(NUM_EXAMPLES)
    if type(examples) is not int or not 0 <= examples <= n_rows:
        raise Aborted(f"the app's reply has no {NUM_EXAMPLES!r} of the rows it holds")
    for key, value in metrics.items():  # a few named numbers: no list, no name to spell rows
        if (
            key not in APP_METRICS
            or not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise Aborted(
                f"an app's metrics are finite numbers named {', '.join(sorted(APP_METRICS))}"
            )
    accuracy = metrics.get("eval_acc", 0.0)
    if isinstance(accuracy, int | float) and not 0.0 <= accuracy <= 1.0:
        raise Aborted("an app's eval_acc is a share, between 0 and 1")
    if msg.metadata.message_type != "train":
        if content.array_records:
            raise Aborted("the app's evaluation holds arrays")
        return content
    sent = msg.content.array_records.get(ARRAYS)
    got = content.array_records.get(ARRAYS)
    if sent is None or got is None or set(content.array_records) != {ARRAYS}:
        raise Aborted("the app's reply holds no model")
    if list(got.keys()) != list(sent.keys()):
        raise Aborted("the app's model is not the received one's")
    for k in list(got.keys()):
        try:
            a = got[k].numpy()
        except Exception:
            raise Aborted("the app's model cannot be read") from None
        if a.shape != tuple(sent[k].shape) or not plain_floats(a):
            raise Aborted("the app's model is not the received one's shape")
    return content


def _checked_init(content: RecordDict) -> RecordDict:
    """An app's initial model: arrays only (``init`` has the rows at hand too, so what it
    may send is what a model is: a bounded number of finite float arrays)."""
    rec = content.array_records.get(ARRAYS)
    if content.config_records or content.metric_records or set(content.array_records) != {ARRAYS}:
        raise Aborted("the app's initial model holds more")
    if rec is None or not 0 < len(rec) <= MAX_ARRAYS:
        raise Aborted(f"the app's initial model holds 1 to {MAX_ARRAYS} arrays")
    for k in list(rec.keys()):
        try:
            a = rec[k].numpy()
        except Exception:
            raise Aborted("the app's model cannot be read") from None
        if not plain_floats(a):
            raise Aborted("the app's initial model holds values that are not floats")
    return content
