"""The witness protocol between two real audit logs (in one process, no network)."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import pytest
from cryptography import x509

from gateway import identity, serde
from gateway.audit import AuditLog, sign_head
from gateway.errors import FailedPrecondition
from gateway.state import State
from gateway.witness import Witness, verify_countersignature, verify_head, witnessed_dict


def _node(root: Path, ca: Path, node_id: str) -> tuple[Witness, x509.Certificate]:
    key_pem, csr = identity.make_csr("node", node_id, f"{node_id} bureau", ["127.0.0.1"])
    identity.write_private(root / f"{node_id}.key", key_pem)
    cert_pem = identity.sign_csr(ca, csr)
    key = identity.load_key(root / f"{node_id}.key")
    state = State(root / f"{node_id}.sqlite3")
    log = AuditLog(state, node_id, key, cert_pem)
    bundle = identity.load_bundle(ca / identity.CA_CERT)
    witness = Witness(node_id, state, log, key, cert_pem, bundle)
    return witness, x509.load_pem_x509_certificate(cert_pem)


@pytest.fixture()
def pair(tmp_path: Path):  # type: ignore[no-untyped-def]
    identity.init_ca(tmp_path / "ca")
    a, a_cert = _node(tmp_path, tmp_path / "ca", "alpha")
    b, _ = _node(tmp_path, tmp_path / "ca", "beta")
    return a, a_cert, b


def _round(a: Witness, a_cert: x509.Certificate, b: Witness, limit: int) -> list[int]:
    """What gateway.witnessing.witness_peer does for one peer, with a small step."""
    sizes: list[int] = []
    seen: int | None = None
    for _ in range(100):
        req = a.request_for("beta", seen, limit=limit)
        try:
            w = b.countersign("alpha", a_cert, req)
        except FailedPrecondition as exc:
            assert exc.message == f"last witnessed size is {exc.details['last_size']}"
            seen = int(exc.details["last_size"])
            continue
        a.keep(w)
        seen = w.size
        sizes.append(w.size)
        if w.size == a.audit.latest_head().size:  # type: ignore[union-attr]
            return sizes
    raise AssertionError("no progress")


def test_catch_up_in_steps_and_countersignatures_verify(pair) -> None:  # type: ignore[no-untyped-def]
    a, a_cert, b = pair
    a.audit.append_many([{"kind": "x", "i": i} for i in range(25)])
    a.audit.checkpoint("2026-01-01T00:00:00Z")
    assert _round(a, a_cert, b, limit=10) == [10, 20, 25]
    a.audit.append_many([{"kind": "x", "i": i} for i in range(3)])
    a.audit.checkpoint("2026-01-01T00:00:01Z")
    assert _round(a, a_cert, b, limit=10) == [28]
    heads = b.heads_of("alpha")
    assert [h.size for h in heads] == [10, 20, 25, 28]
    beta_cert = x509.load_pem_x509_certificate(b.cert_pem)
    assert all(verify_countersignature(witnessed_dict(h), beta_cert) for h in heads)


def test_a_rewritten_log_is_refused(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, a_cert, b = pair
    a.audit.append_many([{"kind": "x", "i": i} for i in range(5)])
    a.audit.checkpoint("2026-01-01T00:00:00Z")
    _round(a, a_cert, b, limit=10)
    with a.state.transaction() as db:  # history rewritten behind the log's back
        db.execute("UPDATE audit SET body = ? WHERE seq = 2", ('{"kind":"forged"}',))
    a.audit.append({"kind": "after"})
    a.audit.checkpoint("2026-01-01T00:00:02Z")
    with a.state.transaction() as db:  # and the chain recomputed from the forged entry
        from gateway.audit import GENESIS, body_digest, link

        prev = GENESIS
        for seq, body in db.execute("SELECT seq, body FROM audit ORDER BY seq").fetchall():
            prev = link(seq, prev, body_digest(body))
            db.execute("UPDATE audit SET hash = ? WHERE seq = ?", (prev, seq))
        db.execute("DELETE FROM audit_heads")
    a.audit.checkpoint("2026-01-01T00:00:03Z")
    with pytest.raises(FailedPrecondition, match="did not only grow"):
        b.countersign("alpha", a_cert, a.request_for("beta", 5))


def test_a_stale_from_size_is_answered_with_the_size_in_details(
    pair: tuple[Witness, x509.Certificate, Witness],
) -> None:
    a, a_cert, b = pair
    a.audit.append_many([{"kind": "x", "i": i} for i in range(7)])
    a.audit.checkpoint("2026-01-01T00:00:00Z")
    assert _round(a, a_cert, b, limit=10) == [7]
    with pytest.raises(FailedPrecondition) as caught:
        b.countersign("alpha", a_cert, a.request_for("beta", 0))
    assert caught.value.message == "last witnessed size is 7"
    assert caught.value.details == {"last_size": "7"}


def test_records_cross_the_wire_unchanged(pair: tuple[Witness, x509.Certificate, Witness]) -> None:
    a, a_cert, b = pair
    a.audit.append_many([{"kind": "x", "i": i} for i in range(3)])
    a.audit.checkpoint("2026-01-01T00:00:00Z")
    req = a.request_for("beta")
    assert serde.witness_request_from_proto(serde.witness_request_to_proto(req)) == req
    assert verify_head(req.head, a_cert)
    w = b.countersign("alpha", a_cert, req)
    assert serde.witnessed_head_from_proto(serde.witnessed_head_to_proto(w)) == w
    beta_cert = x509.load_pem_x509_certificate(b.cert_pem)
    assert verify_countersignature(w, beta_cert)
    forged = dataclasses.replace(w, size=w.size + 1)
    assert not verify_countersignature(witnessed_dict(forged), beta_cert)


def test_heads_are_read_a_page_at_a_time(pair) -> None:  # type: ignore[no-untyped-def]
    """Review (2026-12-04): one reply held every head, past the message limit within days."""
    from gateway.witness import HEADS_PAGE

    a, a_cert, b = pair
    a.audit.append_many([{"kind": "x", "i": i} for i in range(25)])
    a.audit.checkpoint("2026-01-01T00:00:00Z")
    _round(a, a_cert, b, limit=5)
    assert [w.size for w in b.heads_of("alpha")] == [5, 10, 15, 20, 25]
    assert [w.size for w in b.heads_of("alpha", after=10, limit=2)] == [15, 20]
    assert [w.size for w in b.heads_of("alpha", after=25)] == []
    assert len(b.heads_of("alpha", limit=HEADS_PAGE * 10)) == 5  # capped at the page, not more
    assert all(verify_countersignature(w, b_cert(b)) for w in b.heads_of("alpha", after=20))


def b_cert(b: Witness) -> x509.Certificate:
    return x509.load_pem_x509_certificate(b.cert_pem)


def test_receipts_are_read_in_batches_in_order(pair) -> None:  # type: ignore[no-untyped-def]
    a, a_cert, b = pair
    c, _ = _node(a.state.path.parent, a.state.path.parent / "ca", "gamma")
    a.audit.append_many([{"kind": "x", "i": i} for i in range(12)])
    a.audit.checkpoint("2026-01-01T00:00:00Z")
    _round(a, a_cert, b, limit=3)
    req = a.request_for("gamma", 0)
    a.keep(c.countersign("alpha", a_cert, req))
    whole = [(r["size"], r["witness"]) for r in a.receipts()]
    assert whole == sorted(whole) and len(whole) == 5
    assert [(r["size"], r["witness"]) for r in a.receipts(batch=2)] == whole


def test_a_head_no_node_writes_is_refused_before_it_is_kept(pair) -> None:  # type: ignore[no-untyped-def]
    """Review (2026-12-04): a member signed a 3 MB head and each refusal stored it whole
    in an audit entry; a signature padded with characters outside base64 verified and
    was kept, padding and all."""
    from gateway.errors import InvalidArgument
    from gateway.witness import SignedHead, WitnessRequest, check_shape

    a, a_cert, b = pair
    a.audit.append_many([{"kind": "x", "i": i} for i in range(3)])
    a.audit.checkpoint("2026-01-01T00:00:00Z")
    good = a.request_for("beta")
    check_shape(good)  # what an honest node sends passes
    huge = dataclasses.replace(good.head, head="f" * 3_000_000)
    signed_huge = dataclasses.replace(
        huge, signature=sign_head(a.key, huge.node, huge.size, huge.head, huge.time)
    )
    padded = dataclasses.replace(good.head, signature=good.head.signature + "!" * 100_000)
    before = len(b.audit.entries())
    for head in (
        signed_huge,
        padded,
        dataclasses.replace(good.head, head=good.head.head.upper()),
        dataclasses.replace(good.head, time="x" * 1000),
        dataclasses.replace(good.head, size=-1),
    ):
        with pytest.raises(InvalidArgument):
            b.countersign("alpha", a_cert, dataclasses.replace(good, head=head))
    with pytest.raises(InvalidArgument, match="each digest"):
        b.countersign("alpha", a_cert, dataclasses.replace(good, digests=("zz",) * 3))
    assert len(b.audit.entries()) == before  # nothing of them kept
    assert isinstance(good.head, SignedHead) and isinstance(good, WitnessRequest)
    assert b.countersign("alpha", a_cert, good).size == 3


def test_two_forks_from_one_size_are_not_both_countersigned(
    pair, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Review (2026-12-04): two requests from the same size, checked side by side, were
    both countersigned although their heads differed (a fork the witness signed)."""
    import threading

    from gateway import witness as witness_module
    from gateway.audit import link
    from gateway.clock import utc

    a, a_cert, b = pair
    a.audit.append_many([{"kind": "x", "i": i} for i in range(2)])
    a.audit.checkpoint("2026-01-01T00:00:00Z")
    assert _round(a, a_cert, b, limit=10) == [2]
    base = a.audit.latest_head()
    assert base is not None

    def fork(tag: str):  # type: ignore[no-untyped-def]
        digest = f"{tag}" * 64
        head_hash = link(3, base.hash, digest)
        head = dataclasses.replace(a.request_for("beta", 2).head, size=3, head=head_hash)
        head = dataclasses.replace(
            head, signature=sign_head(a.key, head.node, head.size, head.head, head.time)
        )
        return dataclasses.replace(a.request_for("beta", 2), head=head, digests=(digest,))

    forks = [fork("a"), fork("b")]
    start = threading.Barrier(2)
    checked = threading.Barrier(2, timeout=1.0)

    def both_checked() -> str:  # each request waits here, after its checks, for the other
        # broken: the other is not past its checks, it waits for this one
        with contextlib.suppress(threading.BrokenBarrierError):
            checked.wait()
        return utc()

    monkeypatch.setattr(witness_module, "utc", both_checked)
    out: list[object] = []

    def ask(req) -> None:  # type: ignore[no-untyped-def]
        start.wait()
        try:
            out.append(b.countersign("alpha", a_cert, req))
        except FailedPrecondition as exc:
            out.append(exc)

    threads = [threading.Thread(target=ask, args=(r,)) for r in forks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    signed = [o for o in out if not isinstance(o, FailedPrecondition)]
    assert len(out) == 2 and len(signed) == 1


def test_a_renewed_witness_shows_each_head_with_the_certificate_that_signed_it(
    pair, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Review (2026-12-04): heads were shown with the witness's current certificate, so a
    renewal (a new key) made every earlier countersignature fail to verify."""
    a, a_cert, b = pair
    a.audit.append_many([{"kind": "x", "i": i} for i in range(3)])
    a.audit.checkpoint("2026-01-01T00:00:00Z")
    assert _round(a, a_cert, b, limit=10) == [3]
    key_pem, csr = identity.make_csr("node", "beta", "beta bureau", ["127.0.0.1"])
    identity.write_private(tmp_path / "beta-renewed.key", key_pem)
    renewed = Witness(
        "beta",
        b.state,
        b.audit,
        identity.load_key(tmp_path / "beta-renewed.key"),
        identity.sign_csr(tmp_path / "ca", csr),
        b.bundle,
    )
    a.audit.append_many([{"kind": "x", "i": i} for i in range(2)])
    a.audit.checkpoint("2026-01-01T00:00:01Z")
    assert _round(a, a_cert, renewed, limit=10) == [5]
    heads = renewed.heads_of("alpha")
    assert [h.size for h in heads] == [3, 5]
    assert heads[0].witness_cert == b.cert_pem.decode()
    assert heads[1].witness_cert == renewed.cert_pem.decode()
    for h in heads:
        assert verify_countersignature(h, x509.load_pem_x509_certificate(h.witness_cert.encode()))


def test_a_data_folder_from_before_named_certificates_still_reads(tmp_path: Path) -> None:
    identity.init_ca(tmp_path / "ca")
    state = State(tmp_path / "old.sqlite3")
    with state.transaction() as db:  # the table as earlier versions made it, one head in it
        db.execute("DROP TABLE witnessed")
        db.execute(
            "CREATE TABLE witnessed (node TEXT NOT NULL, size INTEGER NOT NULL, hash TEXT "
            "NOT NULL, time TEXT NOT NULL, signature TEXT NOT NULL, countersignature TEXT "
            "NOT NULL, PRIMARY KEY (node, size))"
        )
        db.execute("INSERT INTO witnessed VALUES ('alpha', 4, ?, 't', 's', 'c')", ("a" * 64,))
    state.close()
    reopened = State(tmp_path / "old.sqlite3")
    key_pem, csr = identity.make_csr("node", "beta", "beta bureau", ["127.0.0.1"])
    identity.write_private(tmp_path / "beta.key", key_pem)
    key = identity.load_key(tmp_path / "beta.key")
    cert = identity.sign_csr(tmp_path / "ca", csr)
    w = Witness("beta", reopened, AuditLog(reopened, "beta", key, cert), key, cert, [])
    [old] = w.heads_of("alpha")
    assert old.size == 4 and old.witness_cert == cert.decode()
    # Renewed after the upgrade: the old head is still shown with the certificate that
    # countersigned it (review, 2026-12-04, night: NULL rows took the current one).
    key2_pem, csr2 = identity.make_csr("node", "beta", "beta bureau", ["127.0.0.1"])
    identity.write_private(tmp_path / "beta2.key", key2_pem)
    key2 = identity.load_key(tmp_path / "beta2.key")
    renewed = Witness("beta", reopened, w.audit, key2, identity.sign_csr(tmp_path / "ca", csr2), [])
    [still] = renewed.heads_of("alpha")
    assert still.witness_cert == cert.decode()
