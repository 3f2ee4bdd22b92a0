"""Background work on the node's own clock: checkpoints, expired grants, the CRL, probes.

Each job is a function of what it needs; ``every`` runs one in its own thread until the
node stops, and a failed round is logged and retried at the next tick.

It owns the ``crl_number:<key id>`` and ``crl_digest:<key id>`` keys of the ``meta``
table: the newest CRL this node has taken of each CA (by the CA's key identifier), so that
an older CRL is refused, also across restarts.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from federation.envelope import CLOCK_SKEW_SECONDS, MAX_AGE_SECONDS
from gateway.audit import AuditLog
from gateway.clock import now, utc
from gateway.errors import ConfigError, loggable
from gateway.identity import CrlMark, RevocationList
from gateway.node_log import cap_stderr
from gateway.policy.store import GrantStore
from gateway.state import State
from gateway.transport import Transport

log = logging.getLogger("fedgate.node")

CRL_WARN_BEFORE = dt.timedelta(days=1)
CRL_WARN_EVERY = 3600.0


def every(stop: threading.Event, seconds: float, job: Callable[[], None], name: str) -> None:
    """Start ``job`` every ``seconds`` in a daemon thread until ``stop`` is set."""

    def loop() -> None:
        while not stop.wait(seconds):
            try:
                job()
            except Exception:  # keep the node up; the next round retries
                log.exception("%s round failed", name)

    threading.Thread(target=loop, name=name, daemon=True).start()


def remember_crl(db: sqlite3.Connection, issuer_key: str, mark: CrlMark) -> None:
    """The newest CRL of one CA this node has taken (refuses an older one after a
    restart)."""
    if mark.number is None:
        return
    db.executemany(
        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
        [(f"crl_number:{issuer_key}", str(mark.number)), (f"crl_digest:{issuer_key}", mark.digest)],
    )


def _migrate_crl_number(db: sqlite3.Connection, first: str) -> None:
    """A node of an earlier version kept one ``crl_number`` (and ``crl_digest``): that of
    the first CRL of its file, the only one it read. It is the floor of the issuer of the
    file's first CRL now (with one CA, that CA's)."""
    legacy = dict(
        db.execute("SELECT key, value FROM meta WHERE key IN ('crl_number', 'crl_digest')")
    )
    if not legacy:
        return
    if "crl_number" in legacy:
        db.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
            (f"crl_number:{first}", legacy["crl_number"]),
        )
        if "crl_digest" in legacy:
            db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                (f"crl_digest:{first}", legacy["crl_digest"]),
            )
    db.execute("DELETE FROM meta WHERE key IN ('crl_number', 'crl_digest')")


def check_crl(state: State, revocations: RevocationList) -> None:
    """Never start with a CA's CRL older than one this node has taken of that CA, also
    across restarts, nor without ``tls.crl`` once it has taken one (deleting ``tls.crl``
    re-admitted every revoked certificate without a word; review, 2026-12-04)."""
    path = revocations.path
    marks = revocations.marks
    if not marks:
        with state.transaction() as db:
            row = db.execute(
                "SELECT value FROM meta WHERE key GLOB 'crl_number*' ORDER BY key"
            ).fetchone()
        if row is not None:
            raise ConfigError(
                f"tls.crl: this node has enforced CRL number {row[0]}; without tls.crl "
                "revocation would be off: set it again"
            )
        return
    with state.transaction() as db:
        _migrate_crl_number(db, revocations.first)
        for kid, mark in marks.items():
            kept = dict(
                db.execute(
                    "SELECT key, value FROM meta WHERE key IN (?, ?)",
                    (f"crl_number:{kid}", f"crl_digest:{kid}"),
                ).fetchall()
            )
            if f"crl_number:{kid}" in kept:
                seen = int(kept[f"crl_number:{kid}"])
                why = ""
                if mark.number is None:
                    why = f"it has no CRL number; this node already used CRL number {seen}"
                elif mark.number < seen:
                    why = (
                        f"CRL number {mark.number} is older than CRL number {seen} this node "
                        "already used (a replayed CRL)"
                    )
                elif mark.number == seen and kept.get(f"crl_digest:{kid}", mark.digest) != (
                    mark.digest
                ):
                    why = (
                        f"CRL number {seen} is the number of the CRL this node already used, "
                        "but its contents differ"
                    )
                if why:
                    raise ConfigError(f"tls.crl: {path}: {revocations.of(kid)}{why}")
            remember_crl(db, kid, mark)


@dataclass
class CrlWatch:
    """Audits every CRL taken (``crl.loaded``) or refused (``crl.refused``), keeps the
    newest CRL number in the node's state with the entry, notices a changed CRL file even
    when no call comes, and warns when the CRL is about to expire (then every call fails)."""

    revocations: RevocationList
    state: State
    _warned: float = field(default=-CRL_WARN_EVERY)
    # digest of the last CRL of each CA (by key id) whose crl.loaded entry was written
    _recorded: dict[str, str] = field(default_factory=dict)
    # one writer at a time: a call's reload and a housekeeping round could both see the
    # new CRL unrecorded and write two entries for it
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def start(self) -> None:
        """Audit the CRLs in force, and from now on each CRL taken or refused."""
        if not self.revocations.marks:  # no tls.crl
            return
        for event in self.revocations.loaded_events():
            self.record(event)
        self.revocations.on_event = self.record

    def record(self, event: dict) -> None:
        with self._lock:
            kid = str(event.get("issuer_key", ""))
            mark = self.revocations.marks.get(kid) if event["kind"] == "crl.loaded" else None
            if mark is not None and mark.digest == self._recorded.get(kid):
                return  # written already (by the other path)
            with self.state.transaction() as db:  # the entry and the number kept, together
                AuditLog.append_in(db, {**event, "time": utc()})
                if mark is not None:
                    remember_crl(db, kid, mark)
            if mark is not None:
                self._recorded[kid] = mark.digest

    def __call__(self) -> None:
        self._warn_expiry()
        self.revocations.refresh()
        # A CRL taken while the state could not be written is in force (its revocations
        # at once) but its entry and number were not kept, so a restart would have taken
        # an older one back (review, 2026-12-04, night): written as soon as it can be.
        for kid, mark in self.revocations.marks.items():
            if mark.digest != self._recorded.get(kid):
                self.record(self.revocations.loaded_event(kid))  # re-checks, under its lock

    def _warn_expiry(self) -> None:
        soon = [
            (what, nxt)
            for what, nxt in self.revocations.expiries()
            if nxt - now() <= CRL_WARN_BEFORE
        ]
        if not soon:
            return
        if time.monotonic() - self._warned >= CRL_WARN_EVERY:
            self._warned = time.monotonic()
            for what, nxt in soon:
                log.warning("%s expires at %s UTC: re-issue it with `fedgate ca crl`", what, nxt)


PRUNE_SECONDS = 60.0
# A released request is remembered while its envelope could still be taken: its age limit
# and the clock skew owners allow on both sides.
REMEMBER_SECONDS = MAX_AGE_SECONDS + 2 * CLOCK_SKEW_SECONDS


def housekeeping(
    crl: CrlWatch,
    grants: GrantStore,
    audit: AuditLog,
    stderr_bytes: int,
    training: Callable[[], None] = lambda: None,
) -> Callable[[], None]:
    """Checkpoints (signed heads), expired-grant entries, the stderr cap and ``training``
    (the training owner's sweep of idle runs and unfinished pieces), on their own clock."""

    pruned = -math.inf

    def prune() -> None:
        nonlocal pruned
        if time.monotonic() - pruned >= PRUNE_SECONDS:
            grants.forget_released(utc(now() - dt.timedelta(seconds=REMEMBER_SECONDS)))
            pruned = time.monotonic()

    steps: tuple[tuple[str, Callable[[], object]], ...] = (
        ("the CRL", crl),
        ("expired grants", lambda: grants.log_expired(utc())),
        ("the checkpoint", lambda: audit.checkpoint(utc())),
        ("released requests", prune),
        ("idle training runs", training),
    )

    failing: dict[str, str] = {}  # step -> how it last failed: logged once, not per round

    def job() -> None:
        cap_stderr(stderr_bytes)  # first: it never raises, the others may (a full disk)
        for what, step in steps:  # each on its own: one that fails stops no other
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                why = f"{type(exc).__name__}: {loggable(str(exc))}"
                if failing.get(what) != why:  # a round a second: the log would fill up
                    log.exception("housekeeping: %s failed (%s); tried again each round", what, why)
                failing[what] = why
            else:
                if failing.pop(what, None) is not None:
                    log.info("housekeeping: %s succeeds again", what)

    return job


def probe_peers(transport: Transport) -> Callable[[], None]:
    """Health-check every peer: keeps the peer metrics current and channels fresh, and
    closes those of members that are gone."""

    def job() -> None:
        transport.prune()  # after a membership reload: members that left or moved
        for member in transport.members():
            transport.probe(member)

    return job
