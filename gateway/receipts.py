"""Signed release receipts: what an owner released, to whom, under which grant.

The owner signs a canonical JSON body with its node key and attaches its certificate,
so anyone holding the federation CA certificate can check a receipt offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import InvalidArgument
from gateway.identity import identity_of, verify_signed_by


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
            data = json.loads(text)
            return Receipt(data["body"], data["signature"], data["cert"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"not a fedgate receipt: {exc}") from None


def canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sign(body: dict, key: ec.EllipticCurvePrivateKey, cert_pem: bytes) -> Receipt:
    signature = key.sign(canonical(body), ec.ECDSA(hashes.SHA256()))
    return Receipt(body, base64.b64encode(signature).decode(), cert_pem.decode())


def verify(receipt: Receipt, ca_bundle: list[x509.Certificate]) -> str:
    """Check the signer's certificate and the signature; returns the signing node id."""
    try:
        cert = x509.load_pem_x509_certificate(receipt.cert_pem.encode())
    except ValueError:
        raise InvalidArgument("receipt certificate cannot be parsed") from None
    if not verify_signed_by(cert, ca_bundle):
        raise InvalidArgument("receipt certificate is not signed by the federation CA")
    signer = identity_of(cert)
    if signer.role != "node" or signer.id != receipt.owner:
        raise InvalidArgument(f"receipt says owner {receipt.owner!r} but is signed by {signer}")
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    try:
        key.verify(
            base64.b64decode(receipt.signature), canonical(receipt.body), ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, ValueError):
        raise InvalidArgument("receipt signature does not verify: the body was changed") from None
    return signer.id
