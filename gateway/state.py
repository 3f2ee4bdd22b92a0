"""A node's durable state: one SQLite database under its data directory.

WAL mode with ``synchronous=FULL``: a committed transaction survives a crash or power
loss. One connection guarded by a lock is enough for a gateway's write rate, and keeps
every write a single serialised transaction.

A write the disk refuses (full, read-only, an I/O error, the file held elsewhere past the
busy timeout) raises ``CannotRecord`` (UNAVAILABLE "cannot record; nothing released"),
never a raw ``sqlite3`` error, and ``on_recording(False)`` tells the node, which reports
NOT_SERVING until a write succeeds again (``on_recording(True)``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

from gateway.errors import CannotRecord, Unavailable

log = logging.getLogger("fedgate.state")

T = TypeVar("T")
# SQLite's primary result codes for a write the storage refused: the disk (or the file
# size limit) is full, the file or directory is read-only, an I/O error, the database is
# held by another process past the busy timeout, the file cannot be opened.
_CANNOT_WRITE = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_CANTOPEN,
    }
)
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    descriptor TEXT NOT NULL,      -- JSON of the declaration
    quality TEXT NOT NULL,         -- JSON of the measured quality report
    registered_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    registered_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    grantee_kind TEXT NOT NULL,
    grantee TEXT NOT NULL,
    body TEXT NOT NULL,            -- JSON of the grant as written
    uses INTEGER NOT NULL,
    epsilon_spent REAL NOT NULL,
    revoked_at TEXT,
    created_at TEXT NOT NULL,
    expiry_logged INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS grants_by_dataset ON grants(dataset);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,       -- 1, 2, 3 ... without gaps
    hash TEXT NOT NULL,            -- H(seq | previous hash | H(body))
    body TEXT NOT NULL,            -- canonical JSON, exactly as hashed
    kind TEXT NOT NULL,
    request_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_request ON audit(request_id) WHERE request_id != '';
CREATE TABLE IF NOT EXISTS audit_heads (
    size INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    time TEXT NOT NULL,
    signature TEXT NOT NULL,
    cert TEXT                      -- digest of the certificate whose key signed (audit_certs)
);
CREATE TABLE IF NOT EXISTS audit_certs (  -- this node's certificates, by SHA-256 of the PEM
    digest TEXT PRIMARY KEY,
    pem TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS witnessed (  -- heads of other members this node countersigned
    node TEXT NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT NOT NULL,
    time TEXT NOT NULL,
    signature TEXT NOT NULL,
    countersignature TEXT NOT NULL,
    cert TEXT,                     -- digest of the certificate that countersigned (witness_certs)
    PRIMARY KEY (node, size)
);
CREATE TABLE IF NOT EXISTS witness_certs (  -- this node's certificates, by SHA-256 of the PEM
    digest TEXT PRIMARY KEY,
    pem TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS witness_receipts (  -- this node's heads, countersigned by others
    witness TEXT NOT NULL,
    size INTEGER NOT NULL,
    body TEXT NOT NULL,            -- WitnessedHead as JSON
    PRIMARY KEY (witness, size)
);
CREATE TABLE IF NOT EXISTS access_requests (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,            -- AccessRequest as JSON
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS receipts (
    request_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    receipt TEXT NOT NULL,         -- signed receipt JSON, as the owner sent it
    received_at TEXT NOT NULL,
    PRIMARY KEY (request_id, owner)
);
CREATE TABLE IF NOT EXISTS released_requests (  -- a query released once per request
    home_node TEXT NOT NULL,
    request_id TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (home_node, request_id)
);
CREATE TABLE IF NOT EXISTS psi_sessions (  -- gateway/psi_sessions.py: differencing defence
    grant_id TEXT NOT NULL,
    session TEXT NOT NULL,
    peer TEXT NOT NULL,
    own_size INTEGER NOT NULL,
    own_digest TEXT NOT NULL,
    peer_size INTEGER NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (grant_id, session)
);
CREATE INDEX IF NOT EXISTS psi_sessions_peer ON psi_sessions (grant_id, peer);
CREATE INDEX IF NOT EXISTS psi_sessions_session ON psi_sessions (session);
"""


def cert_digest(pem: bytes) -> str:
    """How a row (and an export's H line) names a certificate: SHA-256 of its PEM."""
    return hashlib.sha256(pem).hexdigest()


def name_certificate(db: sqlite3.Connection, table: str, certs: str, pem: bytes) -> str:
    """Rows of ``table`` name, in their column ``cert``, the digest of the certificate of
    this node that signed them, the certificates kept once in ``certs`` (``audit_heads``
    and ``audit_certs``, ``witnessed`` and ``witness_certs``). Keeps ``pem``, the one the
    node holds now, and returns its digest. A table from before the column gets it, its
    rows naming the certificate held at this upgrade (unless the node renewed before this
    version, which nothing here can tell)."""
    digest = cert_digest(pem)
    if "cert" not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
        db.execute(f"ALTER TABLE {table} ADD COLUMN cert TEXT")
        db.execute(f"UPDATE {table} SET cert = ?", (digest,))
    db.execute(f"INSERT OR IGNORE INTO {certs} (digest, pem) VALUES (?, ?)", (digest, pem.decode()))
    return digest


def cannot_write(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying the storage refused a write."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and isinstance(code, int) and code & 0xFF in _CANNOT_WRITE


def _cannot_record(exc: BaseException) -> CannotRecord:
    error = CannotRecord()
    error.__cause__ = exc
    return error


@dataclass
class _Work:
    fn: Callable[[sqlite3.Connection], object]
    done: bool = False
    result: object = None
    error: BaseException | None = None
    event: threading.Event = field(default_factory=threading.Event)


class State:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: list[_Work] = []
        self._leading = False
        self._closed = False  # set by close(): a write after it is refused, not jammed
        # Told False when a write fails for want of storage and True when one succeeds
        # again (transitions only, under the write lock): the node's health follows it.
        self.on_recording: Callable[[bool], None] = lambda ok: None
        self._failing = False
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # Reads on their own connection: under WAL they see the last commit and never
        # queue behind a writer's fsync.
        self._read_lock = threading.Lock()
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        with self.transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._check_open()
            db = self._db
            changes = db.total_changes
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:  # SQLite may have rolled back already
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if not cannot_write(exc):
                    raise
                self._recorded(False, exc)
                raise _cannot_record(exc) from exc
            if db.total_changes != changes:
                self._recorded(True)

    def _recorded(self, ok: bool, exc: BaseException | None = None) -> None:
        """A write succeeded (``ok``) or the storage refused one; under the write lock.
        Only a change of state is logged and reported."""
        if ok != self._failing:
            return
        self._failing = not ok
        if ok:
            log.warning("state writes succeed again (%s): serving", self.path)
        else:
            log.error(
                "cannot write the node's state %s (%s): nothing is released until a write "
                "succeeds again",
                self.path,
                exc,
            )
        try:
            self.on_recording(ok)
        except Exception:  # the write's own outcome stands
            log.exception("could not report the state's write status")

    @property
    def failing(self) -> bool:
        """The last write was refused by the storage (no write has succeeded since)."""
        return self._failing

    def recheck(self) -> None:
        """After a refused write, try a small one (a time stamp in ``meta``): a node that
        nobody asks anything still notices when its storage takes writes again."""
        if not self._failing:
            return
        with contextlib.suppress(CannotRecord), self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('write_checked', ?)",
                (f"{time.time():.3f}",),
            )

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The reading connection: each statement sees the last committed state (use
        ``transaction`` where several reads must agree with each other)."""
        with self._read_lock:
            yield self._reader

    def group(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a transaction shared with concurrent callers: group commit.

        The first caller becomes the committer; callers that arrive meanwhile queue up and
        the committer takes them all in its next transaction: one fsync per batch, so
        concurrent releases do not wait on the disk one by one. Each caller's work runs
        in its own SAVEPOINT, so its failure rolls back only its own part; ``fn`` returns
        only after its part is durable. After a few rounds the committer hands the role
        to a waiting caller, so no caller waits on others' traffic for long.
        """
        item = _Work(fn)
        with self._pending_lock:
            self._pending.append(item)
            lead = not self._leading
            self._leading = True
        if not lead:
            item.event.wait()
        if not item.done:  # this caller leads now (first, or handed over)
            for _round in range(4):
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                    if not batch:
                        self._leading = False
                        break
                try:
                    with self._lock:
                        self._commit(batch)
                except BaseException as exc:  # _commit hands errors back; this is ours
                    self._fail_all(batch, exc)  # no caller waits for ever, nor leads
                    raise
                finally:  # no caller of the batch waits for ever, whatever happened
                    for work in batch:
                        work.event.set()
            else:
                with self._pending_lock:
                    if self._pending:
                        self._pending[0].event.set()  # hand over: it finds itself not done
                    else:
                        self._leading = False
        if item.error is not None:
            raise item.error
        return cast(T, item.result)  # the value ``fn`` returned for this very item

    def _fail_all(self, batch: list[_Work], exc: BaseException) -> None:
        """Every caller of ``batch`` and every one waiting ends with ``exc``; the next
        caller leads afresh (review, 2026-12-05: an error escaping the commit left the
        role taken and every later caller waiting for ever: the node could not exit)."""
        with self._pending_lock:
            rest, self._pending = self._pending, []
            self._leading = False
        for work in [*batch, *rest]:
            if not work.done:
                work.error, work.result, work.done = work.error or exc, None, True
            work.event.set()

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the node is stopping: nothing more is recorded")

    def _commit(self, batch: list[_Work]) -> None:
        db = self._db
        alone = len(batch) == 1  # no savepoint: its failure rolls back the whole transaction
        changes = db.total_changes if not self._closed else 0
        committed = False
        try:
            self._check_open()  # a call that outlived the node's stop: refused, typed
            db.execute("BEGIN IMMEDIATE")
            for n, work in enumerate(batch):
                if alone:
                    work.result = work.fn(db)
                    continue
                db.execute(f"SAVEPOINT w{n}")
                try:
                    work.result = work.fn(db)
                    db.execute(f"RELEASE w{n}")
                except BaseException as exc:  # noqa: BLE001 - handed back to its caller
                    work.error = exc
                    if not db.in_transaction:  # SQLite ended the whole transaction (a full
                        raise  # disk, an I/O error): the batch fails with this very error
                    db.execute(f"ROLLBACK TO w{n}")
                    db.execute(f"RELEASE w{n}")
            db.execute("COMMIT")
            committed = True
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):  # the batch's own error is the one (a
                if db.in_transaction:  # closed connection raises here too)
                    db.execute("ROLLBACK")
            for work in batch:
                work.error = work.error or exc
                work.result = None
        finally:
            refused = None
            for work in batch:
                if work.error is not None and cannot_write(work.error):
                    refused = refused or work.error
                    work.error = _cannot_record(work.error)
                work.done = True
            if refused is not None:
                self._recorded(False, refused)
            elif committed and db.total_changes != changes:
                self._recorded(True)

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._closed = True
            self._db.close()
