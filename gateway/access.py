"""Access requests (场景评审): an analyst asks, the data owner's operator decides.

A request travels from the analyst's home node (which vouches for the analyst) to the
owner, where it waits for an operator. Approval -- possibly narrower than what was asked
-- writes an ordinary grant; every step is an audit entry at the owner.

The records here are plain dataclasses; ``gateway.serde`` turns them into wire messages.
A request is stored as the JSON object the v1 message has in proto JSON (proto field
names, empty fields left out), so rows written before and after read the same.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from federation.envelope import Requester
from gateway import policy
from gateway.audit import AuditLog
from gateway.catalog import Catalog
from gateway.clock import parse_time, utc
from gateway.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from gateway.identity import Identity
from gateway.policy import FLOORS, Grant, GrantStore
from gateway.state import State
from gateway.text import check_purpose, plain

NOBODY = Requester(role="", id="", org="")


MAX_PENDING_PER_REQUESTER = 20  # undecided requests one user may have at one owner
MAX_PENDING_PER_ORG = 200  # ... one organisation (its home may vouch for any of its users)
MAX_PENDING = 2000  # undecided requests an owner keeps in all
PAGE_BYTES = 1024 * 1024  # requests a ListAccessRequests reply holds (their JSON), about
# ... and each is small: a request's columns, controls and operations are names the owner
# knows (kept once each), its purpose a sentence (MAX_PURPOSE_CHARS, as a query's).
MAX_ASKED_COLUMNS = 1000  # column entries in one request, repeats included
MAX_NAME_CHARS = 63  # a column name (descriptor.check_identifier's limit)
# An id is 128 random bits (was 32: two requests could draw one id, and the second
# overwrote the first, approved or not; review, 2026-12-05), and a new request is
# inserted, never upserted: an id drawn twice is drawn again, a few times at most.
ID_BYTES = 16
ID_DRAWS = 3


@dataclass(frozen=True)
class ColumnControls:
    """A column and the ways it is asked (or approved) to be used."""

    column: str
    controls: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccessRequest:
    id: str = ""
    owner: str = ""  # node holding the dataset
    dataset: str = ""
    requester: Requester = NOBODY  # filled in by the home node that vouches, never the client
    home_node: str = ""
    columns: tuple[ColumnControls, ...] = ()
    operations: tuple[str, ...] = ()
    purpose: str = ""
    valid_from: str = ""
    expires: str = ""
    state: str = ""  # pending | approved | denied
    decided_by: str = ""
    decision_note: str = ""
    grant_id: str = ""  # the grant that approval wrote
    submitted_at: str = ""
    decided_at: str = ""


@dataclass(frozen=True)
class AccessDecision:
    """An operator's answer to a request; approval may narrow it (empty/zero: as asked)."""

    id: str
    approve: bool
    note: str = ""
    columns: tuple[ColumnControls, ...] = ()
    expires: str = ""
    min_group_size: int = 0
    dp_epsilon: float = 0.0
    dp_budget: float = 0.0
    max_uses: int = 0
    train_tasks: tuple[str, ...] = ()  # a request that asks to train: required
    max_rounds: int = 0


# --- stored form ------------------------------------------------------------------------


def _nonempty(
    pairs: Iterable[tuple[str, Any]], keep: frozenset[str] = frozenset()
) -> dict[str, Any]:
    return {k: v for k, v in pairs if v or k in keep}


def as_dict(req: AccessRequest) -> dict[str, Any]:
    """The request as proto JSON has it: keys in field order, empty fields left out (the
    requester, a message field, is always there: the home node filled it in)."""
    r = req.requester
    return _nonempty(
        [
            ("id", req.id),
            ("owner", req.owner),
            ("dataset", req.dataset),
            ("requester", _nonempty([("role", r.role), ("id", r.id), ("org", r.org)])),
            ("home_node", req.home_node),
            (
                "columns",
                [
                    _nonempty([("column", c.column), ("controls", list(c.controls))])
                    for c in req.columns
                ],
            ),
            ("operations", list(req.operations)),
            ("purpose", req.purpose),
            ("valid_from", req.valid_from),
            ("expires", req.expires),
            ("state", req.state),
            ("decided_by", req.decided_by),
            ("decision_note", req.decision_note),
            ("grant_id", req.grant_id),
            ("submitted_at", req.submitted_at),
            ("decided_at", req.decided_at),
        ],
        keep=frozenset({"requester"}),
    )


def from_dict(d: Mapping[str, Any]) -> AccessRequest:
    def text(key: str, m: Mapping[str, Any] = d) -> str:
        return str(m.get(key, ""))

    r = d.get("requester") or {}
    return AccessRequest(
        id=text("id"),
        owner=text("owner"),
        dataset=text("dataset"),
        requester=Requester(role=text("role", r), id=text("id", r), org=text("org", r)),
        home_node=text("home_node"),
        columns=tuple(
            ColumnControls(text("column", c), tuple(c.get("controls", ())))
            for c in d.get("columns", ())
        ),
        operations=tuple(d.get("operations", ())),
        purpose=text("purpose"),
        valid_from=text("valid_from"),
        expires=text("expires"),
        state=text("state"),
        decided_by=text("decided_by"),
        decision_note=text("decision_note"),
        grant_id=text("grant_id"),
        submitted_at=text("submitted_at"),
        decided_at=text("decided_at"),
    )


def _to_json(req: AccessRequest) -> str:
    return json.dumps(as_dict(req))


def _from_json(text: str) -> AccessRequest:
    return from_dict(json.loads(text))


def asked_columns(
    asked: Iterable[ColumnControls], dataset: str, declared: set[str]
) -> tuple[ColumnControls, ...]:
    """The columns asked, each once with its known controls once each (in the order
    first asked): what is stored and audited grows with what the dataset declares, not
    with the size of the request."""
    asked = tuple(asked)
    if not asked:
        raise InvalidArgument("an access request names at least one column")
    if len(asked) > MAX_ASKED_COLUMNS:
        raise InvalidArgument(f"an access request names at most {MAX_ASKED_COLUMNS} columns")
    merged: dict[str, dict[str, None]] = {}
    for c in asked:
        if len(c.column) > MAX_NAME_CHARS or c.column not in declared:
            raise InvalidArgument(f"column {c.column[:100]!r} is not a column of {dataset}")
        policy.check_controls(c.column, c.controls)
        merged.setdefault(c.column, {}).update(dict.fromkeys(c.controls))
    return tuple(ColumnControls(name, tuple(controls)) for name, controls in merged.items())


def asked_operations(asked: Iterable[str]) -> tuple[str, ...]:
    """The operations asked, known ones only, each once; none asked: ``query``."""
    operations = tuple(dict.fromkeys(asked))
    bad = [o for o in operations if o not in policy.OPERATIONS]
    if bad:
        raise InvalidArgument(
            f"operation {bad[0][:100]!r}: operations must be some of {', '.join(policy.OPERATIONS)}"
        )
    return operations or ("query",)


def _still_pending(db: sqlite3.Connection, request_id: str) -> None:
    """Checked in the deciding transaction: a request read as pending before it may have
    been decided by another operator call since (a denial overwrote an approval whose
    grant stayed active; review, 2026-12-04)."""
    row = db.execute("SELECT state FROM access_requests WHERE id = ?", (request_id,)).fetchone()
    if row is None or row[0] != "pending":
        raise FailedPrecondition(f"access request {request_id} was decided meanwhile")


class AccessRequests:
    def __init__(self, node_id: str, state: State, catalog: Catalog, grants: GrantStore) -> None:
        self.node_id = node_id
        self.state = state
        self.catalog = catalog
        self.grants = grants

    def _insert_new(self, db: sqlite3.Connection, req: AccessRequest) -> AccessRequest:
        """Store a new request under a fresh id (in the caller's transaction); never over
        another request."""
        for _ in range(ID_DRAWS):
            new = dataclasses.replace(req, id="ar-" + secrets.token_hex(ID_BYTES))
            try:
                db.execute(
                    "INSERT INTO access_requests (id, body, state) VALUES (?, ?, ?)",
                    (new.id, _to_json(new), new.state),
                )
            except sqlite3.IntegrityError:  # only this statement is undone
                continue
            return new
        raise Aborted("could not draw a new access request id: submit the request again")

    def _save(self, db: sqlite3.Connection, req: AccessRequest) -> None:
        """Store a decision over its pending request."""
        db.execute(
            # an upsert, not REPLACE: a decided request keeps its place in the list
            "INSERT INTO access_requests (id, body, state) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET body = excluded.body, state = excluded.state",
            (req.id, _to_json(req), req.state),
        )

    def _check_room(self, db: sqlite3.Connection, requester: Requester) -> None:
        """Pending requests are bounded, per requester and in all: one analyst (or a
        fuzzer with an analyst's certificate) cannot fill the owner's store."""
        mine, ours, everyone = db.execute(
            "SELECT COUNT(*) FILTER (WHERE json_extract(body, '$.requester.id') = ? "
            "AND json_extract(body, '$.requester.org') = ?), "
            "COUNT(*) FILTER (WHERE json_extract(body, '$.requester.org') = ?), COUNT(*) "
            "FROM access_requests WHERE state = 'pending'",
            (requester.id, requester.org, requester.org),
        ).fetchone()
        if mine >= MAX_PENDING_PER_REQUESTER:
            raise ResourceExhausted(
                f"{requester.id} already has {mine} pending access requests at {self.node_id}: "
                "wait for decisions before asking again"
            )
        if ours >= MAX_PENDING_PER_ORG:  # one organisation cannot lock the others out
            raise ResourceExhausted(
                f"{requester.org} already has {ours} pending access requests at "
                f"{self.node_id}: wait for decisions before asking again"
            )
        if everyone >= MAX_PENDING:
            raise ResourceExhausted(
                f"{self.node_id} holds {everyone} pending access requests: try again later"
            )

    def submit(self, req: AccessRequest, requester: Requester, home_node: str) -> AccessRequest:
        entry = self.catalog.get(req.dataset)
        if entry is None or entry.descriptor.level == "L4":  # core data: not even its name
            raise NotFound(f"no dataset {req.dataset[:100]!r} at {self.node_id}")
        declared = {c.name for c in entry.descriptor.columns}
        columns = asked_columns(req.columns, req.dataset, declared)
        operations = asked_operations(req.operations)
        plain(req.purpose, "the purpose")  # an operator reads it, then the public report
        if not req.purpose.strip():
            raise InvalidArgument("an access request states its purpose")
        check_purpose(req.purpose)
        # Only what an analyst may ask: the decision fields are the operator's to fill in.
        stored = AccessRequest(
            owner=self.node_id,
            dataset=req.dataset,
            requester=requester,
            home_node=home_node,
            columns=columns,
            operations=operations,
            purpose=req.purpose,
            valid_from=parse_time(req.valid_from, "valid_from"),
            expires=parse_time(req.expires, "expires"),
            state="pending",
            submitted_at=utc(),
        )
        if stored.valid_from and stored.valid_from < stored.submitted_at:
            # a start in the past grants nothing more, but the public report would show
            # a grant "from 2001" (review, 2026-12-04): from now on, as written
            stored = dataclasses.replace(stored, valid_from=stored.submitted_at)
        # A period no grant could have: refused now, not when the operator approves.
        if stored.expires and stored.expires <= max(stored.valid_from, stored.submitted_at):
            raise InvalidArgument(
                "the period asked for ends before it starts or has already ended (--expires)"
            )
        with self.state.transaction() as db:
            self._check_room(db, requester)
            stored = self._insert_new(db, stored)
            AuditLog.append_in(
                db,
                {
                    "kind": "access.submitted",
                    "time": stored.submitted_at,
                    "request_id": stored.id,
                    "requester": str(requester),
                    "requester_org": requester.org,
                    "home_node": home_node,
                    "dataset": stored.dataset,
                    "purpose": stored.purpose,
                    "columns": {c.column: list(c.controls) for c in stored.columns},
                    "operations": list(stored.operations),
                },
            )
        return stored

    def get(self, request_id: str) -> AccessRequest:
        with self.state.transaction() as db:
            row = db.execute(
                "SELECT body FROM access_requests WHERE id = ?", (request_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no access request {request_id!r} at {self.node_id}")
        return _from_json(row[0])

    def status_for(self, request_id: str, requester: Requester) -> AccessRequest:
        req = self.get(request_id)
        if (req.requester.id, req.requester.org) != (requester.id, requester.org):
            raise PermissionDenied(f"access request {request_id} is not yours")
        return req

    def page(
        self, state: str = "", after: int = 0, max_bytes: int = PAGE_BYTES
    ) -> tuple[list[AccessRequest], int]:
        """The requests (in ``state``; all if empty) after position ``after``, in the
        order they came, about ``max_bytes`` of them; and the position to ask after
        next (0: that was the last page). Decided requests are kept, so one reply of
        them all outgrew the message limit (review, 2026-12-04)."""
        out: list[AccessRequest] = []
        held = last = 0
        with self.state.transaction() as db:
            rows = db.execute(
                "SELECT rowid, body FROM access_requests WHERE (? = '' OR state = ?) "
                "AND rowid > ? ORDER BY rowid",
                (state, state, after),
            )
            for rowid, body in rows:
                if out and held + len(body) > max_bytes:
                    return out, last
                out.append(_from_json(body))
                held += len(body)
                last = int(rowid)
        return out, 0

    def list(self, state: str = "") -> list[AccessRequest]:
        """Every request in ``state``, page by page (in process: tests, the CLI's pages)."""
        out, after = self.page(state)
        while after:
            more, after = self.page(state, after)
            out.extend(more)
        return out

    def decide(self, d: AccessDecision, operator: Identity) -> AccessRequest:
        """``operator``: this node's own operator, as its certificate authenticated it."""
        req = self.get(d.id)
        if req.state != "pending":
            raise FailedPrecondition(f"access request {d.id} is already {req.state}")
        plain(d.note, "the note")
        now = utc()
        req = dataclasses.replace(
            req, decided_by=str(operator), decided_at=now, decision_note=d.note
        )
        if not d.approve:
            req = dataclasses.replace(req, state="denied")
            with self.state.transaction() as db:
                _still_pending(db, d.id)  # an approval may have come in meanwhile
                self._save(db, req)
                AuditLog.append_in(
                    db,
                    {
                        "kind": "access.denied",
                        "time": now,
                        "request_id": req.id,
                        "actor": str(operator),
                        "dataset": req.dataset,
                        "note": d.note,
                    },
                )
            return req
        grant = self._grant_for(req, d, operator, now)
        with self.state.transaction() as db:  # grant, request state and entries: all or none
            _still_pending(db, d.id)
            grant = self.grants.add_in(db, grant, actor=str(operator), via=req.id)
            req = dataclasses.replace(
                req,
                state="approved",
                grant_id=grant.id,
                columns=d.columns or req.columns,
                expires=grant.expires,  # what was approved, as the columns
            )
            self._save(db, req)
            AuditLog.append_in(
                db,
                {
                    "kind": "access.approved",
                    "time": now,
                    "request_id": req.id,
                    "actor": str(operator),
                    "dataset": req.dataset,
                    "grant_id": grant.id,
                    "note": d.note,
                },
            )
        return req

    def _grant_for(
        self, req: AccessRequest, d: AccessDecision, operator: Identity, now: str
    ) -> Grant:
        entry = self.catalog.get(req.dataset)
        if entry is None:  # no way to remove one today; a crash here was INTERNAL
            raise FailedPrecondition(
                f"dataset {req.dataset!r} is no longer registered at {self.node_id}: deny the "
                "request"
            )
        asked = {c.column: set(c.controls) for c in req.columns}
        columns = asked
        if d.columns:  # narrowing: a subset of columns, each with a subset of controls
            names = [c.column for c in d.columns]
            twice = next((n for n in names if names.count(n) > 1), None)
            if twice is not None:  # the stored approval would show both, the grant one
                raise InvalidArgument(f"column {twice!r} is named twice: give it once")
            columns = {c.column: set(c.controls) for c in d.columns}
            for name, controls in columns.items():
                if name not in asked:
                    raise InvalidArgument(
                        f"approval may only narrow the request: column {name!r} was not asked for"
                    )
                if not controls <= asked.get(name, set()):
                    raise InvalidArgument(
                        f"approval may only narrow the request: {name!r} was not asked as "
                        f"{', '.join(sorted(controls - asked.get(name, set())))}"
                    )
        # A re-registration may have dropped a column asked for (review, 2026-12-05: a
        # KeyError from the level lookup, INTERNAL); the operator is told which.
        declared = {c.name for c in entry.descriptor.columns}
        gone = next((name for name in columns if name not in declared), None)
        if gone is not None:
            raise InvalidArgument(
                f"column {gone!r} is no longer a column of {req.dataset}: narrow the approval "
                "(--column) or deny"
            )
        if "train" in req.operations and not d.train_tasks:
            # a train grant without tasks allows none (decide_train refuses every run)
            raise InvalidArgument(
                "the request asks to train: name the tasks the grant allows with "
                "--train-tasks (logreg,...)"
            )
        level = policy.effective_level(entry.descriptor, list(columns))
        floor = FLOORS[level]
        expires = parse_time(d.expires, "expires") or req.expires
        if req.expires and expires > req.expires:
            raise InvalidArgument("approval may not extend the requested period")
        grant = Grant(
            id="",
            dataset=req.dataset,
            grantee_kind="user",
            grantee=req.requester.id,
            grantee_org=req.requester.org,
            operations=tuple(req.operations),
            columns={k: tuple(sorted(v)) for k, v in columns.items()},
            min_group_size=max(d.min_group_size, floor.min_group_size),
            dp_epsilon=d.dp_epsilon or (1.0 if floor.dp_required else 0.0),
            dp_budget=d.dp_budget or (10.0 if floor.dp_required else 0.0),
            purpose=req.purpose,
            valid_from=req.valid_from or now,
            expires=expires,
            max_uses=d.max_uses,
            train_tasks=tuple(d.train_tasks),
            max_rounds=d.max_rounds,
            created_by=str(operator),
            created_at=now,
        )
        return policy.validate(dataclasses.replace(grant), entry.descriptor)
