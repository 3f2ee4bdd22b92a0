"""The audit trail of real nodes: export, offline verification, tampering, witnessing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import identity
from gateway.audit import body_digest, link
from gateway.receipts import Receipt
from gateway.verifier import VerifyError, verify
from gateway.witness import countersign_message
from tests.conftest import RunningFederation, run_fedgate

pytestmark = pytest.mark.integration

QUERY = "SELECT city, COUNT(*) AS n, AVG(employees) AS e FROM enterprise_registry GROUP BY city"


@pytest.fixture(scope="module")
def exported(federation: RunningFederation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hefei's log after real traffic, witnessed by its peers, exported with the CLI."""
    with federation.client("li.wei@shanghai") as c:
        for _ in range(5):
            c.query(QUERY)
    ops = str(federation.fed.operator_profile("hefei"))
    witnessed = run_fedgate("audit", "witness", "--profile", ops)
    assert witnessed.returncode == 0, witnessed.stderr
    out = tmp_path_factory.mktemp("audit") / "hefei.log"
    result = run_fedgate("audit", "export", "--profile", ops, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def _verify(federation: RunningFederation, lines: list[str], extra: list[str] = ()):  # type: ignore[no-untyped-def]
    return verify(lines, identity.load_bundle(federation.fed.ca_cert), extra)


def _entries(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.startswith("E\t")]


def test_export_verifies_with_the_ca_alone(federation: RunningFederation, exported: Path) -> None:
    result = run_fedgate("audit", "verify", str(exported), "--ca", str(federation.fed.ca_cert))
    assert result.returncode == 0, result.stderr
    assert "chain intact" in result.stdout and "release" in result.stdout
    lines = exported.read_text().splitlines(keepends=True)
    report = _verify(federation, lines)
    assert report.node == "hefei" and report.kinds["release"] >= 5
    # it ends with its own audit.exported entry and the head signed at exactly it
    last = lines[_entries(lines)[-1]].split("\t")
    assert '"kind":"audit.exported"' in last[3] and last[1] == str(report.entries)
    heads = [x.split("\t")[1] for x in lines if x.startswith("H\t")]
    assert heads[-1] == str(report.entries)
    assert report.witnessed >= 6  # every peer countersigned
    assert {"node.started", "crl.loaded", "dataset.registered", "grant.written"} <= set(
        report.kinds
    )


@pytest.mark.parametrize(
    "tamper, named",
    [
        ("modify", "entry {n} was modified"),
        ("delete", "entry {n} is missing"),
        ("reorder", "entry {m} appears after entry {n}"),
        ("insert", "was inserted"),
        ("truncate", "log truncated"),
        # its last entries and final head cut back to an earlier checkpoint (review,
        # 2026-12-05: that verified)
        ("cut", "export incomplete: it does not end with its own audit.exported entry"),
    ],
)
def test_tampering_is_caught_and_named(
    federation: RunningFederation, exported: Path, tmp_path: Path, tamper: str, named: str
) -> None:
    lines = exported.read_text().splitlines(keepends=True)
    idx = _entries(lines)
    i = idx[len(idx) // 2]
    n = int(lines[i].split("\t")[1])
    if tamper == "modify":
        lines[i] = lines[i].replace('"kind":"', '"kind":"x', 1)
    elif tamper == "delete":
        del lines[i]
    elif tamper == "reorder":
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
        n, m = n + 1, n
        named = named.format(m=m, n=n)
    elif tamper == "insert":
        lines.insert(i, lines[i])
    elif tamper == "truncate":
        last = idx[-3]
        lines = lines[:last] + [x for x in lines[last:] if not x.startswith("E\t")]
    elif tamper == "cut":
        sizes = sorted(int(x.split("\t")[1]) for x in lines if x.startswith("H\t"))
        keep = sizes[-2]  # the checkpoint before the export's own head
        lines = [x for x in lines if x[:2] not in ("E\t", "H\t") or int(x.split("\t")[1]) <= keep]
    path = tmp_path / "tampered.log"
    path.write_text("".join(lines))
    result = run_fedgate("audit", "verify", str(path), "--ca", str(federation.fed.ca_cert))
    assert result.returncode == 1, result.stdout
    assert named.format(n=n) in result.stderr, result.stderr


@pytest.mark.parametrize(
    "line, named",
    [
        ("W\tnot json", "is not a witnessed head (not JSON)"),
        ('W\t["a", "list"]', "is not a witnessed head (missing fields or of a wrong type)"),
        ("wrong-typed cert", "is not a witnessed head (missing fields or of a wrong type)"),
        ('F\t"a string"', "unknown format 'a string'"),
        ("header without its node", "header line lacks the node or its certificate"),
        ("E\t\u00b2\tx\t{}", "line 2 is not an entry"),  # "²".isdigit() is True
        ("header of the CA's certificate", "exporting node: certificate carries no fedgate"),
        ("not UTF-8", "not an audit export or witness file (not UTF-8 text)"),
    ],
)
def test_malformed_witness_and_header_lines_are_named_not_a_traceback(
    federation: RunningFederation, exported: Path, tmp_path: Path, line: str, named: str
) -> None:
    lines = exported.read_text().split("\n")
    witness = next(x for x in lines if x.startswith("W\t"))
    if line == "wrong-typed cert":
        body = json.loads(witness[2:])
        line = "W\t" + json.dumps({**body, "cert": 5})
    if line == "header without its node":
        header = json.loads(lines[0][2:])
        del header["node"]
        line = "F\t" + json.dumps(header)
    if line == "header of the CA's certificate":
        header = json.loads(lines[0][2:])
        line = "F\t" + json.dumps({**header, "cert": federation.fed.ca_cert.read_text()})
    path = tmp_path / "malformed.log"
    if line == "not UTF-8":
        path.write_bytes("\n".join(lines).encode() + b"\nE\t9\t\xff\n")
    else:
        if line.startswith("F\t"):
            lines[0] = line
        else:
            lines.insert(1, line)
        path.write_text("\n".join(lines))
    result = run_fedgate("audit", "verify", str(path), "--ca", str(federation.fed.ca_cert))
    assert (result.returncode, "Traceback" in result.stderr) == (1, False), result.stderr
    assert named in result.stderr


def test_rewritten_history_is_caught_by_witnessed_heads(
    federation: RunningFederation, exported: Path, tmp_path: Path
) -> None:
    """The node rewrites an old entry, recomputes the whole chain and re-signs every head
    with its own key: self-consistent, but not what its peers countersigned."""
    key = identity.load_key(federation.fed.node_dir("hefei") / "tls" / "node.key")
    from gateway.audit import sign_head

    lines = exported.read_text().splitlines(keepends=True)
    out, prev, chain = [], "0" * 64, {0: "0" * 64}
    target = int(lines[_entries(lines)[3]].split("\t")[1])
    witnessed = []
    for line in lines:
        if line.startswith("E\t"):
            _, seq, _h, body = line.rstrip("\n").split("\t", 3)
            if int(seq) == target:
                body = body.replace('"kind":"', '"kind":"forged-', 1)
            prev = link(int(seq), prev, body_digest(body))
            chain[int(seq)] = prev
            out.append(f"E\t{seq}\t{prev}\t{body}\n")
        elif line.startswith("H\t"):
            _, size, _h, time, _sig, cert = line.rstrip("\n").split("\t")
            sig = sign_head(key, "hefei", int(size), chain[int(size)], time)
            out.append(f"H\t{size}\t{chain[int(size)]}\t{time}\t{sig}\t{cert}\n")
        elif line.startswith("W\t"):
            witnessed.append(line)  # the node drops the countersignatures it got
        else:
            out.append(line)
    forged = tmp_path / "forged.log"
    forged.write_text("".join(out))
    ca = str(federation.fed.ca_cert)
    alone = run_fedgate("audit", "verify", str(forged), "--ca", ca)
    assert alone.returncode == 0  # without witnesses a self-consistent rewrite looks fine
    heads = tmp_path / "jiangsu-witnessed.txt"
    got = run_fedgate(
        "audit",
        "witnesses",
        "--profile",
        str(federation.fed.operator_profile("jiangsu")),
        "--node",
        "hefei",
        "--out",
        str(heads),
    )
    assert got.returncode == 0, got.stderr
    caught = run_fedgate("audit", "verify", str(forged), "--ca", ca, "--witness", str(heads))
    assert caught.returncode == 1
    assert "history rewritten" in caught.stderr and "jiangsu" in caught.stderr
    with pytest.raises(VerifyError, match="history rewritten"):
        _verify(federation, out, witnessed)
    # the wrong file given as --witness is not "witnesses checked" (it printed OK)
    junk = heads.with_name("junk.txt")
    for text in ("hello world\n", "X\tfoo\n", forged.read_text()):
        junk.write_text(text)
        wrong = run_fedgate("audit", "verify", str(forged), "--ca", ca, "--witness", str(junk))
        assert wrong.returncode == 1 and "line 1 is not a witnessed head" in wrong.stderr
    with pytest.raises(VerifyError, match="witness file line 1 is not a witnessed head"):
        _verify(federation, out, ["hello world"])
    # review (2026-12-04): a file that says nothing of hefei, empty or another node's
    # heads, is no witness of it either; a typo'd node writes no file at all
    other = heads.with_name("anhui-witnessed.txt")
    anhui = str(federation.fed.operator_profile("anhui"))
    assert run_fedgate("audit", "witness", "--profile", anhui).returncode == 0
    got = run_fedgate(
        "audit", "witnesses", "--profile", str(federation.fed.operator_profile("jiangsu")),
        "--node", "anhui", "--out", str(other),
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    junk.write_text("")
    for text in (junk, other):
        wrong = run_fedgate("audit", "verify", str(forged), "--ca", ca, "--witness", str(text))
        assert wrong.returncode == 1 and "holds no head of hefei" in wrong.stderr
    typo = heads.with_name("typo.txt")
    got = run_fedgate(
        "audit", "witnesses", "--profile", str(federation.fed.operator_profile("jiangsu")),
        "--node", "hefie", "--out", str(typo),
    )  # fmt: skip
    assert got.returncode == 1 and "no heads of 'hefie'" in got.stderr and not typo.exists()
    # ... and a head countersigned by hefei itself is no witness: a node's own key
    size = max(int(x.split("\t")[1]) for x in out if x.startswith("H\t"))
    mine = {
        "witness": "hefei", "node": "hefei", "size": size, "head": chain[size],
        "time": "2030-01-01T00:00:00Z",
        "cert": (federation.fed.node_dir("hefei") / "tls" / "node.pem").read_text(),
    }  # fmt: skip
    message = countersign_message("hefei", "hefei", size, chain[size], mine["time"])
    der = key.sign(message, ec.ECDSA(hashes.SHA256()))
    mine["countersignature"] = base64.b64encode(der).decode()
    with pytest.raises(VerifyError, match="countersigned by hefei itself"):
        _verify(federation, out, ["W\t" + json.dumps(mine)])


def test_witness_refuses_a_log_that_did_not_only_grow(federation: RunningFederation) -> None:
    """A peer that countersigned size N refuses a head whose chain does not extend it."""
    from gateway.rpc.v1 import common_pb2, peer_pb2, peer_pb2_grpc

    tls = federation.fed.node_dir("hefei") / "tls"
    key = identity.load_key(tls / "node.key")
    from gateway.audit import sign_head

    with federation.client("ops@jiangsu") as ops:
        seen = max(w.size for w in ops.witnessed_heads("hefei"))
    fake = "f" * 64
    head = common_pb2.SignedHead(
        node="hefei",
        size=seen + 1,
        head=fake,
        time="2030-01-01T00:00:00Z",
        signature=sign_head(key, "hefei", seen + 1, fake, "2030-01-01T00:00:00Z"),
    )
    with federation.peer_channel("hefei", "jiangsu") as ch:
        import grpc

        with pytest.raises(grpc.RpcError) as info:
            peer_pb2_grpc.PeerStub(ch).Witness(
                peer_pb2.WitnessRequest(head=head, from_size=seen, digests=["0" * 64]), timeout=5
            )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "did not only grow" in info.value.details()
    assert "witness refused node=hefei" in federation.node_log("jiangsu")


def test_receipt_points_at_its_audit_entry(federation: RunningFederation) -> None:
    with federation.client("li.wei@shanghai") as c:
        result = c.query(QUERY)
    receipt = Receipt.from_json(result.receipts["wuhu"])
    with federation.client("ops@wuhu") as ops:
        entries = [json.loads(e) for e in ops.audit_show(result.request_id)]
    (release,) = [e for e in entries if e["kind"] == "release"]
    assert release["seq"] == receipt.body["audit_seq"]
    assert release["hash"] == receipt.body["audit_hash"]
    assert release["result_digest"] == receipt.body["result_digest"]
    with federation.client("ops@shanghai") as ops:
        home = [json.loads(e) for e in ops.audit_show(result.request_id)]
    assert any(e["kind"] == "query.answered" for e in home)
    shown = run_fedgate(
        "audit",
        "show",
        "--profile",
        str(federation.fed.operator_profile("wuhu")),
        "--request",
        result.request_id,
    )
    assert shown.returncode == 0 and '"kind": "release"' in shown.stdout


def test_refusals_are_audited(federation: RunningFederation) -> None:
    from gateway.client import ClientError

    with federation.client("li.wei@shanghai") as c, pytest.raises(ClientError):
        c.query("SELECT revenue FROM enterprise_registry")
    with federation.client("ops@anhui") as ops:
        text = ops.audit_export().decode()
    assert '"kind":"query.refused"' in text and "may not be used as raw" in text


def test_an_export_is_written_whole_or_not_at_all(
    federation: RunningFederation, tmp_path: Path
) -> None:
    """Review (2026-12-05): the export is written chunk by chunk as it streams, into
    FILE.part renamed at the end: a refused or failed export leaves FILE as it was."""
    out = tmp_path / "anhui.log"
    ops = str(federation.fed.operator_profile("anhui"))
    done = run_fedgate("audit", "export", "--profile", ops, "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = out.read_text(encoding="utf-8").split("\n")
    entries = sum(1 for x in lines if x.startswith("E\t"))
    assert done.stdout == f"{entries} audit entries of anhui exported to {out}\n"
    assert _verify(federation, lines).entries == entries
    analyst = str(federation.fed.profile_path("li.wei@shanghai"))
    refused = run_fedgate("audit", "export", "--profile", analyst, "--out", str(out))
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr, refused.stderr
    assert out.read_text(encoding="utf-8").split("\n") == lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anhui.log"]


def test_only_the_nodes_own_operators_export_its_log(federation: RunningFederation) -> None:
    import grpc

    from gateway.client import ClientError

    with federation.client("ops@hefei", node="wuhu") as c, pytest.raises(ClientError) as info:
        c.audit_export()
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "not an operator of this node" in str(info.value)
