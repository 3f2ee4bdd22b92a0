"""Peer witnessing: members countersign each other's audit-log heads.

A node sends its signed head (size, hash) to each peer together with the body digests
of the entries the peer has not seen. The peer recomputes the chain from the last head
it countersigned: only if the new head extends it (the log only grew) does it
countersign. A node that later rewrites or forks its history cannot produce a log that
matches the heads its peers hold, and the offline verifier shows it.

The records here are plain dataclasses; ``gateway.serde`` turns them into wire messages.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from federation.canonical import canonical, is_digest
from gateway.audit import GENESIS, AuditLog, Head, head_message, link, sign_head
from gateway.clock import utc
from gateway.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from gateway.identity import identity_of, verify_signed_by
from gateway.state import State, name_certificate

log = logging.getLogger("fedgate.witness")
MAX_DIGESTS = 200_000
DIGESTS_PER_REQUEST = 40_000  # 40 000 x 64 hex characters fits a 4 MiB message
LAST_SIZE = "last_size"  # detail of the FAILED_PRECONDITION a witness answers to a stale from_size


@dataclass(frozen=True)
class SignedHead:
    """A node's audit-log head, signed by the node's key."""

    node: str
    size: int
    head: str
    time: str
    signature: str  # base64 ECDSA over ``audit.head_message``


@dataclass(frozen=True)
class WitnessedHead:
    """A head countersigned by a witness (another member), kept by the node it witnessed."""

    witness: str
    node: str
    size: int
    head: str
    time: str  # the witness's clock
    countersignature: str
    witness_cert: str  # PEM, so an auditor can check it with the CA alone


@dataclass(frozen=True)
class WitnessRequest:
    """A head and the body digests of entries (from_size, head.size] the witness lacks."""

    head: SignedHead
    from_size: int
    digests: tuple[str, ...]


def countersign_message(witness: str, node: str, size: int, head: str, time: str) -> bytes:
    return canonical(
        {
            "format": "fedgate-witness-v1",
            "witness": witness,
            "node": node,
            "size": size,
            "head": head,
            "time": time,
        }
    ).encode()


MAX_SIGNATURE_CHARS = 200  # base64 of a DER ECDSA signature: 96 for P-256, 140 for P-521
MAX_TIME_CHARS = 40  # an RFC 3339 time


def check_shape(req: WitnessRequest) -> None:
    """Refuse what no honest node sends before anything of it is checked, logged or kept:
    a head or digest that is not a SHA-256 in hex, an oversized signature or time (a
    member signed a 3 MB head, and every refusal stored it whole; review, 2026-12-04)."""
    head = req.head
    if not is_digest(head.head):
        raise InvalidArgument("the head must be a SHA-256 in lower-case hex")
    if not 0 <= head.size < 2**63 or not 0 <= req.from_size < 2**63:
        raise InvalidArgument("a log size must be between 0 and 2^63 - 1")
    if len(head.signature) > MAX_SIGNATURE_CHARS or len(head.time) > MAX_TIME_CHARS:
        raise InvalidArgument("the head's signature or time is longer than any node writes")
    if len(req.digests) > MAX_DIGESTS:
        raise InvalidArgument(f"at most {MAX_DIGESTS} digests per witness request")
    if not all(is_digest(d) for d in req.digests):
        raise InvalidArgument("each digest must be a SHA-256 in lower-case hex")


def _verify(cert: x509.Certificate, signature: str, message: bytes) -> bool:
    """False for a bad signature, and for a certificate whose key is no EC key (a peer's
    RSA certificate asserted here, and ended the round for every peer after it)."""
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        # validate: b64decode skips characters outside the alphabet, so a padded
        # signature verified and was kept, padding and all
        key.verify(base64.b64decode(signature, validate=True), message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_head(head: SignedHead, cert: x509.Certificate) -> bool:
    message = head_message(head.node, head.size, head.head, head.time)
    return _verify(cert, head.signature, message)


def verify_countersignature(w: WitnessedHead | Mapping[str, Any], cert: x509.Certificate) -> bool:
    """Whether ``cert`` signed the head; ``w`` as a record or as an export's W line reads."""
    d = witnessed_dict(w) if isinstance(w, WitnessedHead) else w
    msg = countersign_message(d["witness"], d["node"], d["size"], d["head"], d["time"])
    return _verify(cert, d["countersignature"], msg)


def witnessed_dict(w: WitnessedHead) -> dict[str, Any]:
    """A countersigned head as the export's W lines and the verifier read it."""
    return {
        "witness": w.witness,
        "node": w.node,
        "size": w.size,
        "head": w.head,
        "time": w.time,
        "countersignature": w.countersignature,
        "cert": w.witness_cert,
    }


COUNTERSIGNED = "witness.countersigned"  # the witness's audit entry for each head
HEADS_PAGE = 1000  # heads a WitnessedHeads reply holds (~1.2 KB each)


@dataclass
class Witness:
    """This node in the role of witness for its peers, and as the one being witnessed."""

    node_id: str
    state: State
    audit: AuditLog
    key: ec.EllipticCurvePrivateKey
    cert_pem: bytes
    bundle: list[x509.Certificate]  # the federation CA(s): a witness's certificate is theirs
    _countersigning: threading.Lock = field(default_factory=threading.Lock, init=False)

    _cert_digest: str = field(default="", init=False)

    def __post_init__(self) -> None:
        """Each countersignature names the certificate that made it, so it is shown with
        that one and not with a renewed one whose key cannot verify it (review,
        2026-12-04: a renewal made every earlier head in the peers' files fail)."""
        with self.state.transaction() as db:
            self._cert_digest = name_certificate(db, "witnessed", "witness_certs", self.cert_pem)

    # --- as witness ---------------------------------------------------------------------

    def last_seen(self, node: str) -> tuple[int, str]:
        with self.state.transaction() as db:
            row = db.execute(
                "SELECT size, hash FROM witnessed WHERE node = ? ORDER BY size DESC LIMIT 1",
                (node,),
            ).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def countersign(
        self, caller: str, caller_cert: x509.Certificate, req: WitnessRequest
    ) -> WitnessedHead:
        """Countersign ``caller``'s head if its log only grew since the last one we signed.

        A stale ``from_size`` is answered with the size we hold in ``details[LAST_SIZE]``,
        so the caller resends from there without reading a number out of the message.
        """
        head = req.head
        if head.node != caller:
            raise PermissionDenied(f"node {caller} may not present the head of {head.node}")
        check_shape(req)
        if not verify_head(head, caller_cert):
            raise InvalidArgument("the head's signature does not verify with the caller's key")
        # One countersignature at a time: two requests from one size, checked side by
        # side, were both countersigned though they held different heads (review,
        # 2026-12-04). The check and the write are one step under the lock.
        with self._countersigning:
            return self._countersign(caller, req)

    def _countersign(self, caller: str, req: WitnessRequest) -> WitnessedHead:
        head = req.head
        size, chain = self.last_seen(caller)
        if req.from_size != size:
            raise FailedPrecondition(
                f"last witnessed size is {size}", details={LAST_SIZE: str(size)}
            )
        if head.size == size and head.head == chain and not req.digests:
            # The head we countersigned already: its countersignature again, and no new
            # entry (a peer looping on it grew this log an entry a call; review 2026-12-04).
            again = self._countersigned(caller, size)
            if again is not None and verify_countersignature(again, self._own_cert):
                return again  # (a renewed key signs anew)
        if head.size < size or head.size != size + len(req.digests):
            self._fork(caller, head, f"size {head.size} does not extend {size}")
        for offset, digest in enumerate(req.digests, start=size + 1):
            chain = link(offset, chain, digest)
        if chain != head.head:
            self._fork(caller, head, f"chain from the head at size {size} does not reach it")
        now = utc()
        sig = self.key.sign(
            countersign_message(self.node_id, caller, head.size, head.head, now),
            ec.ECDSA(hashes.SHA256()),
        )
        countersig = base64.b64encode(sig).decode()
        with self.state.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO witnessed (node, size, hash, time, signature, "
                "countersignature, cert) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (caller, head.size, head.head, now, head.signature, countersig, self._cert_digest),
            )
            AuditLog.append_in(
                db,
                {
                    "kind": COUNTERSIGNED,
                    "time": now,
                    "node": caller,
                    "size": head.size,
                    "head": head.head,
                },
            )
        return WitnessedHead(
            witness=self.node_id,
            node=caller,
            size=head.size,
            head=head.head,
            time=now,
            countersignature=countersig,
            witness_cert=self.cert_pem.decode(),
        )

    @functools.cached_property
    def _own_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def _countersigned(self, node: str, size: int) -> WitnessedHead | None:
        found = self.heads_of(node, after=size - 1, limit=1)
        return found[0] if found and found[0].size == size else None

    def _fork(self, caller: str, head: SignedHead, why: str) -> None:
        self.audit.append(
            {
                "kind": "witness.refused",
                "time": utc(),
                "node": caller,
                "size": head.size,
                "head": head.head,
                "reason": why,
            }
        )
        log.error(
            "witness refused node=%s size=%d: %s (rewritten or forked log)", caller, head.size, why
        )
        raise FailedPrecondition(f"log of {caller} did not only grow: {why}")

    def heads_of(self, node: str, after: int = 0, limit: int = HEADS_PAGE) -> list[WitnessedHead]:
        """A page of the heads of ``node`` this node countersigned, by size: one reply held
        them all, and a busy federation's passed the message limit within days (review,
        2026-12-04)."""
        limit = HEADS_PAGE if limit <= 0 else min(limit, HEADS_PAGE)
        with self.state.transaction() as db:
            rows = db.execute(
                "SELECT w.size, w.hash, w.time, w.countersignature, c.pem FROM witnessed w "
                "LEFT JOIN witness_certs c ON c.digest = w.cert "
                "WHERE w.node = ? AND w.size > ? ORDER BY w.size LIMIT ?",
                (node, after, limit),
            ).fetchall()
        mine = self.cert_pem.decode()  # for heads countersigned before certificates were named
        return [
            WitnessedHead(
                witness=self.node_id,
                node=node,
                size=int(r[0]),
                head=str(r[1]),
                time=str(r[2]),
                countersignature=str(r[3]),
                witness_cert=str(r[4]) if r[4] else mine,
            )
            for r in rows
        ]

    # --- as the node being witnessed ----------------------------------------------------

    def request_for(
        self, peer: str, from_size: int | None = None, limit: int = 0
    ) -> WitnessRequest:
        """The next step for ``peer``: at most DIGESTS_PER_REQUEST new entries at a time, so a
        peer that was away for long catches up in several requests within the message size."""
        latest = self.audit.latest_head() or self.audit.checkpoint(utc(), force=True)
        assert latest is not None
        if from_size is None:
            from_size = self.last_countersigned(peer)
        from_size = min(from_size, latest.size)
        head = latest
        limit = limit or DIGESTS_PER_REQUEST
        if latest.size - from_size > limit:
            size = from_size + limit
            chain, now = self.audit.hash_at(size), utc()
            head = Head(size, chain, now, sign_head(self.key, self.node_id, size, chain, now))
        return WitnessRequest(
            head=SignedHead(
                node=self.node_id,
                size=head.size,
                head=head.hash,
                time=head.time,
                signature=head.signature,
            ),
            from_size=from_size,
            digests=tuple(self.audit.digests(from_size, head.size)),
        )

    def last_countersigned(self, peer: str) -> int:
        last = self.latest_receipt(peer)
        return last.size if last is not None else 0

    def check_answer(self, peer: str, req: WitnessRequest, w: WitnessedHead) -> None:
        """A peer's answer is kept only if it is that peer's countersignature of the very
        head it was sent: a peer naming another witness, or a size past this log, would
        else have the background rounds skip that witness for ever (review, 2026-12-04)."""
        sent = req.head
        if (w.witness, w.node, w.size, w.head) != (peer, self.node_id, sent.size, sent.head):
            raise Unavailable(f"{peer} answered with a countersignature of another head")
        try:
            cert = x509.load_pem_x509_certificate(w.witness_cert.encode())
            who = identity_of(cert)
        except (ValueError, Unauthenticated):
            raise Unavailable(f"{peer} answered with a certificate that is no node's") from None
        if (
            (who.role, who.id) != ("node", peer)
            or not verify_signed_by(cert, self.bundle)  # not a certificate it made itself
            or not verify_countersignature(w, cert)
        ):
            raise Unavailable(f"{peer} answered with a countersignature that does not verify")

    def latest_receipt(self, peer: str) -> WitnessedHead | None:
        """The newest countersignature ``peer`` gave this node."""
        with self.state.transaction() as db:
            row = db.execute(
                "SELECT body FROM witness_receipts WHERE witness = ? ORDER BY size DESC LIMIT 1",
                (peer,),
            ).fetchone()
        if row is None:
            return None
        d = json.loads(row[0])
        return WitnessedHead(
            witness=d["witness"],
            node=d["node"],
            size=int(d["size"]),
            head=d["head"],
            time=d["time"],
            countersignature=d["countersignature"],
            witness_cert=d["cert"],
        )

    def keep(self, w: WitnessedHead) -> None:
        with self.state.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO witness_receipts VALUES (?, ?, ?)",
                (w.witness, w.size, json.dumps(witnessed_dict(w))),
            )

    def receipts(self, batch: int = 10_000) -> Iterator[dict[str, Any]]:
        """Every countersignature peers gave this node, by size, read a batch at a time."""
        size, witness = -1, ""
        while True:
            with self.state.transaction() as db:
                rows = db.execute(
                    "SELECT size, witness, body FROM witness_receipts "
                    "WHERE (size, witness) > (?, ?) ORDER BY size, witness LIMIT ?",
                    (size, witness, batch),
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield json.loads(r[2])
            size, witness = rows[-1][0], rows[-1][1]
