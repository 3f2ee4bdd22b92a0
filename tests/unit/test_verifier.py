"""``audit verify`` on logs signed with a real node key: a signed entry the node would
never have written is a named failure, not a traceback (review, 2026-12-05)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.canonical import canonical
from gateway import identity
from gateway.audit import FORMAT, GENESIS, AuditLog, body_digest, link, sign_head
from gateway.state import State
from gateway.verifier import VerifyError, verify
from tests.conftest import run_fedgate

NODE = "anhui"
ORG = "Shanghai Big Data Center"
TIME = "2026-12-04T10:00:00Z"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A federation CA and the node's key and certificate, made as the node makes them."""
    root = tmp_path_factory.mktemp("pki")
    identity.init_ca(root / "ca")
    key_pem, csr = identity.make_csr("node", NODE, "Anhui Data Bureau", ["127.0.0.1"])
    identity.write_private(root / "node.key", key_pem)
    (root / "node.pem").write_bytes(identity.sign_csr(root / "ca", csr))
    return root


def _signed(pki: Path, bodies: list[str]) -> list[str]:
    """An export of ``bodies`` (texts, as a node's log may hold them), chained and signed
    with the node's key, ending as an export does: its ``audit.exported`` entry and the
    head signed for it."""
    key = identity.load_key(pki / "node.key")
    bodies = [*bodies, canonical({"kind": "audit.exported", "time": TIME, "actor": "o"})]
    header = {"format": FORMAT, "node": NODE, "cert": (pki / "node.pem").read_text()}
    lines = ["F\t" + canonical({**header, "exported_at": TIME})]
    prev = GENESIS
    for seq, body in enumerate(bodies, start=1):
        prev = link(seq, prev, body_digest(body))
        lines.append(f"E\t{seq}\t{prev}\t{body}")
    size = len(bodies)
    lines.append(f"H\t{size}\t{prev}\t{TIME}\t{sign_head(key, NODE, size, prev, TIME)}")
    return lines


def _written(**fields: object) -> dict:
    """A ``grant.written`` entry as the node writes it (``policy.model.public_fields``)."""
    return {
        "kind": "grant.written",
        "time": "2026-12-01T00:00:00Z",
        "grant_id": "g-1",
        "dataset": "firms",
        "grantee_kind": "org",
        "grantee": ORG,
        "grantee_org": "",
        "operations": ["query"],
        "purpose": "",
        "valid_from": "2026-12-01T00:00:00Z",
        "expires": "",
        "max_uses": 0,
        "dp_budget": 0.0,
        **fields,
    }


RELEASE = canonical(
    {
        "kind": "release",
        "grant_id": "g-1",
        "epsilon": 0.0,
        "time": TIME,
        "dataset": "firms",
        "operation": "query",
        "requester": "analyst:li.wei@shanghai",
        "requester_org": ORG,
        "home_node": "shanghai",
        "purpose": "",
        "owner": NODE,
        "request_id": "r-1",
        "result_digest": "0" * 64,
    }
)


def _grant_text(**fields: object) -> str:
    """A grant entry with ``fields`` set as raw JSON text (1e999, NaN, a huge integer)."""
    body = canonical(_written(**{k: f"@{k}@" for k in fields}))
    for k, v in fields.items():
        body = body.replace(f'"@{k}@"', str(v))
    return body


MALFORMED = [
    # (the log's bodies, what the failure names); each was a traceback before
    ([_grant_text(max_uses="1e999"), RELEASE], "grant.written 1 has max_uses Infinity"),
    ([canonical(_written(valid_from="garbage")), RELEASE], "grant.written 1 has valid_from"),
    ([_grant_text(max_uses="NaN"), RELEASE], "grant.written 1 has max_uses NaN"),
    ([_grant_text(dp_budget="1e999"), RELEASE], "grant.written 1 has dp_budget Infinity"),
    ([_grant_text(dp_budget="NaN"), RELEASE], "grant.written 1 has dp_budget NaN"),
    ([_grant_text(dp_budget="1" + "0" * 400), RELEASE], "grant.written 1 has dp_budget 1000"),
    ([_grant_text(max_uses="1" + "0" * 5000), RELEASE], "entry 1 (grant.written) cannot be read"),
    # a naive time: compared with the release's aware one, a TypeError
    ([canonical(_written(valid_from="2026-12-01T00:00:00")), RELEASE], "has valid_from"),
    ([canonical(_written(expires="2026-12-31")), RELEASE], "has expires"),
    ([canonical(_written(expires=5)), RELEASE], "grant.written 1 has expires 5, not text"),
    # read as another grant than the node's: no limit at all, or a limit of -1 uses
    ([canonical(_written(max_uses="5")), RELEASE], 'has max_uses "5", not a whole number'),
    ([canonical(_written(max_uses=True)), RELEASE], "has max_uses true, not a whole number"),
    ([canonical(_written(max_uses=-1)), RELEASE], "has max_uses -1, not a whole number"),
    ([canonical(_written(max_uses=2.5)), RELEASE], "has max_uses 2.5, not a whole number"),
    ([canonical(_written(dp_budget=-1.0)), RELEASE], "has dp_budget -1.0, not a finite"),
    ([canonical(_written(operations="query")), RELEASE], 'has operations "query", not a list'),
    ([canonical(_written(grant_id=5)), RELEASE], "grant.written 1 has grant_id 5, not text"),
    (['[{"kind":"grant.written"}]', RELEASE], "entry 1 (grant.written) cannot be read"),
    ([canonical(_written()), '{"kind":"grant.revoked"'], "entry 2 (grant.revoked) cannot be"),
    # a release the replay must read whole (fields missing) that is not JSON
    ([canonical(_written()), '{"grant_id":"g-1","kind":"release"'], "entry 2 (release)"),
    # nested past Python's recursion limit: RecursionError, where bad JSON was caught
    (['{"kind":"grant.written","x":' + "[" * 2000 + "]" * 2000 + "}", RELEASE], "entry 1"),
]


@pytest.mark.parametrize("bodies, named", MALFORMED)
def test_a_malformed_signed_grant_or_release_is_named(
    pki: Path, tmp_path: Path, bodies: list[str], named: str
) -> None:
    lines = _signed(pki, bodies)
    bundle = identity.load_bundle(pki / "ca" / identity.CA_CERT)
    with pytest.raises(VerifyError, match="cannot replay the grants") as info:
        verify(lines, bundle)
    assert named in str(info.value)
    path = tmp_path / "export.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ca = str(pki / "ca" / identity.CA_CERT)
    result = run_fedgate("audit", "verify", str(path), "--ca", ca)
    assert (result.returncode, "Traceback" in result.stderr) == (1, False), result.stderr
    assert result.stderr.startswith("FAILED: cannot replay the grants: ") and named in result.stderr


NOT_MALFORMED = [
    # the same fields in the forms the node writes verify (or name the release, not a crash)
    ([canonical(_written(max_uses=1, dp_budget=1e308)), RELEASE], ""),
    # expires in year 9999: its 5 s of slack overflowed datetime
    (
        [canonical(_written(valid_from="2026-12-05T00:00:00Z", expires="9999-12-31T23:59:59Z"))]
        + [RELEASE],
        "release 2 under grant g-1 before it was valid",
    ),
    # a release stamped without a zone: no time of release (it was a TypeError)
    ([canonical(_written()), RELEASE.replace(TIME, TIME[:-1])], "has no time of release"),
]


@pytest.mark.parametrize("bodies, named", NOT_MALFORMED)
def test_fields_the_node_writes_are_replayed(pki: Path, bodies: list[str], named: str) -> None:
    bundle = identity.load_bundle(pki / "ca" / identity.CA_CERT)
    if not named:
        assert verify(_signed(pki, bodies), bundle).kinds["release"] == 1
        return
    with pytest.raises(VerifyError, match="a release no grant covered") as info:
        verify(_signed(pki, bodies), bundle)
    assert named in str(info.value)


# --- an export ends with its own audit.exported entry and the head signed at it -------------


@pytest.fixture()
def log(pki: Path, tmp_path: Path) -> Iterator[AuditLog]:
    """The node's real audit log (its state file, its key), with a few entries and a
    checkpoint at the last of them: a head the export's own follows at once."""
    state = State(tmp_path / "state.sqlite3")
    log = AuditLog(
        state, NODE, identity.load_key(pki / "node.key"), (pki / "node.pem").read_bytes()
    )
    log.append({"kind": "node.started", "time": TIME, "node": NODE})
    log.append(_written())
    log.append(json.loads(RELEASE))
    assert log.checkpoint(TIME) is not None  # a head at size 3
    yield log
    state.close()


def test_an_export_cut_back_to_an_earlier_head_is_named(
    pki: Path, tmp_path: Path, log: AuditLog
) -> None:
    """Review, 2026-12-05: with a checkpoint at N-1, removing entry N (the export's own
    audit.exported) and the head at N left a file that verified."""
    lines = list(log.export_lines([], TIME, "operator:o"))
    entries = [x for x in lines if x.startswith("E\t")]
    heads = [x for x in lines if x.startswith("H\t")]
    assert '"kind":"audit.exported"' in entries[-1] and heads[-1].split("\t")[1] == "4"
    bundle = identity.load_bundle(pki / "ca" / identity.CA_CERT)
    assert verify(lines, bundle).entries == 4  # intact, it verifies
    cut = [x for x in lines if x not in (entries[-1], heads[-1])]
    assert [x.split("\t")[1] for x in cut if x[:2] in ("E\t", "H\t")] == ["1", "2", "3", "3"]
    with pytest.raises(VerifyError, match="export incomplete") as info:
        verify(cut, bundle)
    assert "(entry 3 is 'release')" in str(info.value)
    ca = str(pki / "ca" / identity.CA_CERT)
    for name, text in (("intact.log", lines), ("cut.log", cut)):
        (tmp_path / name).write_text("".join(text), encoding="utf-8")
    assert run_fedgate("audit", "verify", str(tmp_path / "intact.log"), "--ca", ca).returncode == 0
    result = run_fedgate("audit", "verify", str(tmp_path / "cut.log"), "--ca", ca)
    assert (result.returncode, "Traceback" in result.stderr) == (1, False), result.stderr
    assert result.stderr.startswith("FAILED: export incomplete: it does not end with its own")


def test_the_export_entry_and_its_head_are_written_at_once(pki: Path, log: AuditLog) -> None:
    """An entry appended after the export began (here: before its lines are read) is
    not in it: the export's entry and head were written together when it began; they
    used to be two transactions, with other entries able to come between them."""
    lines = log.export_lines([], TIME, "operator:o")
    log.append({"kind": "rpc.refused", "time": TIME, "method": "m", "caller": "-"})
    lines = list(lines)
    assert [x.split("\t")[1] for x in lines if x[:2] in ("E\t", "H\t")][-3:] == ["4", "3", "4"]
    report = verify(lines, identity.load_bundle(pki / "ca" / identity.CA_CERT))
    assert report.entries == 4 and report.kinds["audit.exported"] == 1


# --- a node that renewed its key: each head with the certificate that signed it -------------


def _node_cert(pki: Path, tmp_path: Path, node: str, name: str) -> tuple[Path, bytes]:
    """A new key and its CA-issued certificate for ``node``, made as a renewal makes them
    (a new CSR)."""
    key_pem, csr = identity.make_csr("node", node, f"{node} bureau", ["127.0.0.1"])
    identity.write_private(tmp_path / f"{name}.key", key_pem)
    return tmp_path / f"{name}.key", identity.sign_csr(pki / "ca", csr)


def _renewed_log(pki: Path, tmp_path: Path, state: State, first: AuditLog) -> AuditLog:
    """``first``'s node with a renewed key and certificate, on the same state, a head
    signed with each."""
    first.append({"kind": "node.started", "time": TIME, "node": NODE})
    assert first.checkpoint(TIME) is not None
    key, pem = _node_cert(pki, tmp_path, NODE, "renewed")
    second = AuditLog(state, NODE, identity.load_key(key), pem)
    second.append({"kind": "node.started", "time": TIME, "node": NODE})
    assert second.checkpoint(TIME) is not None
    return second


def test_an_export_verifies_after_the_node_renewed_its_key(pki: Path, tmp_path: Path) -> None:
    """Review (2026-12-05): a head was checked against the export's one certificate, so
    after a renewal with a new key every export failed at the first head signed before."""
    state = State(tmp_path / "state.sqlite3")
    first = AuditLog(
        state, NODE, identity.load_key(pki / "node.key"), (pki / "node.pem").read_bytes()
    )
    lines = list(_renewed_log(pki, tmp_path, state, first).export_lines([], TIME, "operator:o"))
    bundle = identity.load_bundle(pki / "ca" / identity.CA_CERT)
    report = verify(lines, bundle)
    assert (report.entries, report.heads) == (3, 3)
    assert len([x for x in lines if x.startswith("C\t")]) == 2  # each certificate once
    path = tmp_path / "export.log"
    path.write_text("".join(lines), encoding="utf-8")
    ca = str(pki / "ca" / identity.CA_CERT)
    assert run_fedgate("audit", "verify", str(path), "--ca", ca).returncode == 0
    state.close()


def test_a_head_signed_with_another_nodes_certificate_fails(pki: Path, tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite3")
    key, pem = _node_cert(pki, tmp_path, "wuhu", "wuhu")  # CA-issued, but wuhu's
    other = AuditLog(state, NODE, identity.load_key(key), pem)
    lines = list(_renewed_log(pki, tmp_path, state, other).export_lines([], TIME, "operator:o"))
    with pytest.raises(VerifyError, match="signed head at size 1 is signed by node:wuhu"):
        verify(lines, identity.load_bundle(pki / "ca" / identity.CA_CERT))
    state.close()


def test_heads_from_before_certificates_were_named_take_the_one_held_at_the_upgrade(
    pki: Path, tmp_path: Path
) -> None:
    """A state an earlier version wrote (its heads without a certificate) names, on
    upgrade, the certificate the node holds then; a renewal after it keeps them apart."""
    state = State(tmp_path / "state.sqlite3")
    key, pem = identity.load_key(pki / "node.key"), (pki / "node.pem").read_bytes()
    AuditLog(state, NODE, key, pem).append({"kind": "node.started", "time": TIME})
    with state.transaction() as db:  # the table as earlier versions made it, one head in it
        db.execute("DROP TABLE audit_heads")
        db.execute(
            "CREATE TABLE audit_heads (size INTEGER PRIMARY KEY, hash TEXT NOT NULL, "
            "time TEXT NOT NULL, signature TEXT NOT NULL)"
        )
        head = db.execute("SELECT hash FROM audit WHERE seq = 1").fetchone()[0]
        db.execute(
            "INSERT INTO audit_heads VALUES (1, ?, ?, ?)",
            (head, TIME, sign_head(key, NODE, 1, head, TIME)),
        )
    state.close()
    reopened = State(tmp_path / "state.sqlite3")
    AuditLog(reopened, NODE, key, pem)  # the upgrade: the node as it starts again
    renewed_key, renewed_pem = _node_cert(pki, tmp_path, NODE, "renewed")
    renewed = AuditLog(reopened, NODE, identity.load_key(renewed_key), renewed_pem)
    lines = list(renewed.export_lines([], TIME, "operator:o"))
    report = verify(lines, identity.load_bundle(pki / "ca" / identity.CA_CERT))
    assert (report.entries, report.heads) == (2, 2)
    reopened.close()


DEEP = "[" * 2000 + "]" * 2000  # ~4 KB of JSON nested past Python's recursion limit


def test_json_nested_too_deep_is_named_as_bad_input_not_a_traceback(
    pki: Path, tmp_path: Path
) -> None:
    """Review (2026-12-05): ~2 000 levels of "[" raised RecursionError where only bad JSON
    (ValueError) was caught: ``audit verify`` and ``receipt verify`` ended in a traceback."""
    ca = str(pki / "ca" / identity.CA_CERT)
    receipt = tmp_path / "receipt.json"
    receipt.write_text(DEEP)
    got = run_fedgate("receipt", "verify", str(receipt), "--ca", ca)
    assert (got.returncode, "Traceback" in got.stderr) == (2, False), got.stderr
    assert "not a fedgate receipt: not JSON" in got.stderr
    lines = [x + "\n" for x in _signed(pki, [])]
    exports = {
        "header line is not JSON": ["F\t" + DEEP + "\n", *lines[1:]],
        "line 4 is not a witnessed head (not JSON)": [*lines, "W\t" + DEEP + "\n"],
        "line 4 is not a certificate (not JSON)": [*lines, "C\t" + DEEP + "\n"],
    }
    for n, (says, text) in enumerate(exports.items()):
        path = tmp_path / f"export-{n}.log"
        path.write_text("".join(text), encoding="utf-8")
        got = run_fedgate("audit", "verify", str(path), "--ca", ca)
        assert (got.returncode, "Traceback" in got.stderr) == (1, False), got.stderr
        assert got.stderr == f"FAILED: {says}\n"
    (tmp_path / "intact.log").write_text("".join(lines), encoding="utf-8")
    (tmp_path / "w.txt").write_text("W\t" + DEEP + "\n", encoding="utf-8")
    got = run_fedgate(
        "audit",
        "verify",
        str(tmp_path / "intact.log"),
        "--ca",
        ca,
        "--witness",
        str(tmp_path / "w.txt"),
    )
    assert (got.returncode, "Traceback" in got.stderr) == (1, False), got.stderr
    assert got.stderr == "FAILED: witness file line 1 is not a witnessed head (not JSON)\n"


# --- audit export writes each chunk as it comes ---------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 20])
def test_an_export_is_written_chunk_by_chunk_and_its_entries_counted(
    pki: Path, log: AuditLog, size: int
) -> None:
    """Review (2026-12-05): ``audit export`` joined every chunk in memory, then cut the
    whole into lines to count the entries. Each chunk is now written as it comes (the
    next asked for only then), the file the same bytes, every entry counted once wherever
    the chunks cut a line."""
    import inspect
    import io

    from gateway.cli.audit import write_export
    from gateway.client import Client

    assert inspect.isgeneratorfunction(Client.audit_export_chunks)  # chunks, not all of it
    log.append({"kind": "x", "time": TIME, "text": "E\tE\t\nE\t"})  # escaped in its body
    data = "".join(log.export_lines([], TIME, "operator:o")).encode()
    fh = io.BytesIO()

    def chunks() -> Iterator[bytes]:
        for at in range(0, len(data), size):
            assert fh.getvalue() == data[:at]  # every earlier chunk is written already
            yield data[at : at + size]

    assert write_export(chunks(), fh) == 5
    assert fh.getvalue() == data
    assert sum(1 for line in data.splitlines() if line.startswith(b"E\t")) == 5  # as before
    report = verify(data.decode().split("\n"), identity.load_bundle(pki / "ca" / identity.CA_CERT))
    assert report.entries == 5


class _Exporting:
    """A client whose export streams ``chunks``, then fails if ``fails`` (the CLI's own
    writing is what is tested here; the export itself is tested against real nodes)."""

    def __init__(self, chunks: list[bytes], fails: bool) -> None:
        self.chunks, self.fails = chunks, fails
        self.profile = type("P", (), {"node": "anhui"})()

    def __enter__(self) -> _Exporting:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def audit_export_chunks(self) -> Iterator[bytes]:
        from federation.outcome import Code
        from gateway.client import ClientError

        yield from self.chunks
        if self.fails:
            raise ClientError(Code.UNAVAILABLE, "the node went away")


def _export(monkeypatch: pytest.MonkeyPatch, out: Path, client: _Exporting) -> int:
    import argparse

    from gateway import client as client_module
    from gateway.cli import audit as cli_audit

    monkeypatch.setattr(client_module, "Client", lambda _profile: client)
    monkeypatch.setattr(cli_audit, "profile", lambda _args: None)
    args = argparse.Namespace(out=str(out), profile=None)
    return cli_audit.cmd_audit_export(args)


def test_an_export_failing_midway_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Diff review (2026-12-05): a stream that fails after its first chunk leaves FILE as
    it was and no FILE.part."""
    from gateway.client import ClientError

    out = tmp_path / "anhui.log"
    out.write_bytes(b"the last export\n")
    with pytest.raises(ClientError):
        _export(monkeypatch, out, _Exporting([b"F\t{}\nE\t1\n"], fails=True))
    assert out.read_bytes() == b"the last export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anhui.log"]
    assert _export(monkeypatch, out, _Exporting([b"F\t{}\n", b"E\t1\nE\t2\n"], False)) == 0
    assert out.read_bytes() == b"F\t{}\nE\t1\nE\t2\n"


def test_an_export_through_a_symlink_reaches_its_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Diff review (2026-12-05): the .part file renamed over --out replaced a symlink
    itself, and its target never got the export."""
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "anhui.log"
    link = tmp_path / "link.log"
    link.symlink_to(target)
    assert _export(monkeypatch, link, _Exporting([b"F\t{}\nE\t1\n"], fails=False)) == 0
    assert link.is_symlink() and target.read_bytes() == b"F\t{}\nE\t1\n"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["anhui.log"]
