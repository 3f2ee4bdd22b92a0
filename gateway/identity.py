"""X.509 identities of the federation: the CA, CSRs made where keys live, and revocation.

A certificate says three things that every RPC relies on: the subject's role
(node / operator / analyst), its id (a node id or ``user@org``) and its organisation.
They are written by the CA when it signs, in the subject (CN, O, OU) and in a URI
subject-alternative-name ``urn:fedgate:<role>:<id>``; nothing in a request body is trusted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import ipaddress
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation import membership
from gateway import clock
from gateway.descriptor import check_identifier
from gateway.errors import InvalidArgument, Unauthenticated
from gateway.text import plain

log = logging.getLogger("fedgate.node")

ROLES = ("node", "operator", "analyst")
NODE_DNS_SUFFIX = ".node.fedgate"
_URN_PREFIX = "urn:fedgate:"
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")  # LDH (and _)
# An id goes into the URN percent-encoded beyond printable ASCII (a URI is ASCII: a user id
# in Chinese made ``ca sign`` fail with a traceback; review, 2026-12-04); ``identity_of``
# decodes it. ``%`` itself is encoded, so the two are inverse for every id.
_URN_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")
CA_KEY = "ca.key"
CA_CERT = "ca.pem"
CA_CRL = "crl.pem"
CA_REVOKED = "revoked.json"
CA_CRL_NUMBER = "crl_number"  # the last CRL number this CA used
CA_LOCK = ".lock"  # held while the CA folder is written
CA_MEMBERSHIP_SERIAL = "membership_serial"  # the highest membership serial this CA signed
CA_FILES = (CA_KEY, CA_CERT, CA_CRL, CA_REVOKED, CA_CRL_NUMBER, CA_LOCK, CA_MEMBERSHIP_SERIAL)


@dataclass(frozen=True)
class Identity:
    role: str
    id: str
    org: str
    serial: str  # hex
    not_after: dt.datetime
    # Who issued it: serials are unique per CA only, so revocation is looked up in the
    # CRL of this issuer (``RevocationList``). "" (an identity made by hand): every CA's.
    issuer: str = ""  # the issuer's name, RFC 4514
    issuer_key: str = ""  # the authority key identifier (hex), "" without one

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
        fh.flush()
        os.fsync(fh.fileno())  # a crash leaves no empty key behind a CA that exists


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise InvalidArgument(f"key file {path} does not exist") from None
    except ValueError as exc:
        raise InvalidArgument(f"{path} is not a PEM private key: {exc}") from None
    except TypeError:  # a passphrase-protected key (cryptography asks for the password)
        raise InvalidArgument(
            f"{path} is encrypted with a passphrase: fedgate needs the key unencrypted "
            "(keep it readable by its user alone)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidArgument(f"{path}: only EC keys are supported")
    return key


def is_key_of(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    """Whether ``key`` is the private key of ``cert`` (their public keys are one)."""
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


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
    except ValueError:  # the library's text (a URL, "MalformedFraming") says no more
        raise InvalidArgument(
            f"{path} is not a PEM certificate bundle (-----BEGIN CERTIFICATE----- blocks)"
        ) from None
    for cert in certs:  # a leaf in the bundle (a "chain" pasted in) would sign as a CA
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise InvalidArgument(
                f"{path} holds {cert.subject.rfc4514_string()!r}, which is not a CA "
                "certificate: keep only the federation's CA certificates in it"
            )
    return certs


MAX_NAME = 64  # RFC 5280's upper bound for a common or organisation name


def check_name(value: str, what: str, *, common_name: bool = False) -> None:
    """A certificate name attribute: RFC 5280 allows 1 to 64 characters; the library
    counts a common name's length in bytes of UTF-8 (a Chinese character is three)."""
    size = len(value.encode()) if common_name else len(value)
    if not 1 <= size <= MAX_NAME:
        unit = "bytes of UTF-8" if common_name else "characters"
        raise InvalidArgument(f"{what} must be 1 to {MAX_NAME} {unit}")


def _subject(role: str, subject_id: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, subject_id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
        ]
    )


def check_subject(role: str, subject_id: str, org: str) -> None:
    if role not in ROLES:
        if not role:  # a CSR made by other tools carries no fedgate role
            raise InvalidArgument(
                "the CSR carries no fedgate role (subject OU): make it with fedgate cert request"
            )
        raise InvalidArgument(f"role {role!r} must be one of {', '.join(ROLES)}")
    if not org.strip():
        raise InvalidArgument("organisation must not be empty")
    check_name(org, "the organisation")
    check_name(subject_id, "the id", common_name=True)
    plain(org, "the organisation")  # an id that looks like another's in every listing
    plain(subject_id, "the id")
    if role == "node":
        check_identifier(subject_id, "node id")
    else:
        user, _, domain = subject_id.partition("@")
        if not user or not domain or any(c.isspace() for c in subject_id):
            raise InvalidArgument(f"user id {subject_id!r} must look like user@org")


# --- CA -------------------------------------------------------------------------------


def init_ca(ca_dir: Path, name: str = "Yangtze Delta Federation CA", days: int = 3650) -> Path:
    """Create the federation root: key, self-signed certificate and an empty CRL."""
    check_name(name, "the CA's name", common_name=True)
    # Any of its files, not only the key: a CA whose key went offline, as advised, would
    # else be made anew over its certificate and revocations (review, 2026-12-04).
    for existing in (CA_KEY, CA_CERT, CA_REVOKED, CA_CRL, CA_CRL_NUMBER, CA_MEMBERSHIP_SERIAL):
        if (ca_dir / existing).exists():
            raise InvalidArgument(
                f"{ca_dir / existing} already exists: {ca_dir} holds a CA; refusing to "
                "make another over it"
            )
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
    ca_dir.mkdir(parents=True, exist_ok=True)
    with _ca_lock(ca_dir):
        write_private(ca_dir / CA_KEY, key_pem(key))
        _replace(ca_dir / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
        _replace(ca_dir / CA_REVOKED, b"[]\n")
        _write_crl(ca_dir)
    return ca_dir / CA_CERT


def make_csr(
    role: str, subject_id: str, org: str, hosts: list[str] | None = None
) -> tuple[bytes, bytes]:
    """Return (private key PEM, CSR PEM). The key stays with the caller."""
    check_subject(role, subject_id, org)
    key = new_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(role, subject_id, org))
    if hosts:
        sans = [_host_name(h) for h in hosts]
        for n in sans:  # the CA checks again; said here, where the operator can fix it
            if isinstance(n, x509.DNSName):
                check_dns_name(n.value, subject_id)
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return key_pem(key), csr.public_bytes(serialization.Encoding.PEM)


def check_host(host: str) -> None:
    """An IP address or an ASCII DNS name, as a certificate can name it."""
    _host_name(host)


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return x509.DNSName(host)
    except ValueError:  # not ASCII: an internationalised name must come as its A-label
        raise InvalidArgument(
            f"host {host!r} is neither an IP address nor an ASCII DNS name (write an "
            "internationalised name as its xn-- form)"
        ) from None


def _name_attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    attrs = name.get_attributes_for_oid(oid)
    return str(attrs[0].value) if attrs else ""


def host_names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate may answer as."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in san if isinstance(n, x509.DNSName | x509.IPAddress)]


def check_dns_name(name: str, node_id: str) -> None:
    """A node may name its own hosts, never another node's TLS name (clients check a
    server by ``<id>.node.fedgate``: hefei asking for ``jiangsu.node.fedgate`` could pose
    as jiangsu) nor a wildcard (review, 2026-12-04)."""
    if "*" in name:
        raise InvalidArgument(f"the CSR asks for the wildcard name {name!r}: name each host")
    labels = name.rstrip(".").split(".")
    if len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        # letters, digits and inner hyphens only: a NUL or an escape in a name hid it from
        # the keeper reading what `ca sign` printed (review, 2026-12-04)
        raise InvalidArgument(f"the CSR asks for {name!r}, which is not a DNS host name")
    lowered = name.lower().rstrip(".")
    if lowered.endswith(NODE_DNS_SUFFIX) and lowered != node_id.lower() + NODE_DNS_SUFFIX:
        raise InvalidArgument(f"the CSR asks for {name!r}, another node's TLS name")


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
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        # receipts, heads and envelopes are signed and checked as EC P-256
        raise InvalidArgument("the CSR's key is not EC P-256: make it with fedgate cert request")
    role = _name_attr(csr.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    subject_id = _name_attr(csr.subject, NameOID.COMMON_NAME)
    org = _name_attr(csr.subject, NameOID.ORGANIZATION_NAME)
    check_subject(role, subject_id, org)
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(_URN_PREFIX + f"{role}:{quote(subject_id, safe=_URN_SAFE)}")
    ]
    if role == "node":
        names.append(x509.DNSName(subject_id + NODE_DNS_SUFFIX))
        try:
            requested = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            requested = x509.SubjectAlternativeName([])
        for n in requested:
            if isinstance(n, x509.DNSName):
                check_dns_name(n.value, subject_id)
                if n.value != subject_id + NODE_DNS_SUFFIX:
                    names.append(n)
            elif isinstance(n, x509.IPAddress):
                if not isinstance(n.value, ipaddress.IPv4Address | ipaddress.IPv6Address):
                    raise InvalidArgument(f"the CSR asks for the network {n.value}: name hosts")
                names.append(n)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role == "node":
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    now = clock.now()
    start = not_before or now - dt.timedelta(minutes=5)
    end = not_after or now + dt.timedelta(days=days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_subject(role, subject_id, org))  # only what was checked (review:
        # every attribute of the CSR was copied, a second CN and O among them)
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


MAX_SERIAL = 2**159  # RFC 5280: positive, at most 20 octets


def _revoked(ca_dir: Path) -> list[int]:
    """The serials this CA revoked: ``revoked.json``'s and its current CRL's (review,
    2026-12-05: a folder restored without ``revoked.json`` re-issued an empty CRL of a
    higher number, which nodes take, and every revocation was lifted; a serial the CRL
    lists is never dropped). A clear error if a file is not what this CA writes."""
    listed = _listed_in_crl(ca_dir)
    path = ca_dir / CA_REVOKED
    if not path.exists():  # init_ca writes it first: lost, with what it listed
        if listed is None:
            raise InvalidArgument(
                f"{path} is missing and {ca_dir / CA_CRL} is missing or cannot be read: restore "
                f"{CA_REVOKED} (or the last {CA_CRL}) before writing a CRL"
            )
        return sorted(listed)
    try:
        revoked = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument(f"{path} is not a list of serial numbers (not JSON)") from None
    if not isinstance(revoked, list) or not all(
        type(n) is int and 0 < n < MAX_SERIAL for n in revoked
    ):
        raise InvalidArgument(f"{path} is not a list of positive serial numbers")
    return sorted(set(revoked) | (listed or set()))


def _listed_in_crl(ca_dir: Path) -> set[int] | None:
    """The serials the CA folder's current CRL lists (None if there is none or it cannot
    be read)."""
    try:
        crl = x509.load_pem_x509_crl((ca_dir / CA_CRL).read_bytes())
        return {r.serial_number for r in crl}
    except Exception:  # noqa: BLE001 - missing, or anything cryptography cannot read
        return None


def _check_ca(ca_dir: Path) -> None:
    """Before the lock of a folder written to: no lock file is left in one that is no
    CA's (a typo), and the message is the missing key's."""
    if not (ca_dir / CA_KEY).exists():
        raise InvalidArgument(f"key file {ca_dir / CA_KEY} does not exist")


@contextlib.contextmanager
def _ca_lock(ca_dir: Path) -> Iterator[None]:
    """One writer of a CA folder at a time: two `ca revoke` at once lost one serial, and
    could write two CRLs of one number (review, 2026-12-04). The kernel's lock, released
    however the process ends."""
    fd = os.open(ca_dir / CA_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def revoke(ca_dir: Path, serial: int) -> Path:
    """Add a serial to the CA's revocation list and re-issue the CRL."""
    if not 0 < serial < MAX_SERIAL:
        raise InvalidArgument(f"serial {serial:x} is not a certificate serial (1 to 2^159 - 1)")
    _check_ca(ca_dir)
    with _ca_lock(ca_dir):
        revoked = _revoked(ca_dir)
        if serial not in revoked:
            revoked.append(serial)
        _replace(ca_dir / CA_REVOKED, (json.dumps(sorted(revoked)) + "\n").encode())
        return _write_crl(ca_dir)


def write_crl(ca_dir: Path, next_update_days: int = 7) -> Path:
    """Issue the CRL with the next CRL number: nodes refuse a CRL older than one they saw.

    The last number used is kept in ``<ca_dir>/crl_number`` (and is never below the number
    of the CRL already in the folder), so each CRL this CA writes has a higher number.
    """
    _check_ca(ca_dir)
    with _ca_lock(ca_dir):
        return _write_crl(ca_dir, next_update_days)


def _write_crl(ca_dir: Path, next_update_days: int = 7) -> Path:
    """``write_crl`` under the CA folder's lock."""
    ca_key = load_key(ca_dir / CA_KEY)
    ca_cert = load_cert(ca_dir / CA_CERT)
    revoked = _revoked(ca_dir)
    number = _next_crl_number(ca_dir)
    now = clock.now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=next_update_days))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    _replace(ca_dir / CA_CRL_NUMBER, f"{number}\n".encode())  # a number is never used twice
    out = ca_dir / CA_CRL
    _replace(out, crl.public_bytes(serialization.Encoding.PEM))
    return out


def _replace(path: Path, data: bytes) -> None:
    """Write a file whole and durably: readers (nodes watching the CRL) never see half
    of it, and a crash leaves the old file or the new one, never an empty one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _next_crl_number(ca_dir: Path) -> int:
    last = 0
    kept = ca_dir / CA_CRL_NUMBER
    if kept.exists():
        try:
            last = int(kept.read_text().strip())
        except ValueError:
            raise InvalidArgument(f"{kept} does not hold a CRL number") from None
    try:
        current = crl_number(x509.load_pem_x509_crl((ca_dir / CA_CRL).read_bytes()))
    except (FileNotFoundError, ValueError):
        current = None
    return max(last, current or 0) + 1


def check_output(ca_dir: Path, out: Path, *inputs: Path) -> None:
    """An output path that would overwrite an input or a file of the CA folder is refused
    (a CSR named ca.csr in the CA folder would else have replaced the CA's certificate)."""
    target = out.resolve()  # through a symlink too
    if any(target == x.resolve() for x in inputs) or (
        target.parent == ca_dir.resolve() and target.name in CA_FILES
    ):
        raise InvalidArgument(f"{out} would overwrite an input or a CA file: name another")


def sign_membership(
    ca_dir: Path,
    federation: str,
    members: tuple[membership.Member, ...],
    serial: int | None,
    out: Path,
) -> membership.Membership:
    """Sign the membership document with a serial above every one this CA signed before.

    A node keeps the highest serial it started with and takes an equal one again, so two
    documents signed with one serial could be swapped at a restart (review, 2026-12-04).
    Without ``serial`` the next one is taken. The serial is kept before the document is
    written: a serial is never used twice, even if the write fails.
    """
    _check_ca(ca_dir)
    with _ca_lock(ca_dir):
        last = _last_membership_serial(ca_dir)
        if serial is None:
            serial = last + 1
        elif serial <= last:
            raise InvalidArgument(
                f"serial {serial} is not above {last}, the last this CA signed: nodes that "
                f"took {last} would refuse it (or a restart could swap two documents of one "
                f"serial); use serial {last + 1}, or leave the serial out to take it"
            )
        doc = membership.Membership(
            federation=federation,
            serial=serial,
            issued_at=membership.now_rfc3339(),
            members=members,
        )
        try:
            signed = membership.sign(doc, load_key(ca_dir / CA_KEY))
        except membership.MembershipError as exc:
            raise InvalidArgument(str(exc)) from None
        _replace(ca_dir / CA_MEMBERSHIP_SERIAL, f"{serial}\n".encode())
        _replace(out, signed)
    return doc


def _last_membership_serial(ca_dir: Path) -> int:
    kept = ca_dir / CA_MEMBERSHIP_SERIAL
    try:
        text = kept.read_text().strip()
    except FileNotFoundError:
        return 0  # a CA folder from before the floor was kept, or one that never signed
    if not (text.isascii() and text.isdigit()):
        raise InvalidArgument(f"{kept} does not hold a membership serial")
    return int(text)


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    """The CRL's CRLNumber extension (None for a CRL written without one)."""
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return None


# --- reading identities ---------------------------------------------------------------


def not_in_force(cert: x509.Certificate, revocations: RevocationList | None) -> str:
    """Why a certificate that signs something now is not in force ("" when it is): what a
    node takes from a peer now (a receipt, a relayed request, a SecAgg+ key) needs its
    signer's certificate unexpired and unrevoked, as the door checks a caller's. (The door
    sees only callers: a revoked owner could still answer a home that called it.) Kept
    evidence checked later, offline, does not use this: it was in force when signed."""
    serial = format(cert.serial_number, "x")
    now = clock.now()
    if cert.not_valid_after_utc <= now:
        return f"certificate {serial} expired at {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if cert.not_valid_before_utc > now + dt.timedelta(minutes=5):  # clocks may differ
        return f"certificate {serial} is valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if revocations is not None:
        try:
            why = revocations.revocation(serial, *issuer_of(cert))
            if why:
                return f"certificate {serial} {why}"
        except Unauthenticated as exc:  # an expired CRL: nothing is known to be in force
            return exc.message
    return ""


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
    role, _, encoded = urns[0].partition(":")
    try:
        subject_id = unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        raise Unauthenticated("certificate carries an id that is not UTF-8") from None
    if quote(subject_id, safe=_URN_SAFE) != encoded:  # one spelling per id, as the CA writes
        raise Unauthenticated("certificate carries an id not written as fedgate's CA writes it")
    if role not in ROLES or not subject_id:
        raise Unauthenticated(f"certificate carries an unknown role {role!r}")
    issuer, issuer_key = issuer_of(cert)
    return Identity(
        role=role,
        id=subject_id,
        org=_name_attr(cert.subject, NameOID.ORGANIZATION_NAME),
        serial=format(cert.serial_number, "x"),
        not_after=cert.not_valid_after_utc,
        issuer=issuer,
        issuer_key=issuer_key,
    )


def issuer_of(cert: x509.Certificate) -> tuple[str, str]:
    """The certificate's issuer name (RFC 4514) and authority key identifier (hex, ""
    without one): which CA's CRL may revoke it."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        key = aki.key_identifier.hex() if aki.key_identifier else ""
    except x509.ExtensionNotFound:
        key = ""
    return cert.issuer.rfc4514_string(), key


def key_id(cert: x509.Certificate) -> str:
    """A CA's key identifier (hex SHA-1 of its public key, RFC 5280's method 1, as
    ``sign_csr`` writes it into the authority key identifier): a CA's certificates
    renewed with one key are one issuer."""
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest.hex()


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


@dataclass(frozen=True)
class CrlMark:
    """What orders CRLs: a node never goes back to a CRL older than one it has taken."""

    number: int | None  # the CRLNumber extension (None: a CRL written without one)
    this_update: dt.datetime
    digest: str  # SHA-256 of the DER: tells two CRLs of the same number apart

    @staticmethod
    def of(crl: x509.CertificateRevocationList) -> CrlMark:
        return CrlMark(
            number=crl_number(crl),
            this_update=crl.last_update_utc,
            digest=crl.fingerprint(hashes.SHA256()).hex(),
        )

    def __str__(self) -> str:
        number = "without number" if self.number is None else f"number {self.number}"
        return f"CRL {number} of {self.this_update:%Y-%m-%d %H:%M:%S} UTC"


def crl_older_reason(new: CrlMark, seen: CrlMark) -> str:
    """Why ``new`` may not replace ``seen``, the newest CRL a node has taken ("" if it may).

    Higher CRL numbers win, whatever their this-update; the same number with other
    contents or a missing number after a numbered CRL are refused (a replayed or forged
    CRL), and between CRLs without numbers an earlier this-update.
    """
    if new.digest == seen.digest:
        return ""
    if seen.number is not None:
        if new.number is None:
            return f"it has no CRL number; this node has seen CRL number {seen.number}"
        if new.number < seen.number:
            return (
                f"CRL number {new.number} is older than CRL number {seen.number} this node "
                "has seen (a replayed CRL)"
            )
        if new.number == seen.number:
            return (
                f"CRL number {new.number} is the number of the CRL this node has, but its "
                "contents differ"
            )
        # A higher number wins whatever its this-update says: a CA host whose clock ran
        # fast once would else have every node refuse its next CRLs (review, 2026-12-04).
        return ""
    if new.this_update < seen.this_update or (
        new.number is None and new.this_update == seen.this_update
    ):
        return f"{new} is not newer than {seen} this node has seen"
    return ""


_MISSING = (-1, -1, -1, -1)  # the stamp of a CRL file that is not there
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class CrlIssuer:
    """A CA of the ``tls.ca`` bundle as the issuer of one CRL: its certificates of one key
    (a CA certificate renewed with its key is the same issuer)."""

    key_id: str  # ``key_id`` of its key: names it in the node's state
    label: str  # its common name (else its whole name), for messages and the audit
    names: frozenset[str]  # the subjects of its certificates (RFC 4514)
    public_key: ec.EllipticCurvePublicKey
    # Its certificates that another CA of the bundle issued (an intermediate CA): (serial,
    # issuer name, issuer key id), each revocable by that CA's CRL.
    issued: tuple[tuple[int, str, str], ...] = ()


def crl_issuers(bundle: list[x509.Certificate]) -> list[CrlIssuer]:
    """The issuers of a CA bundle, in its order."""
    found: dict[str, CrlIssuer] = {}
    subjects = {cert.subject.rfc4514_string() for cert in bundle}
    for cert, key in zip(bundle, ca_keys(bundle), strict=True):
        kid = key_id(cert)
        name = cert.subject.rfc4514_string()
        label = _name_attr(cert.subject, NameOID.COMMON_NAME) or name
        parent, parent_key = issuer_of(cert)
        by_other = parent in subjects and (parent != name or parent_key not in ("", kid))
        issued = ((cert.serial_number, parent, parent_key),) if by_other else ()
        seen = found.get(kid)
        if seen is not None:
            found[kid] = CrlIssuer(kid, seen.label, seen.names | {name}, key, seen.issued + issued)
        else:
            found[kid] = CrlIssuer(kid, label, frozenset({name}), key, issued)
    return list(found.values())


def membership_keys(bundle: list[x509.Certificate]) -> list[ec.EllipticCurvePublicKey]:
    """The keys that may sign the membership document: each root of the bundle (a CA no
    other CA of the bundle issued: an intermediate can be revoked by its root, and once
    revoked must not move members' addresses; review, 2026-12-05) whose certificate is in
    force now (an expired CA vouches for nothing)."""
    issued = {i.key_id for i in crl_issuers(bundle) if i.issued}
    now = clock.now()
    return [
        key
        for cert, key in zip(bundle, ca_keys(bundle), strict=True)
        if key_id(cert) not in issued
        and cert.not_valid_before_utc <= now + dt.timedelta(minutes=5)  # clocks may differ
        and now < cert.not_valid_after_utc
    ]


@dataclass(frozen=True)
class _InForce:
    """One CA's CRL in force."""

    mark: CrlMark
    serials: frozenset[int]
    next_update: dt.datetime | None


class RevocationList:
    """The CAs' CRLs, re-read whenever the file changes, so revocation needs no restart.

    ``tls.crl`` holds one CRL for each CA of ``tls.ca`` (concatenated PEM). Each is
    verified against its own issuer in the bundle (name and signature) and ordered
    against that issuer's CRL in force alone; a certificate is looked up in the CRL of
    its own issuer (serials are unique per CA only). A file whose CRL is of a CA not in
    the bundle, holds two CRLs of one CA, or lacks one CA's CRL, is refused at start-up.

    It fails closed: a CRL that disappears, stops parsing, is not a CA's of the bundle
    or is older than the newest one taken of its CA (by CRL number and this-update)
    leaves that CA's last good list in force (a file that cannot be read as a whole:
    every CA's), while the other CAs' newer CRLs in the file are taken; each such file is
    logged once (ERROR) and reported through ``on_event`` (audited as ``crl.refused``).
    A CRL past its next-update time refuses every certificate of its CA until the CA
    re-issues it (`fedgate ca crl`).
    """

    def __init__(self, path: Path | None, bundle: list[x509.Certificate]) -> None:
        self._path = path
        self._bundle = bundle
        self._issuers: list[CrlIssuer] | None = None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None  # of the file last judged
        self._lists: dict[str, _InForce] = {}  # by issuer key id; replaced, never changed
        self.first = ""  # key id of the issuer of the file's first CRL at start-up
        self.problem = ""  # why the current file is not all in force ("" if it is)
        # Told of each CRL taken (crl.loaded) or refused (crl.refused) after start-up.
        self.on_event: Callable[[dict], None] = lambda _event: None

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def issuers(self) -> list[CrlIssuer]:
        if self._issuers is None:
            self._issuers = crl_issuers(self._bundle)
        return self._issuers

    def _issuer(self, kid: str) -> CrlIssuer:
        return next(i for i in self.issuers if i.key_id == kid)

    def of(self, kid: str) -> str:
        """``the CRL of CA '<name>': `` before a reason about one CA's CRL ("" with one CA,
        whose messages are as they were)."""
        if len(self.issuers) == 1:
            return ""
        return f"the CRL of CA {self._issuer(kid).label!r}: "

    def _the_crl(self, kid: str) -> str:
        if len(self.issuers) == 1:
            return "the CRL"
        return f"the CRL of CA {self._issuer(kid).label!r}"

    def load(self) -> None:
        """Read the CRLs now; raises InvalidArgument (start-up) if the file is unusable."""
        if self._path is None:
            return
        with self._lock:
            stamp = self._stat()
            if stamp == _MISSING:
                raise InvalidArgument(f"tls.crl: {self._path} does not exist")
            crls = self._read()
            self._check_complete(crls)
            self.first = next(iter(crls))
            self._take(crls, stamp)

    def _stat(self) -> tuple[int, int, int, int]:
        """What tells the file changed: its time and size, and its inode and change time
        (a CRL once refused as unreadable is judged again after a chmod)."""
        assert self._path is not None
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return _MISSING
        return st.st_mtime_ns, st.st_size, st.st_ctime_ns, st.st_ino

    def _read(self) -> dict[str, x509.CertificateRevocationList]:
        """The file's CRLs by issuer key id, in the file's order; each verified against
        its own issuer in the bundle, at most one per issuer."""
        assert self._path is not None
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            raise InvalidArgument(f"CRL file {self._path} disappeared") from None
        except OSError as exc:  # unreadable (its mode, an I/O error): judged like a bad one
            raise InvalidArgument(
                f"tls.crl: {self._path} cannot be read ({exc.strerror or type(exc).__name__})"
            ) from None
        crls: dict[str, x509.CertificateRevocationList] = {}
        for block in _PEM_BLOCK.finditer(data):
            if block.group(1) != b"X509 CRL":
                raise InvalidArgument(
                    f"tls.crl: {self._path} holds a {block.group(1).decode()} block: only "
                    "CRLs (-----BEGIN X509 CRL----- blocks) belong in it"
                )
            try:
                crl = x509.load_pem_x509_crl(block.group(0))
                # cryptography reads a CRL's names, extensions and entries lazily: all of
                # them now, so that none fails later, in a caller's check (review,
                # 2026-12-05: an undecodable issuer name made every call INTERNAL)
                crl.issuer.rfc4514_string()
                CrlMark.of(crl)
                _ = crl.next_update_utc, [r.serial_number for r in crl]
            except Exception as exc:  # noqa: BLE001 - any part it cannot read (ValueError,
                # x509.DuplicateExtension ...): the file is bad input, named
                raise InvalidArgument(f"tls.crl: {self._path} is not a PEM CRL: {exc}") from None
            issuer = self._issuer_of(crl)
            if issuer.key_id in crls:
                raise InvalidArgument(
                    f"tls.crl: {self._path} holds two CRLs of CA {issuer.label!r}: keep "
                    "only its newest"
                )
            crls[issuer.key_id] = crl
        if not crls:
            raise InvalidArgument(
                f"tls.crl: {self._path} is not a PEM CRL: it holds no -----BEGIN X509 CRL----- "
                "block"
            )
        return crls

    def _issuer_of(self, crl: x509.CertificateRevocationList) -> CrlIssuer:
        """The CA of the bundle that issued ``crl``: its name, and its signature."""
        name = crl.issuer.rfc4514_string()
        for issuer in self.issuers:
            if name in issuer.names and crl.is_signature_valid(issuer.public_key):
                return issuer
        if len(self.issuers) == 1:
            raise InvalidArgument(f"tls.crl: {self._path} is not signed by the federation CA")
        raise InvalidArgument(
            f"tls.crl: {self._path} is not signed by the federation CA: its CRL of {name!r} "
            "was issued by no CA in tls.ca (name and signature)"
        )

    def _missing(self, crls: dict[str, x509.CertificateRevocationList]) -> list[CrlIssuer]:
        return [i for i in self.issuers if i.key_id not in crls]

    def _no_crl_of(self, issuer: CrlIssuer) -> str:
        return (
            f"tls.crl: {self._path} holds no CRL of CA {issuer.label!r}, which tls.ca trusts: "
            "put each CA's CRL (its <ca dir>/crl.pem) in the file"
        )

    def _check_complete(self, crls: dict[str, x509.CertificateRevocationList]) -> None:
        missing = self._missing(crls)
        if missing:  # its revoked certificates would pass unseen
            raise InvalidArgument(self._no_crl_of(missing[0]))

    def _take(
        self, crls: dict[str, x509.CertificateRevocationList], stamp: tuple[int, int, int, int]
    ) -> list[str]:
        """Put ``crls`` in force, each for its issuer; the issuers whose CRL changed."""
        lists = dict(self._lists)
        taken = []
        for kid, crl in crls.items():
            mark = CrlMark.of(crl)
            old = lists.get(kid)
            if old is not None and old.mark.digest == mark.digest:
                continue
            lists[kid] = _InForce(
                mark, frozenset(r.serial_number for r in crl), crl.next_update_utc
            )
            taken.append(kid)
        self._lists = lists
        self._stamp = stamp  # last: a caller that sees the new stamp sees the new lists
        return taken

    def _reload(self) -> None:
        if self._path is None or self._stat() == self._stamp:
            return
        with self._lock:
            stamp = self._stat()
            if stamp == self._stamp:
                return
            if not self._lists:  # nothing in force yet: fail closed, every call
                try:
                    crls = self._read()
                    self._check_complete(crls)
                except InvalidArgument as exc:
                    raise Unauthenticated(exc.message) from None
                self._take(crls, stamp)
                return
            refused: list[tuple[str, list[str]]] = []  # (reason, issuers whose list stays)
            try:
                if stamp == _MISSING:
                    raise InvalidArgument(f"CRL file {self._path} disappeared")
                crls = self._read()
            except InvalidArgument as exc:  # the whole file: every CA's list stays
                crls = {}
                refused.append((exc.message, list(self._lists)))
            else:
                for issuer in self.issuers:
                    kid = issuer.key_id
                    old = self._lists.get(kid)
                    if old is None:
                        continue
                    if kid not in crls:  # dropping a CA's CRL must not lift its revocations
                        refused.append((self._no_crl_of(issuer), [kid]))
                        continue
                    why = crl_older_reason(CrlMark.of(crls[kid]), old.mark)
                    if why:
                        refused.append((f"tls.crl: {self._path}: {self.of(kid)}{why}", [kid]))
                        del crls[kid]
            taken = self._take(crls, stamp)  # also judged once per change of the file
            self.problem = "; ".join(reason for reason, _kids in refused)
            for reason, kids in refused:
                log.error("CRL not reloaded, last good list kept: %s", reason)
                for kid in kids:
                    self._tell({"kind": "crl.refused", "reason": reason, "kept": self._seen(kid)})
            for kid in taken:
                in_force = self._lists[kid]
                log.info(
                    "CRL loaded %s%s revoked=%d", self.of(kid), in_force.mark, len(in_force.serials)
                )
                self._tell(self.loaded_event(kid))

    def _tell(self, event: dict) -> None:
        try:
            self.on_event(event)
        except Exception:  # the list in force stands even if the event cannot be recorded
            log.exception("could not record the CRL event %s", event.get("kind"))

    def _seen(self, kid: str) -> dict:
        in_force = self._lists.get(kid)
        if in_force is None:
            return {}
        mark = in_force.mark
        return {
            "issuer": self._issuer(kid).label,
            "issuer_key": kid,
            "number": mark.number,
            "this_update": mark.this_update.isoformat(),
        }

    def loaded_event(self, kid: str) -> dict:
        """The ``crl.loaded`` entry for the CRL in force of issuer ``kid``."""
        in_force = self._lists[kid]
        nxt = in_force.next_update
        return {
            "kind": "crl.loaded",
            **self._seen(kid),
            "revoked": len(in_force.serials),
            "next_update": nxt.isoformat() if nxt else "",
        }

    def loaded_events(self) -> list[dict]:
        """A ``crl.loaded`` entry for each CA's CRL in force."""
        return [self.loaded_event(kid) for kid in self._lists]

    @property
    def marks(self) -> dict[str, CrlMark]:
        """The CRLs in force by issuer key id (empty without ``tls.crl``)."""
        return {kid: in_force.mark for kid, in_force in self._lists.items()}

    @property
    def next_update(self) -> dt.datetime | None:
        """The earliest next-update time of the CRLs in force."""
        times = [i.next_update for i in self._lists.values() if i.next_update is not None]
        return min(times, default=None)

    def expiries(self) -> list[tuple[str, dt.datetime]]:
        """Each CRL in force with a next-update time: ("the CRL [of CA ...]", the time)."""
        return [
            (self._the_crl(kid), i.next_update)
            for kid, i in self._lists.items()
            if i.next_update is not None
        ]

    def refresh(self) -> None:
        """Take a changed CRL file now (housekeeping: also when no call comes)."""
        with contextlib.suppress(Unauthenticated):
            self._reload()

    def is_revoked(self, serial_hex: str, issuer: str = "", issuer_key: str = "") -> bool:
        return bool(self.revocation(serial_hex, issuer, issuer_key))

    def revocation(self, serial_hex: str, issuer: str = "", issuer_key: str = "") -> str:
        """Why the certificate is revoked ("" if it is not): the CRL of its issuer (its
        name and authority key id, as ``issuer_of`` reads them) lists the serial, or a CA
        of the bundle revoked that issuer itself (an intermediate CA listed in ``tls.ca``:
        each link up to the bundle's roots, as an X.509 path check would). Without an
        issuer, every CA's CRL is asked (fails closed); likewise among CAs of one name
        when the key id tells none."""
        self._reload()
        if self._path is None:
            return ""
        lists = self._lists
        if self._listed((int(serial_hex, 16), issuer, issuer_key), lists):
            return "has been revoked"
        ca = self._revoked_ca(issuer, issuer_key, lists, len(self.issuers))
        return f"is under {ca}, which its own CA revoked" if ca else ""

    def _revoked_ca(
        self, issuer: str, issuer_key: str, lists: dict[str, _InForce], links: int
    ) -> str:
        """The CA above a certificate of ``issuer`` that its own issuer revoked ("" if
        none). Fails closed: a CA key any of whose certificates was revoked is revoked."""
        if links == 0:  # no chain is longer than the bundle (a loop of CAs ends here)
            return ""
        for candidate in self._candidates("", issuer, issuer_key):
            for cert in candidate.issued:
                if self._listed(cert, lists):
                    return f"CA {candidate.label!r} (certificate {cert[0]:x})"
                above = self._revoked_ca(cert[1], cert[2], lists, links - 1)
                if above:
                    return above
        return ""

    def _listed(self, cert: tuple[int, str, str], lists: dict[str, _InForce]) -> bool:
        """Whether the CRL of the issuer of ``cert`` (serial, issuer, issuer key id)
        lists it; every candidate issuer's CRL must be in force."""
        serial, issuer, issuer_key = cert
        in_force = [
            self._in_force(c, lists) for c in self._candidates(f"{serial:x}", issuer, issuer_key)
        ]
        return any(serial in i.serials for i in in_force)

    def _candidates(self, serial_hex: str, issuer: str, issuer_key: str) -> list[CrlIssuer]:
        candidates = [i for i in self.issuers if not issuer or issuer in i.names]
        if len(candidates) > 1 and issuer_key:
            candidates = [i for i in candidates if i.key_id == issuer_key] or candidates
        if not candidates:
            raise Unauthenticated(f"certificate {serial_hex} was issued by no CA in tls.ca")
        return candidates

    def _in_force(self, candidate: CrlIssuer, lists: dict[str, _InForce]) -> _InForce:
        in_force = lists.get(candidate.key_id)
        if in_force is None:  # not in force yet (start-up takes every CA's)
            raise Unauthenticated(f"no CRL of CA {candidate.label!r} is in force")
        nxt = in_force.next_update
        if nxt is not None and clock.now() > nxt:
            raise Unauthenticated(
                f"{self._the_crl(candidate.key_id)} expired at {nxt:%Y-%m-%d %H:%M} UTC; "
                "the CA must re-issue it (fedgate ca crl)"
            )
        return in_force
