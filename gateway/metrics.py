"""Prometheus metrics of one node, in a registry of its own (no process-global state)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from socketserver import TCPServer, ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from gateway.config import split_address

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SCRAPES = 4  # connections served at once; more are closed at once
SCRAPE_SECONDS = 5.0  # a connection is closed this long after it was accepted


class _Handler(WSGIRequestHandler):
    timeout = SCRAPE_SECONDS  # per read; the server's reaper bounds the whole connection

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Not to stderr: a scrape is not an event of the node."""


class MetricsServer(ThreadingMixIn, WSGIServer):
    """prometheus_client's server starts a thread per connection, without limit, and
    waits on an idle one for ever: anyone who reaches the port could pile up threads.
    Here at most ``SCRAPES`` connections are served at once, each for at most
    ``SCRAPE_SECONDS`` (a slow or silent client is cut off). A client that keeps
    reconnecting can still hold the slots and delay real scrapes: the endpoint is plain
    HTTP, for loopback or an internal interface."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 4 * SCRAPES

    def __init__(self, host: str, port: int) -> None:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self.address_family = family
        self._slots = threading.BoundedSemaphore(SCRAPES)
        self._lock = threading.Lock()
        self._open: dict[Any, float] = {}  # connection -> when it must be closed
        super().__init__((str(address[0]), int(address[1])), _Handler)

    def server_bind(self) -> None:
        """As WSGIServer's, without HTTPServer's ``socket.getfqdn``: a reverse DNS lookup
        at start (nothing of a node calls out)."""
        TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]
        self.setup_environ()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        with self._lock:
            self._open[request] = time.monotonic() + SCRAPE_SECONDS
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(request)

    def _done(self, request: Any) -> None:
        with self._lock:
            if self._open.pop(request, None) is None:
                return
        self._slots.release()

    def service_actions(self) -> None:
        """Each turn of the serving loop (every 0.5 s): cut off connections past their
        time; their threads then end on the closed socket and give their slots back."""
        now = time.monotonic()
        with self._lock:
            late = [r for r, until in self._open.items() if until <= now]
        for request in late:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An idle, slow or broken scrape: nothing for the node's stderr."""

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@dataclass
class NodeMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "fedgate_requests",
            "RPCs handled, by method and status code",
            ["method", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "fedgate_request_seconds",
            "RPC handling time",
            ["method"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.peer_up = Gauge(
            "fedgate_peer_up",
            "1 if the peer answered its last contact, else 0",
            ["peer"],
            registry=r,
        )
        self.peer_latency = Gauge(
            "fedgate_peer_last_seconds",
            "Round-trip time of the last peer contact",
            ["peer"],
            registry=r,
        )
        self.datasets = Gauge("fedgate_datasets", "Datasets registered at this node", registry=r)

    def serve(self, listen: str) -> MetricsServer:
        """Start the HTTP exposition endpoint; returns the server (call .stop())."""
        host, port = split_address(listen, "metrics.listen")
        server = MetricsServer(host.strip("[]"), port)
        server.set_app(make_wsgi_app(self.registry))
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server
