"""The RPC edge: every call is authenticated, authorised, measured and logged here.

TLS has already checked that the peer holds a key for a certificate our CA signed and
that it has not expired. Here we read who it is from that certificate (never from the
request), refuse revoked certificates and nodes that are not members, check the role
against the method, and turn typed errors into gRPC status codes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from federation.membership import Membership
from federation.outcome import Code
from gateway import clock
from gateway.errors import (
    CannotRecord,
    FedgateError,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from gateway.identity import ROLES, Identity, RevocationList, identity_of_pem
from gateway.metrics import NodeMetrics
from gateway.status import STATUS, details_metadata

log = logging.getLogger("fedgate.edge")

ALL = frozenset(ROLES)
USERS = frozenset({"operator", "analyst"})
NODES = frozenset({"node"})

# Which roles may call which method. A method missing here is refused.
POLICY: dict[str, frozenset[str]] = {
    "/fedgate.v1.Gateway/WhoAmI": ALL,
    "/fedgate.v1.Gateway/Catalog": ALL,
    "/fedgate.v1.Gateway/FederatedCatalog": USERS,
    "/fedgate.v1.Gateway/RegisterDataset": frozenset({"operator"}),
    "/fedgate.v1.Gateway/Query": USERS,
    "/fedgate.v1.Gateway/AddGrant": frozenset({"operator"}),
    "/fedgate.v1.Gateway/ListGrants": frozenset({"operator"}),
    "/fedgate.v1.Gateway/RevokeGrant": frozenset({"operator"}),
    "/fedgate.v1.Gateway/AuditExport": frozenset({"operator"}),
    "/fedgate.v1.Gateway/AuditShow": frozenset({"operator"}),
    "/fedgate.v1.Gateway/Receipts": frozenset({"operator"}),
    "/fedgate.v1.Gateway/WitnessNow": frozenset({"operator"}),
    "/fedgate.v1.Gateway/WitnessedHeads": frozenset({"operator"}),
    "/fedgate.v1.Gateway/SubmitAccessRequest": USERS,
    "/fedgate.v1.Gateway/AccessRequestStatus": USERS,
    "/fedgate.v1.Gateway/ListAccessRequests": frozenset({"operator"}),
    "/fedgate.v1.Gateway/DecideAccessRequest": frozenset({"operator"}),
    "/fedgate.v1.Gateway/Disclosure": ALL,
    "/fedgate.v1.Peer/PeerCatalog": NODES,
    "/fedgate.v1.Peer/Execute": NODES,
    "/fedgate.v1.Peer/Witness": NODES,
    "/fedgate.v1.Peer/ForwardAccessRequest": NODES,
    "/fedgate.v1.Peer/ForwardAccessRequestStatus": NODES,
    "/fedgate.v1.Peer/PeerDisclosure": NODES,
    "/grpc.health.v1.Health/Check": ALL,
    "/grpc.health.v1.Health/Watch": ALL,
    "/grpc.health.v1.Health/List": ALL,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": ALL,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": ALL,
}


class CallContext:
    """The gRPC context plus the authenticated caller, handed to servicer methods."""

    def __init__(self, context: grpc.ServicerContext, caller: Identity) -> None:
        self._context = context
        self.caller = caller

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


@dataclass
class Authenticator:
    revocations: RevocationList
    membership: Callable[[], Membership]

    def identify(self, context: grpc.ServicerContext) -> Identity:
        certs = context.auth_context().get("x509_pem_cert")
        if not certs:
            raise Unauthenticated("no client certificate")
        return identity_of_pem(certs[0])

    def authorize(self, caller: Identity, method: str) -> Identity:
        """Checked on every call, not only at the TLS handshake: a connection opened
        before the certificate was revoked, or before it expired, is refused from then on.
        (A CRL refused on reload is logged once by ``RevocationList``; the last good list
        stays in force.)"""
        if self.revocations.is_revoked(caller.serial):
            raise Unauthenticated(f"certificate {caller.serial} of {caller} has been revoked")
        if caller.not_after <= clock.now():
            raise Unauthenticated(
                f"certificate {caller.serial} of {caller} expired at "
                f"{caller.not_after:%Y-%m-%d %H:%M:%S} UTC"
            )
        members = self.membership()  # also picks up a changed (and re-verified) document
        if caller.role == "node" and members.get(caller.id) is None:
            raise PermissionDenied(f"node {caller.id!r} is not in the federation membership")
        allowed = POLICY.get(method)
        if allowed is None or caller.role not in allowed:
            raise PermissionDenied(f"role {caller.role!r} may not call {method.rsplit('/', 1)[-1]}")
        return caller


LOG_FIELD_CHARS = 300
STATUS_MESSAGE_CHARS = 1000


def cut(text: str, limit: int) -> str:
    """``text`` if it is at most ``limit`` characters, else its head and a marker."""
    return text if len(text) <= limit else f"{text[:limit]}...[cut, {len(text)} chars]"


def log_field(text: str, limit: int = LOG_FIELD_CHARS) -> str:
    """A free-text field of a log line: at most ``limit`` characters (then a marker with
    the full length), control and line-breaking characters escaped (one event, one line).
    A log grows with events, never with the size of a request."""
    head = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text[:limit])
    return head if len(text) <= limit else f"{head}...[cut, {len(text)} chars]"


def request_decoder(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    """Bytes to the method's request message, or INVALID_ARGUMENT naming the message."""
    if deserializer is None:
        return lambda raw: raw
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = getattr(descriptor, "name", "") or "request"

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError:
            raise InvalidArgument(f"the request is not a valid {name} message") from None

    return decode


class EdgeInterceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        auth: Authenticator,
        metrics: NodeMetrics,
        on_refusal: Callable[[str, Identity | None, FedgateError], None] = lambda *a: None,
    ) -> None:
        self._auth = auth
        self._metrics = metrics
        self._on_refusal = on_refusal

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        # Requests reach us as bytes and are decoded after the caller is authenticated:
        # an unauthenticated caller's bytes are never parsed, and bytes that are not the
        # method's message are INVALID_ARGUMENT (gRPC's own decoding would answer
        # INTERNAL "Exception deserializing request!" and log a traceback for each).
        decode = request_decoder(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary, decode),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        # Streaming methods (health Watch, reflection, audit export): authenticate, decode,
        # then pass through.
        kinds = ("unary_stream", "stream_unary", "stream_stream")
        kind = next(k for k in kinds if getattr(handler, k) is not None)
        factory = getattr(grpc, f"{kind}_rpc_method_handler")
        return factory(
            self._guarded(method, getattr(handler, kind), decode, kind.startswith("stream_")),
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )

    def _refuse(
        self,
        context: grpc.ServicerContext,
        method: str,
        exc: FedgateError,
        caller: Identity | None = None,
    ) -> None:
        try:
            self._on_refusal(method, caller, exc)
        except CannotRecord as failed:  # the node already says so (health NOT_SERVING)
            log.warning("could not record the refusal in the audit log: %s", failed.message)
        except Exception:  # the refusal stands even if it cannot be recorded
            log.exception("could not record the refusal in the audit log")
        # One bounded line per refusal, whatever the request held (the audit entry keeps
        # the reason's first 500 characters).
        log.warning(
            "refused method=%s caller=%s peer=%s code=%s reason=%s",
            log_field(method, 200),
            log_field(str(caller or "-"), 200),
            log_field(context.peer(), 100),
            exc.code.name,
            log_field(exc.message),
        )
        context.set_trailing_metadata(details_metadata(exc.details))
        # The status message travels as metadata (16 KiB at most, percent-encoded): a
        # reason quoting a 4 MB field would reach the caller as a transport error instead.
        context.abort(STATUS[exc.code], cut(exc.message, STATUS_MESSAGE_CHARS))

    def _guarded(
        self,
        method: str,
        behavior: Callable,
        decode: Callable[[bytes], Any],
        request_stream: bool,
    ) -> Callable:
        def run(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            caller: Identity | None = None
            result: Any = None
            try:
                caller = self._auth.identify(context)
                self._auth.authorize(caller, method)
                if request_stream:  # each message decoded as the servicer reads it
                    request_or_iterator = map(decode, request_or_iterator)
                else:
                    request_or_iterator = decode(request_or_iterator)
                result = behavior(request_or_iterator, CallContext(context, caller))
            except FedgateError as exc:
                self._metrics.requests.labels(method, exc.code.name).inc()
                self._refuse(context, method, exc, caller)
            if not hasattr(result, "__next__"):
                return result
            return self._stream(method, result, context, caller)

        return run

    def _stream(
        self,
        method: str,
        responses: Iterator[Any],
        context: grpc.ServicerContext,
        caller: Identity | None,
    ) -> Iterator[Any]:
        """Typed errors raised while streaming become a status, as for unary calls."""
        try:
            yield from responses
        except FedgateError as exc:
            self._metrics.requests.labels(method, exc.code.name).inc()
            self._refuse(context, method, exc, caller)

    def _unary(self, method: str, behavior: Callable, decode: Callable[[bytes], Any]) -> Callable:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            code = Code.OK
            failure: FedgateError | None = None
            caller: Identity | None = None
            try:
                caller = self._auth.identify(context)
                self._auth.authorize(caller, method)
                return behavior(decode(request), CallContext(context, caller))
            except FedgateError as exc:  # a peer's status arrives typed from the transport
                code, failure = exc.code, exc
            except NotImplementedError:  # a generated servicer's method nobody implemented
                failure = FedgateError(f"{method.rsplit('/', 1)[-1]} is not implemented here")
                failure.code = code = Code.UNIMPLEMENTED
            except Exception:
                ref = uuid.uuid4().hex[:12]
                log.exception("internal error method=%s caller=%s ref=%s", method, caller, ref)
                failure = FedgateError(f"internal error (reference {ref}); see the node log")
                code = failure.code
            finally:
                self._metrics.requests.labels(method, code.name).inc()
                self._metrics.latency.labels(method).observe(time.perf_counter() - start)
            self._refuse(context, method, failure, caller)

        return run
