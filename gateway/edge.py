"""The RPC edge: every call is authenticated, authorised, measured and logged here.

TLS has already checked that the peer holds a key for a certificate our CA signed and
that it has not expired. Here we read who it is from that certificate (never from the
request), refuse revoked certificates and nodes that are not members, check the role
against the method, apply the per-caller limits on streams, calls and rates
(``gateway/limits.py``; open streams are re-checked while they last), and turn typed
errors into gRPC status codes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from federation.membership import Membership
from federation.outcome import Code, Error
from gateway import clock
from gateway.errors import (
    CannotRecord,
    FedgateError,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from gateway.identity import ROLES, Identity, RevocationList, identity_of_pem
from gateway.limits import Limiter, LimitExceeded, LimitSettings, Ticket, cut, is_rated
from gateway.metrics import NodeMetrics
from gateway.status import STATUS, details_metadata
from gateway.text import shown

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
    "/fedgate.v1.Gateway/Psi": USERS,
    "/fedgate.v1.Gateway/Train": USERS,
    "/fedgate.v1.Gateway/TrainRuns": USERS,
    "/fedgate.v1.Gateway/TrainCancel": USERS,
    "/fedgate.v1.Gateway/AddGrant": frozenset({"operator"}),
    "/fedgate.v1.Gateway/ListGrants": frozenset({"operator"}),
    "/fedgate.v1.Gateway/RevokeGrant": frozenset({"operator"}),
    "/fedgate.v1.Gateway/ApproveApp": frozenset({"operator"}),
    "/fedgate.v1.Gateway/ListApps": frozenset({"operator"}),
    "/fedgate.v1.Gateway/RevokeApp": frozenset({"operator"}),
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
    "/fedgate.v1.Peer/PsiRun": NODES,
    "/fedgate.v1.Peer/PsiExchange": NODES,
    "/fedgate.v1.Peer/TrainStep": NODES,
    "/grpc.health.v1.Health/Check": ALL,
    "/grpc.health.v1.Health/Watch": ALL,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": ALL,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": ALL,
}


class CallContext:
    """The gRPC context plus the authenticated caller, handed to servicer methods."""

    def __init__(
        self,
        context: grpc.ServicerContext,
        caller: Identity,
        stream: OpenStream | None = None,
        hold: Callable[[str], OpenStream] | None = None,
        let_go: Callable[[OpenStream], None] | None = None,
    ) -> None:
        self._context = context
        self.caller = caller
        self._stream = stream
        self._hold = hold
        self._let_go = let_go

    @contextlib.contextmanager
    def as_stream(self, method: str) -> Iterator[None]:
        """The rest of a unary call held as a stream of ``method``: a join's PSI session
        may run for ten minutes, so it takes that method's rate and a stream slot, and is
        re-checked every second as streams are (a certificate revoked or expired
        meanwhile ends it with that status; review, 2026-12-04, night: a join was
        checked once, when it began). ``add_callback`` inside it also runs when the edge
        ends it."""
        if self._hold is None or self._let_go is None or self._stream is not None:
            yield
            return
        stream = self._hold(method)
        self._stream = stream
        try:
            yield
        except FedgateError:
            if stream.ended is not None:  # the handler stopped because the edge ended it
                raise stream.ended from None
            raise
        else:
            if stream.ended is not None:
                raise stream.ended
        finally:
            self._stream = None
            self._let_go(stream)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """As gRPC's; on a stream the edge may also run it when it ends the stream early
        (a health ``Watch`` waiting for a change then returns). Each runs at most once."""
        if self._stream is None:
            return bool(self._context.add_callback(callback))
        return self._stream.add_callback(callback)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _once(callback: Callable[[], None]) -> Callable[[], None]:
    lock = threading.Lock()
    done = False

    def run() -> None:
        nonlocal done
        with lock:
            if done:
                return
            done = True
        callback()

    return run


# A stream the edge ended (certificate revoked or expired, open too long) whose handler
# did not return at once (blocked reading the client, or sending) is cancelled this long
# after: its thread is freed either way.
STREAM_END_GRACE_SECONDS = 1.0
# How often open streams are checked (caller's certificate, lifetime).
STREAM_CHECK_SECONDS = 1.0


class OpenStream:
    """A streaming call admitted by the edge: its slot, and how the edge ends it early."""

    def __init__(
        self, ticket: Ticket, caller: Identity, method: str, context: grpc.ServicerContext
    ) -> None:
        self.ticket = ticket
        self.caller = caller
        self.method = method
        self.context = context
        self.opened = time.monotonic()
        self.ended: FedgateError | None = None
        self.ended_at = 0.0
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def add_callback(self, callback: Callable[[], None]) -> bool:
        once = _once(callback)
        with self._lock:
            self._callbacks.append(once)
        return bool(self.context.add_callback(once))

    def end(self, error: FedgateError) -> None:
        """End the stream with ``error``: the servicer's termination callbacks run now
        (a ``Watch`` returns), the edge sends ``error`` as the status."""
        with self._lock:
            if self.ended is not None:
                return
            self.ended, self.ended_at = error, time.monotonic()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # the grace cancel frees the thread anyway
                log.exception("ending a stream: a termination callback failed")


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
        why = self.revocations.revocation(caller.serial, caller.issuer, caller.issuer_key)
        if why:
            raise Unauthenticated(f"certificate {caller.serial} of {caller} {why}")
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
SWEEP_AUDITED = 100  # counts of door refusals audited per stream check
STATUS_MESSAGE_CHARS = 1000


def log_field(text: str, limit: int = LOG_FIELD_CHARS) -> str:
    """A free-text field of a log line: at most ``limit`` characters (then a marker with
    the full length), control and line-breaking characters escaped (one event, one line).
    A log grows with events, never with the size of a request."""
    head = shown(text[:limit])
    return head if len(text) <= limit else f"{head}...[cut, {len(text)} chars]"


def _abort(context: grpc.ServicerContext, exc: FedgateError) -> None:
    """End the call with the error's status, details and (bounded) message. The message
    travels as metadata (16 KiB at most, percent-encoded): a reason quoting a 4 MB field
    would otherwise reach the caller as a transport error."""
    context.set_trailing_metadata(details_metadata(exc.details))
    context.abort(STATUS[exc.code], cut(exc.message, STATUS_MESSAGE_CHARS))


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


def _raised_in_generated_code(exc: BaseException) -> bool:
    """Whether ``exc`` came from a generated servicer's stub, the one place a method is
    "not implemented" (pyarrow's ArrowNotImplementedError is a NotImplementedError too:
    an Arrow failure in a handler was UNIMPLEMENTED, its traceback never logged)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename.endswith("_pb2_grpc.py")


def untyped(method: str, caller: Identity | None, exc: Exception) -> FedgateError:
    """The error a caller sees for ``exc``, an exception that is not ours (unary calls and
    streams alike): UNIMPLEMENTED for a generated servicer's method nobody implemented,
    else INTERNAL with a reference to the traceback logged here; Python's text never
    reaches the caller. Called in the ``except`` block, for the traceback."""
    if isinstance(exc, NotImplementedError) and _raised_in_generated_code(exc):
        failure = FedgateError(f"{method.rsplit('/', 1)[-1]} is not implemented here")
        failure.code = Code.UNIMPLEMENTED
        return failure
    ref = uuid.uuid4().hex[:12]
    log.exception("internal error method=%s caller=%s ref=%s", method, caller, ref)
    return FedgateError(f"internal error (reference {ref}); see the node log")


class EdgeInterceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        auth: Authenticator,
        metrics: NodeMetrics,
        on_refusal: Callable[[str, Identity | str | None, FedgateError], None] = lambda *a: None,
        limiter: Limiter | None = None,
        max_message_bytes: int | None = None,
    ) -> None:
        self._auth = auth
        self._max_reply = max_message_bytes  # a unary reply over it is refused, counted
        self._metrics = metrics
        self._on_refusal = on_refusal
        self.limiter = limiter or Limiter(LimitSettings())
        self._streams_lock = threading.Lock()
        self._streams: set[OpenStream] = set()

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
            return grpc.unary_unary_rpc_method_handler(  # the reply leaves as our bytes
                self._unary(method, handler.unary_unary, decode, handler.response_serializer),
                request_deserializer=None,
                response_serializer=None,
            )
        # Streaming methods (health Watch, reflection, audit export): authenticate, take a
        # stream slot, decode, then pass through.
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
        at_door: bool = False,
    ) -> None:
        """``at_door``: refused before any handler ran (no certificate, a revoked or
        expired one, a node that is not a member, a role the method does not admit, bytes
        that are not the method's message)."""
        note = ""
        # A limit's refusals, those at the door (a client looping on one grew the
        # append-only log ~1 KB a call; review, 2026-12-04) and a handler's refusals of a
        # method no rate bounds (3 000 malformed or refused Health/Check or
        # AccessRequestStatus calls were 3 000 entries; review, 2026-12-04, night) are
        # recorded once per caller and kind a window, then counted.
        if isinstance(exc, LimitExceeded) or at_door or not is_rated(method):
            if isinstance(exc, LimitExceeded):
                who, kind = exc.caller, exc.limit
            else:
                # Per method too: a refusal of one method must not hide probes of others
                # (bounded: the methods of POLICY).
                who, kind = str(caller or "-"), f"door:{exc.code.name}:{method}"
            quiet = self.limiter.refusals.note(who, kind)
            if quiet is None:  # reported already in this window: counted, not recorded
                _abort(context, exc)
            if quiet:
                note = f" ({quiet} more refused like this since the last line)"
        recorded = FedgateError.of(Error(exc.code, exc.message + note, exc.details))
        try:
            self._on_refusal(method, caller, recorded)
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
            log_field(recorded.message),
        )
        _abort(context, exc)

    # --- streams --------------------------------------------------------------------------

    def _open_stream(
        self, caller: Identity, method: str, context: grpc.ServicerContext
    ) -> OpenStream:
        ticket = self.limiter.open_stream(str(caller), method, node=caller.role == "node")
        stream = OpenStream(ticket, caller, method, context)
        with self._streams_lock:
            self._streams.add(stream)
        return stream

    def _close_stream(self, stream: OpenStream) -> None:
        with self._streams_lock:
            self._streams.discard(stream)
        stream.ticket.release()

    def open_streams(self) -> int:
        with self._streams_lock:
            return len(self._streams)

    def check_streams(self) -> None:
        """Run every ``STREAM_CHECK_SECONDS``: a stream does not outlive its caller's
        certificate (revoked, expired, a node no longer a member) nor
        ``limits.stream_max_seconds``; a stream ended so that has not returned within
        ``STREAM_END_GRACE_SECONDS`` is cancelled. Also expires the limiter's entries."""
        now = time.monotonic()
        longest = self.limiter.settings.stream_max_seconds
        with self._streams_lock:
            streams = list(self._streams)
        for stream in streams:
            if stream.ended is not None:
                if now - stream.ended_at >= STREAM_END_GRACE_SECONDS:
                    stream.context.cancel()
                continue
            if now - stream.opened >= longest:
                stream.end(
                    Unavailable(
                        f"the stream was open for {longest:g} s, the longest this node keeps "
                        "one; open a new one"
                    )
                )
                continue
            try:
                self._auth.authorize(stream.caller, stream.method)
            except FedgateError as exc:
                stream.end(exc)
            except Exception:  # one stream's check never stops the sweep of the others
                log.exception("checking stream %s of %s", stream.method, stream.caller)
        window = self.limiter.refusals.window
        audited = 0
        for caller, limit, quiet in self.limiter.sweep():
            code, method = "RESOURCE_EXHAUSTED", ""
            if limit.startswith("door:"):  # see _refuse
                _door, code, method = limit.split(":", 2)
                limit = f"door {method}"
            log.warning(
                "refused caller=%s code=%s limit=%s: %d more refused like this in the last %g s",
                log_field(caller, 200),
                code,
                limit,
                quiet,
                window,
            )
            # A door refusal's count is an audit entry too; a bounded number a sweep (this
            # thread also re-checks and ends streams: a slow disk must not hold it up).
            if method and audited < SWEEP_AUDITED:
                audited += 1
                told = Error(
                    Code.named(code, Code.PERMISSION_DENIED),
                    f"{quiet} more refused like this in the last {window:g} s",
                )
                try:
                    self._on_refusal(method, caller, FedgateError.of(told))
                except Exception:  # noqa: BLE001 - the count is in node.log either way
                    log.warning("could not record a count of refusals in the audit log")

    def _guarded(
        self,
        method: str,
        behavior: Callable,
        decode: Callable[[bytes], Any],
        request_stream: bool,
    ) -> Callable:
        def run(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            caller: Identity | None = None
            stream: OpenStream | None = None
            result: Any = None
            admitted = False
            try:
                caller = self._auth.identify(context)
                self._auth.authorize(caller, method)
                admitted = True
                # Before the handler runs: a stream over a limit never takes a thread
                # for longer than this refusal.
                stream = self._open_stream(caller, method, context)
                if request_stream:  # each message decoded as the servicer reads it
                    request_or_iterator = map(decode, request_or_iterator)
                else:
                    admitted = False  # until its message is one
                    request_or_iterator = decode(request_or_iterator)
                    admitted = True
                result = behavior(request_or_iterator, CallContext(context, caller, stream))
            except FedgateError as exc:
                if stream is not None:
                    self._close_stream(stream)
                self._metrics.requests.labels(method, exc.code.name).inc()
                self._refuse(context, method, exc, caller, at_door=not admitted)
            except Exception as exc:
                if stream is not None:
                    self._close_stream(stream)
                if not context.is_active():  # gRPC's own end (the caller went away)
                    raise
                failure = untyped(method, caller, exc)
                self._metrics.requests.labels(method, failure.code.name).inc()
                self._refuse(context, method, failure, caller)
            except BaseException:
                if stream is not None:
                    self._close_stream(stream)
                raise
            if not hasattr(result, "__next__"):
                if stream is not None:
                    self._close_stream(stream)
                return result
            return self._stream(method, result, context, caller, stream)

        return run

    def _stream(
        self,
        method: str,
        responses: Iterator[Any],
        context: grpc.ServicerContext,
        caller: Identity | None,
        stream: OpenStream | None,
    ) -> Iterator[Any]:
        """Errors raised while streaming become a status, as for unary calls (one not
        typed is INTERNAL with a reference, its traceback logged); a stream the edge ended
        (``check_streams``) ends with its reason. The slot is given back however the
        stream ends: its last message, an error, the client's cancel or deadline (gRPC
        then runs the termination callbacks, which end a ``Watch``, or raises in the
        handler that reads), the edge's own end."""
        try:
            for response in responses:
                if stream is not None and stream.ended is not None:
                    break
                yield response
            if stream is not None and stream.ended is not None:
                raise stream.ended
        except FedgateError as exc:
            self._metrics.requests.labels(method, exc.code.name).inc()
            self._refuse(context, method, exc, caller)
        except Exception as exc:
            if not context.is_active():  # gRPC's own end (the caller went away)
                raise
            failure = untyped(method, caller, exc)
            self._metrics.requests.labels(method, failure.code.name).inc()
            self._refuse(context, method, failure, caller)
        finally:
            if stream is not None:
                self._close_stream(stream)

    # --- unary calls ----------------------------------------------------------------------

    def _unary(
        self,
        method: str,
        behavior: Callable,
        decode: Callable[[bytes], Any],
        serialize: Callable[[Any], bytes] | None,
    ) -> Callable:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            code = Code.OK
            failure: FedgateError | None = None
            caller: Identity | None = None
            ticket: Ticket | None = None
            admitted = False
            try:
                caller = self._auth.identify(context)
                self._auth.authorize(caller, method)
                ticket = self.limiter.admit_call(str(caller), method, node=caller.role == "node")
                message = decode(request)
                admitted = True
                call = CallContext(
                    context,
                    caller,
                    hold=lambda m: self._open_stream(caller, m, context),
                    let_go=self._close_stream,
                )
                reply = behavior(message, call)
                # Serialised here, not by gRPC after we return: a reply over the message
                # limit is refused, logged and counted as such, never counted OK and then
                # failed unseen by gRPC (review, 2026-12-05).
                data = serialize(reply) if serialize is not None else reply
                if self._max_reply is not None and len(data) > self._max_reply:
                    raise ResourceExhausted(
                        f"the answer is over this node's message limit "
                        f"({self._max_reply} bytes): ask for less"
                    )
                return data
            except FedgateError as exc:  # a peer's status arrives typed from the transport
                code, failure = exc.code, exc
            except Exception as exc:
                failure = untyped(method, caller, exc)
                code = failure.code
            finally:
                if ticket is not None:
                    ticket.release()
                self._metrics.requests.labels(method, code.name).inc()
                self._metrics.latency.labels(method).observe(time.perf_counter() - start)
            self._refuse(context, method, failure, caller, at_door=not admitted)

        return run
