"""Every gRPC call from this node to a peer, in one place.

A call here gets the peer's channel from the pool, a timeout from the caller's
deadline, the peer's up/latency metrics, a fresh channel next time when the peer was
unavailable (a channel that lost its peer otherwise waits out a reconnect backoff), and
a failure as a typed ``FedgateError`` carrying the peer's own status and details, so no
caller ever looks inside a gRPC exception or a message string.

A peer that stops or restarts under a call is *unavailable*, whatever this node's own
gRPC channel says about it (CANCELLED "Channel closed!", INTERNAL "Received RST_STREAM"):
a failure that no fedgate edge answered (every edge marks its statuses,
``gateway.status.ORIGIN``) with one of those codes becomes UNAVAILABLE naming the peer,
and the caller (the home, a relay) reports it with its own deadline. Channels are reset,
never closed, under a running call (``gateway.peers``); a call on a channel retired at
shutdown is UNAVAILABLE too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from federation.membership import Member
from federation.outcome import Code, Error
from gateway import serde
from gateway.errors import Cancelled, FedgateError, Unavailable
from gateway.metrics import NodeMetrics
from gateway.peers import Peers
from gateway.status import answered_by_a_node, error_of_rpc

MIN_TIMEOUT = 0.01

# A failure gRPC reports itself (no fedgate edge answered) with one of these codes means
# the connection under the call went away: CANCELLED "Channel closed!", INTERNAL "Received
# RST_STREAM", UNKNOWN "Stream removed". A stream this node cancels itself (``cancel``)
# ends as ``Cancelled``.
_CONNECTION_LOST = (Code.CANCELLED, Code.INTERNAL, Code.UNKNOWN)


def peer_error(member: Member, error: Error, *, answered: bool) -> Error:
    """The typed error of a failed peer call: a connection lost under it (a status no
    node gave, ``answered`` False) is UNAVAILABLE naming the peer; a node's own status
    passes unchanged; a deadline gRPC ran out itself names the peer that had not finished."""
    if not answered and error.code in _CONNECTION_LOST:
        reason = f"the connection to {member.id} was lost ({error.reason})"
        return Error(Code.UNAVAILABLE, reason, error.details)
    if not answered and error.code == Code.DEADLINE_EXCEEDED:
        reason = f"{member.id} did not finish before the request's deadline"
        return Error(Code.DEADLINE_EXCEEDED, reason, error.details)
    if not answered and error.code == Code.UNAVAILABLE:
        # gRPC's own text ("failed to connect ... Handshake read failed") names no node:
        # passed on as it was, a user read it as their own certificate refused (review)
        return Error(Code.UNAVAILABLE, f"could not reach {member.id}: {error.reason}")
    return error


def _cancel_on(cancel: threading.Event, ended: threading.Event, call: Any) -> None:
    """Cancel ``call`` once ``cancel`` is set; return when the call ended anyway."""
    while not ended.wait(0.2):
        if cancel.is_set():
            call.cancel()
            return


class Transport:
    def __init__(
        self,
        peers: Peers,
        metrics: NodeMetrics,
        default_timeout: float,
    ) -> None:
        self._peers = peers
        self._metrics = metrics
        self.default_timeout = default_timeout

    def members(self) -> list[Member]:
        return self._peers.members()

    def call(
        self,
        member: Member,
        method: str,
        request: Any,
        *,
        deadline: float | None = None,
        timeout: float | None = None,
    ) -> Any:
        """``Peer/<method>`` at ``member``; a failure raises the peer's typed error."""
        t0 = time.monotonic()
        if deadline is not None:
            timeout = max(MIN_TIMEOUT, deadline - t0)
        answered = False
        try:
            with self._peers.connection(member) as conn:
                stub_method: Callable[..., Any] = getattr(conn.peer, method)
                try:
                    resp = stub_method(
                        request,
                        timeout=self.default_timeout if timeout is None else timeout,
                    )
                except grpc.RpcError as exc:
                    answered = answered_by_a_node(exc)
                    error = peer_error(member, error_of_rpc(exc), answered=answered)
                    if error.code == Code.UNAVAILABLE and not answered:
                        self._peers.reset(member, conn)  # calls still on it finish first
                    raise FedgateError.of(error) from None
                except ValueError:  # grpc: "Cannot invoke RPC on closed channel!"
                    if not conn.retired:
                        raise
                    raise Unavailable(f"the connection to {member.id} was closed") from None
        except FedgateError:
            # a node's own refusal or failure says it is up (review, 2026-12-04: a
            # PERMISSION_DENIED set fedgate_peer_up to 0)
            self.record(member.id, answered, time.monotonic() - t0)
            raise
        self.record(member.id, True, time.monotonic() - t0)
        return resp

    def stream(
        self,
        member: Member,
        method: str,
        request: Any,
        *,
        deadline: float,
        cancel: threading.Event | None = None,
    ) -> Iterator[Any]:
        """The responses of a streaming ``Peer/<method>`` at ``member`` (``request`` is
        one message, or an iterator of them for a bidirectional stream); a failure raises
        the peer's typed error. Leaving the loop early cancels the call, and so does
        ``cancel`` when it is set (even while the loop waits for the next response)."""
        t0 = time.monotonic()
        ok = False
        try:
            with self._peers.connection(member) as conn:
                stub_method: Callable[..., Any] = getattr(conn.peer, method)
                try:
                    call = stub_method(request, timeout=max(MIN_TIMEOUT, deadline - t0))
                except ValueError:  # grpc: "Cannot invoke RPC on closed channel!"
                    raise Unavailable(f"the connection to {member.id} was closed") from None
                ended = threading.Event()
                if cancel is not None:
                    threading.Thread(
                        target=_cancel_on, args=(cancel, ended, call), daemon=True
                    ).start()
                try:
                    for response in call:
                        ok = True  # it answered: up, also when the caller stops reading
                        yield response
                    ok = True
                except grpc.RpcError as exc:
                    if cancel is not None and cancel.is_set():  # our own doing, not the peer's
                        raise Cancelled(f"the call to {member.id} was cancelled") from None
                    ok = answered_by_a_node(exc)  # it answered: up, whatever it said
                    error = peer_error(member, error_of_rpc(exc), answered=ok)
                    if error.code == Code.UNAVAILABLE and not ok:
                        self._peers.reset(member, conn)
                    raise FedgateError.of(error) from None
                finally:
                    ended.set()
                    call.cancel()  # a no-op once the call ended
        finally:
            self.record(member.id, ok, time.monotonic() - t0)

    def probe(self, member: Member, timeout: float = 2.0) -> bool:
        """Whether the peer's health service says SERVING.

        A failed probe resets the peer's channel so that the next call connects afresh;
        a call running on the old channel is not disturbed (it ends at its own deadline)."""
        t0 = time.monotonic()
        up = False
        try:
            with self._peers.connection(member) as conn:
                try:
                    resp = conn.health.Check(serde.health_check_request(), timeout=timeout)
                    up = resp.status == health_pb2.HealthCheckResponse.SERVING
                except grpc.RpcError:
                    self._peers.reset(member, conn)
                except ValueError:  # closed under us: the node is stopping
                    pass
        except Unavailable:  # the node is stopping
            pass
        self.record(member.id, up, time.monotonic() - t0)
        return up

    def record(self, peer: str, up: bool, seconds: float) -> None:
        self._metrics.peer_up.labels(peer).set(1 if up else 0)
        if up:
            self._metrics.peer_latency.labels(peer).set(seconds)

    def prune(self) -> None:
        """Close the channels of members that left (or moved) and drop their metrics."""
        members = self._peers.members()
        self._peers.prune(members)
        current = {m.id for m in members}
        for gauge in (self._metrics.peer_up, self._metrics.peer_latency):
            shown = {s.labels["peer"] for family in gauge.collect() for s in family.samples}
            for peer in shown - current:
                gauge.remove(peer)

    def close(self) -> None:
        self._peers.close()
