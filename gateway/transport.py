"""Every gRPC call from this node to a peer, in one place.

A call here gets the peer's channel from the pool, a timeout from the caller's
deadline, the peer's up/latency metrics, a fresh channel next time when the peer was
unavailable (a channel that lost its peer otherwise waits out a reconnect backoff), and
a failure as a typed ``FedgateError`` carrying the peer's own status and details, so no
caller ever looks inside a gRPC exception or a message string.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from federation.membership import Member
from federation.outcome import Code
from gateway import serde
from gateway.errors import FedgateError
from gateway.metrics import NodeMetrics
from gateway.peers import Peers
from gateway.status import error_of_rpc

MIN_TIMEOUT = 0.01


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
        stub_method: Callable[..., Any] = getattr(self._peers.stub(member), method)
        try:
            resp = stub_method(
                request,
                timeout=self.default_timeout if timeout is None else timeout,
            )
        except grpc.RpcError as exc:
            self.record(member.id, False, time.monotonic() - t0)
            error = error_of_rpc(exc)
            if error.code == Code.UNAVAILABLE:
                self._peers.reset(member)
            raise FedgateError.of(error) from None
        self.record(member.id, True, time.monotonic() - t0)
        return resp

    def probe(self, member: Member, timeout: float = 2.0) -> bool:
        """Whether the peer's health service says SERVING."""
        t0 = time.monotonic()
        try:
            resp = self._peers.health(member).Check(serde.health_check_request(), timeout=timeout)
            up = resp.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            up = False
            self._peers.reset(member)
        self.record(member.id, up, time.monotonic() - t0)
        return up

    def record(self, peer: str, up: bool, seconds: float) -> None:
        self._metrics.peer_up.labels(peer).set(1 if up else 0)
        if up:
            self._metrics.peer_latency.labels(peer).set(seconds)

    def close(self) -> None:
        self._peers.close()
