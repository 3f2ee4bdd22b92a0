"""The signed membership document as a node holds it: verified, reloaded, never older.

It owns the ``membership_serial`` key of the ``meta`` table: the highest serial this node
has used, so that a replayed older document is refused, also across restarts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from federation.membership import Membership, MembershipError, verify
from gateway.errors import ConfigError
from gateway.identity import membership_keys
from gateway.state import State

log = logging.getLogger("fedgate.node")


def remember_serial(db: sqlite3.Connection, serial: int) -> None:
    """The highest membership serial this node has used (refuses replays after restarts)."""
    db.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('membership_serial', ?)", (str(serial),)
    )


def check_serial(state: State, serial: int) -> None:
    """Never go back to an older membership document, also across restarts."""
    with state.transaction() as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'membership_serial'").fetchone()
        if row is not None and int(row[0]) > serial:
            raise ConfigError(
                f"federation.membership: serial {serial} is older than serial {row[0]} "
                "this node already used (a replayed document)"
            )
        remember_serial(db, serial)


class MembershipSource:
    """The signed membership document, re-verified whenever its file changes.

    A replacement that does not verify is refused and the last good document is kept.
    """

    def __init__(self, path: Path, bundle: list[x509.Certificate]) -> None:
        self._path = path
        self._bundle = bundle
        self._lock = threading.Lock()
        self.on_event: Callable[[dict], None] = lambda _event: None  # set once audit exists
        # Why a newer document does not fit the running node (None: it fits); set by the
        # node once it knows itself.
        self.misfit: Callable[[Membership, Membership], str | None] = lambda _old, _new: None
        # Called with a document just taken, after the lock is let go (it may call this
        # source again: under the lock that would wait on itself for ever).
        self.after_reload: Callable[[Membership], None] = lambda _new: None
        self._unreadable = ""  # why the file could not be read last time ("" : it could)
        self._said = threading.Lock()  # around _unreadable: one event per cause
        try:
            self._stamp = self._stat()
            data = path.read_bytes()
            self._current = verify(data, membership_keys(self._bundle))
            self._digest = hashlib.sha256(data).digest()  # of the document in force
        except MembershipError as exc:
            raise ConfigError(f"federation.membership: {path}: {exc}") from None
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise ConfigError(f"federation.membership: {path} cannot be read ({why})") from None

    def _stat(self) -> tuple[int, ...]:
        return _stamp(self._path.stat())

    def __call__(self) -> Membership:
        try:
            stamp = self._stat()
        except FileNotFoundError:
            return self._current
        except OSError as exc:
            return self._kept(exc)
        if stamp == self._stamp:
            return self._current
        taken: Membership | None = None
        with self._lock:
            # The file as it is now, read with the stamp of what was read: a stamp taken
            # before the lock could be older than one another caller took meanwhile.
            try:
                with self._path.open("rb") as fh:
                    stamp, data = _stamp(os.fstat(fh.fileno())), fh.read()
            except FileNotFoundError:
                return self._current
            except OSError as exc:
                return self._kept(exc)
            with self._said:
                self._unreadable = ""
            if stamp == self._stamp:  # another caller took this change while we waited
                return self._current
            if hashlib.sha256(data).digest() == self._digest:
                # the same document (its permissions restored, copied over itself): no
                # change, and no refusal of a "replayed" one (review, 2026-12-05)
                self._stamp = stamp
                return self._current
            before, self._stamp = self._stamp, stamp
            try:
                new = verify(data, membership_keys(self._bundle))
                if new.serial <= self._current.serial:
                    raise MembershipError(
                        f"serial {new.serial} is not newer than {self._current.serial} "
                        "(a replayed or unchanged document)"
                    )
                # A document that no longer fits this node (drops it, moves it, renames the
                # federation) is taken all the same: it may drop a member the federation
                # no longer trusts, whom the last document would still let in. The node
                # says so loudly (review, 2026-12-04); the next start of a node it drops
                # or moves refuses it.
                misfit = self.misfit(self._current, new)
                event = {
                    "kind": "membership.reloaded",
                    "serial": new.serial,
                    "members": [m.id for m in new.members],
                }
                if misfit is not None:
                    event["misfit"] = misfit
                try:
                    self.on_event(event)  # recorded first: in force only once recorded
                except Exception:
                    self._stamp = before  # the next call tries again
                    raise
                self._current = taken = new
                self._digest = hashlib.sha256(data).digest()
                if misfit is None:
                    log.info("membership reloaded serial=%s", new.serial)
                else:
                    log.error(
                        "membership reloaded serial=%s, but it no longer fits this node: %s",
                        new.serial,
                        misfit,
                    )
            except MembershipError as exc:
                log.error("membership file changed but was refused: %s", exc)
                self.on_event({"kind": "membership.refused", "reason": str(exc)})
        if taken is not None:
            self.after_reload(taken)
        return self._current

    def _kept(self, exc: OSError) -> Membership:
        """The last good document, when the file cannot be read (permissions, a folder in
        its place): refused like a document that does not verify, said once per cause
        (review, 2026-12-05: every call to the node failed INTERNAL, and the edge's sweep
        of open streams stopped at the first)."""
        why = f"the file cannot be read ({exc.strerror or type(exc).__name__})"
        with self._said:
            first, self._unreadable = why != self._unreadable, why
        if first:
            log.error("membership file refused, the last good document kept: %s", why)
            self.on_event({"kind": "membership.refused", "reason": why})
        return self._current


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    """What changes when the file is replaced, rewritten, or its permissions change."""
    return st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns
