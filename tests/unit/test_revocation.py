"""Revocation sticks: CRLs are numbered, an older one is refused (also across restarts),
expiry is checked on every call, and a refusal's log line is bounded."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from federation.membership import Membership
from gateway import identity
from gateway.config import parse
from gateway.edge import Authenticator, log_field
from gateway.errors import ConfigError, Unauthenticated
from gateway.housekeeping import CrlWatch, check_crl
from gateway.state import State


@pytest.fixture()
def ca(tmp_path: Path) -> Path:
    identity.init_ca(tmp_path / "ca")
    return tmp_path / "ca"


def _crl(ca: Path) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl((ca / identity.CA_CRL).read_bytes())


def _serial(ca: Path) -> int:
    _, csr_pem = identity.make_csr("analyst", "a@b", "Org")
    return x509.load_pem_x509_certificate(identity.sign_csr(ca, csr_pem)).serial_number


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` and move the modification time on, as a later copy would."""
    path.write_bytes(data)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def _revocations(ca: Path) -> tuple[identity.RevocationList, list[dict]]:
    crl = identity.RevocationList(ca / identity.CA_CRL, identity.load_bundle(ca / identity.CA_CERT))
    crl.load()
    events: list[dict] = []
    crl.on_event = events.append
    return crl, events


def test_each_crl_has_a_higher_number(ca: Path) -> None:
    assert identity.crl_number(_crl(ca)) == 1
    identity.revoke(ca, _serial(ca))
    assert identity.crl_number(_crl(ca)) == 2
    identity.write_crl(ca)
    assert identity.crl_number(_crl(ca)) == 3
    assert (ca / identity.CA_CRL_NUMBER).read_text() == "3\n"
    (ca / identity.CA_CRL_NUMBER).unlink()  # lost: the CRL in the folder still counts
    identity.write_crl(ca)
    assert identity.crl_number(_crl(ca)) == 4


def test_an_older_crl_is_refused_and_the_revocation_stays(
    ca: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = (ca / identity.CA_CRL).read_bytes()
    serial = _serial(ca)
    identity.revoke(ca, serial)
    crl, events = _revocations(ca)
    assert crl.is_revoked(format(serial, "x"))
    with caplog.at_level(logging.ERROR):
        _replace(ca / identity.CA_CRL, old)
        assert crl.is_revoked(format(serial, "x"))
        assert crl.is_revoked(format(serial, "x"))  # judged once per change of the file
    assert "CRL number 1 is older than CRL number 2" in crl.problem
    assert [r.getMessage() for r in caplog.records if "CRL not reloaded" in r.getMessage()] == [
        f"CRL not reloaded, last good list kept: {crl.problem}"
    ]
    assert [e["kind"] for e in events] == ["crl.refused"]
    assert events[0]["kept"]["number"] == 2


def _signed_crl(ca: Path, number: int | None) -> bytes:
    """A CRL signed by the CA, issued 5 s after the current one, revoking no one, with
    CRL number ``number`` (none for None)."""
    current = _crl(ca)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(current.issuer)
        .last_update(current.last_update_utc + dt.timedelta(seconds=5))
        .next_update(current.last_update_utc + dt.timedelta(days=1))
    )
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), critical=False)
    signed = builder.sign(identity.load_key(ca / identity.CA_KEY), hashes.SHA256())
    return signed.public_bytes(serialization.Encoding.PEM)


def test_same_number_other_contents_is_refused(ca: Path) -> None:
    serial = _serial(ca)
    identity.revoke(ca, serial)
    crl, events = _revocations(ca)
    _replace(ca / identity.CA_CRL, _signed_crl(ca, number=2))
    assert crl.is_revoked(format(serial, "x"))
    assert "CRL number 2 is the number of the CRL this node has" in crl.problem
    assert [e["kind"] for e in events] == ["crl.refused"]


def test_a_newer_crl_is_taken_and_the_same_one_again_is_quiet(ca: Path) -> None:
    crl, events = _revocations(ca)
    saved = (ca / identity.CA_CRL).read_bytes()
    _replace(ca / identity.CA_CRL, b"garbage")
    assert not crl.is_revoked("1")
    assert "not a PEM CRL" in crl.problem
    _replace(ca / identity.CA_CRL, saved)  # the list in force, back: no event, no problem
    assert not crl.is_revoked("1") and crl.problem == ""
    serial = _serial(ca)
    identity.revoke(ca, serial)
    assert crl.is_revoked(format(serial, "x"))
    assert [e["kind"] for e in events] == ["crl.refused", "crl.loaded"]
    assert events[1]["number"] == 2 and events[1]["revoked"] == 1


def test_a_crl_without_number_after_a_numbered_one_is_refused(ca: Path) -> None:
    crl, _events = _revocations(ca)
    _replace(ca / identity.CA_CRL, _signed_crl(ca, number=None))
    crl.is_revoked("1")
    assert "it has no CRL number; this node has seen CRL number 1" in crl.problem


def _loaded(path: Path, data: bytes, ca: Path) -> identity.RevocationList:
    """A node's revocation list at start-up with ``data`` as its ``tls.crl``."""
    path.write_bytes(data)
    crl = identity.RevocationList(path, identity.load_bundle(ca / identity.CA_CERT))
    crl.load()
    return crl


def test_start_up_refuses_a_crl_older_than_the_remembered_one(ca: Path, tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite3")
    path = tmp_path / "crl.pem"
    first = (ca / identity.CA_CRL).read_bytes()
    identity.revoke(ca, _serial(ca))
    second = (ca / identity.CA_CRL).read_bytes()
    check_crl(state, _loaded(path, second, ca))
    with pytest.raises(ConfigError, match="CRL number 1 is older than CRL number 2"):
        check_crl(state, _loaded(path, first, ca))
    other = _loaded(path, _signed_crl(ca, number=2), ca)
    with pytest.raises(ConfigError, match="CRL number 2 is the number of the CRL"):
        check_crl(state, other)
    check_crl(state, _loaded(path, second, ca))  # the same CRL again is fine
    state.close()


def test_crl_watch_audits_and_remembers(ca: Path, tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite3")
    crl, _events = _revocations(ca)
    check_crl(state, crl)
    watch = CrlWatch(crl, state)
    watch.start()
    old = (ca / identity.CA_CRL).read_bytes()
    identity.revoke(ca, _serial(ca))
    watch()  # a housekeeping round notices the new file without any call
    _replace(ca / identity.CA_CRL, old)
    watch()
    with state.read() as db:
        rows = db.execute("SELECT body FROM audit ORDER BY seq").fetchall()
        kept = db.execute("SELECT value FROM meta WHERE key GLOB 'crl_number:*'").fetchone()
    bodies = [json.loads(r[0]) for r in rows]
    assert [b["kind"] for b in bodies] == ["crl.loaded", "crl.loaded", "crl.refused"]
    assert [b.get("number") for b in bodies[:2]] == [1, 2]
    assert "older than CRL number 2" in bodies[2]["reason"]
    assert kept == ("2",)
    state.close()


def _identity(not_after: dt.datetime) -> identity.Identity:
    return identity.Identity("analyst", "a@b", "Org", "1f", not_after)


def test_an_expired_certificate_is_refused_per_call() -> None:
    members = Membership("f", 1, "", ())
    auth = Authenticator(identity.RevocationList(None, []), lambda: members)
    method = "/fedgate.v1.Gateway/WhoAmI"
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    assert auth.authorize(_identity(soon), method).id == "a@b"
    past = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with pytest.raises(Unauthenticated, match="1f of analyst:a@b expired at 2020-01-02"):
        auth.authorize(_identity(past), method)


def test_log_fields_are_bounded_and_one_line() -> None:
    assert log_field("short") == "short"
    assert log_field("a\nb\u2029c") == "a\\u000ab\\u2029c"
    long = log_field("x" * (4 << 20))
    assert len(long) < 400 and long.endswith(f"...[cut, {4 << 20} chars]")


def test_log_rotation_is_configurable(tmp_path: Path) -> None:
    for name in ("ca.pem", "node.pem", "node.key", "membership.json"):
        (tmp_path / name).write_text("x")
    raw: dict = {
        "node": {"id": "anhui", "listen": "127.0.0.1:7000", "data_dir": "data"},
        "tls": {"ca": "ca.pem", "cert": "node.pem", "key": "node.key"},
        "federation": {"membership": "membership.json"},
    }
    cfg = parse(raw, base=tmp_path)
    assert (cfg.log_max_bytes, cfg.log_backups) == (10 * 1024 * 1024, 3)
    raw["node"] |= {"log_max_bytes": 1 << 20, "log_backups": 5}
    cfg = parse(raw, base=tmp_path)
    assert (cfg.log_max_bytes, cfg.log_backups) == (1 << 20, 5)
    for field, value in (("log_max_bytes", 10), ("log_backups", 0)):
        with pytest.raises(ConfigError, match=f"node.{field}"):
            parse({**raw, "node": {**raw["node"], field: value}}, base=tmp_path)


def test_node_log_rotates_and_is_written_once(tmp_path: Path) -> None:
    from gateway.node import setup_logging

    root = logging.getLogger()
    before = list(root.handlers)
    setup_logging(tmp_path, "anhui", max_bytes=64 * 1024, backups=2)
    added = [h for h in root.handlers if h not in before]
    try:
        # stderr is not a terminal here (as under the launcher): node.log is the one copy
        assert [type(h).__name__ for h in added] == ["NodeLogHandler"]
        for i in range(4000):
            logging.getLogger("fedgate.test").warning("line %d %s", i, "y" * 80)
    finally:
        for h in added:
            root.removeHandler(h)
            h.close()
    sizes = {p.name: p.stat().st_size for p in tmp_path.glob("node.log*")}
    assert set(sizes) == {"node.log", "node.log.1", "node.log.2"}
    assert all(size <= 64 * 1024 for size in sizes.values())


def test_a_higher_number_wins_over_an_earlier_this_update() -> None:
    """Review (2026-12-04): a CA host whose clock ran fast once wrote CRL 1 with a late
    this-update; CRL 2, written after the clock was set right, was refused by every
    running node (while a restart took it). Numbered CRLs are ordered by number."""
    late = dt.datetime(2026, 12, 10, tzinfo=dt.UTC)
    seen = identity.CrlMark(1, late, "aa" * 32)
    newer = identity.CrlMark(2, late - dt.timedelta(days=2), "bb" * 32)
    assert identity.crl_older_reason(newer, seen) == ""
    older = identity.CrlMark(1, late + dt.timedelta(days=1), "cc" * 32)
    assert "CRL number 1 is the number" in identity.crl_older_reason(older, seen)
    unnumbered = identity.CrlMark(None, late - dt.timedelta(days=1), "dd" * 32)
    assert identity.crl_older_reason(unnumbered, identity.CrlMark(None, late, "aa" * 32))


def test_an_unreadable_crl_keeps_the_last_good_list_and_housekeeping_goes_on(
    ca: Path, tmp_path: Path
) -> None:
    """Review (2026-12-04): a CRL the node could not read (its mode, an I/O error) raised
    on every call (INTERNAL, health checks too) and ended every housekeeping round before
    its checkpoint; it is judged once like a bad file, the last good list kept."""
    serial = _serial(ca)
    identity.revoke(ca, serial)
    crl, events = _revocations(ca)
    path = ca / identity.CA_CRL
    kept = path.read_bytes()
    path.unlink()
    path.mkdir()  # read_bytes() raises IsADirectoryError, an OSError (root reads mode 000)
    try:
        assert crl.is_revoked(format(serial, "x"))  # judged once: the list in force stays
        assert crl.is_revoked(format(serial, "x"))
        assert [e["kind"] for e in events] == ["crl.refused"]
        assert "cannot be read" in events[0]["reason"]
        state = State(tmp_path / "state.sqlite3")
        from gateway.audit import AuditLog
        from gateway.housekeeping import housekeeping
        from gateway.policy import GrantStore

        key_pem, _ = identity.make_csr("node", "anhui", "Org")
        identity.write_private(tmp_path / "n.key", key_pem)
        audit = AuditLog(state, "anhui", identity.load_key(tmp_path / "n.key"), b"")

        def broken_crl() -> None:
            raise OSError("the CRL step failed")

        housekeeping(broken_crl, GrantStore(state), audit, 0)()  # type: ignore[arg-type]
        with state.read() as db:  # the checkpoint after the failed step was signed
            assert db.execute("SELECT COUNT(*) FROM audit_heads").fetchone() == (1,)
        state.close()
    finally:
        path.rmdir()
        path.write_bytes(kept)


def test_a_housekeeping_step_that_keeps_failing_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Review (2026-12-04): a round a second, each failing step's traceback would have
    filled the node's log in hours on a full disk; it is logged when it starts failing
    (or fails otherwise) and when it succeeds again."""
    from gateway.audit import AuditLog
    from gateway.housekeeping import housekeeping
    from gateway.policy import GrantStore

    state = State(tmp_path / "state.sqlite3")
    key_pem, _ = identity.make_csr("node", "anhui", "Org")
    identity.write_private(tmp_path / "n.key", key_pem)
    audit = AuditLog(state, "anhui", identity.load_key(tmp_path / "n.key"), b"")
    failure = ["disk full"]

    def crl() -> None:
        if failure:
            raise OSError(failure[0])

    job = housekeeping(crl, GrantStore(state), audit, 0)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="fedgate.node"):
        for _ in range(5):
            job()
        failure[0] = "I/O error"
        job()
        failure.clear()
        job()
        job()
    lines = [r.getMessage() for r in caplog.records if "housekeeping" in r.getMessage()]
    assert len(lines) == 3, lines
    assert "the CRL failed (OSError: 'disk full')" in lines[0]
    assert "'I/O error'" in lines[1] and lines[2] == "housekeeping: the CRL succeeds again"
    state.close()


def test_a_crl_taken_while_the_state_cannot_be_written_is_recorded_once_it_can(
    ca: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (2026-12-04, night): the new list was in force, but its crl.loaded entry and
    CRL number were never written after the write failed, so a restart took the older
    CRL back and the serial was no longer revoked."""
    from gateway.audit import AuditLog
    from gateway.errors import CannotRecord

    state = State(tmp_path / "state.sqlite3")
    first = (ca / identity.CA_CRL).read_bytes()
    crl, _events = _revocations(ca)
    check_crl(state, crl)
    watch = CrlWatch(crl, state)
    watch.start()
    serial = _serial(ca)
    identity.revoke(ca, serial)
    real = AuditLog.append_in

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise CannotRecord()

    monkeypatch.setattr(AuditLog, "append_in", disk_full)
    with pytest.raises(CannotRecord):
        watch()  # takes CRL 2: in force at once, but nothing can be written
    assert crl.is_revoked(format(serial, "x"))
    assert [m.number for m in crl.marks.values()] == [2]
    with pytest.raises(CannotRecord):
        watch()  # the next round tries again (housekeeping logs it)
    monkeypatch.setattr(AuditLog, "append_in", real)
    watch()  # the disk has room again
    watch()  # and only once
    with state.read() as db:
        kinds = [json.loads(r[0])["kind"] for r in db.execute("SELECT body FROM audit")]
        kept = db.execute("SELECT value FROM meta WHERE key GLOB 'crl_number:*'").fetchone()
    assert kinds.count("crl.loaded") == 2 and kept == ("2",)
    with pytest.raises(ConfigError, match="older than CRL number 2"):
        check_crl(state, _loaded(tmp_path / "old.pem", first, ca))  # a restart refuses it
    state.close()
