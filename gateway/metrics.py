"""Prometheus metrics of one node, in a registry of its own (no process-global state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from gateway.config import split_address

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


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

    def serve(self, listen: str) -> WSGIServer:
        """Start the HTTP exposition endpoint; returns the server (call .shutdown())."""
        host, port = split_address(listen, "metrics.listen")
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
