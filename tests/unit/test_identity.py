"""Certificates carry role, id and org; CSRs keep keys local; CRLs list revoked serials."""

from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import identity
from gateway.errors import InvalidArgument, Unauthenticated
from tests import x509_made as made


@pytest.fixture()
def ca(tmp_path: Path) -> Path:
    identity.init_ca(tmp_path / "ca")
    return tmp_path / "ca"


def test_signed_certificate_carries_role_id_and_org(ca: Path) -> None:
    key_pem, csr_pem = identity.make_csr("node", "anhui", "Anhui Data", ["127.0.0.1"])
    cert = x509.load_pem_x509_certificate(identity.sign_csr(ca, csr_pem))
    ident = identity.identity_of(cert)
    assert (ident.role, ident.id, ident.org) == ("node", "anhui", "Anhui Data")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "anhui.node.fedgate" in san.get_values_for_type(x509.DNSName)
    assert identity.verify_signed_by(cert, identity.load_bundle(ca / identity.CA_CERT))
    assert b"PRIVATE KEY" in key_pem and b"PRIVATE KEY" not in identity.sign_csr(ca, csr_pem)


def test_user_ids_must_look_like_user_at_org() -> None:
    with pytest.raises(InvalidArgument, match="user@org"):
        identity.make_csr("analyst", "nobody", "Org")
    with pytest.raises(InvalidArgument, match="role"):
        identity.make_csr("admin", "a@b", "Org")


def test_ca_refuses_a_csr_whose_signature_is_broken(ca: Path) -> None:
    _, csr_pem = identity.make_csr("analyst", "a@b", "Org")
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # flip a bit in the signature
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der))
    pem += b"-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(InvalidArgument):
        identity.sign_csr(ca, pem)


def test_certificate_from_another_ca_does_not_verify(ca: Path, tmp_path: Path) -> None:
    identity.init_ca(tmp_path / "other")
    _, csr_pem = identity.make_csr("analyst", "a@b", "Org")
    cert = x509.load_pem_x509_certificate(identity.sign_csr(tmp_path / "other", csr_pem))
    assert not identity.verify_signed_by(cert, identity.load_bundle(ca / identity.CA_CERT))


def test_certificate_without_fedgate_identity_is_unauthenticated(ca: Path) -> None:
    ca_cert = identity.load_cert(ca / identity.CA_CERT)
    with pytest.raises(Unauthenticated):
        identity.identity_of(ca_cert)


def test_private_keys_are_private_and_never_overwritten(tmp_path: Path) -> None:
    identity.write_private(tmp_path / "k.key", b"secret")
    assert (os.stat(tmp_path / "k.key").st_mode & 0o777) == 0o600
    with pytest.raises(InvalidArgument, match="refusing to overwrite"):
        identity.write_private(tmp_path / "k.key", b"other")


def test_revocation_list_is_reloaded_when_it_changes(ca: Path) -> None:
    bundle = identity.load_bundle(ca / identity.CA_CERT)
    crl = identity.RevocationList(ca / identity.CA_CRL, bundle)
    _, csr_pem = identity.make_csr("analyst", "a@b", "Org")
    cert = x509.load_pem_x509_certificate(identity.sign_csr(ca, csr_pem))
    serial = format(cert.serial_number, "x")
    assert not crl.is_revoked(serial)
    identity.revoke(ca, cert.serial_number)
    assert crl.is_revoked(serial)


def test_crl_signed_by_another_ca_is_refused(ca: Path, tmp_path: Path) -> None:
    identity.init_ca(tmp_path / "other")
    crl = identity.RevocationList(
        tmp_path / "other" / identity.CA_CRL, identity.load_bundle(ca / identity.CA_CERT)
    )
    with pytest.raises(Unauthenticated, match="not signed by the federation CA"):
        crl.is_revoked("1")


def test_validity_window_is_what_was_asked(ca: Path) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    _, csr_pem = identity.make_csr("analyst", "a@b", "Org")
    pem = identity.sign_csr(
        ca, csr_pem, not_before=now - dt.timedelta(days=2), not_after=now - dt.timedelta(days=1)
    )
    assert identity.identity_of_pem(pem).not_after == now - dt.timedelta(days=1)


@pytest.mark.parametrize("serial", [-5, 0, 2**159])
def test_a_serial_outside_x509s_range_is_refused_before_it_is_written(
    ca: Path, serial: int
) -> None:
    """A negative serial once went into revoked.json and broke every later CRL."""
    before = (ca / identity.CA_REVOKED).read_text()
    with pytest.raises(InvalidArgument, match="is not a certificate serial"):
        identity.revoke(ca, serial)
    assert (ca / identity.CA_REVOKED).read_text() == before
    identity.write_crl(ca)  # the CA still works


@pytest.mark.parametrize("junk", ["oops", '{"a": 1}', "[-5]", '["1f"]'])
def test_a_revoked_list_that_is_not_the_cas_own_is_named(ca: Path, junk: str) -> None:
    (ca / identity.CA_REVOKED).write_text(junk)
    with pytest.raises(InvalidArgument, match="revoked.json is not a list of"):
        identity.write_crl(ca)


def test_names_x509_cannot_hold_are_refused_before_a_key_is_made(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="the id must be 1 to 64 bytes of UTF-8"):
        identity.make_csr("analyst", "a" * 70 + "@org", "o", [])
    with pytest.raises(InvalidArgument, match="the organisation must be 1 to 64"):
        identity.make_csr("analyst", "a@org", "o" * 65, [])
    with pytest.raises(InvalidArgument, match="neither an IP address nor an ASCII DNS"):
        identity.make_csr("node", "n2", "o", ["\u00fc.example"])
    with pytest.raises(InvalidArgument, match="the CA's name must be 1 to 64"):
        identity.init_ca(tmp_path / "ca2", name="x" * 65)
    long_chinese = "长江三角洲区域联邦数据网关根证书颁发机构中心"  # 22 characters, 66 bytes
    with pytest.raises(InvalidArgument, match="the CA's name must be 1 to 64 bytes of UTF-8"):
        identity.init_ca(tmp_path / "ca3", name=long_chinese)
    with pytest.raises(InvalidArgument, match="the id must be 1 to 64 bytes of UTF-8"):
        identity.make_csr("analyst", long_chinese + "@org", "o", [])
    identity.init_ca(tmp_path / "ca4", name=long_chinese[:21])  # 63 bytes: fits


def test_a_profile_file_of_the_wrong_kind_is_named_before_connecting(
    ca: Path, tmp_path: Path
) -> None:
    """gRPC given a certificate as the key failed only at connect ('connection refused')."""
    from gateway.tls import secure_channel

    cert = ca / identity.CA_CERT
    with pytest.raises(InvalidArgument, match="key file .* holds no PEM private key"):
        secure_channel("127.0.0.1:1", "anhui", ca=cert, cert=cert, key=cert)
    key = tmp_path / "k.key"
    key.write_bytes(identity.make_csr("analyst", "a@o", "o")[0])
    with pytest.raises(InvalidArgument, match="certificate file .* holds no PEM certificate"):
        secure_channel("127.0.0.1:1", "anhui", ca=cert, cert=key, key=key)
    with pytest.raises(InvalidArgument, match="CA file .* is a folder"):
        secure_channel("127.0.0.1:1", "anhui", ca=tmp_path, cert=cert, key=key)
    secure_channel("127.0.0.1:1", "anhui", ca=cert, cert=cert, key=key).close()


def test_a_profile_whose_key_is_not_its_certificates_is_refused_before_connecting(
    ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review (2026-12-05): another key, or one under a passphrase, passed the local
    checks and came back as "the TLS handshake failed: the node refused our certificate"
    (docs/cli.md: cert and key are checked before connecting, as node start checks its own)."""
    from gateway.cli.app import main
    from gateway.client import Profile

    key_pem, csr = identity.make_csr("analyst", "li.wei@shanghai", "Shanghai")
    (tmp_path / "user.pem").write_bytes(identity.sign_csr(ca, csr))
    key = tmp_path / "user.key"
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'node = "shanghai"\naddress = "127.0.0.1:1"\nca = "{ca / identity.CA_CERT}"\n'
        'cert = "user.pem"\nkey = "user.key"\n'
    )
    key.write_bytes(key_pem)
    assert Profile.load(profile).key == key
    other = identity.new_key()
    key.write_bytes(identity.key_pem(other))
    with pytest.raises(InvalidArgument, match="key file .*user.key is not the private key of"):
        Profile.load(profile)
    assert main(["whoami", "--profile", str(profile)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedgate: error: key file ") and err.count("\n") == 1
    key.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(InvalidArgument, match="user.key is encrypted with a passphrase"):
        Profile.load(profile)


def test_a_ca_file_that_is_not_pem_is_one_plain_line(tmp_path: Path) -> None:
    # the library's own text came through: "Unable to load PEM file. See https://...
    # MalformedFraming" (seen by an operator)
    bad = tmp_path / "ca.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(InvalidArgument) as info:
        identity.load_bundle(bad)
    assert info.value.message == (
        f"{bad} is not a PEM certificate bundle (-----BEGIN CERTIFICATE----- blocks)"
    )


@pytest.mark.parametrize(
    "host",
    [
        "jiangsu.node.fedgate",
        "*.node.fedgate",
        "*.example.org",
        "jiangsu.node.fedgate\x00x",  # review (2026-12-04): printed raw, it hid the name
        "evil.example\x1b[2K\r",
        "-lead.example",
        "a..b",
    ],
)
def test_a_node_cannot_ask_for_another_nodes_tls_name_or_a_wildcard(ca: Path, host: str) -> None:
    """Review (2026-12-04): hefei's CSR asking for jiangsu.node.fedgate was signed, and a
    server with that certificate passed a client's check for jiangsu (or any node)."""
    with pytest.raises(InvalidArgument, match="wildcard|another node|not a DNS host name"):
        identity.make_csr("node", "hefei", "Hefei", ["127.0.0.1", host])
    csr = made.csr_pem(sans=[x509.DNSName(host)])  # by other tools: the CA refuses it too
    with pytest.raises(InvalidArgument, match="wildcard|another node|not a DNS host name"):
        identity.sign_csr(ca, csr)
    _, own = identity.make_csr("node", "hefei", "Hefei", ["hefei.node.fedgate", "gw.hefei.gov"])
    cert = x509.load_pem_x509_certificate(identity.sign_csr(ca, own))
    assert identity.host_names(cert) == ["hefei.node.fedgate", "gw.hefei.gov"]


def test_an_encrypted_key_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    """Review (2026-12-04): a passphrase-protected key ended in a traceback (TypeError)."""
    key = identity.new_key()
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    path = tmp_path / "node.key"
    path.write_bytes(encrypted)
    with pytest.raises(InvalidArgument, match="is encrypted with a passphrase"):
        identity.load_key(path)
    path.write_bytes(identity.key_pem(key))  # the same key unencrypted loads
    assert identity.load_key(path).private_numbers() == key.private_numbers()


def test_the_certificate_holds_only_the_checked_subject(ca: Path) -> None:
    """Review (2026-12-04): every attribute of the CSR was copied, so a hefei CSR with a
    second CN and O read as jiangsu's to tools that take the last CN."""
    extra = (("CN", "jiangsu.node.fedgate"), ("O", "Jiangsu"))
    cert = x509.load_pem_x509_certificate(
        identity.sign_csr(ca, made.csr_pem((*made.HEFEI_NODE, *extra)))
    )
    assert cert.subject.rfc4514_string() == "OU=node,O=Hefei,CN=hefei"


def test_a_user_id_beyond_ascii_is_signed_and_read_back(ca: Path) -> None:
    """Review (2026-12-04): a URI is ASCII, so `ca sign` of 张敏@anhui ended in a
    traceback. The id goes into the URN percent-encoded and comes back whole; a `%` in
    an id stays a `%`."""
    for who in ("张敏@anhui", "a%41b@x", "li.wei@shanghai"):
        _key, csr = identity.make_csr("analyst", who, "安徽省数据资源局")
        cert = x509.load_pem_x509_certificate(identity.sign_csr(ca, csr))
        assert identity.identity_of(cert).id == who


def test_a_ca_folder_with_any_ca_file_is_not_made_anew(tmp_path: Path) -> None:
    """Review (2026-12-04): with its key moved offline, as advised, `ca init` made a new
    CA over the old certificate and emptied its revocations."""
    identity.init_ca(tmp_path / "ca")
    (tmp_path / "ca" / identity.CA_KEY).unlink()  # the key kept offline
    revoked = (tmp_path / "ca" / identity.CA_REVOKED).read_text()
    with pytest.raises(InvalidArgument, match="ca.pem already exists"):
        identity.init_ca(tmp_path / "ca")
    assert (tmp_path / "ca" / identity.CA_REVOKED).read_text() == revoked


def test_a_node_csr_asking_for_an_ip_network_is_refused(ca: Path) -> None:
    """Review (2026-12-04): an IP SAN of 0.0.0.0/0 was signed."""
    import ipaddress

    csr = made.csr_pem(sans=[x509.IPAddress(ipaddress.ip_network("0.0.0.0/0"))])
    with pytest.raises(InvalidArgument, match="network 0.0.0.0/0"):
        identity.sign_csr(ca, csr)


def test_an_id_spelled_otherwise_than_the_ca_writes_is_refused(ca: Path) -> None:
    """Review (2026-12-04): a URN written raw by an older CA (``%61lice@hefei``) decoded
    to another id (``alice@hefei``) than the keeper saw and signed."""
    urn = x509.UniformResourceIdentifier("urn:fedgate:analyst:%61lice@hefei")
    cert = made.self_signed("%61lice@hefei", identity.new_key(), [urn])
    with pytest.raises(Unauthenticated, match="not written as fedgate's CA writes it"):
        identity.identity_of(cert)


def test_a_csr_with_a_key_other_than_p256_is_refused(ca: Path) -> None:
    """Review (2026-12-04): any key was signed; receipts and heads are checked as P-256."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    analyst = (("CN", "a@b"), ("O", "B"), ("OU", "analyst"))
    for key in (rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP384R1())):
        with pytest.raises(InvalidArgument, match="not EC P-256"):
            identity.sign_csr(ca, made.csr_pem(analyst, key=key))


def test_a_bundle_holding_a_leaf_certificate_is_refused(ca: Path, tmp_path: Path) -> None:
    """Review (2026-12-04): a node's certificate pasted into tls.ca (a "chain") let that
    node's key sign CRLs and membership documents as a CA."""
    _key, csr = identity.make_csr("node", "hefei", "Hefei", ["127.0.0.1"])
    leaf = identity.sign_csr(ca, csr)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes((ca / identity.CA_CERT).read_bytes() + leaf)
    with pytest.raises(InvalidArgument, match="which is not a CA certificate"):
        identity.load_bundle(bundle)
    assert len(identity.load_bundle(ca / identity.CA_CERT)) == 1


def test_revocations_at_once_each_keep_their_serial_and_number(ca: Path) -> None:
    """Review (2026-12-04): two `ca revoke` at once read the list, and the second write
    lost the first's serial; they could also write two CRLs of one number."""
    import threading

    start = identity.crl_number(x509.load_pem_x509_crl((ca / identity.CA_CRL).read_bytes()))
    serials = [1000 + i for i in range(8)]
    threads = [threading.Thread(target=identity.revoke, args=(ca, s)) for s in serials]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    crl = x509.load_pem_x509_crl((ca / identity.CA_CRL).read_bytes())
    assert sorted(r.serial_number for r in crl) == serials
    assert identity.crl_number(crl) == start + len(serials)
    assert not [p.name for p in ca.iterdir() if p.name.endswith(".tmp") or ".crl.pem." in p.name]


def test_a_folder_that_is_no_ca_gets_the_key_message_and_no_lock_file(tmp_path: Path) -> None:
    """Review (2026-12-04): the lock file was opened first, so `ca crl --dir typo` said
    `typo/.lock: No such file or directory`, and a folder that is no CA's got a lock."""
    for folder in (tmp_path / "typo", tmp_path):
        with pytest.raises(InvalidArgument, match=r"key file .*ca.key does not exist"):
            identity.write_crl(folder)
        with pytest.raises(InvalidArgument, match=r"key file .*ca.key does not exist"):
            identity.revoke(folder, 5)
    assert not (tmp_path / identity.CA_LOCK).exists()
