"""With several CAs in ``tls.ca``, ``tls.crl`` holds one CRL per CA: each CA's revocations
apply to its own certificates, and each CA's CRL number is kept apart (review, 2026-12-05:
only the file's first CRL was read, so a second CA's revoked certificates passed, and a
second CA's CRL alone was refused as a replay whenever its number was below the first's)."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from federation.membership import Membership
from gateway import identity
from gateway.edge import Authenticator
from gateway.errors import ConfigError, InvalidArgument, Unauthenticated
from gateway.housekeeping import CrlWatch, check_crl
from gateway.state import State

WHOAMI = "/fedgate.v1.Gateway/WhoAmI"
MEMBERS = Membership("f", 1, "", ())


def _ca(folder: Path, name: str) -> Path:
    identity.init_ca(folder, name=name)
    return folder


def _cert(ca: Path, user: str, serial: int | None = None, **kw: object) -> x509.Certificate:
    """A certificate of ``user`` signed by ``ca`` (with ``serial`` if given: CAs draw
    their serials apart, so two CAs giving one serial is rare but allowed)."""
    _, csr_pem = identity.make_csr("analyst", user, "Org")
    if serial is None:
        return x509.load_pem_x509_certificate(identity.sign_csr(ca, csr_pem))
    mp = pytest.MonkeyPatch()
    mp.setattr(identity.x509, "random_serial_number", lambda: serial)
    try:
        return x509.load_pem_x509_certificate(identity.sign_csr(ca, csr_pem))
    finally:
        mp.undo()


def _pems(*cas: Path) -> bytes:
    return b"".join((ca / identity.CA_CRL).read_bytes() for ca in cas)


def _bundle(*cas: Path) -> list[x509.Certificate]:
    return [identity.load_cert(ca / identity.CA_CERT) for ca in cas]


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` and move the modification time on, as a later copy would."""
    path.write_bytes(data)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def _loaded(path: Path, data: bytes, *cas: Path) -> identity.RevocationList:
    _write(path, data)
    crl = identity.RevocationList(path, _bundle(*cas))
    crl.load()
    return crl


def _refused(auth: Authenticator, cert: x509.Certificate) -> str:
    try:
        auth.authorize(identity.identity_of(cert), WHOAMI)
    except Unauthenticated as exc:
        return exc.message
    return ""


@pytest.fixture()
def two(tmp_path: Path) -> tuple[Path, Path]:
    return _ca(tmp_path / "a", "Anhui Regional CA"), _ca(tmp_path / "b", "Jiangsu Regional CA")


def test_each_cas_crl_refuses_its_own_revoked_certificates(
    two: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = two
    a_revoked, a_kept = _cert(a, "x@a"), _cert(a, "y@a")
    b_revoked, b_kept = _cert(b, "x@b"), _cert(b, "y@b")
    b_same_serial = _cert(b, "z@b", serial=a_revoked.serial_number)
    identity.revoke(a, a_revoked.serial_number)
    identity.write_crl(a)  # A's CRL number (3) is above B's (2): no matter
    identity.revoke(b, b_revoked.serial_number)
    crl = _loaded(tmp_path / "crl.pem", _pems(a, b), a, b)
    auth = Authenticator(crl, lambda: MEMBERS)
    assert f"certificate {format(a_revoked.serial_number, 'x')}" in _refused(auth, a_revoked)
    assert "has been revoked" in _refused(auth, b_revoked)  # the second CRL of the file too
    assert _refused(auth, a_kept) == _refused(auth, b_kept) == ""
    assert _refused(auth, b_same_serial) == ""  # A's serial, but B's certificate
    assert sorted(m.number for m in crl.marks.values()) == [2, 3]
    # and a CA's CRL alone would not do: the other CA's revocations would be off
    with pytest.raises(InvalidArgument, match="holds no CRL of CA 'Jiangsu Regional CA"):
        _loaded(tmp_path / "a-only.pem", _pems(a), a, b)


def test_same_named_cas_are_told_apart_by_their_keys(tmp_path: Path) -> None:
    """Two regional CAs made with the default name: the CRL by its signature, the
    certificate by its authority key identifier."""
    a, b = _ca(tmp_path / "a", "Regional CA"), _ca(tmp_path / "b", "Regional CA")
    revoked = _cert(a, "x@a")
    twin = _cert(b, "x@b", serial=revoked.serial_number)
    identity.revoke(a, revoked.serial_number)
    auth = Authenticator(_loaded(tmp_path / "crl.pem", _pems(b, a), a, b), lambda: MEMBERS)
    assert "has been revoked" in _refused(auth, revoked)
    assert _refused(auth, twin) == ""


def test_an_older_crl_of_one_ca_is_refused_and_logged_while_the_others_newer_one_is_taken(
    two: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = two
    b_old = (b / identity.CA_CRL).read_bytes()  # B's CRL number 1
    b_revoked, a_later = _cert(b, "x@b"), _cert(a, "later@a")
    identity.revoke(b, b_revoked.serial_number)  # B's CRL number 2
    path = tmp_path / "crl.pem"
    crl = _loaded(path, _pems(a, b), a, b)
    events: list[dict] = []
    crl.on_event = events.append
    auth = Authenticator(crl, lambda: MEMBERS)
    identity.revoke(a, a_later.serial_number)  # A's current CRL, number 2
    with caplog.at_level(logging.ERROR):
        _write(path, (a / identity.CA_CRL).read_bytes() + b_old)  # the attack on B
        assert "has been revoked" in _refused(auth, b_revoked)  # B's last good list stays
        assert "has been revoked" in _refused(auth, a_later)  # A's newer one is taken
    why = (
        f"tls.crl: {path}: the CRL of CA 'Jiangsu Regional CA': "
        "CRL number 1 is older than CRL number 2 this node has seen (a replayed CRL)"
    )
    assert crl.problem == why
    logged = [r.getMessage() for r in caplog.records if "CRL not reloaded" in r.getMessage()]
    assert logged == [f"CRL not reloaded, last good list kept: {why}"]
    assert [e["kind"] for e in events] == ["crl.refused", "crl.loaded"]
    assert events[0]["kept"]["issuer"] == "Jiangsu Regional CA"
    assert events[0]["kept"]["number"] == 2
    assert events[1]["issuer"] == "Anhui Regional CA" and events[1]["number"] == 2
    # Dropping B's CRL from the file does not lift its revocations either.
    _write(path, (a / identity.CA_CRL).read_bytes())
    assert "has been revoked" in _refused(auth, b_revoked)
    assert "holds no CRL of CA 'Jiangsu" in crl.problem


def test_start_up_keeps_each_cas_crl_number_apart(two: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two
    for _ in range(4):
        identity.write_crl(a)  # A at number 5, B at 1
    b_old = (b / identity.CA_CRL).read_bytes()
    identity.write_crl(b)  # B at 2
    state = State(tmp_path / "state.sqlite3")
    path = tmp_path / "crl.pem"
    check_crl(state, _loaded(path, _pems(a, b), a, b))  # B's 2 is not "older" than A's 5
    with pytest.raises(
        ConfigError,
        match="the CRL of CA 'Jiangsu Regional CA.*CRL number 1 is older than CRL "
        "number 2 this node already used",
    ):
        check_crl(state, _loaded(path, (a / identity.CA_CRL).read_bytes() + b_old, a, b))
    with state.read() as db:
        kept = dict(db.execute("SELECT key, value FROM meta WHERE key GLOB 'crl_number*'"))
    assert sorted(kept.values()) == ["2", "5"]
    assert set(kept) == {f"crl_number:{identity.key_id(c)}" for c in _bundle(a, b)}
    state.close()


def test_a_crl_file_holds_one_crl_of_each_ca_and_no_other(
    two: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = two
    other = _ca(tmp_path / "other", "Somewhere Else CA")
    path = tmp_path / "crl.pem"
    with pytest.raises(
        InvalidArgument,
        match="CN=Somewhere Else CA' was issued by no CA in tls.ca",
    ):
        _loaded(path, _pems(a, b, other), a, b)
    identity.write_crl(b)
    twice = _pems(a, b) + (b / identity.CA_CRL).read_bytes()
    with pytest.raises(InvalidArgument, match="two CRLs of CA 'Jiangsu Regional CA"):
        _loaded(path, twice, a, b)
    cert = (a / identity.CA_CERT).read_bytes()
    with pytest.raises(InvalidArgument, match="holds a CERTIFICATE block: only CRLs"):
        _loaded(path, _pems(a, b) + cert, a, b)


def test_an_expired_crl_refuses_its_own_cas_certificates_only(
    two: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = two
    identity.write_crl(b, next_update_days=1)
    crl = _loaded(tmp_path / "crl.pem", _pems(a, b), a, b)
    auth = Authenticator(crl, lambda: MEMBERS)
    later = pytest.MonkeyPatch()
    later.setattr(identity.clock, "now", lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=2))
    try:
        assert _refused(auth, _cert(b, "x@b")).startswith(
            "the CRL of CA 'Jiangsu Regional CA' expired at"
        )
        assert _refused(auth, _cert(a, "x@a")) == ""
    finally:
        later.undo()


def test_the_one_crl_number_an_earlier_version_kept_is_the_first_crls(
    two: tuple[Path, Path], tmp_path: Path
) -> None:
    """An earlier version read the file's first CRL alone and kept its number in
    ``crl_number``: that is the floor of the first CRL's CA from now on."""
    a, b = two
    a_old = (a / identity.CA_CRL).read_bytes()
    identity.write_crl(a)
    identity.write_crl(a)  # A at 3
    digest = x509.load_pem_x509_crl((a / identity.CA_CRL).read_bytes()).fingerprint(hashes.SHA256())
    state = State(tmp_path / "state.sqlite3")
    with state.transaction() as db:
        db.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?)",
            [("crl_number", "3"), ("crl_digest", digest.hex())],
        )
    path = tmp_path / "crl.pem"
    with pytest.raises(ConfigError, match="CRL number 1 is older than CRL number 3"):
        check_crl(state, _loaded(path, a_old + (b / identity.CA_CRL).read_bytes(), a, b))
    check_crl(state, _loaded(path, _pems(a, b), a, b))
    with state.read() as db:
        kept = dict(db.execute("SELECT key, value FROM meta WHERE key GLOB 'crl_*'"))
    a_key, b_key = (identity.key_id(c) for c in _bundle(a, b))
    assert kept[f"crl_number:{a_key}"] == "3" and kept[f"crl_number:{b_key}"] == "1"
    assert "crl_number" not in kept and "crl_digest" not in kept
    state.close()


def test_crl_watch_records_each_cas_crl(two: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two
    state = State(tmp_path / "state.sqlite3")
    path = tmp_path / "crl.pem"
    crl = _loaded(path, _pems(a, b), a, b)
    check_crl(state, crl)
    watch = CrlWatch(crl, state)
    watch.start()
    identity.revoke(b, _cert(b, "x@b").serial_number)
    _write(path, _pems(a, b))
    watch()
    with state.read() as db:
        kept = dict(db.execute("SELECT key, value FROM meta WHERE key GLOB 'crl_number:*'"))
    assert kept == {
        f"crl_number:{identity.key_id(c)}": n for c, n in zip(_bundle(a, b), "12", strict=True)
    }
    state.close()


def _garbled_issuer(ca: Path) -> bytes:
    """``ca``'s CRL with bytes of its issuer's name that no UTF-8 decodes (its signature
    broken too, but cryptography reads the name first, and lazily)."""
    der = x509.load_pem_x509_crl((ca / identity.CA_CRL).read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    assert b"Jiangsu" in der
    garbled = x509.load_der_x509_crl(der.replace(b"Jiangsu", b"\xff" * 7, 1))
    return (
        b"-----BEGIN X509 CRL-----\n"
        + base64.encodebytes(garbled.public_bytes(serialization.Encoding.DER))
        + b"-----END X509 CRL-----\n"
    )


def test_a_crl_whose_issuer_name_cannot_be_read_is_refused_not_a_crash(
    two: tuple[Path, Path], tmp_path: Path
) -> None:
    """Review (2026-12-05): an undecodable issuer name raised ValueError (read lazily by
    cryptography): a traceback at start-up, and INTERNAL for every call once the file
    changed. Now the file is refused (at start-up) or kept out (at run time), named."""
    a, b = two
    bad = _pems(a) + _garbled_issuer(b)
    with pytest.raises(InvalidArgument, match="is not a PEM CRL"):
        _loaded(tmp_path / "start.pem", bad, a, b)
    path = tmp_path / "crl.pem"
    auth = Authenticator(_loaded(path, _pems(a, b), a, b), lambda: MEMBERS)
    kept = _cert(a, "y@a")
    _write(path, bad)
    assert _refused(auth, kept) == ""  # the last good lists stay in force
