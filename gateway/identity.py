"""X.509 identities of the federation: the CA, CSRs made where keys live, and revocation.

A certificate says three things that every RPC relies on: the subject's role
(node / operator / analyst), its id (a node id or ``user@org``) and its organisation.
They are written by the CA when it signs, in the subject (CN, O, OU) and in a URI
subject-alternative-name ``urn:fedgate:<role>:<id>``; nothing in a request body is trusted.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway import clock
from gateway.descriptor import check_identifier
from gateway.errors import InvalidArgument, Unauthenticated

ROLES = ("node", "operator", "analyst")
NODE_DNS_SUFFIX = ".node.fedgate"
_URN_PREFIX = "urn:fedgate:"
CA_KEY = "ca.key"
CA_CERT = "ca.pem"
CA_CRL = "crl.pem"
CA_REVOKED = "revoked.json"


@dataclass(frozen=True)
class Identity:
    role: str
    id: str
    org: str
    serial: str  # hex
    not_after: dt.datetime

    def __str__(self) -> str:
        return f"{self.role}:{self.id}"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private(path: Path, data: bytes) -> None:
    """Private keys are created 0600 and never overwritten silently."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise InvalidArgument(f"{path} already exists; refusing to overwrite a private key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise InvalidArgument(f"key file {path} does not exist") from None
    except ValueError as exc:
        raise InvalidArgument(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidArgument(f"{path}: only EC keys are supported")
    return key


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise InvalidArgument(f"certificate file {path} does not exist") from None
    except ValueError as exc:
        raise InvalidArgument(f"{path} is not a PEM certificate: {exc}") from None


def ca_keys(bundle: list[x509.Certificate]) -> list[ec.EllipticCurvePublicKey]:
    """The CAs' public keys: federation CAs sign with P-256 (``init_ca``), nothing else."""
    keys = []
    for cert in bundle:
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise InvalidArgument(f"CA {cert.subject.rfc4514_string()} does not have an EC key")
        keys.append(key)
    return keys


def load_bundle(path: Path) -> list[x509.Certificate]:
    """A CA file may hold the federation root or a bundle of regional CAs."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except FileNotFoundError:
        raise InvalidArgument(f"CA file {path} does not exist") from None
    except ValueError as exc:
        raise InvalidArgument(f"{path} is not a PEM certificate bundle: {exc}") from None
    return certs


def check_subject(role: str, subject_id: str, org: str) -> None:
    if role not in ROLES:
        raise InvalidArgument(f"role {role!r} must be one of {', '.join(ROLES)}")
    if not org.strip():
        raise InvalidArgument("organisation must not be empty")
    if role == "node":
        check_identifier(subject_id, "node id")
    else:
        user, _, domain = subject_id.partition("@")
        if not user or not domain or any(c.isspace() for c in subject_id):
            raise InvalidArgument(f"user id {subject_id!r} must look like user@org")


# --- CA -------------------------------------------------------------------------------


def init_ca(ca_dir: Path, name: str = "Yangtze Delta Federation CA", days: int = 3650) -> Path:
    """Create the federation root: key, self-signed certificate and an empty CRL."""
    key = new_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedgate federation"),
        ]
    )
    now = clock.now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(ca_dir / CA_KEY, key_pem(key))
    (ca_dir / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (ca_dir / CA_REVOKED).write_text("[]\n")
    write_crl(ca_dir)
    return ca_dir / CA_CERT


def make_csr(
    role: str, subject_id: str, org: str, hosts: list[str] | None = None
) -> tuple[bytes, bytes]:
    """Return (private key PEM, CSR PEM). The key stays with the caller."""
    check_subject(role, subject_id, org)
    key = new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, subject_id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
        ]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_host_name(h) for h in hosts]), critical=False
        )
    csr = builder.sign(key, hashes.SHA256())
    return key_pem(key), csr.public_bytes(serialization.Encoding.PEM)


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _name_attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    attrs = name.get_attributes_for_oid(oid)
    return str(attrs[0].value) if attrs else ""


def sign_csr(
    ca_dir: Path,
    csr_pem: bytes,
    *,
    days: int = 365,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> bytes:
    """Sign a CSR into a certificate carrying role, id and organisation."""
    ca_key = load_key(ca_dir / CA_KEY)
    ca_cert = load_cert(ca_dir / CA_CERT)
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise InvalidArgument(f"not a PEM certificate signing request: {exc}") from None
    if not csr.is_signature_valid:
        raise InvalidArgument("the CSR signature does not verify")
    role = _name_attr(csr.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    subject_id = _name_attr(csr.subject, NameOID.COMMON_NAME)
    org = _name_attr(csr.subject, NameOID.ORGANIZATION_NAME)
    check_subject(role, subject_id, org)
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(_URN_PREFIX + f"{role}:{subject_id}")
    ]
    if role == "node":
        names.append(x509.DNSName(subject_id + NODE_DNS_SUFFIX))
        try:
            requested = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names.extend(n for n in requested if isinstance(n, x509.IPAddress | x509.DNSName))
        except x509.ExtensionNotFound:
            pass
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role == "node":
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    now = clock.now()
    start = not_before or now - dt.timedelta(minutes=5)
    end = not_after or now + dt.timedelta(days=days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def revoke(ca_dir: Path, serial: int) -> Path:
    """Add a serial to the CA's revocation list and re-issue the CRL."""
    path = ca_dir / CA_REVOKED
    revoked = json.loads(path.read_text()) if path.exists() else []
    if serial not in revoked:
        revoked.append(serial)
    path.write_text(json.dumps(sorted(revoked)) + "\n")
    return write_crl(ca_dir)


def write_crl(ca_dir: Path, next_update_days: int = 7) -> Path:
    ca_key = load_key(ca_dir / CA_KEY)
    ca_cert = load_cert(ca_dir / CA_CERT)
    revoked = json.loads((ca_dir / CA_REVOKED).read_text())
    now = clock.now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=next_update_days))
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    out = ca_dir / CA_CRL
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, out)  # nodes watching the file never see half a CRL
    return out


# --- reading identities ---------------------------------------------------------------


def identity_of(cert: x509.Certificate) -> Identity:
    """The identity a certificate states, from the URI SAN the CA wrote."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
    except x509.ExtensionNotFound:
        uris = []
    urns = [u[len(_URN_PREFIX) :] for u in uris if u.startswith(_URN_PREFIX)]
    if len(urns) != 1:
        raise Unauthenticated("certificate carries no fedgate identity")
    role, _, subject_id = urns[0].partition(":")
    if role not in ROLES or not subject_id:
        raise Unauthenticated(f"certificate carries an unknown role {role!r}")
    return Identity(
        role=role,
        id=subject_id,
        org=_name_attr(cert.subject, NameOID.ORGANIZATION_NAME),
        serial=format(cert.serial_number, "x"),
        not_after=cert.not_valid_after_utc,
    )


@functools.lru_cache(maxsize=4096)
def identity_of_pem(pem: bytes) -> Identity:
    """Cached: every call of a connection presents the same certificate bytes."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise Unauthenticated("peer certificate cannot be parsed") from None
    return identity_of(cert)


def verify_signed_by(cert: x509.Certificate, bundle: list[x509.Certificate]) -> bool:
    for ca in bundle:
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


class RevocationList:
    """The CA's CRL, re-read whenever the file changes, so revocation needs no restart.

    It fails closed: a CRL that disappears or stops parsing leaves the last good list in
    force (and is logged), and a CRL past its next-update time refuses every caller
    until the CA re-issues it (`fedgate ca crl`).
    """

    def __init__(self, path: Path | None, bundle: list[x509.Certificate]) -> None:
        self._path = path
        self._bundle = bundle
        self._stamp: tuple[int, int] | None = None
        self._serials: frozenset[int] = frozenset()
        self._next_update: dt.datetime | None = None
        self._loaded = False
        self.problem = ""  # last reason a new CRL file was not taken, for the log

    def load(self) -> None:
        """Read the CRL now; raises InvalidArgument (start-up) if it is unusable."""
        if self._path is None:
            return
        st = self._path.stat() if self._path.exists() else None
        if st is None:
            if not self._loaded:
                raise InvalidArgument(f"tls.crl: {self._path} does not exist")
            raise InvalidArgument(f"CRL file {self._path} disappeared")
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            crl = x509.load_pem_x509_crl(self._path.read_bytes())
        except ValueError as exc:
            raise InvalidArgument(f"tls.crl: {self._path} is not a PEM CRL: {exc}") from None
        if not any(crl.is_signature_valid(key) for key in ca_keys(self._bundle)):
            raise InvalidArgument(f"tls.crl: {self._path} is not signed by the federation CA")
        self._serials = frozenset(r.serial_number for r in crl)
        self._next_update = crl.next_update_utc
        self._stamp = stamp
        self._loaded = True

    def _reload(self) -> None:
        try:
            self.load()
            self.problem = ""
        except InvalidArgument as exc:
            if not self._loaded:
                raise Unauthenticated(exc.message) from None
            self.problem = exc.message  # keep the last good list in force

    @property
    def next_update(self) -> dt.datetime | None:
        return self._next_update

    @property
    def revoked_count(self) -> int:
        return len(self._serials)

    @property
    def version(self) -> tuple[int, int] | None:
        """Changes whenever a new CRL is taken (for audit entries)."""
        return self._stamp

    def is_revoked(self, serial_hex: str) -> bool:
        self._reload()
        if self._next_update is not None and clock.now() > self._next_update:
            raise Unauthenticated(
                f"the CRL expired at {self._next_update:%Y-%m-%d %H:%M} UTC; "
                "the CA must re-issue it (fedgate ca crl)"
            )
        return int(serial_hex, 16) in self._serials
