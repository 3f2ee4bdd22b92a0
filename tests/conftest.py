"""Shared fixtures: a real Yangtze Delta federation of node processes on loopback.

The session federation is provisioned, filled with small sample data and registered by
each node's operator exactly as `fedgate demo` does it; every node is stopped at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Flower reads these when first imported: no telemetry, no update check in any test or
# node process a test starts (they inherit the environment).
os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
os.environ["FLWR_DISABLE_UPDATE_CHECK"] = "1"

import grpc  # noqa: E402
import hypothesis
import pytest

from gateway import descriptor, identity
from gateway.client import Client, Profile
from gateway.demo import sample_data
from gateway.demo.launcher import NodeProcess, start_node, stop_nodes, wait_serving
from gateway.demo.provision import REGION_DIR, Federation, provision
from gateway.demo.run import register_sample_data
from gateway.demo.showcase import write_sample_grants
from gateway.policy.model import Grant
from gateway.tls import secure_channel
from tests import procs

# Property tests: the same examples every run, and no per-example time limit (a shared
# 2-core machine stalls an example now and then; a test's own settings still win). A
# scheduled run explores new examples with `--hypothesis-profile fedgate-random`.
hypothesis.settings.register_profile("fedgate", deadline=None, derandomize=True)
hypothesis.settings.register_profile("fedgate-random", deadline=None, derandomize=False)
hypothesis.settings.load_profile("fedgate")

ROOT = Path(__file__).resolve().parents[1]
TEST_SCALE = 0.05


@dataclass
class RunningFederation:
    fed: Federation
    procs: dict[str, NodeProcess]
    written: dict[str, list[Path]]

    def client(self, profile: str, *, node: str | None = None) -> Client:
        """A client for a profile name such as 'ops@anhui' or 'li.wei@shanghai'."""
        p = Profile.load(self.fed.profile_path(profile))
        if node is not None:
            n = self.fed.node(node)
            p = Profile(n.id, n.listen, p.ca, p.cert, p.key)
        return Client(p, timeout=20)

    def peer_channel(self, as_node: str, to_node: str) -> grpc.Channel:
        """An mTLS channel to ``to_node`` with ``as_node``'s node certificate (as a peer
        calls it), for a ``with`` block."""
        tls = self.fed.node_dir(as_node) / "tls"
        return secure_channel(
            self.fed.node(to_node).listen,
            to_node,
            ca=self.fed.ca_cert,
            cert=tls / "node.pem",
            key=tls / "node.key",
        )

    def node_log(self, node_id: str) -> str:
        return (self.fed.node_dir(node_id) / "node.log").read_text()

    def audit(self, node_id: str, kind: str = "") -> list[dict]:
        """A node's durable audit entries (read-only, from its state database)."""
        uri = (self.fed.node_dir(node_id) / "state.sqlite3").as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute(
                "SELECT body FROM audit WHERE (? = '' OR kind = ?) ORDER BY seq", (kind, kind)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def releases(self) -> int:
        """Release entries across every node's audit log: what left any owner."""
        return sum(len(self.audit(n.id, "release")) for n in self.fed.nodes)

    def stdout_log(self, node_id: str) -> str:
        return (self.fed.node_dir(node_id) / "stdout.log").read_text()

    @contextlib.contextmanager
    def stopped(self, node_id: str) -> Iterator[None]:
        """The node stopped gracefully (SIGTERM, exit 0) for the block, then started again."""
        proc = self.procs[node_id]
        proc.process.terminate()
        assert proc.process.wait(timeout=15) == 0
        try:
            yield
        finally:
            self.start(node_id)

    def start(self, node_id: str) -> NodeProcess:
        proc = start_node(
            node_id, self.fed.config_path(node_id), self.fed.node_dir(node_id) / "stdout.log"
        )
        self.procs[node_id] = proc
        profile = Profile.load(self.fed.operator_profile(node_id))
        wait_serving([proc], {node_id: self.fed.node(node_id).listen}, profile, timeout=30)
        return proc

    def copy_dataset(
        self, node: str, source: str, new_name: str, **changes: object
    ) -> tuple[Path, Path]:
        """A copy of a sample dataset (descriptor, data) in the node's dataset root."""
        src = next(p for p in self.written[node] if p.stem == source)
        desc = descriptor.load(src)
        root = self.fed.data_dir(node)
        data = root / f"{new_name}.{desc.format}"
        shutil.copy(desc.path, data)
        new = dataclasses.replace(desc, name=new_name, path=data.name, **changes)
        path = root / f"{new_name}.toml"
        path.write_text(descriptor.dumps(new))
        return path, data

    def register_copy(self, node: str, source: str, new_name: str, **changes: object) -> Path:
        """Register a copy of a sample dataset under a new name (and changed fields)."""
        path, data = self.copy_dataset(node, source, new_name, **changes)
        with self.client(f"ops@{node}") as ops:
            ops.register(path)
        return data

    def grant(self, node: str, **fields: object):  # type: ignore[no-untyped-def]
        """Write a grant at ``node`` as its operator; columns given as {name: "a,b"}."""
        columns = fields.pop("columns")
        if fields.get("grantee_kind") == "user" and "grantee_org" not in fields:
            home = dict(self.fed.analysts)[fields["grantee"]]  # the user's home node
            fields["grantee_org"] = self.fed.node(home).org
        fields["operations"] = tuple(fields.get("operations") or ("query",))  # type: ignore[arg-type]
        grant = Grant(
            id="",
            columns={c: tuple(v.split(",")) for c, v in columns.items()},  # type: ignore[union-attr]
            **fields,  # type: ignore[arg-type]
        )
        with self.client(f"ops@{node}") as ops:
            return ops.add_grant(grant)

    def issue(
        self, where: Path, role: str, subject: str, org: str, **sign_kwargs: object
    ) -> tuple[Path, Path]:
        """A new key and CSR in ``where``, signed by the federation CA."""
        key_pem, csr_pem = identity.make_csr(role, subject, org, ["127.0.0.1"])
        key = where / f"{subject}.key"
        identity.write_private(key, key_pem)
        cert = where / f"{subject}.pem"
        cert.write_bytes(identity.sign_csr(self.fed.ca_dir, csr_pem, **sign_kwargs))
        return cert, key


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFederation]:
    workdir = tmp_path_factory.mktemp("federation")
    fed = provision(workdir, REGION_DIR, free_ports=True)
    written = sample_data.generate(workdir / "data", scale=TEST_SCALE)
    running = RunningFederation(fed, {}, written)
    try:  # a node that fails to start stops the ones started before it
        for n in fed.nodes:
            running.procs[n.id] = start_node(
                n.id, fed.config_path(n.id), fed.node_dir(n.id) / "stdout.log"
            )
        profile = Profile.load(fed.operator_profile(fed.nodes[0].id))
        started = list(running.procs.values())
        wait_serving(started, {n.id: n.listen for n in fed.nodes}, profile, timeout=60)
        register_sample_data(fed, written, lambda _msg: None)
        write_sample_grants(fed)
        yield running
    finally:
        stop_nodes(list(running.procs.values()))


def run_fedgate(
    *args: str, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run the real ``fedgate`` command line in a subprocess; past ``timeout`` it gets
    SIGTERM first (``fedgate demo`` then stops the nodes it started) and the test fails."""
    return procs.run([sys.executable, "-m", "gateway", *args], timeout=timeout, cwd=cwd)
