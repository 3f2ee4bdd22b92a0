"""Two regional CAs in ``tls.ca``, their two CRLs in one ``tls.crl``, against a real node
process: each CA's revoked certificate is refused, the rest of each CA's certificates (one
with the other CA's revoked serial among them) are accepted, and an older CRL of one CA
copied in with the other's current one is refused, logged and audited, also at the next
start (review, 2026-12-05: only the file's first CRL was read)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path

import grpc
import pytest

from gateway import identity
from gateway.client import Profile
from gateway.demo.launcher import start_node, stop_nodes, wait_serving
from gateway.demo.provision import REGION_DIR, Federation, provision
from gateway.rpc.v1 import gateway_pb2, gateway_pb2_grpc
from gateway.tls import secure_channel
from tests.conftest import run_fedgate
from tests.integration.test_security import wait_for_log

pytestmark = pytest.mark.integration

NODE = "anhui"
B_NAME = "Jiangsu Regional CA"


def _issue(ca: Path, where: Path, user: str, serial: int | None = None) -> tuple[Path, Path]:
    """A key and a certificate of ``user`` signed by ``ca`` (with ``serial`` if given: two
    CAs may draw one serial)."""
    key_pem, csr_pem = identity.make_csr("analyst", user, "Org")
    key = where / f"{user}.key"
    identity.write_private(key, key_pem)
    mp = pytest.MonkeyPatch()
    if serial is not None:
        mp.setattr(identity.x509, "random_serial_number", lambda: serial)
    try:
        pem = identity.sign_csr(ca, csr_pem)
    finally:
        mp.undo()
    cert = where / f"{user}.pem"
    cert.write_bytes(pem)
    return cert, key


def _whoami(fed: Federation, cert: Path, key: Path) -> str:
    """The caller id the node answers, or the refusal's code and details."""
    n = fed.node(NODE)
    with secure_channel(n.listen, NODE, ca=fed.ca_cert, cert=cert, key=key) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        try:
            return stub.WhoAmI(gateway_pb2.WhoAmIRequest(), timeout=10).caller_id
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"


def _put(path: Path, data: bytes) -> None:
    """Replace the file whole, as a careful operator (and the CA) does."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _serial(cert: Path) -> int:
    return identity.load_cert(cert).serial_number


def _audit(fed: Federation, kind: str) -> list[dict]:
    uri = (fed.node_dir(NODE) / "state.sqlite3").as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute("SELECT body FROM audit WHERE kind = ? ORDER BY seq", (kind,))
        return [json.loads(r[0]) for r in rows.fetchall()]


def test_each_regional_cas_crl_revokes_its_own_certificates(tmp_path: Path) -> None:
    fed = provision(tmp_path / "fed", REGION_DIR, free_ports=True)
    a = fed.ca_dir
    b = tmp_path / "ca-b"
    identity.init_ca(b, name=B_NAME)
    b_old = (b / identity.CA_CRL).read_bytes()  # B's CRL number 1, revoking no one
    users = tmp_path / "users"
    users.mkdir()
    a_revoked, a_kept = _issue(a, users, "x@a"), _issue(a, users, "y@a")
    b_revoked, b_kept = _issue(b, users, "x@b"), _issue(b, users, "y@b")
    b_twin = _issue(b, users, "twin@b", serial=_serial(a_revoked[0]))
    for _ in range(3):
        identity.write_crl(a)  # A's CRL numbers run ahead of B's: no matter
    identity.revoke(a, _serial(a_revoked[0]))
    identity.revoke(b, _serial(b_revoked[0]))  # B's CRL number 2
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes((a / identity.CA_CERT).read_bytes() + (b / identity.CA_CERT).read_bytes())
    crl = tmp_path / "crl.pem"
    crl.write_bytes((a / identity.CA_CRL).read_bytes() + (b / identity.CA_CRL).read_bytes())
    text = fed.config_path(NODE).read_text()
    for old, new in ((str(fed.ca_cert), str(bundle)), (str(a / identity.CA_CRL), str(crl))):
        assert old in text
        text = text.replace(old, new)
    config = tmp_path / f"{NODE}.toml"
    config.write_text(text)

    proc = start_node(NODE, config, tmp_path / "stdout.log")
    try:
        profile = Profile.load(fed.operator_profile(NODE))
        wait_serving([proc], {NODE: fed.node(NODE).listen}, profile, timeout=30)
        a_serial = format(_serial(a_revoked[0]), "x")
        assert _whoami(fed, *a_revoked) == (
            f"UNAUTHENTICATED: certificate {a_serial} of analyst:x@a has been revoked"
        )
        assert _whoami(fed, *b_revoked).endswith("of analyst:x@b has been revoked")
        assert _whoami(fed, *a_kept) == "y@a"
        assert _whoami(fed, *b_kept) == "y@b"
        assert _whoami(fed, *b_twin) == "twin@b"  # A's revoked serial, B's certificate
        loaded = _audit(fed, "crl.loaded")
        assert sorted((e["issuer"], e["number"]) for e in loaded) == [
            (B_NAME, 2),
            ("Yangtze Delta Federation CA", 5),
        ]

        # The attack: B's older CRL copied in with A's current one, to lift x@b's revocation.
        _put(crl, (a / identity.CA_CRL).read_bytes() + b_old)
        assert _whoami(fed, *b_revoked).endswith("of analyst:x@b has been revoked")
        log = wait_for_log(lambda: (fed.node_dir(NODE) / "node.log").read_text(), "(a replayed")
        assert (
            f"CRL not reloaded, last good list kept: tls.crl: {crl}: the CRL "
            f"of CA '{B_NAME}': CRL number 1 is older than CRL number 2 this node has seen "
            "(a replayed CRL)"
        ) in log
        assert log.count("CRL not reloaded") == 1
        refused = _audit(fed, "crl.refused")
        assert len(refused) == 1 and "CRL number 1 is older" in refused[0]["reason"]
        assert (refused[0]["kept"]["issuer"], refused[0]["kept"]["number"]) == (B_NAME, 2)
        assert _whoami(fed, *a_kept) == "y@a" and _whoami(fed, *b_kept) == "y@b"
    finally:
        assert stop_nodes([proc]) == {NODE: 0}

    # ... and at the next start, B's floor is B's own.
    result = run_fedgate("node", "start", "--config", str(config), timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert (
        f"the CRL of CA '{B_NAME}': CRL number 1 is older than CRL number 2 this node "
        "already used (a replayed CRL)"
    ) in result.stderr
    # A CRL file without B's CRL at all does not start either (B's revocations would be off).
    _put(crl, (a / identity.CA_CRL).read_bytes())
    result = run_fedgate("node", "start", "--config", str(config), timeout=30)
    assert result.returncode == 2 and f"holds no CRL of CA '{B_NAME}'" in result.stderr
