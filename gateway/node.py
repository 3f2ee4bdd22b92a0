"""One gateway node: start-up checks, assembly of its parts, serving, graceful shutdown.

Everything a node holds is built here from its config and handed explicitly to the parts
that use it; nothing is global. The servicers (``gateway.services``) are thin: they call
the roles (``gateway.roles``) that this module wires together.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from federation.envelope import Envelope
from federation.membership import Member, Membership
from federation.psi import frames as psi_frames
from federation.reports import OwnerReport, PartialAnswer
from gateway import data_dir as data_dir_mod
from gateway import disclosure as disclosure_mod
from gateway import serde
from gateway.access import AccessRequests
from gateway.audit import AuditLog
from gateway.catalog import Catalog
from gateway.clock import now, parse_time, utc
from gateway.config import DEFAULT_LOG_BACKUPS, DEFAULT_LOG_MAX_BYTES, NodeConfig
from gateway.disclosure import DisclosureReport
from gateway.edge import STREAM_CHECK_SECONDS, Authenticator, CallContext, EdgeInterceptor
from gateway.engine import Engine
from gateway.errors import (
    Cancelled,
    ConfigError,
    FedgateError,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from gateway.health import NodeHealth
from gateway.housekeeping import CrlWatch, check_crl, every, housekeeping, probe_peers
from gateway.identity import (
    Identity,
    RevocationList,
    identity_of,
    is_key_of,
    load_bundle,
    load_cert,
    load_key,
    not_in_force,
    verify_signed_by,
)
from gateway.limits import Limiter, cut
from gateway.membership_source import MembershipSource, check_serial, remember_serial
from gateway.metrics import NodeMetrics
from gateway.node_log import NodeLogHandler
from gateway.peers import Peers
from gateway.policy.model import Grant
from gateway.policy.store import GrantStore
from gateway.psi_sessions import PsiSessions
from gateway.receipt_store import ReceiptStore
from gateway.receipts import ReceiptCheck, Signer
from gateway.release.pipeline import ReleasePipeline
from gateway.roles.federated_catalog import FederatedCatalog
from gateway.roles.forwarding import Forwarding
from gateway.roles.home import Home
from gateway.roles.operator import Operator
from gateway.roles.owner import Owner
from gateway.roles.psi_home import PsiHome
from gateway.roles.psi_owner import PsiOwner
from gateway.roles.relay import Relay
from gateway.roles.train_home import TrainHome, warm_worker
from gateway.roles.vouching import Vouching
from gateway.rpc.v1 import gateway_pb2, gateway_pb2_grpc, peer_pb2_grpc
from gateway.services.gateway_service import GatewayService
from gateway.services.peer_service import PeerService
from gateway.state import State
from gateway.tls import server_credentials
from gateway.training.apps import AppStore
from gateway.training.loading import load
from gateway.training.transfers import (
    MAX_MESSAGE_BYTES,
    MIN_PIECE_BYTES,
    Answer,
    Piece,
    piece_bytes,
    pieces,
)
from gateway.transport import Transport
from gateway.witness import Witness
from gateway.witnessing import WitnessRound, witness_round

if TYPE_CHECKING:  # made on first use (Node.train_owner): it loads Flower
    from gateway.roles.train_owner import TrainOwner

log = logging.getLogger("fedgate.node")
DEFAULT_QUERY_SECONDS = 60.0
# A PSI session of a million identifiers a side takes minutes on two cores; a stream is
# ended by the edge after ``limits.stream_max_seconds`` (600) anyway.
PSI_DEFAULT_SECONDS, PSI_MAX_SECONDS = 300.0, 590.0
FANOUT_WORKERS = 64
STATE_RECHECK_SECONDS = 5.0
DEADLINE_RESERVE_MIN, DEADLINE_RESERVE_MAX = 0.05, 1.0  # seconds


def reserved(remaining: float) -> float:
    """The monotonic deadline for work of ``remaining`` seconds that must still answer:
    5 % kept back (50 ms to 1 s) to merge, record and send after it."""
    kept = min(DEADLINE_RESERVE_MAX, max(DEADLINE_RESERVE_MIN, remaining * 0.05))
    return time.monotonic() + max(0.0, remaining - kept)


def check_node_identity(config: NodeConfig, membership: Membership) -> tuple[Identity, Member]:
    """Refuse to start with a certificate or membership that does not fit this node."""
    bundle = load_bundle(config.ca)
    cert = load_cert(config.cert)
    if not verify_signed_by(cert, bundle):
        raise ConfigError(f"tls.cert: {config.cert} is not signed by the CA in {config.ca}")
    ident = identity_of(cert)
    key = load_key(config.key)
    mode = config.key.stat().st_mode & 0o777
    if mode & 0o077:  # as ssh does: a key others can read is no longer only this node's
        raise ConfigError(
            f"tls.key: {config.key} can be read by other users (mode {mode:04o}); "
            f"make it the node's user's alone: chmod 600 {config.key}"
        )
    if not is_key_of(key, cert):
        raise ConfigError(f"tls.key: {config.key} is not the private key of {config.cert}")
    if ident.role != "node":
        raise ConfigError(f"tls.cert: {config.cert} is a {ident.role} certificate, not a node one")
    if ident.id != config.id:
        raise ConfigError(
            f"tls.cert: certificate is for node {ident.id!r} but node.id is {config.id!r}"
        )
    if ident.not_after <= now():
        raise ConfigError(f"tls.cert: {config.cert} expired on {ident.not_after:%Y-%m-%d}")
    me = membership.get(config.id)
    if me is None:
        raise ConfigError(f"node.id {config.id!r} is not in the federation membership document")
    if me.address != config.listen:
        raise ConfigError(
            f"node.listen {config.listen!r} differs from this node's membership address "
            f"{me.address!r}"
        )
    if config.org and config.org != ident.org:
        raise ConfigError(
            f"node.org {config.org!r} differs from the certificate's organisation {ident.org!r}"
        )
    return ident, me


def _may_train(grant: Grant, now: str) -> bool:
    """A train grant in force now or later: its holder may be asked to train here."""
    return "train" in grant.operations and grant.status(now) in ("active", "not yet valid")


class Node:
    """Everything one node holds while it runs; built from a config, nothing global."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        bundle = load_bundle(config.ca)
        self.membership = MembershipSource(config.membership, bundle)
        self.identity, self.member = check_node_identity(config, self.membership())
        self.revocations = RevocationList(config.crl, bundle)
        try:
            self.revocations.load()  # fail at start-up, not at the first call, on a bad CRL
        except InvalidArgument as exc:
            raise ConfigError(exc.message) from None
        if self._own_revoked():  # every peer would refuse it
            raise ConfigError(
                f"tls.cert: this node's certificate (serial {self.identity.serial}) is revoked "
                "in tls.crl: ask the CA keeper for a new one"
            )
        self._data_dir_lock = data_dir_mod.hold(config.data_dir)  # one node per folder
        # Flower's home folder (it writes nothing there on a node's path) in the node's state.
        os.environ["FLWR_HOME"] = str(config.data_dir / "flwr")
        node_id = self.identity.id
        self.state = State(config.data_dir / "state.sqlite3")
        self.catalog = Catalog(self.state, config.dataset_roots, self.identity.org)
        self.metrics = NodeMetrics()
        self.metrics.datasets.set(len(self.catalog.entries()))
        self.transport = Transport(
            Peers(config, self.membership), self.metrics, config.peer_timeout_seconds
        )
        self.executor = ThreadPoolExecutor(FANOUT_WORKERS, thread_name_prefix="fanout")
        # A relay's calls to its children get their own pool: waiting on the same pool
        # that runs the relay's own task could starve under load.
        self.relay_executor = ThreadPoolExecutor(FANOUT_WORKERS, thread_name_prefix="relay")
        self.grants = GrantStore(self.state, on_written=self._grant_written)
        self.engine = Engine(
            config.engine_threads,
            config.data_dir / "engine-spill",
            config.engine_spill_bytes,
            config.engine_memory_bytes,
        )
        key = load_key(config.key)
        self.cert_pem = config.cert.read_bytes()
        data_dir_mod.claim(self.state, node_id)  # never another node's state
        check_serial(self.state, self.membership().serial)
        check_crl(self.state, self.revocations)  # never an older CRL of a CA
        self.audit = AuditLog(self.state, node_id, key, self.cert_pem)
        self.membership.on_event = self._membership_event
        self.membership.misfit = self._membership_misfit
        # Channels of members that left or moved close as a document is taken, not only at
        # the next peer probe (with peer_probe_seconds = 0 they stayed open until the end).
        self.membership.after_reload = lambda _new: self.transport.prune()
        self.witness = Witness(node_id, self.state, self.audit, key, self.cert_pem, bundle)
        self.access = AccessRequests(node_id, self.state, self.catalog, self.grants)
        signer = Signer(key, self.cert_pem)
        in_force = functools.partial(not_in_force, revocations=self.revocations)
        self.vouching = Vouching(node_id, self.membership, signer, bundle, in_force)
        receipt_check = ReceiptCheck(bundle, in_force)
        self.receipts = ReceiptStore(self.state, receipt_check)
        pipeline = ReleasePipeline(
            node_id, self.grants, self.audit, signer, config.max_message_bytes
        )
        relay = Relay(node_id, self.membership, self.ask_owner, self.relay_executor, receipt_check)
        self.owner = Owner(node_id, self.catalog, self.grants, self.engine, pipeline, relay)
        self.home = Home(
            node_id,
            self.membership,
            self.vouching,
            self.ask_owner,
            self.executor,
            self.receipts,
            self.engine.run_on_table,
            pipeline.max_payload_bytes,
        )
        self.psi = PsiOwner(
            node_id,
            self.catalog,
            self.grants,
            self.engine,
            pipeline,
            self.vouching,
            PsiSessions(self.state),
            self.psi_exchange,
        )
        self.psi_home = PsiHome(
            node_id, self.membership, self.vouching, self.run_psi, self.receipts
        )
        self.apps = AppStore(config.data_dir / "apps")
        self._pipeline = pipeline
        self._train_owner: TrainOwner | None = None  # made ahead of a run, or by it
        self._train_owner_lock = threading.Lock()
        self._readying = threading.Lock()  # held by the one thread making it ahead
        self.train_home = TrainHome(
            node_id, self.membership, self.vouching, self.train_step, self.receipts, self.publishers
        )
        self.operator = Operator(
            node_id, self.catalog, self.grants, self.audit, self.metrics, self.apps, self.membership
        )
        self.federated_catalog = FederatedCatalog(
            self.transport, self.executor, config.max_message_bytes
        )
        self.forwarding = Forwarding(
            node_id, self.membership, self.transport, self.access, self.audit, self.disclosure
        )
        self.health = NodeHealth()
        # A node that cannot write its audit or state says so in its health status.
        self.state.on_recording = self.health.recording
        self._stop = threading.Event()
        self._server: grpc.Server | None = None
        self._may_ready = False  # training is made ahead only once the node starts serving
        self._metrics_server: Any = None
        self._rpc_pool: ThreadPoolExecutor | None = None

    # --- what the services call ---------------------------------------------------------

    def ask_owner(self, member: Member, env: Envelope) -> PartialAnswer:
        """One owner's part of a request: this node's own owner in-process, any other
        over the transport. The home and the relay cannot tell the difference."""
        if member.id == self.identity.id:
            # with the reserve a remote owner keeps (``deadline``): else its release could
            # spend, audit and sign after the fan-out gave up on it (review, 2026-12-04)
            own = dataclasses.replace(env, deadline=reserved(env.deadline - time.monotonic()))
            return self.owner.execute(own)
        resp = self.transport.call(
            member, "Execute", serde.envelope_to_proto(env), deadline=env.deadline
        )
        return serde.partial_answer_from_proto(resp)

    def run_psi(
        self, member: Member, env: Envelope, stop: threading.Event
    ) -> Iterator[psi_frames.Event]:
        """A PSI session at its matching owner: this node in-process, any other over
        the transport (``Peer/PsiRun``; leaving the loop cancels the call, which sets the
        matcher's own stop)."""
        if member.id == self.identity.id:
            yield from self.psi.match(env, stop)
            return
        request = serde.psi_run_request(env)
        responses = self.transport.stream(
            member, "PsiRun", request, deadline=env.deadline, cancel=stop
        )
        for msg in responses:
            yield serde.psi_event_from_proto(msg)

    @property
    def train_owner(self) -> TrainOwner:
        """The owner's side of training, made on first use (a thread the node starts once
        it serves and holds a train grant, or a run's first message, whichever comes
        first): it loads Flower, through ``gateway.training.loading``, one import of
        Flower at a time in a process."""
        with self._train_owner_lock:
            if self._train_owner is None:
                if self._stop.is_set():  # stopping: nothing is made after ``stop`` closed it
                    raise Unavailable(f"node {self.identity.id} is stopping")
                started = time.monotonic()
                owner = load("gateway.roles.train_owner")
                self._train_owner = owner.TrainOwner(
                    self.identity.id,
                    self.catalog,
                    self.grants,
                    self.engine,
                    self._pipeline,
                    self.apps,
                    self.vouching,
                    piece_bytes=piece_bytes(self.config.max_message_bytes),
                )
                log.info("training ready (Flower loaded in %.2f s)", time.monotonic() - started)
            return self._train_owner

    def _make_train_owner(self) -> None:
        try:
            if not self._stop.is_set():
                self.train_owner  # noqa: B018 - made on first use
        except Unavailable:  # the node stopped meanwhile
            pass
        except Exception:  # a run's first message makes it then, and says why if it cannot
            log.exception("could not make the training owner ahead of a run")
        finally:
            self._readying.release()

    def _ready_training(self) -> None:
        """Make the training owner in the background, once this node may be asked to
        train: it holds a ``train`` grant. Flower then costs memory (~10 MB) only at the
        nodes that may train (or that a run's message reached: the owner decides on it
        through the training owner), and their first run does not wait for it to load."""
        if not self._may_ready or self._train_owner is not None:
            return
        if self._readying.acquire(blocking=False):
            try:
                threading.Thread(
                    target=self._make_train_owner, name="train-owner", daemon=True
                ).start()
            except Exception:  # a run's first message makes it then
                self._readying.release()
                log.exception("could not start making the training owner ahead of a run")

    def _grant_written(self, grant: Grant) -> None:
        """Told of each grant written, inside its transaction (so before its commit: at
        worst Flower is loaded for a grant that was then not written). Never raises."""
        if _may_train(grant, utc()):
            self._ready_training()

    def train_step(
        self,
        member: Member,
        env: Envelope,
        message: bytes,
        stop: threading.Event | None = None,
    ) -> tuple[bytes, OwnerReport]:
        """One message of a training run at one owner: this node in-process, any other
        over the transport (``Peer/TrainStep``). A cancelled run (``stop`` set) sends and
        fetches no further piece (review, 2026-12-04: a 50 MB model went on in pieces for
        a run nobody waited for)."""
        if member.id == self.identity.id:
            return self.train_owner.step(env, message)

        def call(piece: Piece) -> Answer:
            if stop is not None and stop.is_set():
                raise Cancelled("the run was cancelled")
            req = serde.train_step_request(env, piece)
            resp = self.transport.call(member, "TrainStep", req, deadline=env.deadline)
            return serde.train_step_answer(resp)

        transfer = uuid.uuid4().hex
        size = piece_bytes(self.config.max_message_bytes)
        if len(message) <= size:
            answer = call(Piece(message, transfer))
        else:  # in pieces (gateway/training/transfers.py): the last one is answered
            for offset, data in pieces(message, size):
                answer = call(Piece(data, transfer, len(message), offset))
        if answer.report is None:
            raise Unavailable(f"{member.id} did not answer the message's last piece")
        reply, total = bytearray(answer.data), max(answer.total, len(answer.data))
        if total > MAX_MESSAGE_BYTES:
            raise Unavailable(f"{member.id}'s reply is larger than a training message may be")
        while len(reply) < total:  # at most total / 64 KiB calls: each piece is that much
            more = call(Piece(b"", transfer, fetch=len(reply)))
            least = min(total - len(reply), MIN_PIECE_BYTES)
            if len(more.data) < least or more.offset != len(reply):
                raise Unavailable(f"{member.id} sent its reply's pieces out of order")
            reply += more.data
        # the report is the called member's, whatever node it names (review, 2026-12-04:
        # an owner blamed another with a made-up refusal)
        return bytes(reply[:total]), dataclasses.replace(answer.report, node_id=member.id)

    def psi_exchange(
        self, node_id: str, frames: Iterator[psi_frames.Frame], deadline: float
    ) -> Iterator[psi_frames.Frame]:
        """The matcher's exchange with the other owner (``Peer/PsiExchange``)."""
        member = self.membership().get(node_id)
        if member is None:
            raise NotFound(f"no member {node_id!r} in the federation")
        requests = (serde.psi_frame_to_proto(frame) for frame in frames)
        for msg in self.transport.stream(member, "PsiExchange", requests, deadline=deadline):
            yield serde.psi_frame_from_proto(msg, deadline)

    def stream_deadline(self, context: CallContext) -> float:
        """A PSI session's or training run's deadline: the caller's, up to ``PSI_MAX_SECONDS``
        (under the edge's longest stream)."""
        remaining = context.time_remaining()
        remaining = PSI_DEFAULT_SECONDS if remaining is None else remaining
        return reserved(min(remaining, PSI_MAX_SECONDS))

    def publishers(self, dataset: str, timeout: float) -> tuple[list[str], list[str]]:
        """The members that list ``dataset`` as the federated catalog shows it to a member
        node (never L4), this node included; and the members that did not answer within
        ``timeout`` (or answered under another name)."""
        own = any(
            e.descriptor.name == dataset and e.descriptor.level != "L4"
            for e in self.catalog.entries()
        )
        listings = self.federated_catalog.peers(dataset, timeout)
        peers = [x.member.id for x in listings if any(d.name == dataset for d in x.datasets)]
        silent = sorted(f"{x.member.id} ({x.error[:120]})" for x in listings if not x.reachable)
        return sorted([self.identity.id] * own + peers), silent

    def catalog_response(self, caller: Identity, name_contains: str) -> Any:
        return serde.catalog_response(
            self.identity.id,
            self.catalog.visible_to(caller, name_contains),
            show_extremes=self.catalog.own_operator(caller),
        )

    def disclosure(self, since: str, until: str) -> DisclosureReport:
        """This node's public report; L4 datasets are left out, names and all."""
        since, until = parse_time(since, "since"), parse_time(until, "until")
        if since and until and since > until:  # an empty period was a report of no usage
            raise InvalidArgument(f"--since {since} is after --until {until}")
        entries = self.catalog.entries()
        core = {e.descriptor.name for e in entries if e.descriptor.level == "L4"}
        held = {e.descriptor.name for e in entries}
        return disclosure_mod.build(
            self.identity.id, self.identity.org, self.grants, self.audit, since, until, core, held
        )

    def witness_round(
        self, *, skip_idle: bool = False, deadline: float | None = None
    ) -> WitnessRound:
        """Send this node's signed head to every peer; keep their countersignatures
        (``skip_idle``: see ``witnessing.COUNTERSIGNED``; ``deadline``: an operator's)."""
        return witness_round(
            self.witness,
            self.audit,
            self.transport,
            self.config.peer_timeout_seconds,
            skip_idle=skip_idle,
            deadline=deadline,
        )

    def deadline(self, context: CallContext) -> float:
        """Monotonic deadline of this call, early enough that the answer can travel back.

        What is kept back (5 %, from 50 ms to 1 s) is the time to merge, record and send
        after the last owner was waited for: a home that waited for a silent owner up to
        the caller's own deadline could not answer in time, neither with --allow-partial
        nor with the error naming the owner."""
        remaining = context.time_remaining()
        if remaining is None:
            remaining = DEFAULT_QUERY_SECONDS
        return reserved(min(remaining, DEFAULT_QUERY_SECONDS))

    def _own_revoked(self) -> bool:
        """Whether the CRL lists this node's own certificate (an expired CRL says nothing
        here: the node starts and refuses every call until the CA re-issues it)."""
        try:
            ident = self.identity
            return self.revocations.is_revoked(ident.serial, ident.issuer, ident.issuer_key)
        except Unauthenticated:
            return False

    def record_refusal(self, method: str, caller: Identity | str | None, exc: FedgateError) -> None:
        self.audit.append(
            {
                "kind": "rpc.refused",
                "time": utc(),
                "method": method,
                "caller": str(caller or "-"),
                "code": exc.code.name,
                "reason": cut(exc.message),
            }
        )

    def _membership_misfit(self, old: Membership, new: Membership) -> str | None:
        """Why a running node cannot follow a document (it renames the federation, drops
        this node or moves it), for the ERROR line and audit entry of its reload (review,
        2026-12-04: such a reload was taken with an INFO line)."""
        me = new.get(self.identity.id)
        if new.federation != old.federation:
            return (
                f"serial {new.serial} renames the federation {old.federation!r} to "
                f"{new.federation!r}: a running node does not change federation"
            )
        if me is None:
            return (
                f"serial {new.serial} no longer lists this node ({self.identity.id!r}): "
                "stop it (its peers refuse it under the new document)"
            )
        if me.address != self.config.listen:
            return (
                f"serial {new.serial} moves this node to {me.address!r}: set node.listen to "
                "it and restart the node"
            )
        return None

    def _membership_event(self, event: dict) -> None:
        with self.state.transaction() as db:  # the entry and the serial kept, together
            AuditLog.append_in(db, {"time": utc(), **event})
            if event["kind"] == "membership.reloaded":
                remember_serial(db, event["serial"])

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        auth = Authenticator(self.revocations, self.membership)
        # Limits (gateway/limits.py): per caller at the edge, before a handler runs; and
        # gRPC's own cap on calls running or waiting for a thread, beyond which a call is
        # refused RESOURCE_EXHAUSTED rather than queued without bound.
        limits = self.config.limits
        edge = EdgeInterceptor(
            auth,
            self.metrics,
            self.record_refusal,
            Limiter(limits),
            max_message_bytes=self.config.max_message_bytes,
        )
        # gRPC's server.stop() does not shut its pool down: stop() does (self._rpc_pool).
        self._rpc_pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="rpc")
        server = grpc.server(
            self._rpc_pool,
            interceptors=[edge],
            options=[
                ("grpc.max_receive_message_length", self.config.max_message_bytes),
                ("grpc.max_send_message_length", self.config.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=limits.calls,
        )
        gateway_pb2_grpc.add_GatewayServicer_to_server(GatewayService(self), server)
        peer_pb2_grpc.add_PeerServicer_to_server(PeerService(self), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [
            gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name,
            "fedgate.v1.Peer",
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, server)
        creds = server_credentials(self.config.ca, self.config.cert, self.config.key)
        try:
            port = server.add_secure_port(self.config.listen, creds)
        except RuntimeError as exc:
            raise ConfigError(f"node.listen: cannot bind {self.config.listen}: {exc}") from None
        if port == 0:
            raise ConfigError(f"node.listen: cannot bind {self.config.listen} (address in use?)")
        if self.config.metrics_listen:
            try:
                self._metrics_server = self.metrics.serve(self.config.metrics_listen)
            except OSError as exc:
                raise ConfigError(
                    f"metrics.listen: cannot bind {self.config.metrics_listen}: {exc}"
                ) from None
        # Once both ports are ours, before any call is served (a start that failed to bind
        # wrote this entry before: review, 2026-12-04).
        self.audit.append(
            {
                "kind": "node.started",
                "time": utc(),
                "node": self.identity.id,
                "cert_serial": self.identity.serial,
                "membership_serial": self.membership().serial,
                "address": self.config.listen,
            }
        )
        crl = CrlWatch(self.revocations, self.state)
        crl.start()  # audits the CRL in force, then each one taken or refused
        self._may_ready = True  # before serving: a grant written from now on readies it
        server.start()
        self._server = server
        for name in ["", *names[:3]]:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.config.warm_worker:  # the first training run then forks in milliseconds
            threading.Thread(target=warm_worker, name="warm-worker", daemon=True).start()
        # The training owner (Flower) is made once the node serves, if it holds a train
        # grant (else once one is written): its start does not wait for it, and a run's
        # first message finds it made (gateway/training/loading.py).
        at = utc()
        if any(_may_train(g, at) for g in self.grants.list()):
            self._ready_training()
        # Open streams re-checked: caller's certificate, lifetime (gateway/edge.py).
        every(self._stop, STREAM_CHECK_SECONDS, edge.check_streams, "stream-check")
        every(
            self._stop,
            self.config.audit_checkpoint_seconds,
            housekeeping(
                crl, self.grants, self.audit, self.config.log_max_bytes, self._sweep_training
            ),
            "housekeeping",
        )
        # After a refused write, a small write every few seconds (until one succeeds).
        every(self._stop, STATE_RECHECK_SECONDS, self.state.recheck, "state-recheck")
        if self.config.witness_seconds > 0:
            every(self._stop, self.config.witness_seconds, self._witness_job, "witness")
        if self.config.peer_probe_seconds > 0:
            every(
                self._stop,
                self.config.peer_probe_seconds,
                probe_peers(self.transport),
                "peer-probe",
            )
        log.info(
            "serving node=%s address=%s level=%s",
            self.identity.id,
            self.config.listen,
            self.member.level,
        )

    def _sweep_training(self) -> None:
        """Idle training runs and pieces held past their time dropped at this owner (a
        node that never trained has no training owner: none is made for this)."""
        owner = self._train_owner
        if owner is not None:
            owner.sweep()

    def _witness_job(self) -> None:
        """Peer witnessing in its own thread: slow peers never delay checkpoints."""
        for failure in self.witness_round(skip_idle=True).errors:
            log.warning("witnessing: %s", failure)

    def stop(self, grace: float = 5.0) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        log.info("stopping node=%s", self.identity.id)
        self.health.enter_graceful_shutdown()
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1)
        if self._rpc_pool is not None:
            self._rpc_pool.shutdown(wait=False, cancel_futures=True)
        # After the calls in progress were given their grace: what they released within
        # it comes before ``node.stopping`` and under the last signed head (review,
        # 2026-12-04). A call still running past the grace may still append after it.
        try:
            self.audit.append({"kind": "node.stopping", "time": utc()})
            self.audit.checkpoint(utc())
        except Exception:
            log.exception("could not write the final audit entries")
        if self._metrics_server is not None:
            self._metrics_server.stop()
        self.transport.close()
        with self._train_owner_lock:
            if self._train_owner is not None:
                self._train_owner.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.relay_executor.shutdown(wait=False, cancel_futures=True)
        self.engine.close()
        self.state.close()
        os.close(self._data_dir_lock)
        log.info("stopped node=%s", self.identity.id)


def setup_logging(
    data_dir: Path,
    node_id: str,
    *,
    max_bytes: int = DEFAULT_LOG_MAX_BYTES,
    backups: int = DEFAULT_LOG_BACKUPS,
) -> None:
    """Every line once, in ``node.log``, rotated at ``max_bytes`` (``backups`` files kept).

    Warnings are echoed to stderr only when it is a terminal: where stderr goes to a file
    (the demo's and the tests' launcher, a service manager) each event would otherwise be
    written twice. Start-up failures reach stderr either way: ``node start`` prints them
    (``fedgate: error: ...``), as it does a traceback.
    """
    data_dir_mod.make(data_dir)  # the first to make it (review: it was made 0755 here)
    fmt = logging.Formatter(
        f"%(asctime)s %(levelname)s %(name)s node={node_id} %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [
        NodeLogHandler(
            data_dir / "node.log", maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
    ]
    if sys.stderr is not None and sys.stderr.isatty():
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)  # only what needs an operator's eye
        handlers.append(console)
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)


def run(config: NodeConfig) -> int:
    """Run until SIGTERM, SIGINT or SIGHUP (an ssh session closing on a node started by
    hand), then stop gracefully; returns the exit code."""
    setup_logging(
        config.data_dir, config.id, max_bytes=config.log_max_bytes, backups=config.log_backups
    )
    node = Node(config)
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: stop_requested.set())
    signal.signal(signal.SIGHUP, lambda *_: stop_requested.set())
    node.start()
    pid_file = config.data_dir / "node.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    print(f"fedgate node {config.id} serving on {config.listen}", flush=True)
    try:
        while not stop_requested.wait(1.0):
            pass
    finally:
        node.stop()
        pid_file.unlink(missing_ok=True)
    return 0
