"""An intermediate CA listed in ``tls.ca`` beside its root is revocable by the root's CRL:
its leaves are refused once the root revokes it, at the door and wherever a node checks a
signer in force (review, 2026-12-05: each certificate was looked up in its own issuer's
CRL only, so a revoked intermediate still vouched for its leaves)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from gateway import clock, identity
from gateway.edge import Authenticator
from gateway.errors import InvalidArgument
from tests.unit.test_revocation_per_ca import MEMBERS, _refused


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


def _members(addr: str) -> tuple:
    from federation.membership import Member

    return (Member("anhui", "Anhui bureau", addr, "province"),)


def test_only_a_root_in_force_signs_the_membership(tmp_path: Path) -> None:
    """Review (2026-12-05): any CA key of ``tls.ca`` could sign the membership, so an
    intermediate its root had revoked (or a CA past its expiry) could move a member's
    address, and raise the serial to the top for good. Now only the bundle's roots in
    force sign it: at start-up and on reload."""
    from gateway.errors import ConfigError
    from gateway.membership_source import MembershipSource

    root, sub = tmp_path / "root", tmp_path / "sub"
    identity.init_ca(root, name="Delta Root CA")
    _intermediate(root, sub, "Anhui Sub CA")
    bundle = [identity.load_cert(c / identity.CA_CERT) for c in (root, sub)]
    path = tmp_path / "membership.json"
    identity.sign_membership(root, "f", _members("127.0.0.1:1"), 1, path)
    source = MembershipSource(path, bundle)
    events: list[dict] = []
    source.on_event = events.append
    moved = tmp_path / "moved.json"
    identity.sign_membership(sub, "f", _members("203.0.113.9:1"), 2**62, moved)
    path.write_bytes(moved.read_bytes())
    assert source().serial == 1  # the intermediate's document is refused on reload
    assert source().members[0].address == "127.0.0.1:1"
    assert [e["kind"] for e in events] == ["membership.refused"], events
    with pytest.raises(ConfigError, match="does not verify"):  # and at start-up
        MembershipSource(moved, bundle)
    identity.sign_membership(root, "f", _members("127.0.0.1:2"), 2, path)
    assert source().serial == 2  # the root's next document is taken


def test_an_expired_ca_signs_no_membership(tmp_path: Path) -> None:
    from gateway.errors import ConfigError
    from gateway.membership_source import MembershipSource

    identity.init_ca(tmp_path / "ca", days=1)
    path = tmp_path / "membership.json"
    identity.sign_membership(tmp_path / "ca", "f", _members("127.0.0.1:1"), 1, path)
    bundle = identity.load_bundle(tmp_path / "ca" / identity.CA_CERT)
    MembershipSource(path, bundle)  # in force: taken
    later = clock.now() + dt.timedelta(days=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(clock, "now", lambda: later)
        with pytest.raises(ConfigError, match="does not verify"):
            MembershipSource(path, bundle)


def test_a_lost_revoked_list_lifts_no_revocation(tmp_path: Path) -> None:
    """Review (2026-12-05): a CA folder restored without ``revoked.json`` re-issued an
    empty CRL of a higher number, which nodes take: every revocation lifted. The current
    CRL's serials are kept in every CRL the CA writes."""
    ca = tmp_path / "ca"
    identity.init_ca(ca)
    leaver = _leaf(ca, "leaver@a")
    identity.revoke(ca, leaver.serial_number)
    (ca / identity.CA_REVOKED).unlink()
    (ca / identity.CA_CRL_NUMBER).unlink()
    identity.write_crl(ca, 30)
    crl = _crl(tmp_path / "crl.pem", ca)
    assert crl.is_revoked(format(leaver.serial_number, "x"), *identity.issuer_of(leaver))
    # a CRL that cannot be read and no list: nothing is written over it
    (ca / identity.CA_REVOKED).unlink(missing_ok=True)
    (ca / identity.CA_CRL).write_bytes(b"not a crl")
    with pytest.raises(InvalidArgument, match="restore revoked.json"):
        identity.write_crl(ca, 30)
    (ca / identity.CA_CRL).unlink()  # nor when both are gone (diff review, 2026-12-05)
    with pytest.raises(InvalidArgument, match="restore revoked.json"):
        identity.revoke(ca, 0x1234)


def test_ca_revoke_refuses_another_cas_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review (2026-12-05): `ca revoke --cert` listed another CA's certificate in this
    CA's CRL and said "revoked": nodes look a certificate up in its own issuer's CRL, so
    it stayed in force."""
    from gateway.cli.app import main

    a, b = tmp_path / "a", tmp_path / "b"
    identity.init_ca(a, name="Anhui CA")
    identity.init_ca(b, name="Jiangsu CA")
    leaver = _leaf(b, "leaver@js")
    path = tmp_path / "leaver.pem"
    path.write_bytes(leaver.public_bytes(serialization.Encoding.PEM))
    before = (a / identity.CA_CRL).read_bytes()
    assert main(["ca", "revoke", "--dir", str(a), "--cert", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not by this CA" in err and "Jiangsu CA" in err
    assert (a / identity.CA_CRL).read_bytes() == before  # nothing written
    assert main(["ca", "revoke", "--dir", str(b), "--cert", str(path)]) == 0
