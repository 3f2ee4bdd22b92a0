"""Start node processes, wait until they report SERVING, and always stop them.

Used by the demo, the integration tests and the benchmarks, so that all three run real
node processes in exactly the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway import serde
from gateway.client import Profile
from gateway.tls import secure_channel

if TYPE_CHECKING:  # only for annotations: `fedgate` imports LaunchError on every command
    from gateway.demo.provision import Federation


class LaunchError(RuntimeError):
    """A node did not come up; the message carries the end of its log."""


@dataclass
class NodeProcess:
    node_id: str
    config: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def start_node(node_id: str, config: Path, log_path: Path) -> NodeProcess:
    """Run ``fedgate node start`` in its own process group, output to ``log_path``.

    ``log_path`` gets what the process prints: its start-up line, a start-up failure
    (``fedgate: error: ...``, read back by ``wait_serving``) and the gRPC library's own
    lines (TLS handshake failures). The node's log lines go to its ``node.log`` only: it
    echoes them to stderr only when that is a terminal, so no event is written twice.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "node", "start", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # our Ctrl-C handling stops it, in order
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return NodeProcess(node_id, config, log_path, proc)


def health_status(address: str, node_id: str, profile: Profile, timeout: float = 1.0) -> int:
    channel = secure_channel(address, node_id, ca=profile.ca, cert=profile.cert, key=profile.key)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(serde.health_check_request(), timeout=timeout).status
    finally:
        channel.close()


def wait_training_ready(logs: list[Path], *, timeout: float = 60.0) -> float:
    """Wait until each node log says ``training ready`` (a node given a train grant loads
    Flower in the background, ~0.4 s of CPU: benchmarks let it finish before they time
    anything); returns the seconds waited."""
    start = time.monotonic()
    while not all(p.is_file() and "training ready" in p.read_text() for p in logs):
        if time.monotonic() - start > timeout:
            raise LaunchError(f"training not ready within {timeout:g}s: {logs}")
        time.sleep(0.05)
    return time.monotonic() - start


def wait_serving(
    procs: list[NodeProcess],
    addresses: dict[str, str],
    profile: Profile,
    *,
    timeout: float = 30.0,
) -> dict[str, float]:
    """Poll health until every node says SERVING; returns seconds from spawn per node."""
    pending = {p.node_id: p for p in procs}
    ready: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            names = ", ".join(sorted(pending))
            raise LaunchError(f"not SERVING within {timeout:g}s: {names}")
        for node_id, proc in list(pending.items()):
            if not proc.alive():
                raise LaunchError(
                    f"node {node_id} exited with code {proc.process.returncode}:\n"
                    + proc.log_tail()
                )
            with contextlib.suppress(grpc.RpcError):
                if (
                    health_status(addresses[node_id], node_id, profile, timeout=0.5)
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    ready[node_id] = time.monotonic() - proc.started
                    del pending[node_id]
        if pending:
            time.sleep(0.02)
    return ready


def stop_nodes(procs: list[NodeProcess], grace: float = 10.0) -> dict[str, int]:
    """SIGTERM every node, wait for the grace period, then SIGKILL what is left."""
    for p in procs:
        if p.alive():
            with contextlib.suppress(ProcessLookupError):
                p.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    codes: dict[str, int] = {}
    for p in procs:
        try:
            codes[p.node_id] = p.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            codes[p.node_id] = p.process.wait(timeout=5)
    return codes


@contextlib.contextmanager
def deferred_stops() -> Iterator[None]:
    """SIGINT and SIGTERM wait for the end of the block, then are delivered again: a stop
    must not cut a node's start short (a child started but not yet listed would be left
    running in its own session) nor the shutdown (a node still in its grace period)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    came: list[int] = []
    previous: dict[int, Any] = {}
    try:
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                previous[s] = signal.signal(s, lambda signum, _frame: came.append(signum))
        except KeyboardInterrupt:  # one came while the handlers were being set
            came.append(signal.SIGINT)
        yield
    finally:
        for number, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(number, handler)
        if came:
            signal.raise_signal(came[0])


@contextlib.contextmanager
def running(fed: Federation, *, timeout: float = 60.0) -> Iterator[list[NodeProcess]]:
    """Every node of ``fed`` as its own process; all stopped on exit, whatever happens."""
    procs: list[NodeProcess] = []
    try:
        for n in fed.nodes:
            with deferred_stops():
                procs.append(
                    start_node(n.id, fed.config_path(n.id), fed.node_dir(n.id) / "stdout.log")
                )
        profile = Profile.load(fed.operator_profile(fed.nodes[0].id))
        wait_serving(procs, {n.id: n.listen for n in fed.nodes}, profile, timeout=timeout)
        yield procs
    finally:
        with deferred_stops():
            stop_nodes(procs)


class StopSignal:
    """SIGTERM and Ctrl-C as a KeyboardInterrupt, raised once and remembered.

    Python raises the interrupt wherever the main thread is, and a library's C code may
    swallow it there (numpy does while it imports a module or formats a string), so a long
    run also calls ``check`` between its steps; ``running`` then stops every node it started.
    Later signals are not raised again: they would cut that cleanup short.
    """

    def __init__(self) -> None:
        self.asked = False

    def install(self) -> StopSignal:
        signal.signal(signal.SIGTERM, self._handle)
        # Also when started with SIGINT ignored (a background job of a shell without job
        # control inherits it so, as in CI scripts).
        signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.asked:  # raised once: a second signal must not cut the cleanup short
            return
        self.asked = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.asked:
            raise KeyboardInterrupt
