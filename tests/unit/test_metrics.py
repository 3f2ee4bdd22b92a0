"""The metrics endpoint: bounded threads, idle connections closed, the port released."""

from __future__ import annotations

import select
import socket
import threading
import time
import urllib.request

import pytest

from gateway import metrics
from gateway.metrics import SCRAPES, NodeMetrics


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def _closed(socks: list[socket.socket], count: int, within: float) -> int:
    """How many of ``socks`` the server has closed (EOF readable), polled until ``count``
    are or ``within`` s have passed (a loaded machine serves its thread late)."""
    deadline = time.monotonic() + within
    while True:
        readable, _, _ = select.select(socks, [], [], 0)
        if len(readable) >= count or time.monotonic() > deadline:
            return len(readable)
        time.sleep(0.02)


def _threads_back_to(count: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while threading.active_count() > count and time.monotonic() < deadline:
        time.sleep(0.02)
    return threading.active_count() <= count


def test_idle_and_slow_connections_hold_a_few_threads_briefly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "SCRAPE_SECONDS", 2.0)
    monkeypatch.setattr(metrics._Handler, "timeout", 2.0)
    node_metrics = NodeMetrics()
    node_metrics.datasets.set(3)
    server = node_metrics.serve("127.0.0.1:0")
    port = server.server_address[1]
    idle: list[socket.socket] = []
    try:
        before = threading.active_count()
        assert "fedgate_datasets 3.0" in _scrape(port)
        assert _threads_back_to(before, 5)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(SCRAPES + 8)]
        assert _closed(idle, 8, within=1.5) == 8  # past the slots: closed at once
        assert threading.active_count() - before <= SCRAPES
        # the slot holders: idle ones, and one that sends a byte of its request line every
        # 0.2 s (each read is quick): all are cut off once their time is up
        trickled = 0
        while trickled < 40 and not _closed(idle[:1], 1, within=0):  # 8 s at most
            idle[0].sendall(b"G")
            trickled += 1
            time.sleep(0.2)
        assert trickled < 40, "a client sending a byte every 0.2 s was never cut off"
        assert _closed(idle, SCRAPES + 8, within=5) == SCRAPES + 8
        assert _threads_back_to(before, 5)
        assert "fedgate_datasets 3.0" in _scrape(port)
    finally:
        for s in idle:
            s.close()
        server.stop()
    with pytest.raises(OSError):  # the port is released, not just no longer served
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    again = NodeMetrics().serve(f"127.0.0.1:{port}")
    again.stop()


def test_an_ipv6_address_is_served() -> None:
    server = NodeMetrics().serve("[::1]:0")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=5) as r:
            assert b"fedgate_datasets" in r.read()
    finally:
        server.stop()


def test_starting_the_endpoint_looks_nothing_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPServer names itself with socket.getfqdn, a reverse DNS lookup: not ours."""

    def no_lookup(*_args: object) -> str:
        raise AssertionError("a name lookup at start")

    monkeypatch.setattr(socket, "getfqdn", no_lookup)
    monkeypatch.setattr(socket, "gethostbyaddr", no_lookup)
    server = NodeMetrics().serve("127.0.0.1:0")
    try:
        assert "fedgate_datasets" in _scrape(server.server_address[1])
    finally:
        server.stop()
