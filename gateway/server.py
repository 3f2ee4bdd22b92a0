"""One gateway node: start-up checks, the gRPC services, and graceful shutdown."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from federation.fanout import fan_out
from federation.membership import Member, Membership, MembershipError, verify
from gateway import disclosure as disclosure_mod
from gateway import grants as grants_mod
from gateway import messages
from gateway.access import AccessRequests
from gateway.audit import AuditLog
from gateway.catalog import Catalog
from gateway.config import NodeConfig
from gateway.edge import Authenticator, CallContext, EdgeInterceptor
from gateway.engine import Engine
from gateway.errors import ConfigError, InvalidArgument, NotFound, PermissionDenied
from gateway.grants import GrantStore, parse_time
from gateway.home import Home
from gateway.identity import (
    Identity,
    RevocationList,
    identity_of,
    load_bundle,
    load_cert,
    load_key,
)
from gateway.metrics import NodeMetrics
from gateway.owner import Owner, Signer, describe_error
from gateway.peers import Peers
from gateway.rpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, peer_pb2_grpc
from gateway.state import State
from gateway.tls import server_credentials
from gateway.witness import Witness

log = logging.getLogger("fedgate.node")
DEFAULT_QUERY_SECONDS = 60.0


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _remember_serial(db, serial: int) -> None:  # type: ignore[no-untyped-def]
    """The highest membership serial this node has used (refuses replays after restarts)."""
    db.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('membership_serial', ?)", (str(serial),)
    )


class MembershipSource:
    """The signed membership document, re-verified whenever its file changes.

    A replacement that does not verify is refused and the last good document is kept.
    """

    def __init__(self, path: Path, bundle) -> None:  # type: ignore[no-untyped-def]
        self._path = path
        self._keys = [c.public_key() for c in bundle]
        self._lock = threading.Lock()
        self.on_event: Callable[[dict], None] = lambda _event: None  # set once audit exists
        self._stamp = self._stat()
        try:
            self._current = verify(path.read_bytes(), self._keys)
        except MembershipError as exc:
            raise ConfigError(f"federation.membership: {path}: {exc}") from None

    def _stat(self) -> tuple[int, int]:
        st = self._path.stat()
        return st.st_mtime_ns, st.st_size

    def __call__(self) -> Membership:
        try:
            stamp = self._stat()
        except FileNotFoundError:
            return self._current
        if stamp != self._stamp:
            with self._lock:
                self._stamp = stamp
                try:
                    new = verify(self._path.read_bytes(), self._keys)
                    if new.serial <= self._current.serial:
                        raise MembershipError(
                            f"serial {new.serial} is not newer than {self._current.serial} "
                            "(a replayed or unchanged document)"
                        )
                    self._current = new
                    log.info("membership reloaded serial=%s", new.serial)
                    self.on_event(
                        {
                            "kind": "membership.reloaded",
                            "serial": new.serial,
                            "members": [m.id for m in new.members],
                        }
                    )
                except MembershipError as exc:
                    log.error("membership file changed but was refused: %s", exc)
                    self.on_event({"kind": "membership.refused", "reason": str(exc)})
        return self._current


def check_node_identity(config: NodeConfig, membership: Membership) -> tuple[Identity, Member]:
    """Refuse to start with a certificate or membership that does not fit this node."""
    bundle = load_bundle(config.ca)
    cert = load_cert(config.cert)
    from gateway.identity import verify_signed_by

    if not verify_signed_by(cert, bundle):
        raise ConfigError(f"tls.cert: {config.cert} is not signed by the CA in {config.ca}")
    ident = identity_of(cert)
    key = load_key(config.key)
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        raise ConfigError(f"tls.key: {config.key} is not the private key of {config.cert}")
    if ident.role != "node":
        raise ConfigError(f"tls.cert: {config.cert} is a {ident.role} certificate, not a node one")
    if ident.id != config.id:
        raise ConfigError(
            f"tls.cert: certificate is for node {ident.id!r} but node.id is {config.id!r}"
        )
    if ident.not_after <= dt.datetime.now(dt.UTC):
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


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    def WhoAmI(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        n, c = self.node, context.caller
        return gateway_pb2.WhoAmIResponse(
            node_id=n.identity.id,
            node_org=n.identity.org,
            node_level=n.member.level,
            caller_role=c.role,
            caller_id=c.id,
            caller_org=c.org,
            caller_serial=c.serial,
        )

    def Catalog(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        return self.node.catalog_response(context.caller, request.name_contains)

    def FederatedCatalog(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        node = self.node
        timeout = request.timeout_seconds or node.config.peer_timeout_seconds
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = max(0.05, min(timeout, remaining - 0.05))
        resp = gateway_pb2.FederatedCatalogResponse(home_node=node.identity.id)
        own = node.catalog_response(context.caller, request.name_contains)
        resp.members.add(
            node_id=node.identity.id,
            org=node.identity.org,
            level=node.member.level,
            parent=node.member.parent,
            address=node.member.address,
            reachable=True,
            datasets=own.datasets,
        )
        peers = node.peers.members()

        def ask(member: Member) -> common_pb2.CatalogResponse:
            stub = node.peers.stub(member)
            try:
                return stub.PeerCatalog(
                    common_pb2.CatalogRequest(name_contains=request.name_contains),
                    timeout=timeout,
                )
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                    node.peers.reset(member)
                raise

        outcomes = fan_out(
            node.executor, peers, ask, timeout=timeout + 0.1, describe_error=describe_error
        )
        for out in outcomes:
            m = out.target
            node.record_peer(m.id, out.ok, out.seconds)
            entry = resp.members.add(
                node_id=m.id,
                org=m.org,
                level=m.level,
                parent=m.parent,
                address=m.address,
                reachable=out.ok,
                error=out.error,
                latency_ms=out.seconds * 1000,
            )
            if out.value is not None:
                if out.value.node_id != m.id:
                    entry.reachable, entry.error = False, f"answered as {out.value.node_id!r}"
                else:
                    entry.datasets.extend(out.value.datasets)
        return resp

    def RegisterDataset(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        node, caller = self.node, context.caller
        self._own_operator(caller)
        desc = messages.descriptor_from_proto(request.dataset)
        entry, replaced = node.catalog.register(desc, by=caller, when=utc_now())
        node.metrics.datasets.set(len(node.catalog.entries()))
        node.audit.append(
            {
                "kind": "dataset.registered",
                "time": utc_now(),
                "actor": str(caller),
                "dataset": desc.name,
                "level": desc.level,
                "rows": entry.quality.rows,
                "sha256": entry.quality.sha256,
                "replaced": replaced,
            }
        )
        log.info(
            "dataset registered name=%s level=%s rows=%d by=%s replaced=%s",
            desc.name,
            desc.level,
            entry.quality.rows,
            caller,
            replaced,
        )
        return gateway_pb2.RegisterDatasetResponse(
            dataset=messages.entry_to_proto(entry, node.identity.id, show_extremes=True),
            replaced=replaced,
        )

    def Query(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        return self.node.home.query(request, context.caller, self.node.deadline(context))

    def _own_operator(self, caller: Identity) -> None:
        if caller.org != self.node.identity.org:
            raise PermissionDenied(
                f"operator {caller.id} of {caller.org!r} is not an operator of this node"
            )

    def AddGrant(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        node, caller = self.node, context.caller
        self._own_operator(caller)
        grant = messages.grant_from_proto(request.grant)
        entry = node.catalog.get(grant.dataset)
        if entry is None:
            raise NotFound(f"no dataset {grant.dataset!r} at {node.identity.id}")
        now = utc_now()
        grant = dataclasses.replace(
            grant,
            valid_from=parse_time(grant.valid_from, "valid_from") or now,
            expires=parse_time(grant.expires, "expires"),
            created_by=str(caller),
            created_at=now,
        )
        grant = node.grants.add(grants_mod.validate(grant, entry.descriptor), actor=str(caller))
        log.info(
            "grant written id=%s dataset=%s grantee=%s:%s operations=%s by=%s",
            grant.id,
            grant.dataset,
            grant.grantee_kind,
            grant.grantee,
            ",".join(grant.operations),
            caller,
        )
        return messages.grant_to_proto(grant, grant.status(now))

    def ListGrants(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        self._own_operator(context.caller)
        now = utc_now()
        grants = self.node.grants.list(request.dataset)
        return gateway_pb2.ListGrantsResponse(
            grants=[messages.grant_to_proto(g, g.status(now)) for g in grants]
        )

    def RevokeGrant(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        self._own_operator(context.caller)
        now = utc_now()
        grant = self.node.grants.revoke(request.id, now, actor=str(context.caller))
        log.info("grant revoked id=%s by=%s", grant.id, context.caller)
        return messages.grant_to_proto(grant, grant.status(now))

    # --- audit and witnessing ---------------------------------------------------------

    def AuditExport(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        node = self.node
        self._own_operator(context.caller)
        node.audit.append(
            {"kind": "audit.exported", "time": utc_now(), "actor": str(context.caller)}
        )
        lines = node.audit.export_lines(node.cert_pem, node.witness.receipts(), utc_now())
        chunk: list[str] = []
        size = 0
        for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= 1 << 20:
                yield gateway_pb2.AuditChunk(data="".join(chunk).encode())
                chunk, size = [], 0
        if chunk:
            yield gateway_pb2.AuditChunk(data="".join(chunk).encode())

    def AuditShow(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        self._own_operator(context.caller)
        entries = self.node.audit.for_request(request.request_id)
        return gateway_pb2.AuditShowResponse(
            entries=[
                json.dumps({"seq": e.seq, "hash": e.hash, **e.data}, sort_keys=True)
                for e in entries
            ]
        )

    def Receipts(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        self._own_operator(context.caller)
        with self.node.state.transaction() as db:
            rows = db.execute(
                "SELECT receipt FROM receipts WHERE request_id = ? ORDER BY owner",
                (request.request_id,),
            ).fetchall()
        if not rows:
            raise NotFound(f"no receipts kept for request {request.request_id!r}")
        return gateway_pb2.ReceiptsResponse(receipts=[r[0] for r in rows])

    def WitnessNow(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        self._own_operator(context.caller)
        heads, errors = self.node.witness_round()
        return gateway_pb2.WitnessNowResponse(countersigned=heads, errors=errors)

    def WitnessedHeads(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        self._own_operator(context.caller)
        return gateway_pb2.WitnessedHeadsResponse(heads=self.node.witness.heads_of(request.node))

    # --- access requests ---------------------------------------------------------------

    def SubmitAccessRequest(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        node, caller = self.node, context.caller
        owner = node.member_or_refuse(request.owner)
        forwarded = common_pb2.AccessRequest()
        forwarded.CopyFrom(request)
        forwarded.requester.CopyFrom(
            common_pb2.Requester(role=caller.role, id=caller.id, org=caller.org)
        )
        forwarded.home_node = node.identity.id
        if owner.id == node.identity.id:
            result = node.access.submit(forwarded, caller, node.identity.id)
        else:
            result = node.peers.stub(owner).ForwardAccessRequest(
                forwarded, timeout=node.config.peer_timeout_seconds
            )
        node.audit.append(
            {
                "kind": "access.forwarded",
                "time": utc_now(),
                "request_id": result.id,
                "requester": str(caller),
                "owner": owner.id,
                "dataset": request.dataset,
            }
        )
        return result

    def AccessRequestStatus(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        node, caller = self.node, context.caller
        owner = node.member_or_refuse(request.owner)
        if owner.id == node.identity.id:
            return node.access.status_for(request.id, caller)
        forwarded = gateway_pb2.AccessRequestStatusRequest(owner=owner.id, id=request.id)
        metadata = (("fedgate-requester", f"{caller.role}|{caller.id}|{caller.org}"),)
        return node.peers.stub(owner).ForwardAccessRequestStatus(
            forwarded, timeout=node.config.peer_timeout_seconds, metadata=metadata
        )

    def ListAccessRequests(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        self._own_operator(context.caller)
        return gateway_pb2.ListAccessRequestsResponse(requests=self.node.access.list(request.state))

    def DecideAccessRequest(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        self._own_operator(context.caller)
        return self.node.access.decide(request, context.caller)

    def Disclosure(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        node = self.node
        target = node.member_or_refuse(request.node or node.identity.id)
        if target.id == node.identity.id:
            return node.disclosure(request)
        return node.peers.stub(target).PeerDisclosure(
            request, timeout=node.config.peer_timeout_seconds
        )


class PeerServicer(peer_pb2_grpc.PeerServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    def PeerCatalog(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        return self.node.catalog_response(context.caller, request.name_contains)

    def Execute(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        owner = self.node.owner
        requester = owner.check_caller(context.caller.id, request)
        return owner.execute(request, requester, self.node.deadline(context))

    def Witness(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        pem = context.auth_context()["x509_pem_cert"][0]
        cert = x509.load_pem_x509_certificate(pem)
        return self.node.witness.countersign(context.caller.id, cert, request)

    def ForwardAccessRequest(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        node = self.node
        home = node.member_or_refuse(context.caller.id)
        r = request.requester
        if r.org != home.org or r.role not in ("analyst", "operator"):
            raise PermissionDenied(f"home node {home.id} may only vouch for users of {home.org!r}")
        requester = Identity(role=r.role, id=r.id, org=r.org, serial="", not_after=None)  # type: ignore[arg-type]
        return node.access.submit(request, requester, home.id)

    def ForwardAccessRequestStatus(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        node = self.node
        home = node.member_or_refuse(context.caller.id)
        meta = dict(context.invocation_metadata()).get("fedgate-requester", "")
        role, _, rest = meta.partition("|")
        user, _, org = rest.partition("|")
        if org != home.org:
            raise PermissionDenied(f"home node {home.id} may only vouch for users of {home.org!r}")
        requester = Identity(role=role, id=user, org=org, serial="", not_after=None)  # type: ignore[arg-type]
        return node.access.status_for(request.id, requester)

    def PeerDisclosure(self, request, context: CallContext):  # type: ignore[no-untyped-def]  # noqa: N802
        return self.node.disclosure(request)


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
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.state = State(config.data_dir / "state.sqlite3")
        self.catalog = Catalog(self.state, config.dataset_roots, self.identity.org)
        self.metrics = NodeMetrics()
        self.metrics.datasets.set(len(self.catalog.entries()))
        self.peers = Peers(config, self.membership)
        self.executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="fanout")
        # A relay's calls to its children get their own pool: waiting on the same pool
        # that runs the relay's own task could starve under load.
        self.relay_executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="relay")
        self.grants = GrantStore(self.state)
        self.engine = Engine(config.engine_threads)
        key = load_key(config.key)
        self.cert_pem = config.cert.read_bytes()
        self._check_membership_serial()
        self.audit = AuditLog(self.state, self.identity.id, key)
        self.membership.on_event = self._membership_event
        self.witness = Witness(self.identity.id, self.state, self.audit, key, self.cert_pem)
        self.access = AccessRequests(self.identity.id, self.state, self.catalog, self.grants)
        signer = Signer(key, self.cert_pem)
        self.owner = Owner(
            self.identity.id,
            self.catalog,
            self.grants,
            self.engine,
            signer,
            self.audit,
            self.membership,
            self._call_peer,
            self.relay_executor,
            config.max_message_bytes,
            bundle,
        )
        self.home = Home(
            self.identity.id,
            self.owner,
            self.state,
            self.membership,
            self._call_peer,
            self.executor,
        )
        self.health = health.HealthServicer()
        self._stop = threading.Event()
        self._crl_version: tuple[int, int] | None = None
        self._server: grpc.Server | None = None
        self._metrics_server = None

    def catalog_response(self, caller: Identity, name_contains: str) -> common_pb2.CatalogResponse:
        own = self.catalog.own_operator(caller)
        return common_pb2.CatalogResponse(
            node_id=self.identity.id,
            datasets=[
                messages.entry_to_proto(e, self.identity.id, show_extremes=own)
                for e in self.catalog.visible_to(caller, name_contains)
            ],
        )

    def _membership_event(self, event: dict) -> None:
        with self.state.transaction() as db:  # the entry and the serial kept, together
            AuditLog.append_in(db, {"time": utc_now(), **event})
            if event["kind"] == "membership.reloaded":
                _remember_serial(db, event["serial"])

    def _check_membership_serial(self) -> None:
        """Never go back to an older membership document, also across restarts."""
        serial = self.membership().serial
        with self.state.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'membership_serial'").fetchone()
            if row is not None and int(row[0]) > serial:
                raise ConfigError(
                    f"federation.membership: serial {serial} is older than serial {row[0]} "
                    "this node already used (a replayed document)"
                )
            _remember_serial(db, serial)

    def member_or_refuse(self, node_id: str) -> Member:
        member = self.membership().get(node_id)
        if member is None:
            raise NotFound(f"no member {node_id!r} in the federation")
        return member

    def disclosure(self, request) -> gateway_pb2.DisclosureReport:  # type: ignore[no-untyped-def]
        since = grants_mod.parse_time(request.since, "since")
        until = grants_mod.parse_time(request.until, "until")
        core = {e.descriptor.name for e in self.catalog.entries() if e.descriptor.level == "L4"}
        return disclosure_mod.build(
            self.identity.id, self.identity.org, self.grants, self.audit, since, until, core
        )

    def witness_round(self) -> tuple[list[common_pb2.WitnessedHead], list[str]]:
        """Send this node's signed head to every peer; keep their countersignatures."""
        self.audit.checkpoint(utc_now())
        heads, errors = [], []
        for member in self.peers.members():
            stub = self.peers.stub(member)
            try:
                seen: int | None = None
                for _step in range(1000):  # bounded: 40 000 entries a step
                    req = self.witness.request_for(member.id, seen)
                    try:
                        w = stub.Witness(req, timeout=self.config.peer_timeout_seconds)
                    except grpc.RpcError as exc:
                        details = exc.details() or ""  # type: ignore[attr-defined]
                        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION or (  # type: ignore[attr-defined]
                            "last witnessed size is" not in details
                        ):
                            raise
                        seen = int(details.rsplit(" ", 1)[-1])
                        continue
                    self.witness.keep(w)
                    seen = w.size
                    if w.size >= req.head.size and req.head.size == self.audit.latest_head().size:  # type: ignore[union-attr]
                        heads.append(w)
                        break
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                    self.peers.reset(member)
                errors.append(f"{member.id}: {describe_error(exc)}")
        return heads, errors

    def _housekeeping(self) -> None:
        """Checkpoints (signed heads) and expired-grant entries, on their own clock."""
        while not self._stop.wait(self.config.audit_checkpoint_seconds):
            try:
                now = utc_now()
                self._warn_crl_expiry()
                self._audit_crl_change()
                self.grants.log_expired(now)
                self.audit.checkpoint(now)
            except Exception:  # keep the node up; the next round retries
                log.exception("housekeeping round failed")

    def _witnessing(self) -> None:
        """Peer witnessing in its own thread: slow peers never delay checkpoints."""
        while not self._stop.wait(self.config.witness_seconds):
            try:
                _heads, errors = self.witness_round()
                for e in errors:
                    log.warning("witnessing: %s", e)
            except Exception:
                log.exception("witness round failed")

    def _audit_crl_change(self) -> None:
        # Reload if the file changed; an unusable CRL is logged at the edge, last good kept.
        with contextlib.suppress(Exception):
            self.revocations.is_revoked("0")
        version = self.revocations.version
        if version != self._crl_version:
            self._crl_version = version
            nxt = self.revocations.next_update
            self.audit.append(
                {
                    "kind": "crl.loaded",
                    "time": utc_now(),
                    "revoked": self.revocations.revoked_count,
                    "next_update": nxt.isoformat() if nxt else "",
                }
            )

    def _warn_crl_expiry(self) -> None:
        """Warn (once an hour) when the CRL expires within a day: then every call fails."""
        nxt = self.revocations.next_update
        if nxt is None or nxt - dt.datetime.now(dt.UTC) > dt.timedelta(days=1):
            return
        if time.monotonic() - getattr(self, "_crl_warned", -3600.0) >= 3600:
            self._crl_warned = time.monotonic()
            log.warning("the CRL expires at %s UTC: re-issue it with `fedgate ca crl`", nxt)

    def record_refusal(self, method: str, caller: Identity | None, exc) -> None:  # type: ignore[no-untyped-def]
        self.audit.append(
            {
                "kind": "rpc.refused",
                "time": utc_now(),
                "method": method,
                "caller": str(caller or "-"),
                "code": exc.code.name,
                "reason": exc.message[:500],
            }
        )

    def deadline(self, context: CallContext) -> float:
        """Monotonic deadline of this call, a little early so the answer can travel back."""
        remaining = context.time_remaining()
        if remaining is None:
            remaining = DEFAULT_QUERY_SECONDS
        return time.monotonic() + max(0.0, min(remaining, DEFAULT_QUERY_SECONDS) - 0.05)

    def _call_peer(self, member: Member, request, deadline: float):  # type: ignore[no-untyped-def]
        t0 = time.monotonic()
        try:
            resp = self.peers.stub(member).Execute(request, timeout=max(0.01, deadline - t0))
        except grpc.RpcError as exc:
            self.record_peer(member.id, False, time.monotonic() - t0)
            if exc.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                self.peers.reset(member)
            raise
        self.record_peer(member.id, True, time.monotonic() - t0)
        return resp

    def record_peer(self, peer: str, up: bool, seconds: float) -> None:
        self.metrics.peer_up.labels(peer).set(1 if up else 0)
        if up:
            self.metrics.peer_latency.labels(peer).set(seconds)

    def start(self) -> None:
        auth = Authenticator(self.revocations, self.membership)
        self.audit.append(
            {
                "kind": "node.started",
                "time": utc_now(),
                "node": self.identity.id,
                "cert_serial": self.identity.serial,
                "membership_serial": self.membership().serial,
                "address": self.config.listen,
            }
        )
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="rpc"),
            interceptors=[EdgeInterceptor(auth, self.metrics, self.record_refusal)],
            options=[
                ("grpc.max_receive_message_length", self.config.max_message_bytes),
                ("grpc.max_send_message_length", self.config.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        gateway_pb2_grpc.add_GatewayServicer_to_server(GatewayServicer(self), server)
        peer_pb2_grpc.add_PeerServicer_to_server(PeerServicer(self), server)
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
        server.start()
        self._server = server
        if self.config.metrics_listen:
            try:
                self._metrics_server = self.metrics.serve(self.config.metrics_listen)
            except OSError as exc:
                server.stop(0)
                raise ConfigError(
                    f"metrics.listen: cannot bind {self.config.metrics_listen}: {exc}"
                ) from None
        for name in ["", *names[:3]]:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True).start()
        if self.config.witness_seconds > 0:
            threading.Thread(target=self._witnessing, name="witnessing", daemon=True).start()
        if self.config.peer_probe_seconds > 0:
            threading.Thread(target=self._probe_peers, name="peer-probe", daemon=True).start()
        log.info(
            "serving node=%s address=%s level=%s",
            self.identity.id,
            self.config.listen,
            self.member.level,
        )

    def _probe_peers(self) -> None:
        from grpc_health.v1 import health_pb2 as hp

        while not self._stop.wait(self.config.peer_probe_seconds):
            for member in self.peers.members():
                t0 = time.monotonic()
                try:
                    resp = self.peers.health(member).Check(hp.HealthCheckRequest(), timeout=2)
                    up = resp.status == hp.HealthCheckResponse.SERVING
                except grpc.RpcError:
                    up = False
                    self.peers.reset(member)
                self.record_peer(member.id, up, time.monotonic() - t0)

    def stop(self, grace: float = 5.0) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        log.info("stopping node=%s", self.identity.id)
        try:
            self.audit.append({"kind": "node.stopping", "time": utc_now()})
            self.audit.checkpoint(utc_now())
        except Exception:
            log.exception("could not write the final audit entries")
        self.health.enter_graceful_shutdown()
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.peers.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.relay_executor.shutdown(wait=False, cancel_futures=True)
        self.engine.close()
        self.state.close()
        log.info("stopped node=%s", self.identity.id)


def setup_logging(data_dir: Path, node_id: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter(
        f"%(asctime)s %(levelname)s %(name)s node={node_id} %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    # node.log has everything; the console only what needs an operator's eye (formatting
    # each per-query line twice was a measurable share of a node's CPU).
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    for handler in (logging.FileHandler(data_dir / "node.log"), console):
        handler.setFormatter(fmt)
        root.addHandler(handler)


def run(config: NodeConfig) -> int:
    """Run until SIGTERM or SIGINT, then stop gracefully; returns the exit code."""
    setup_logging(config.data_dir, config.id)
    node = Node(config)
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: stop_requested.set())
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
