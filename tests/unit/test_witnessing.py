"""A witnessing round as the node being witnessed: real witnesses, no network.

Two real ``Witness`` objects (alpha witnessed, beta its witness) over real audit logs; the
only stand-in is the transport, the node's external edge, replaced by an in-process call
that carries a peer's answer or typed error (code, message, details) as gRPC would.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from federation.membership import Member
from federation.outcome import Code, Error
from gateway import identity, serde
from gateway.audit import AuditLog
from gateway.errors import FailedPrecondition, FedgateError, InvalidArgument, Unavailable
from gateway.state import State
from gateway.transport import Transport
from gateway.witness import Witness, WitnessedHead, WitnessRequest
from gateway.witnessing import (
    PeerFailure,
    Send,
    last_size,
    witness_peer,
    witness_round,
)

Pair = tuple[Witness, x509.Certificate, Witness]


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
def pair(tmp_path: Path) -> Pair:
    identity.init_ca(tmp_path / "ca")
    a, a_cert = _node(tmp_path, tmp_path / "ca", "alpha")
    b, _ = _node(tmp_path, tmp_path / "ca", "beta")
    return a, a_cert, b


def _grow(a: Witness, n: int, when: str) -> None:
    a.audit.append_many([{"kind": "x", "i": i} for i in range(n)])
    a.audit.checkpoint(when)


def _recording(b: Witness, a_cert: x509.Certificate, sent: list[int]) -> Send:
    def send(req: WitnessRequest) -> WitnessedHead:
        sent.append(req.from_size)
        return b.countersign("alpha", a_cert, req)

    return send


def _latest(a: Witness) -> int:
    head = a.audit.latest_head()
    assert head is not None
    return head.size


# --- the resend rule ---------------------------------------------------------------------


def test_a_node_that_lost_track_resends_from_the_size_the_witness_holds(pair: Pair) -> None:
    a, a_cert, b = pair
    _grow(a, 12, "2026-01-01T00:00:00Z")
    sent: list[int] = []
    assert witness_peer(a, a.audit, "beta", _recording(b, a_cert, sent)) is not None
    with a.state.transaction() as db:  # e.g. restored from a backup: receipts lost
        db.execute("DELETE FROM witness_receipts")
    _grow(a, 3, "2026-01-01T00:00:01Z")
    sent.clear()
    w = witness_peer(a, a.audit, "beta", _recording(b, a_cert, sent))
    assert sent == [0, 12]  # refused from 0, then resent from the size beta holds
    assert w is not None and w.size == _latest(a) == 15
    assert a.last_countersigned("beta") == 15


def test_a_refusal_without_the_size_is_the_peers_failure(pair: Pair) -> None:
    a, a_cert, b = pair
    _grow(a, 4, "2026-01-01T00:00:00Z")
    witness_peer(a, a.audit, "beta", _recording(b, a_cert, []))

    def forked(req: WitnessRequest) -> WitnessedHead:
        raise FailedPrecondition("log of alpha did not only grow: size 3 does not extend 4")

    with pytest.raises(FailedPrecondition, match="did not only grow"):
        witness_peer(a, a.audit, "beta", forked)


def test_last_size_reads_only_the_detail_of_a_failed_precondition() -> None:
    assert (
        last_size(FailedPrecondition("last witnessed size is 9", details={"last_size": "9"})) == 9
    )
    assert last_size(FailedPrecondition("last witnessed size is 9")) is None
    assert last_size(FailedPrecondition("x", details={"last_size": "nine"})) is None
    assert last_size(InvalidArgument("x", details={"last_size": "9"})) is None


# --- a whole round -----------------------------------------------------------------------


class InProcessTransport(Transport):
    """Transport's contract without gRPC: the peer's answer, or its error re-raised as the
    typed error the real transport builds from the status and trailing details."""

    def __init__(self, handlers: dict[str, Callable[[Any], Any]]) -> None:
        self.handlers = handlers
        self.deadlines: list[float] = []

    def members(self) -> list[Member]:
        return [Member(id=p, org=p, address="", level="L1") for p in self.handlers]

    def call(
        self,
        member: Member,
        method: str,
        request: Any,
        *,
        deadline: float | None = None,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> Any:
        assert method == "Witness" and timeout is None and deadline is not None
        assert deadline - time.monotonic() <= 1.5  # the peer timeout, or the caller's
        self.deadlines.append(deadline)
        try:
            return self.handlers[member.id](request)
        except FedgateError as exc:
            raise FedgateError.of(exc.error) from None


def test_a_round_keeps_countersignatures_and_reports_each_failed_peer(pair: Pair) -> None:
    a, a_cert, b = pair
    _grow(a, 5, "2026-01-01T00:00:00Z")

    witness_peer(a, a.audit, "beta", _recording(b, a_cert, []))
    with a.state.transaction() as db:  # beta holds more than alpha remembers: one resend
        db.execute("DELETE FROM witness_receipts")
    _grow(a, 2, "2026-01-01T00:00:01Z")
    sent: list[int] = []

    def beta(msg: Any) -> Any:  # what the servicer's Witness does
        sent.append(msg.from_size)
        req = serde.witness_request_from_proto(msg)
        return serde.witnessed_head_to_proto(b.countersign("alpha", a_cert, req))

    def gamma(msg: Any) -> Any:
        raise Unavailable("failed to connect to all addresses")

    result = witness_round(a, a.audit, InProcessTransport({"beta": beta, "gamma": gamma}), 1.5)
    assert sent == [0, 5]
    assert [(h.witness, h.size) for h in result.heads] == [("beta", _latest(a))]
    assert result.errors == (
        PeerFailure("gamma", Error(Code.UNAVAILABLE, "failed to connect to all addresses")),
    )
    assert [str(e) for e in result.errors] == [
        "gamma: UNAVAILABLE: failed to connect to all addresses"
    ]
    assert list(a.receipts())[-1]["size"] == _latest(a)
    response = serde.witness_now_response(result)
    assert response.countersigned[0].size == _latest(a)
    assert list(response.errors) == ["gamma: UNAVAILABLE: failed to connect to all addresses"]


def test_an_operators_round_asks_no_peer_past_its_deadline(pair: Pair) -> None:
    """Review (2026-12-04): WitnessNow asked peer after peer, each up to the peer timeout,
    long after the operator's client had given up."""
    a, a_cert, b = pair
    _grow(a, 2, "2026-01-01T00:00:00Z")

    def beta(msg: Any) -> Any:
        req = serde.witness_request_from_proto(msg)
        return serde.witnessed_head_to_proto(b.countersign("alpha", a_cert, req))

    def slow(msg: Any) -> Any:
        time.sleep(0.9)  # the caller's time runs out meanwhile
        raise Unavailable("failed to connect to all addresses")

    transport = InProcessTransport({"gamma": slow, "beta": beta})
    ends = time.monotonic() + 0.8
    result = witness_round(a, a.audit, transport, 1.5, deadline=ends)
    assert transport.deadlines == [ends]  # gamma asked within the caller's time, beta not
    assert [str(e) for e in result.errors] == [
        "gamma: UNAVAILABLE: failed to connect to all addresses",
        "beta: DEADLINE_EXCEEDED: not asked: the call's deadline passed",
    ]
    _grow(a, 1, "2026-01-01T00:00:01Z")  # a short call still asks a peer that answers at once
    short = time.monotonic() + 0.3
    quick = witness_round(a, a.audit, InProcessTransport({"beta": beta}), 1.5, deadline=short)
    assert [h.witness for h in quick.heads] == ["beta"] and not quick.errors


# --- an idle federation rests (review, 2026-12-04) ----------------------------------------


def _kinds(w: Witness) -> list[str]:
    return [e.data["kind"] for e in w.audit.entries()]


def test_the_same_head_again_is_answered_without_a_new_entry(pair: Pair) -> None:
    a, a_cert, b = pair
    _grow(a, 3, "2026-01-01T00:00:00Z")
    sent: list[int] = []
    first = witness_peer(a, a.audit, "beta", _recording(b, a_cert, sent))
    again = witness_peer(a, a.audit, "beta", _recording(b, a_cert, sent))
    assert first is not None and again == first  # the stored countersignature
    assert _kinds(b).count("witness.countersigned") == 1
    _grow(a, 1, "2026-01-01T00:00:01Z")  # news: countersigned anew
    newer = witness_peer(a, a.audit, "beta", _recording(b, a_cert, sent))
    assert newer is not None and newer.size == first.size + 1
    assert _kinds(b).count("witness.countersigned") == 2


def test_background_rounds_leave_a_peer_be_while_only_countersignatures_were_added(
    tmp_path: Path,
) -> None:
    """Two nodes witnessing each other: each countersignature is an entry in the witness's
    log. Without the rule, every round gave each node news for the other (a ping-pong that
    never ends); with it, after one exchange neither sends anything."""
    identity.init_ca(tmp_path / "ca")
    a, a_cert = _node(tmp_path, tmp_path / "ca", "alpha")
    b, b_cert = _node(tmp_path, tmp_path / "ca", "beta")
    _grow(a, 2, "2026-01-01T00:00:00Z")
    _grow(b, 2, "2026-01-01T00:00:00Z")
    calls = {"alpha": 0, "beta": 0}

    def to(witness: Witness, me: str, cert: x509.Certificate) -> Send:
        def send(req: WitnessRequest) -> WitnessedHead:
            calls[me] += 1
            return witness.countersign(me, cert, req)

        return send

    for _round in range(5):
        a.audit.checkpoint("2026-01-01T00:00:02Z")
        b.audit.checkpoint("2026-01-01T00:00:02Z")
        assert witness_peer(a, a.audit, "beta", to(b, "alpha", a_cert), skip_idle=True)
        assert witness_peer(b, b.audit, "alpha", to(a, "beta", b_cert), skip_idle=True)
    assert calls == {"alpha": 1, "beta": 1}
    assert _kinds(a).count("witness.countersigned") == 1
    assert _kinds(b).count("witness.countersigned") == 1
    # Asked for (skip_idle off, `fedgate audit witness`), the countersignatures are witnessed.
    w = witness_peer(a, a.audit, "beta", to(b, "alpha", a_cert))
    assert w is not None and w.size == _latest(a)
    # And an entry of another kind is news for the background rounds again.
    _grow(b, 1, "2026-01-01T00:00:03Z")
    assert witness_peer(b, b.audit, "alpha", to(a, "beta", b_cert), skip_idle=True)
    assert calls["beta"] == 2


def test_an_answer_that_is_not_the_peers_countersignature_of_the_head_is_not_kept(
    pair: Pair,
) -> None:
    """Review (2026-12-04): a peer answering with a receipt of a huge size (or in another
    witness's name) was kept, and the background rounds then skipped that witness for
    ever. Now only the peer's own, verifying countersignature of the head sent is kept."""
    a, a_cert, b = pair
    _grow(a, 3, "2026-01-01T00:00:00Z")
    honest = _recording(b, a_cert, [])
    forgeries = {
        "a size past this log": lambda w: dataclasses.replace(w, size=2**62),
        "another witness's name": lambda w: dataclasses.replace(w, witness="gamma"),
        "a signature of another time": lambda w: dataclasses.replace(w, time="2030-01-01"),
        "another head": lambda w: dataclasses.replace(w, head="0" * 64),
    }
    for why, forge in forgeries.items():

        def lying(req: WitnessRequest, forge=forge) -> WitnessedHead:  # type: ignore[no-untyped-def]
            return forge(honest(req))

        with pytest.raises(Unavailable, match="beta answered with a countersignature"):
            witness_peer(a, a.audit, "beta", lying, skip_idle=True)
        assert a.latest_receipt("beta") is None, why
    asked: list[int] = []
    assert witness_peer(a, a.audit, "beta", _recording(b, a_cert, asked), skip_idle=True)
    assert asked  # not skipped: the honest answer is asked for and kept


def test_a_countersignature_by_a_certificate_of_another_ca_is_not_kept(
    pair: Pair, tmp_path: Path
) -> None:
    """Review (2026-12-04): a peer could answer with a certificate it made itself, naming
    itself; kept, the idle skip trusted it. Now the certificate must be the federation's."""
    a, a_cert, _b = pair
    identity.init_ca(tmp_path / "other")
    rogue, _ = _node(tmp_path / "rogue", tmp_path / "other", "beta")
    _grow(a, 3, "2026-01-01T00:00:00Z")
    with pytest.raises(Unavailable, match="does not verify"):
        witness_peer(a, a.audit, "beta", lambda req: rogue.countersign("alpha", a_cert, req))
    assert a.latest_receipt("beta") is None


def test_a_certificate_without_an_ec_key_verifies_nothing(tmp_path: Path) -> None:
    """Review (2026-12-04): an RSA certificate asserted in the check, and the error ended
    the witnessing round for every peer after that one."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from gateway.witness import SignedHead, verify_head
    from tests import x509_made as made

    cert = made.self_signed("beta", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    head = SignedHead(node="beta", size=1, head="0" * 64, time="2026-01-01", signature="AA==")
    assert verify_head(head, cert) is False


def test_a_peer_that_keeps_answering_sizes_fails_after_a_few_requests(pair: Pair) -> None:
    """Review (2026-12-04): a peer answering "I hold size 0" to every request had this node
    rebuild and send up to 1 000 requests a round (each hashing up to 40 000 entries),
    and the round then counted it as neither countersigned nor failed."""
    a, a_cert, b = pair
    _grow(a, 5, "2026-01-01T00:00:00Z")
    witness_peer(a, a.audit, "beta", _recording(b, a_cert, []))  # beta holds size 5
    _grow(a, 2, "2026-01-01T00:00:01Z")
    asked: list[int] = []

    def liar(msg: Any) -> Any:  # always "I hold size 0", whatever it was sent
        asked.append(msg.from_size)
        raise FailedPrecondition("last witnessed size is 0", details={"last_size": "0"})

    def wanderer(msg: Any) -> Any:  # a new size each time, never a countersignature
        asked.append(msg.from_size)
        size = str(len(asked) % 3)
        raise FailedPrecondition(f"last witnessed size is {size}", details={"last_size": size})

    result = witness_round(a, a.audit, InProcessTransport({"beta": liar}), 1.5)
    assert asked == [5, 0]  # from what it last countersigned, then from 0 once: no more
    assert [e.peer for e in result.errors] == ["beta"] and result.heads == ()
    assert result.errors[0].error.code == Code.FAILED_PRECONDITION
    asked.clear()
    result = witness_round(a, a.audit, InProcessTransport({"wanderer": wanderer}), 1.5)
    assert len(asked) <= 4 and [e.peer for e in result.errors] == ["wanderer"]


def test_a_peer_left_behind_after_the_last_step_is_a_failure_of_the_round(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway import witnessing

    a, a_cert, b = pair
    _grow(a, 9, "2026-01-01T00:00:00Z")
    monkeypatch.setattr(witnessing, "MAX_STEPS", 1)
    monkeypatch.setattr(witnessing.Witness, "request_for", _small_steps(a))

    def beta(msg: Any) -> Any:
        req = serde.witness_request_from_proto(msg)
        return serde.witnessed_head_to_proto(b.countersign("alpha", a_cert, req))

    result = witness_round(a, a.audit, InProcessTransport({"beta": beta}), 1.5)
    assert result.heads == ()
    assert [(e.peer, e.error.code) for e in result.errors] == [("beta", Code.DEADLINE_EXCEEDED)]


def _small_steps(a: Witness) -> Callable[..., WitnessRequest]:
    original = Witness.request_for

    def request_for(self: Witness, peer: str, from_size: int | None = None, limit: int = 0):  # type: ignore[no-untyped-def]
        return original(self, peer, from_size, limit=4)

    return request_for
