"""Access requests (场景评审): an analyst asks, the data owner's operator decides.

A request travels from the analyst's home node (which vouches for the analyst) to the
owner, where it waits for an operator. Approval -- possibly narrower than what was asked
-- writes an ordinary grant; every step is an audit entry at the owner.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3

from google.protobuf import json_format

from gateway import policy
from gateway.audit import AuditLog
from gateway.catalog import Catalog
from gateway.clock import parse_time, utc
from gateway.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from gateway.identity import Identity
from gateway.policy import FLOORS, Grant, GrantStore
from gateway.rpc.v1 import common_pb2, gateway_pb2
from gateway.state import State


def _to_json(req: common_pb2.AccessRequest) -> str:
    return json_format.MessageToJson(req, preserving_proto_field_name=True, indent=None)


def _from_json(text: str) -> common_pb2.AccessRequest:
    return json_format.Parse(text, common_pb2.AccessRequest())


class AccessRequests:
    def __init__(self, node_id: str, state: State, catalog: Catalog, grants: GrantStore) -> None:
        self.node_id = node_id
        self.state = state
        self.catalog = catalog
        self.grants = grants

    def _save(self, db: sqlite3.Connection, req: common_pb2.AccessRequest) -> None:
        db.execute(
            "INSERT OR REPLACE INTO access_requests VALUES (?, ?, ?)",
            (req.id, _to_json(req), req.state),
        )

    def submit(
        self, req: common_pb2.AccessRequest, requester: Identity, home_node: str
    ) -> common_pb2.AccessRequest:
        entry = self.catalog.get(req.dataset)
        if entry is None or entry.descriptor.level == "L4":  # core data: not even its name
            raise NotFound(f"no dataset {req.dataset!r} at {self.node_id}")
        declared = {c.name for c in entry.descriptor.columns}
        for c in req.columns:
            if c.column not in declared:
                raise InvalidArgument(f"column {c.column!r} is not a column of {req.dataset}")
            bad = [x for x in c.controls if x not in policy.CONTROLS]
            if bad:
                raise InvalidArgument(f"column {c.column!r}: unknown control {bad[0]!r}")
        if not req.columns:
            raise InvalidArgument("an access request names at least one column")
        if not req.purpose.strip():
            raise InvalidArgument("an access request states its purpose")
        stored = common_pb2.AccessRequest()
        stored.CopyFrom(req)
        stored.id = "ar-" + secrets.token_hex(4)
        stored.owner = self.node_id
        stored.requester.CopyFrom(
            common_pb2.Requester(role=requester.role, id=requester.id, org=requester.org)
        )
        stored.home_node = home_node
        stored.state = "pending"
        stored.submitted_at = utc()
        stored.valid_from = parse_time(req.valid_from, "valid_from")
        stored.expires = parse_time(req.expires, "expires")
        if not stored.operations:
            stored.operations.append("query")
        with self.state.transaction() as db:
            self._save(db, stored)
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

    def get(self, request_id: str) -> common_pb2.AccessRequest:
        with self.state.transaction() as db:
            row = db.execute(
                "SELECT body FROM access_requests WHERE id = ?", (request_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no access request {request_id!r} at {self.node_id}")
        return _from_json(row[0])

    def status_for(self, request_id: str, requester: Identity) -> common_pb2.AccessRequest:
        req = self.get(request_id)
        if req.requester.id != requester.id:
            raise PermissionDenied(f"access request {request_id} is not yours")
        return req

    def list(self, state: str = "") -> list[common_pb2.AccessRequest]:
        with self.state.transaction() as db:
            rows = db.execute(
                "SELECT body FROM access_requests WHERE (? = '' OR state = ?) ORDER BY rowid",
                (state, state),
            ).fetchall()
        return [_from_json(r[0]) for r in rows]

    def decide(
        self, d: gateway_pb2.DecideAccessRequestRequest, operator: Identity
    ) -> common_pb2.AccessRequest:
        req = self.get(d.id)
        if req.state != "pending":
            raise FailedPrecondition(f"access request {d.id} is already {req.state}")
        now = utc()
        req.decided_by, req.decided_at, req.decision_note = str(operator), now, d.note
        if not d.approve:
            req.state = "denied"
            with self.state.transaction() as db:
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
            if (
                db.execute("SELECT state FROM access_requests WHERE id = ?", (req.id,)).fetchone()[
                    0
                ]
                != "pending"
            ):
                raise FailedPrecondition(f"access request {d.id} was decided meanwhile")
            grant = self.grants.add_in(db, grant, actor=str(operator), via=req.id)
            req.state, req.grant_id = "approved", grant.id
            if d.columns:
                del req.columns[:]
                req.columns.extend(d.columns)
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
        self,
        req: common_pb2.AccessRequest,
        d: gateway_pb2.DecideAccessRequestRequest,
        operator: Identity,
        now: str,
    ) -> Grant:
        asked = {c.column: set(c.controls) for c in req.columns}
        columns = asked
        if d.columns:  # narrowing: a subset of columns, each with a subset of controls
            columns = {c.column: set(c.controls) for c in d.columns}
            for name, controls in columns.items():
                if not controls <= asked.get(name, set()):
                    raise InvalidArgument(
                        f"approval may only narrow the request: {name!r} was not asked as "
                        f"{', '.join(sorted(controls - asked.get(name, set())))}"
                    )
        entry = self.catalog.get(req.dataset)
        assert entry is not None
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
            created_by=str(operator),
            created_at=now,
        )
        return policy.validate(dataclasses.replace(grant), entry.descriptor)


def as_dict(req: common_pb2.AccessRequest) -> dict:
    return json.loads(_to_json(req))
