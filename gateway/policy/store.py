"""The ``grants`` table: the one module that reads or writes it (schema in gateway/state.py).

Every change to a grant is audited in the same transaction as the change itself, and
spending a use or epsilon re-checks the grant under the same lock that writes the charge.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from gateway.audit import AuditLog, Entry
from gateway.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from gateway.policy.budget import add_epsilon, within_budget
from gateway.policy.model import Decision, Grant, public_fields
from gateway.state import State

log = logging.getLogger("fedgate.grants")

_COLUMNS = "id, dataset, grantee_kind, grantee, body, uses, epsilon_spent, revoked_at, created_at"


def _row_to_grant(row: tuple[Any, ...]) -> Grant:
    body = json.loads(row[4])
    body["operations"] = tuple(body["operations"])
    body["columns"] = {k: tuple(v) for k, v in body["columns"].items()}
    body["train_tasks"] = tuple(body.get("train_tasks", ()))
    return Grant(**{**body, "uses": row[5], "epsilon_spent": row[6], "revoked_at": row[7] or ""})


class GrantStore:
    """Grants in the node's state; every change is audited in the same transaction."""

    def __init__(self, state: State, on_written: Callable[[Grant], None] | None = None) -> None:
        self._state = state
        # Told of each grant written (the node readies its training owner for a train
        # grant); called inside the writing transaction, so it must not touch the state.
        self._on_written = on_written

    def add(self, grant: Grant, *, actor: str = "", via: str = "") -> Grant:
        with self._state.transaction() as db:
            return self.add_in(db, grant, actor=actor, via=via)

    def add_in(
        self, db: sqlite3.Connection, grant: Grant, *, actor: str = "", via: str = ""
    ) -> Grant:
        """Write a grant and its audit entry inside the caller's transaction."""
        grant = replace(grant, id=grant.id or _free_id(db))
        if db.execute("SELECT 1 FROM grants WHERE id = ?", (grant.id,)).fetchone():
            raise AlreadyExists(f"grant {grant.id} exists: a grant is never replaced")
        body = asdict(grant)
        for k in ("uses", "epsilon_spent", "revoked_at"):
            body.pop(k)
        db.execute(
            f"INSERT INTO grants ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, 0, 0.0, NULL, ?)",
            (
                grant.id,
                grant.dataset,
                grant.grantee_kind,
                grant.grantee,
                json.dumps(body),
                grant.created_at,
            ),
        )
        written = {"kind": "grant.written", "time": grant.created_at, "actor": actor}
        if via:
            written["request_id"] = via
        AuditLog.append_in(db, {**written, **public_fields(grant)})
        if self._on_written is not None:
            try:
                self._on_written(grant)
            except Exception:  # a listener never undoes a grant
                log.exception("after grant %s was written", grant.id)
        return grant

    def get(self, grant_id: str) -> Grant:
        with self._state.read() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM grants WHERE id = ?", (grant_id,)).fetchone()
        if row is None:
            raise NotFound(f"no grant {grant_id!r}")
        return _row_to_grant(row)

    def list(self, dataset: str = "") -> list[Grant]:
        with self._state.read() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM grants WHERE (? = '' OR dataset = ?) "
                "ORDER BY created_at, id",
                (dataset, dataset),
            ).fetchall()
        return [_row_to_grant(r) for r in rows]

    def revoke(self, grant_id: str, when: str, *, actor: str = "") -> Grant:
        with self._state.transaction() as db:
            cur = db.execute(
                "UPDATE grants SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (when, grant_id),
            )
            if cur.rowcount == 0:
                exists = db.execute("SELECT 1 FROM grants WHERE id = ?", (grant_id,)).fetchone()
                if not exists:
                    raise NotFound(f"no grant {grant_id!r}")
                raise FailedPrecondition(f"grant {grant_id} is already revoked")
            dataset = db.execute("SELECT dataset FROM grants WHERE id = ?", (grant_id,)).fetchone()
            AuditLog.append_in(
                db,
                {
                    "kind": "grant.revoked",
                    "time": when,
                    "actor": actor,
                    "grant_id": grant_id,
                    "dataset": dataset[0],
                },
            )
        return self.get(grant_id)

    def forget_released(self, before: str) -> int:
        """Forget the requests released before ``before``: an envelope that old is refused
        for its age (``vouching.check_fresh``), so its replay needs no row to be refused."""
        with self._state.transaction() as db:
            return db.execute("DELETE FROM released_requests WHERE at < ?", (before,)).rowcount

    def log_expired(self, now: str) -> int:
        """Write one audit entry per grant that expired since the last sweep."""
        count = 0
        with self._state.transaction() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM grants WHERE expiry_logged = 0 AND revoked_at IS NULL"
            ).fetchall()
            for row in rows:
                g = _row_to_grant(row)
                if g.expires and g.expires <= now:
                    db.execute("UPDATE grants SET expiry_logged = 1 WHERE id = ?", (g.id,))
                    AuditLog.append_in(
                        db,
                        {
                            "kind": "grant.expired",
                            "time": now,
                            "grant_id": g.id,
                            "dataset": g.dataset,
                            "expires": g.expires,
                        },
                    )
                    count += 1
        return count

    def spend(
        self,
        decision: Decision,
        clock: Callable[[], str],
        record: Callable[[Grant, str], dict[str, Any]],
        once: tuple[str, str] | None = None,
    ) -> tuple[Grant, Entry]:
        """Re-check the grant, spend one use and its epsilon, and write the release's audit
        entry: one transaction, so all three are durable together or none is.

        Runs at release time: a grant revoked, expired or used up since the request was
        checked stops the release here. ``once`` (home node, request id): a request this
        node released before is refused, in the same transaction (a relay replaying a
        home's signed envelope would buy a fresh release, and fresh noise, each time).

        ``clock`` is read in the transaction, and ``record`` gets the grant as spent and
        that very time, which the entry is stamped with: the time was read before the
        spend waited in the group commit, the entry stamped at it, so under contention a
        release checked before its grant expired was logged after, which the auditor's
        replay flags (review, 2026-12-05).
        """
        g = decision.grant

        def work(db: sqlite3.Connection) -> tuple[Grant, Entry]:
            now = clock()
            if once is not None:
                try:
                    db.execute("INSERT INTO released_requests VALUES (?, ?, ?)", (*once, now))
                except sqlite3.IntegrityError:
                    raise FailedPrecondition(
                        f"request {once[1]} of home {once[0]} was released here before: a "
                        "replayed request is refused"
                    ) from None
            row = db.execute(f"SELECT {_COLUMNS} FROM grants WHERE id = ?", (g.id,)).fetchone()
            if row is None:
                raise PermissionDenied(f"grant {g.id} no longer exists")
            current = _row_to_grant(row)
            status = current.status(now, decision.epsilon)  # room for what it charges
            if status == "budget spent":
                raise ResourceExhausted(
                    f"the privacy budget of grant {g.id} is spent "
                    f"({current.epsilon_spent:g} of {current.dp_budget:g})"
                )
            if status != "active":
                raise PermissionDenied(f"grant {g.id} is {status} (checked again at release)")
            if current.uses_dp and not within_budget(
                current.epsilon_spent, decision.epsilon, current.dp_budget
            ):
                raise ResourceExhausted(  # what is really charged, not the nominal epsilon
                    f"the privacy budget of grant {g.id} is spent "
                    f"({current.epsilon_spent:g} of {current.dp_budget:g})"
                )
            total = add_epsilon(current.epsilon_spent, decision.epsilon)
            db.execute(
                "UPDATE grants SET uses = uses + 1, epsilon_spent = ? WHERE id = ?", (total, g.id)
            )
            spent = replace(current, uses=current.uses + 1, epsilon_spent=total)
            return spent, AuditLog.append_in(db, record(spent, now))

        # Group commit: concurrent releases share one fsync; each is its own savepoint.
        return self._state.group(work)


def _free_id(db: sqlite3.Connection, tries: int = 8) -> str:
    """A grant id no grant has (32 random bits: short enough to type; drawn again where
    one is taken, which the caller's transaction keeps so until it writes)."""
    for _ in range(tries):
        candidate = "g-" + secrets.token_hex(4)
        if not db.execute("SELECT 1 FROM grants WHERE id = ?", (candidate,)).fetchone():
            return candidate
    raise Aborted("could not draw a new grant id: write the grant again")
