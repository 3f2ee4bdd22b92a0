"""Certificates and CSRs as other tools (or attackers) make them, for tests of what the
CA and the checks refuse: fedgate's own ``make_csr`` and ``sign_csr`` would refuse to
write them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from gateway import identity

HEFEI_NODE = (("CN", "hefei"), ("O", "Hefei"), ("OU", "node"))
_OIDS = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
}


def name(attributes: Sequence[tuple[str, str]]) -> x509.Name:
    return x509.Name([x509.NameAttribute(_OIDS[k], v) for k, v in attributes])


def csr_pem(
    attributes: Sequence[tuple[str, str]] = HEFEI_NODE,
    sans: Sequence[x509.GeneralName] = (),
    key: CertificateIssuerPrivateKeyTypes | None = None,
) -> bytes:
    """A CSR of ``attributes`` (in order, repeats kept) asking for ``sans``."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(name(attributes))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    csr = builder.sign(key or identity.new_key(), hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def self_signed(
    common_name: str,
    key: CertificateIssuerPrivateKeyTypes,
    sans: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    """A certificate of ``key`` signed by itself, valid through 2026."""
    subject = name([("CN", common_name)])
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(key, hashes.SHA256())
