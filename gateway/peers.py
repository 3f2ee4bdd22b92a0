"""Channels from this node to the other members, opened lazily and kept open.

A call holds its connection for as long as it runs (``Peers.connection``). A channel that
failed is *retired*: dropped from the pool so that the next call connects afresh, but
closed only when the last call still running on it has finished, so that a reset (after
another call's failure, or the health probe's) never cuts a running call short.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2_grpc

from federation.membership import Member, Membership
from gateway.config import NodeConfig
from gateway.errors import Unavailable
from gateway.rpc.v1 import peer_pb2_grpc
from gateway.tls import secure_channel


@dataclass(eq=False)
class Connection:
    """A channel and the stubs made on it; they live and die together."""

    channel: grpc.Channel
    peer: peer_pb2_grpc.PeerStub
    health: health_pb2_grpc.HealthStub
    calls: int = 0  # calls running on it now
    retired: bool = False  # out of the pool: closed when ``calls`` drops to 0


class Peers:
    def __init__(self, config: NodeConfig, membership: Callable[[], Membership]) -> None:
        self._config = config
        self._membership = membership
        self._lock = threading.Lock()
        self._pool: dict[tuple[str, str], Connection] = {}
        self._retired: set[Connection] = set()  # retired, with calls still running
        self._closed = False

    def members(self) -> list[Member]:
        return self._membership().others(self._config.id)

    @contextmanager
    def connection(self, member: Member) -> Iterator[Connection]:
        """The member's connection, held for the block: never closed under a call."""
        key = (member.id, member.address)
        with self._lock:
            if self._closed:
                raise Unavailable("this node is stopping: no more calls to peers")
            conn = self._pool.get(key)
            if conn is None:
                channel = secure_channel(
                    member.address,
                    member.id,
                    ca=self._config.ca,
                    cert=self._config.cert,
                    key=self._config.key,
                    max_message_bytes=self._config.max_message_bytes,
                )
                conn = Connection(
                    channel, peer_pb2_grpc.PeerStub(channel), health_pb2_grpc.HealthStub(channel)
                )
                self._pool[key] = conn
            conn.calls += 1
        try:
            yield conn
        finally:
            with self._lock:
                conn.calls -= 1
                close = conn.retired and conn.calls == 0
                if close:
                    self._retired.discard(conn)
            if close:
                conn.channel.close()

    def reset(self, member: Member, conn: Connection | None = None) -> None:
        """Drop the member's channel (``conn``, if it is still the pooled one), so that
        the next call connects afresh; calls running on it finish on it first.

        A gRPC channel that lost its peer waits out a reconnect backoff; a member that
        restarted would otherwise look down for seconds after it is back.
        """
        key = (member.id, member.address)
        with self._lock:
            found = self._pool.get(key)
            if found is None or (conn is not None and found is not conn):
                return  # already replaced by a fresh channel: keep that one
            close = self._retire(key)
        if close is not None:
            close.channel.close()

    def prune(self, members: list[Member]) -> list[str]:
        """Retire the channels of members that are no longer ``members`` (left the
        federation, or moved to another address); returns their ids. A reloaded
        membership document would otherwise leave them open until the node stops."""
        current = {(m.id, m.address) for m in members}
        with self._lock:
            gone = [key for key in self._pool if key not in current]
            closing = [self._retire(key) for key in gone]
        for conn in closing:
            if conn is not None:
                conn.channel.close()
        return [member_id for member_id, _ in gone]

    def _retire(self, key: tuple[str, str]) -> Connection | None:
        """Out of the pool (under ``_lock``); returned when it can be closed now."""
        conn = self._pool.pop(key)
        conn.retired = True
        if conn.calls == 0:
            return conn
        self._retired.add(conn)
        return None

    def close(self) -> None:
        """The node stops: every channel closed, running calls or not."""
        with self._lock:
            self._closed = True
            conns = [*self._pool.values(), *self._retired]
            self._pool.clear()
            self._retired.clear()
        for conn in conns:
            conn.retired = True
            conn.channel.close()
