"""Signed release receipts: what an owner released, to whom, under which grant.

The owner signs a canonical JSON body with its node key and attaches its certificate,
so anyone holding the federation CA certificate can check a receipt offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from federation.canonical import canonical, loads
from gateway.errors import InvalidArgument
from gateway.identity import identity_of, verify_signed_by

if TYPE_CHECKING:
    from federation.envelope import Envelope
    from federation.sql import QueryPlan


@dataclass(frozen=True)
class Receipt:
    body: dict
    signature: str  # base64 DER ECDSA over canonical(body)
    cert_pem: str

    @property
    def owner(self) -> str:
        return str(self.body.get("owner", ""))

    def to_json(self) -> str:
        return json.dumps(
            {"body": self.body, "signature": self.signature, "cert": self.cert_pem},
            sort_keys=True,
        )

    @staticmethod
    def from_json(text: str | bytes) -> Receipt:
        try:
            data = loads(text)
        except ValueError:
            raise InvalidArgument("not a fedgate receipt: not JSON") from None
        if not isinstance(data, dict):
            raise InvalidArgument("not a fedgate receipt: a JSON object is one")
        missing = [k for k in ("body", "signature", "cert") if k not in data]
        if missing:
            raise InvalidArgument(f"not a fedgate receipt: it has no {missing[0]!r}")
        body, signature, cert = data["body"], data["signature"], data["cert"]
        if (
            not isinstance(body, dict)
            or not isinstance(signature, str)
            or not isinstance(cert, str)
        ):
            raise InvalidArgument("not a fedgate receipt: a body, a signature and a certificate")
        return Receipt(body, signature, cert)


@dataclass(frozen=True)
class Signer:
    """The node's key and certificate: signs receipts and what a home vouches for."""

    key: ec.EllipticCurvePrivateKey
    cert_pem: bytes

    def sign(self, body: dict) -> Receipt:
        return sign(body, self.key, self.cert_pem)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sign(body: dict, key: ec.EllipticCurvePrivateKey, cert_pem: bytes) -> Receipt:
    signature = key.sign(canonical(body).encode(), ec.ECDSA(hashes.SHA256()))
    return Receipt(body, base64.b64encode(signature).decode(), cert_pem.decode())


InForce = Callable[[x509.Certificate], str]  # why a signer's certificate is not in force now


def verify(receipt: Receipt, ca_bundle: list[x509.Certificate]) -> str:
    """Check that it is a release receipt, the signer's certificate and the signature;
    returns the signing node id. (A node signs other statements too: a SecAgg+ key, a
    model digest; none of them is a receipt.)"""
    if not is_release(receipt.body):
        raise InvalidArgument("not a release receipt: no release kind or audit entry in its body")
    return verify_statement(receipt, ca_bundle)


def covers(body: dict, payload: bytes, operation: str) -> str:
    """Why a release receipt's ``body`` is not the receipt of ``payload`` released for
    ``operation`` ("" when it is): a signature that holds proves nothing of bytes the
    body does not name (review, 2026-12-04: an owner sent its first receipt with every
    later model update, and the home kept it as that update's evidence)."""
    if body.get("operation") != operation:
        return f"it is the receipt of another operation, not {operation}"
    if body.get("result_digest") != digest(payload):
        return "its result digest is not the digest of the reply it came with"
    return ""


def is_release(body: dict) -> bool:
    """A release receipt's body: a ``release`` entry with its place in the owner's log."""
    return body.get("kind") == "release" and "audit_seq" in body and "audit_hash" in body


def verify_statement(
    statement: Receipt, ca_bundle: list[x509.Certificate], in_force: InForce | None = None
) -> str:
    """Any body a member node signed (a receipt, a SecAgg+ key or model statement);
    returns the signing node id."""
    body = statement.body
    verify_signed(
        body, statement.signature, statement.cert_pem, ca_bundle, statement.owner, in_force
    )
    return statement.owner


def query_asked(env: Envelope, plan: QueryPlan) -> dict[str, str]:
    """What a query's release receipt must name as the home asked it (``problem``'s
    ``asked``): its home, requester, purpose, plan and dataset."""
    return {
        "home_node": env.home_node,
        "requester": str(env.requester),
        "purpose": env.purpose,
        "plan_digest": plan.digest,
        "dataset": plan.dataset,
    }


def _not_asked(body: Mapping[str, Any], asked: Mapping[str, str] | None) -> str:
    """Which field of ``asked`` the receipt's body names otherwise ("" if none)."""
    for name, value in (asked or {}).items():
        if body.get(name) != value:
            return f"it names another {name.replace('_', ' ')} than the one asked"
    return ""


class ReceiptCheck:
    """The home's check of each owner's receipt as it arrives: a release receipt of that
    owner for this request, signed by that owner's CA-issued node certificate. A
    certificate once verified is remembered (at most ``MAX_CERTS``), so a receipt costs
    one ECDSA verification (~0.1 ms) rather than ~0.4 ms with the certificate's."""

    MAX_CERTS = 256
    MAX_HELD = 1024  # receipts whose signature held: checked as they arrive and when kept

    def __init__(self, ca_bundle: list[x509.Certificate], in_force: InForce | None = None) -> None:
        self._bundle = ca_bundle
        self._in_force = in_force
        self._keys: dict[str, tuple[str, ec.EllipticCurvePublicKey, x509.Certificate]] = {}
        self._held: dict[tuple[bytes, str, str], str] = {}  # -> the signer's cert PEM
        self._lock = threading.Lock()

    def problem(
        self,
        text: str,
        node_id: str,
        request_id: str,
        *,
        live: bool = True,
        covering: tuple[bytes, str] | None = None,
        asked: Mapping[str, str] | None = None,
    ) -> str:
        """Why it is not (""  when it is); ``node_id`` may be ``owner/n`` (a run's).
        ``live``: it arrives now, so its signer's certificate must be in force now; a
        receipt kept as evidence (``live=False``) needs only to have been signed so.
        ``covering``: the (bytes, operation) it came with, which it must be the receipt
        of (``covers``). ``asked``: fields of the request its body must name as they
        are (review, 2026-12-05: a relay could have a city release a request of its own,
        for another requester, purpose and SQL under the home's request id, and the home
        merged it as its analyst's)."""
        owner = node_id.partition("/")[0]
        held = (hashlib.sha256(text.encode()).digest(), owner, request_id)
        with self._lock:
            cert_pem = self._held.get(held)
        if cert_pem is not None:  # its signature held a moment ago: is its signer still in force?
            try:
                self._key(cert_pem, owner, live)
            except InvalidArgument as exc:
                return exc.message
            body = Receipt.from_json(text).body
            return _not_asked(body, asked) or (covers(body, *covering) if covering else "")
        try:
            receipt = Receipt.from_json(text)
        except InvalidArgument as exc:
            return exc.message
        body = receipt.body
        if not is_release(body):
            return "not a release receipt"
        if body.get("owner") != owner:
            return "it names another owner"
        if body.get("request_id") != request_id:
            return "it names another request"
        try:
            key = self._key(receipt.cert_pem, receipt.owner, live)
        except InvalidArgument as exc:
            return exc.message
        if not signature_holds(key, body, receipt.signature):
            return "its signature does not verify"
        with self._lock:
            if len(self._held) >= self.MAX_HELD:
                self._held.clear()
            self._held[held] = receipt.cert_pem
        return _not_asked(body, asked) or (covers(body, *covering) if covering else "")

    def _key(self, cert_pem: str, owner: str, live: bool) -> ec.EllipticCurvePublicKey:
        in_force = self._in_force if live else None
        with self._lock:
            known = self._keys.get(cert_pem)
        if known is not None and known[0] == owner:
            _check_in_force(known[2], in_force)  # every time: it may expire or be revoked
            return known[1]
        cert = signer_cert(cert_pem, self._bundle, owner)
        _check_in_force(cert, in_force)
        key = _ec_key(cert)
        with self._lock:
            if len(self._keys) >= self.MAX_CERTS:
                self._keys.clear()
            self._keys[cert_pem] = (owner, key, cert)
        return key


def verify_signed(
    body: dict,
    signature: str,
    cert_pem: str,
    ca_bundle: list[x509.Certificate],
    node_id: str,
    in_force: InForce | None = None,
) -> None:
    """``body`` was signed by member node ``node_id``, whose certificate the CA issued
    (and, given ``in_force``, that is in force now)."""
    if not signature_holds(node_key(cert_pem, ca_bundle, node_id, in_force), body, signature):
        raise InvalidArgument("signature does not verify: the signed body was changed")


def node_key(
    cert_pem: str,
    ca_bundle: list[x509.Certificate],
    node_id: str,
    in_force: InForce | None = None,
) -> ec.EllipticCurvePublicKey:
    """The public key of member node ``node_id`` from a certificate the CA issued to it."""
    cert = signer_cert(cert_pem, ca_bundle, node_id)
    _check_in_force(cert, in_force)
    return _ec_key(cert)


def signer_cert(cert_pem: str, ca_bundle: list[x509.Certificate], node_id: str) -> x509.Certificate:
    """Member node ``node_id``'s certificate, which the CA issued."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        raise InvalidArgument("signer certificate cannot be parsed") from None
    if not verify_signed_by(cert, ca_bundle):
        raise InvalidArgument("signer certificate is not signed by the federation CA")
    signer = identity_of(cert)
    if signer.role != "node" or signer.id != node_id:
        raise InvalidArgument(f"signed for node {node_id!r} but by {signer}")
    return cert


def _check_in_force(cert: x509.Certificate, in_force: InForce | None) -> None:
    problem = in_force(cert) if in_force is not None else ""
    if problem:
        raise InvalidArgument(f"signer {problem}")


def _ec_key(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidArgument("signer certificate holds no EC key")
    return key


def signature_holds(key: ec.EllipticCurvePublicKey, body: dict, signature: str) -> bool:
    """Whether ``signature`` (base64 DER ECDSA) covers ``canonical(body)``."""
    try:
        key.verify(base64.b64decode(signature), canonical(body).encode(), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
