"""The home's side of a training run: vouch, run the strategy, carry its messages.

The analyst's home signs one envelope (the run's spec) and starts the run's server side
in a process of its own (``gateway.training.worker``). Each round's messages come back
from that process as bytes; the home carries them to the owners over mTLS
(``Peer/TrainStep``) at once, and hands the replies back. Refusals are not replies: an
owner that refuses a round is missing from it, and the strategy's minimum decides
whether the run goes on. The run's receipts (one per owner and round) are kept with the
home's own audit entry, as for a query.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.forkserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

from federation.envelope import Envelope, Requester
from federation.membership import RESERVED_ID, Member, Membership
from federation.outcome import Code, Error
from federation.reports import OwnerReport
from federation.training.config import SECAGG_MIN_NODES
from gateway.clock import utc
from gateway.errors import (
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FedgateError,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from gateway.limits import cut
from gateway.receipt_store import ReceiptStore
from gateway.receipts import Receipt
from gateway.roles.vouching import Vouching
from gateway.text import check_purpose, shown
from gateway.training.job import Job, start
from gateway.training.runs import Runs
from gateway.training.spec import ROUND_SECONDS, TrainSpec

log = logging.getLogger("fedgate.home")

# A message to one owner and its reply; the event, once set (the run was cancelled), stops
# a message sent in pieces before its next piece.
AskStep = Callable[[Member, Envelope, bytes, threading.Event | None], tuple[bytes, OwnerReport]]
FIRST_NODE_ID = 1001  # Flower node ids of the run's owners, in the order of their names
POLL_SECONDS = 0.2
CANCELLED = "the analyst cancelled the run"
PUBLISHERS_TIMEOUT = 10.0  # the longest the home asks who lists a run's dataset
EVERY_PUBLISHER = (RESERVED_ID,)  # TrainAsk.nodes: every member that lists the dataset


@dataclass(frozen=True)
class TrainAsk:
    """What an analyst asks: the run's spec (what the home signs), and who trains it."""

    spec: TrainSpec
    nodes: tuple[str, ...]
    purpose: str = ""


@dataclass(frozen=True)
class TrainRound:
    round: int
    rounds: int
    answered: int
    train_loss: float
    eval_loss: float
    eval_accuracy: float
    elapsed: float


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_npz: bytes
    rounds: tuple[TrainRound, ...]
    owners: tuple[OwnerReport, ...]  # every owner's receipt or refusal, per round
    task: str
    features: tuple[str, ...]
    label: str
    mean: tuple[float, ...] = ()  # the standardisation the model expects
    std: tuple[float, ...] = ()
    # Flower's central DP (``--dp NOISE,CLIP``): the model's (epsilon, delta) from its RDP
    # accountant; 0, 0 without
    dp_epsilon: float = 0.0
    dp_delta: float = 0.0


@dataclass(frozen=True)
class ModelPiece:
    """A piece of a final model larger than one message, sent before its result."""

    data: bytes


@dataclass(frozen=True)
class OwnerBatch:
    """Some of a long run's owner reports (a receipt each, ~1.5 KB: three owners and 1 000
    rounds would not fit one message), sent before its result."""

    owners: tuple[OwnerReport, ...]


TrainEvent = TrainRound | TrainResult | ModelPiece | OwnerBatch


@dataclass
class _Reports:
    """Every owner's report of the run (receipts and refusals), bounded by rounds."""

    items: list[OwnerReport] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    used: set[tuple[str, object]] = field(default_factory=set)  # (owner, audit_seq) taken

    def add(self, report: OwnerReport) -> None:
        with self.lock:
            self.items.append(report)

    def first_use(self, owner: str, audit_seq: int) -> bool:
        """Whether this release (its place in the owner's log) backs no earlier reply of
        the run: each message an owner answers is a release of its own."""
        with self.lock:
            if (owner, audit_seq) in self.used:
                return False
            self.used.add((owner, audit_seq))
            return True


def worker_context() -> multiprocessing.context.ForkServerContext:
    """Runs' server processes are forked from one forkserver that imported the worker
    (Flower, numpy) once: a run then starts in milliseconds rather than the ~0.5 s a
    fresh interpreter takes to import them. The forkserver holds no key and starts with
    the home's first run; each fork starts clean (Flower's process-global run identity
    is set in the child)."""
    ctx = multiprocessing.get_context("forkserver")
    assert isinstance(ctx, multiprocessing.context.ForkServerContext)
    ctx.set_forkserver_preload(["gateway.training.worker"])
    return ctx


def warm_worker() -> None:
    """Start the forkserver now (``[training] warm_worker``), not with the first run."""
    try:
        worker_context()
        multiprocessing.forkserver.ensure_running()
    except Exception:  # the first run starts it then, and says why if it cannot
        log.exception("could not start the training forkserver ahead of a run")


def _receipts(owners: Sequence[OwnerReport]) -> list[tuple[str, str]]:
    """Every receipt of a run, kept under ``owner/n`` (an owner signs one per message,
    the store keeps one per request and name)."""
    return [(f"{o.node_id}/{i}", o.receipt) for i, o in enumerate(owners) if o.receipt]


def _why(node: str, reports: _Reports) -> str:
    """What a missing owner said last: its refusal, or that it did not answer."""
    with reports.lock:
        errors = [r.error for r in reports.items if r.node_id == node and r.error is not None]
    if not errors:
        return f"{node} did not answer"
    return f"{node} refused ({errors[-1].code.name}): {errors[-1].reason}"


class TrainHome:
    def __init__(
        self,
        node_id: str,
        membership: Callable[[], Membership],
        vouching: Vouching,
        ask_step: AskStep,
        receipts: ReceiptStore,
        publishers: Callable[[str, float], tuple[list[str], list[str]]],
    ) -> None:
        self.node_id = node_id
        self.membership = membership
        self.vouching = vouching
        self.ask_step = ask_step
        self.receipts = receipts
        # (dataset, timeout) -> (the members that list it, the members that did not answer)
        self.publishers = publishers
        self.runs = Runs()

    def train(
        self,
        ask: TrainAsk,
        caller: Requester,
        deadline: float,
        stop: threading.Event | None = None,
    ) -> Iterator[TrainEvent]:
        spec = ask.spec
        spec.check()
        members = self._owners(ask, caller, deadline)
        spec = replace(spec, nodes=tuple(m.id for m in members))  # signed with the spec
        min_nodes = spec.min_nodes or len(members)
        if not 1 <= min_nodes <= len(members):
            named = "found (" + ", ".join(m.id for m in members) + ")"
            named = named if ask.nodes == EVERY_PUBLISHER else "named"
            raise InvalidArgument(f"min nodes must be between 1 and the {len(members)} {named}")
        if spec.secagg and min_nodes < SECAGG_MIN_NODES:
            raise InvalidArgument(
                f"--secagg needs at least {SECAGG_MIN_NODES} owners training (with two, each "
                "learns the other's update from the sum)"
            )
        run_id = uuid.uuid4().hex
        env = self.vouching.sign(
            Envelope(
                request_id=run_id,
                requester=caller,
                home_node=self.node_id,
                operation="train",
                body=spec.body(),
                purpose=ask.purpose,
                deadline=deadline,
            )
        )
        by_id = {FIRST_NODE_ID + i: m for i, m in enumerate(members)}
        facts = {
            "request_id": run_id,
            "requester": str(caller),
            "dataset": spec.dataset,
            "task": spec.task,
            "nodes": [m.id for m in members],
            "rounds": spec.rounds,
        }
        reports = _Reports()
        rounds: list[TrainRound] = []
        done = False
        stop = stop or threading.Event()
        self.runs.start(run_id, caller, spec.dataset, spec.task, spec.rounds, stop)
        try:
            for event in self._run(spec, env, by_id, min_nodes, reports, deadline, stop):
                if isinstance(event, TrainRound):
                    rounds.append(event)
                    self.runs.round(run_id, event.round, event.train_loss, event.eval_accuracy)
                    yield event
                    continue
                result = TrainResult(
                    run_id,
                    event["model"],
                    tuple(rounds),
                    tuple(reports.items),
                    spec.task,
                    tuple(event.get("features", spec.features)),
                    spec.label,
                    tuple(event["mean"]),
                    tuple(event["std"]),
                    *(event.get("privacy") or (0.0, 0.0)),
                )
                self._keep(result, facts)
                self.runs.end(run_id, "finished")
                done = True
                yield result
                return
        except FedgateError as exc:
            done = True
            self._failed(run_id, facts, reports, exc.code.name, exc.message)
            cancelled = exc.code is Code.CANCELLED
            state = "cancelled" if cancelled else "failed"
            self.runs.end(
                run_id, state, exc.message if cancelled else f"{exc.code.name}: {exc.message}"
            )
            raise
        except Exception:
            done = True
            log.exception("train request=%s failed", run_id)
            self._failed(run_id, facts, reports, "INTERNAL", "the run failed at its home")
            self.runs.end(run_id, "failed", "INTERNAL: the run failed at its home")
            raise
        finally:
            if not done:
                self._failed(run_id, facts, reports, "CANCELLED", CANCELLED)
                self.runs.end(run_id, "cancelled", CANCELLED)

    def _owners(self, ask: TrainAsk, caller: Requester, deadline: float) -> list[Member]:
        members = self.membership()
        self.vouching.check_own_user(caller)
        check_purpose(ask.purpose)
        names = ask.nodes
        if not names:
            raise InvalidArgument(
                "name the owners that train (--nodes a,b,c), or --nodes all for every "
                "member that lists the dataset"
            )
        if names == EVERY_PUBLISHER:
            names = self._publishers(ask.spec.dataset, deadline)
        if len(set(names)) != len(names):
            raise InvalidArgument("an owner is named twice")
        found = []
        for name in sorted(names):
            m = members.get(name)
            if m is None:
                raise NotFound(f"no member {name!r} in the federation")
            found.append(m)
        return found

    def _publishers(self, dataset: str, deadline: float) -> tuple[str, ...]:
        """``--nodes all``: every member that lists the dataset, this node included; a
        member that did not answer fails the run (it may hold the dataset)."""
        timeout = min(PUBLISHERS_TIMEOUT, deadline - time.monotonic())
        if timeout <= 0:
            raise DeadlineExceeded("no time was left to ask who lists the dataset")
        found, silent = self.publishers(dataset, timeout)
        if time.monotonic() >= deadline:  # the lookup ran out the run's own time
            raise DeadlineExceeded("the deadline passed while asking who lists the dataset")
        if silent:
            raise Unavailable(
                f"member(s) {'; '.join(silent)} did not answer the catalog, so whether they "
                f"list {dataset!r} is unknown: name the owners with --nodes"
            )
        if not found:
            raise NotFound(
                f"no member lists a dataset {dataset!r}: check the name with fedgate catalog"
            )
        return tuple(found)

    def _run(
        self,
        spec: TrainSpec,
        env: Envelope,
        by_id: dict[int, Member],
        min_nodes: int,
        reports: _Reports,
        deadline: float,
        stop: threading.Event | None,
    ) -> Iterator[TrainRound | dict]:
        ctx = worker_context()
        mine, theirs = ctx.Pipe()
        job = Job(
            int(uuid.UUID(env.request_id).int % (1 << 63)),
            spec,
            tuple(by_id),
            min_nodes,
            ROUND_SECONDS,
        )
        # The target is light: this process does not import Flower, the forkserver has.
        proc = ctx.Process(target=start, args=(theirs, job), name="fedgate-train")
        proc.start()
        theirs.close()
        pool = ThreadPoolExecutor(max(1, len(by_id)), thread_name_prefix="train")
        try:
            while True:
                if stop is not None and stop.is_set():
                    raise Cancelled(CANCELLED)
                if time.monotonic() >= deadline:
                    raise DeadlineExceeded("the run's deadline passed")
                if not mine.poll(POLL_SECONDS):
                    if not proc.is_alive() and not mine.poll(0):
                        raise FedgateError.of(
                            Error(Code.INTERNAL, "the run's server process ended")
                        )
                    continue
                msg = mine.recv()
                if msg[0] == "exchange":
                    replies = self._exchange(msg[1], msg[2], env, by_id, reports, pool, stop)
                    if replies is None:  # cancelled during the exchange
                        raise Cancelled(CANCELLED)
                    mine.send(("replies", replies))
                elif msg[0] == "round":
                    r = msg[1]
                    yield TrainRound(
                        r["round"],
                        r["rounds"],
                        r["answered"],
                        r["train_loss"],
                        r["eval_loss"],
                        r["eval_accuracy"],
                        r["elapsed"],
                    )
                elif msg[0] == "result":
                    yield msg[1]
                    return
                else:  # ("error", Error, missing node ids)
                    _, error, missing = msg
                    why = [_why(by_id[i].id, reports) for i in missing if i in by_id]
                    reason = "; ".join([error.reason, *why])
                    raise FedgateError.of(Error(error.code, reason))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            mine.close()
            proc.join(timeout=2)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)

    def _exchange(
        self,
        out: Sequence[tuple[int, bytes]],
        timeout: float | None,
        env: Envelope,
        by_id: dict[int, Member],
        reports: _Reports,
        pool: ThreadPoolExecutor,
        stop: threading.Event | None,
    ) -> list[tuple[int, bytes]] | None:
        """One batch of messages to the owners at once; the replies that came back (with
        the node each came from), or None when the analyst cancelled meanwhile."""
        limit = time.monotonic() + min(timeout or ROUND_SECONDS, ROUND_SECONDS)
        call_env = replace(env, deadline=min(env.deadline, limit))

        def one(node_id: int, data: bytes) -> tuple[int, bytes] | None:
            member = by_id.get(node_id)
            if member is None:
                return None
            try:
                # as the federation's document says now: a member it dropped mid-run gets
                # no further model and gives no further update (review, 2026-12-05)
                current = self.membership().get(member.id)
                if current is None:
                    raise FailedPrecondition(f"{member.id} is no longer a member of the federation")
                reply, report = self.ask_step(current, call_env, data, stop)
                if report.error is not None:  # a refusal, whatever bytes came with it
                    raise FedgateError.of(report.error)
                problem = self._receipt_problem(member.id, env.request_id, reply, report, reports)
                if problem:  # an update counts only with its owner's receipt in force
                    raise FailedPrecondition(
                        f"{member.id} answered without a valid receipt: {problem}"
                    )
            except FedgateError as exc:
                reports.add(OwnerReport(member.id, error=exc.error))
                log.warning(
                    "train request=%s owner=%s refused: %s %s",
                    env.request_id,
                    member.id,
                    exc.code.name,
                    shown(exc.message),  # an owner's text: one event, one line
                )
                return None
            reports.add(report)
            return node_id, reply

        pending: set[Future[tuple[int, bytes] | None]] = {
            pool.submit(one, node_id, data) for node_id, data in out
        }
        replies: list[tuple[int, bytes]] = []
        while pending:
            if stop is not None and stop.is_set():
                return None  # the calls in flight end at their deadline; nothing waits
            finished, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            replies.extend(r for r in (f.result() for f in finished) if r is not None)
        return replies

    def _receipt_problem(
        self, owner: str, request_id: str, reply: bytes, report: OwnerReport, reports: _Reports
    ) -> str:
        """Why a reply is not backed by its receipt ("" when it is): the owner's release
        receipt for the run, signed by a certificate in force, for a training release of
        exactly these bytes, and not one that backed an earlier reply of the run."""
        problem = self.receipts.problem(report.receipt, owner, request_id, (reply, "train"))
        if problem:
            return problem
        body = Receipt.from_json(report.receipt).body  # parsed and verified just now
        seq = body.get("audit_seq")
        if not isinstance(seq, int) or isinstance(seq, bool):  # a signed body of odd types
            return "its receipt names no place in the owner's log"
        if not reports.first_use(owner, seq):
            return "it is the receipt of an earlier reply"
        return ""

    def _keep(self, result: TrainResult, facts: dict) -> None:
        kept = _receipts(result.owners)
        last = result.rounds[-1] if result.rounds else None
        entry = {
            "kind": "train.finished",
            "time": utc(),
            **facts,
            "rounds_run": len(result.rounds),
            "final_eval_loss": (
                last.eval_loss if last and not math.isnan(last.eval_loss) else None
            ),
            "receipts": len(kept),
        }
        self.receipts.keep(result.run_id, kept, entry)
        log.info("trained request=%s rounds=%d", result.run_id, len(result.rounds))

    def _failed(self, run_id: str, facts: dict, reports: _Reports, code: str, reason: str) -> None:
        kept = _receipts(reports.items)
        entry = {"kind": "train.failed", "time": utc(), **facts, "code": code}
        entry["reason"] = cut(reason)
        self.receipts.keep(run_id, kept, entry)
