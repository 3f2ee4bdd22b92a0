"""An intermediate CA listed in ``tls.ca`` beside its root is revocable by the root's CRL:
its leaves are refused once the root revokes it, at the door and wherever a node checks a
signer in force (review, 2026-12-05: each certificate was looked up in its own issuer's
CRL only, so a revoked intermediate still vouched for its leaves)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from federation.membership import Membership
from gateway import clock, identity
from gateway.edge import Authenticator
from gateway.errors import Unauthenticated

WHOAMI = "/fedgate.v1.Gateway/WhoAmI"
MEMBERS = Membership("f", 1, "", ())


def _intermediate(parent: Path, folder: Path, name: str) -> x509.Certificate:
    """A CA folder whose certificate ``parent`` signed (its key, its name)."""
    identity.init_ca(folder, name=name)
    own = identity.load_cert(folder / identity.CA_CERT)
    parent_cert = identity.load_cert(parent / identity.CA_CERT)
    parent_key = identity.load_key(parent / identity.CA_KEY)
    now = clock.now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(own.subject)
        .issuer_name(parent_cert.subject)
        .public_key(own.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(own.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent_key.public_key()), False
        )
        .sign(parent_key, hashes.SHA256())
    )
    (folder / identity.CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    identity.write_crl(folder)
    return cert


def _leaf(ca: Path, user: str) -> x509.Certificate:
    _, csr = identity.make_csr("analyst", user, "Org")
    return x509.load_pem_x509_certificate(identity.sign_csr(ca, csr))


def _crl(path: Path, *cas: Path) -> identity.RevocationList:
    path.write_bytes(b"".join((ca / identity.CA_CRL).read_bytes() for ca in cas))
    crl = identity.RevocationList(path, [identity.load_cert(c / identity.CA_CERT) for c in cas])
    crl.load()
    return crl


def _refused(auth: Authenticator, cert: x509.Certificate) -> str:
    try:
        auth.authorize(identity.identity_of(cert), WHOAMI)
    except Unauthenticated as exc:
        return exc.message
    return ""


def test_a_revoked_intermediate_no_longer_vouches_for_its_leaves(tmp_path: Path) -> None:
    root = tmp_path / "root"
    identity.init_ca(root, name="Delta Root CA")
    sub = tmp_path / "sub"
    sub_cert = _intermediate(root, sub, "Anhui Sub CA")
    leaf, root_leaf = _leaf(sub, "x@a"), _leaf(root, "y@a")
    auth = Authenticator(_crl(tmp_path / "crl.pem", root, sub), lambda: MEMBERS)
    assert _refused(auth, leaf) == _refused(auth, root_leaf) == ""

    identity.revoke(root, sub_cert.serial_number)
    crl = _crl(tmp_path / "crl2.pem", root, sub)
    auth = Authenticator(crl, lambda: MEMBERS)
    why = _refused(auth, leaf)
    assert "is under CA 'Anhui Sub CA'" in why, why
    assert format(sub_cert.serial_number, "x") in why
    assert _refused(auth, root_leaf) == ""  # the root's own leaves stand
    # a signer a node takes something from is checked the same way
    assert "which its own CA revoked" in identity.not_in_force(leaf, crl)
    assert identity.not_in_force(root_leaf, crl) == ""


def test_every_link_up_to_the_root_is_checked(tmp_path: Path) -> None:
    root, mid, low = tmp_path / "root", tmp_path / "mid", tmp_path / "low"
    identity.init_ca(root, name="Delta Root CA")
    mid_cert = _intermediate(root, mid, "Province CA")
    _intermediate(mid, low, "City CA")
    leaf = _leaf(low, "x@c")
    auth = Authenticator(_crl(tmp_path / "crl.pem", root, mid, low), lambda: MEMBERS)
    assert _refused(auth, leaf) == ""

    identity.revoke(root, mid_cert.serial_number)  # two links above the leaf
    auth = Authenticator(_crl(tmp_path / "crl2.pem", root, mid, low), lambda: MEMBERS)
    assert "is under CA 'Province CA'" in _refused(auth, leaf)


def test_a_revoked_leaf_is_named_as_before(tmp_path: Path) -> None:
    root, sub = tmp_path / "root", tmp_path / "sub"
    identity.init_ca(root, name="Delta Root CA")
    _intermediate(root, sub, "Anhui Sub CA")
    leaf = _leaf(sub, "x@a")
    identity.revoke(sub, leaf.serial_number)
    auth = Authenticator(_crl(tmp_path / "crl.pem", root, sub), lambda: MEMBERS)
    assert _refused(auth, leaf).endswith("has been revoked")
