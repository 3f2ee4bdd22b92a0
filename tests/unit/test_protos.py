"""The generated gRPC code in gateway/rpc/v1 must be exactly what protos/ produces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "gateway" / "rpc" / "v1"


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    fresh = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_bytes() for p in GENERATED.iterdir() if p.is_file()}
    assert set(fresh) == set(committed), "run scripts/gen_protos.py: file set differs"
    stale = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not stale, f"run scripts/gen_protos.py: stale {stale}"


def test_every_rpc_has_a_role_policy() -> None:
    from gateway.edge import POLICY
    from gateway.rpc.v1 import gateway_pb2, peer_pb2

    for module, service in ((gateway_pb2, "Gateway"), (peer_pb2, "Peer")):
        for method in module.DESCRIPTOR.services_by_name[service].methods:
            assert f"/fedgate.v1.{service}/{method.name}" in POLICY
