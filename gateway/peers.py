"""Channels from this node to the other members, opened lazily and kept open."""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2_grpc

from federation.membership import Member, Membership
from gateway.config import NodeConfig
from gateway.rpc.v1 import peer_pb2_grpc
from gateway.tls import secure_channel


class Peers:
    def __init__(self, config: NodeConfig, membership: Callable[[], Membership]) -> None:
        self._config = config
        self._membership = membership
        self._lock = threading.Lock()
        # A channel and the stub made on it live and die together (reset drops both).
        self._channels: dict[tuple[str, str], tuple[grpc.Channel, peer_pb2_grpc.PeerStub]] = {}

    def members(self) -> list[Member]:
        return self._membership().others(self._config.id)

    def _connection(self, member: Member) -> tuple[grpc.Channel, peer_pb2_grpc.PeerStub]:
        key = (member.id, member.address)
        with self._lock:
            found = self._channels.get(key)
            if found is None:
                channel = secure_channel(
                    member.address,
                    member.id,
                    ca=self._config.ca,
                    cert=self._config.cert,
                    key=self._config.key,
                    max_message_bytes=self._config.max_message_bytes,
                )
                found = self._channels[key] = (channel, peer_pb2_grpc.PeerStub(channel))
            return found

    def reset(self, member: Member) -> None:
        """Drop a channel that failed, so the next call connects afresh.

        A gRPC channel that lost its peer waits out a reconnect backoff; a member that
        restarted would otherwise look down for seconds after it is back.
        """
        with self._lock:
            found = self._channels.pop((member.id, member.address), None)
        if found is not None:
            found[0].close()

    def stub(self, member: Member) -> peer_pb2_grpc.PeerStub:
        return self._connection(member)[1]

    def health(self, member: Member) -> health_pb2_grpc.HealthStub:
        return health_pb2_grpc.HealthStub(self._connection(member)[0])

    def close(self) -> None:
        with self._lock:
            for channel, _stub in self._channels.values():
                channel.close()
            self._channels.clear()
