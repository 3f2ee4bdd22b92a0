"""A node's durable state: one SQLite database under its data directory.

WAL mode with ``synchronous=FULL``: a committed transaction survives a crash or power
loss. One connection guarded by a lock is enough for a gateway's write rate, and keeps
every write a single serialised transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

T = TypeVar("T")
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
    signature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS witnessed (  -- heads of other members this node countersigned
    node TEXT NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT NOT NULL,
    time TEXT NOT NULL,
    signature TEXT NOT NULL,
    countersignature TEXT NOT NULL,
    PRIMARY KEY (node, size)
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
"""


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
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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
                with self._lock:
                    self._commit(batch)
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

    def _commit(self, batch: list[_Work]) -> None:
        db = self._db
        alone = len(batch) == 1  # no savepoint: its failure rolls back the whole transaction
        try:
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
                    db.execute(f"ROLLBACK TO w{n}")
                    db.execute(f"RELEASE w{n}")
                    work.error = exc
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            for work in batch:
                work.error = work.error or exc
                work.result = None
        finally:
            for work in batch:
                work.done = True

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._db.close()
