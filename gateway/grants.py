"""Grants: the only source of permission, written and enforced by the data owner.

A grant names a grantee (a user, a whole organisation, or a node), a dataset, the
operations allowed, and for each column how it may be used. A column not named may not
be used at all. Classification sets floors a grant cannot go under.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from federation.sqlsubset import QueryPlan
from gateway.audit import AuditLog, Entry
from gateway.descriptor import LEVELS, DatasetDescriptor
from gateway.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from gateway.identity import Identity
from gateway.state import State

CONTROLS = ("raw", "group_by", "aggregate", "filter", "join_key")
OPERATIONS = ("query", "psi", "train")
GRANTEE_KINDS = ("user", "org", "node")
DP_AGGREGATES = {"count", "sum", "avg", "var_samp", "var_pop", "stddev_samp", "stddev_pop"}


@dataclass(frozen=True)
class Floor:
    raw: bool  # may columns be released row by row?
    min_group_size: int
    dp_required: bool
    releasable: bool = True


FLOORS = {
    "L1": Floor(raw=True, min_group_size=1, dp_required=False),
    "L2": Floor(raw=False, min_group_size=5, dp_required=False),
    "L3": Floor(raw=False, min_group_size=10, dp_required=True),
    "L4": Floor(raw=False, min_group_size=10**9, dp_required=True, releasable=False),
}


@dataclass(frozen=True)
class Grant:
    id: str
    dataset: str
    grantee_kind: str
    grantee: str
    operations: tuple[str, ...]
    columns: dict[str, tuple[str, ...]]
    min_group_size: int
    dp_epsilon: float = 0.0  # per query; 0 means no differential privacy
    dp_budget: float = 0.0  # total epsilon over the grant's life
    purpose: str = ""
    valid_from: str = ""
    expires: str = ""
    max_uses: int = 0  # 0: unlimited
    uses: int = 0
    epsilon_spent: float = 0.0
    revoked_at: str = ""
    created_by: str = ""
    created_at: str = ""
    grantee_org: str = ""  # user grants: the user's organisation, matched as well
    extra: dict = field(default_factory=dict)

    @property
    def uses_dp(self) -> bool:
        return self.dp_epsilon > 0

    def status(self, now: str) -> str:
        if self.revoked_at:
            return "revoked"
        if self.valid_from and now < self.valid_from:
            return "not yet valid"
        if self.expires and now >= self.expires:
            return "expired"
        if self.max_uses and self.uses >= self.max_uses:
            return "used up"
        if self.uses_dp and not within_budget(self.epsilon_spent, self.dp_epsilon, self.dp_budget):
            return "budget spent"
        return "active"


# Budgets are kept in whole units of 1e-12 epsilon, as decimals: binary floats would make
# three releases of 0.1 overrun a budget of 0.3 (0.1 + 0.1 + 0.1 > 0.3), or, compared with
# a tolerance, let the total creep over it. Charges round up, budgets down.
_GRID = Decimal("1e-12")


def _units(value: float, rounding: str) -> int:
    return int((Decimal(repr(float(value))) / _GRID).to_integral_value(rounding))


def within_budget(spent: float, charge: float, budget: float) -> bool:
    """Whether ``charge`` more still fits: never over the budget, at 1e-12 resolution."""
    total = _units(spent, ROUND_HALF_EVEN) + _units(charge, ROUND_CEILING)
    return total <= _units(budget, ROUND_FLOOR)


def add_epsilon(spent: float, charge: float) -> float:
    """The new total, on the same grid (so that ten charges of 0.1 are exactly 1.0)."""
    units = _units(spent, ROUND_HALF_EVEN) + _units(charge, ROUND_CEILING)
    return float(Decimal(units) * _GRID)


@dataclass(frozen=True)
class Decision:
    """What the owner will do for one request under one grant."""

    grant: Grant
    min_group_size: int
    epsilon: float
    clamp: dict[str, tuple[float, float]] | None
    level: str


def utc(ts: dt.datetime | None = None) -> str:
    ts = ts or dt.datetime.now(dt.UTC)
    return ts.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(value: str, field_name: str) -> str:
    """Accept ISO dates or datetimes, store them as UTC RFC 3339."""
    if not value:
        return ""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"{field_name} {value!r} is not an ISO date or datetime") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return utc(parsed)


def effective_level(desc: DatasetDescriptor, columns: list[str] | tuple[str, ...]) -> str:
    levels = [desc.level] + [desc.column_level(c) for c in columns]
    return max(levels, key=LEVELS.index)


def validate(grant: Grant, desc: DatasetDescriptor) -> Grant:
    """Refuse a grant that the dataset's classification does not allow."""
    if grant.grantee_kind not in GRANTEE_KINDS:
        raise InvalidArgument(f"grantee kind {grant.grantee_kind!r} is not one of {GRANTEE_KINDS}")
    if not grant.grantee:
        raise InvalidArgument("grantee must not be empty")
    if grant.grantee_kind == "user" and not grant.grantee_org:
        raise InvalidArgument("a user grant names the user's organisation too (--user-org)")
    for name, value in (("dp_epsilon", grant.dp_epsilon), ("dp_budget", grant.dp_budget)):
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(f"{name} must be a finite number >= 0")
    if grant.max_uses < 0 or grant.min_group_size < 1:
        raise InvalidArgument("max_uses must be >= 0 and min_group_size >= 1")
    bad_ops = [o for o in grant.operations if o not in OPERATIONS]
    if bad_ops or not grant.operations:
        raise InvalidArgument(f"operations must be some of {', '.join(OPERATIONS)}")
    if not grant.columns:
        raise InvalidArgument("a grant names at least one column (a column not named is unusable)")
    declared = {c.name for c in desc.columns}
    for column, controls in grant.columns.items():
        if column not in declared:
            raise InvalidArgument(f"column {column!r} is not a column of {desc.name}")
        bad = [c for c in controls if c not in CONTROLS]
        if bad or not controls:
            raise InvalidArgument(f"column {column!r}: controls must be some of {CONTROLS}")
    level = effective_level(desc, list(grant.columns))
    floor = FLOORS[level]
    if not floor.releasable:
        raise FailedPrecondition(f"{desc.name} is {level} (core): nothing may leave the node")
    for column, controls in grant.columns.items():
        if "raw" in controls and FLOORS[effective_level(desc, [column])].raw is False:
            raise FailedPrecondition(
                f"column {column!r} is {effective_level(desc, [column])}: 'raw' needs L1 open data"
            )
    if grant.min_group_size < floor.min_group_size:
        raise FailedPrecondition(
            f"{level} needs a minimum group size of at least {floor.min_group_size}"
        )
    if floor.dp_required and not grant.uses_dp:
        raise FailedPrecondition(
            f"{level} needs differential privacy (--dp-epsilon and --dp-budget)"
        )
    if grant.uses_dp:
        if grant.dp_budget < grant.dp_epsilon:
            raise InvalidArgument("dp budget must be at least the per-query epsilon")
        for column, controls in grant.columns.items():
            if "aggregate" in controls:
                spec = next(c for c in desc.columns if c.name == column)
                if spec.type in ("int64", "float64") and (spec.lower is None or spec.upper is None):
                    raise FailedPrecondition(
                        f"column {column!r} has no declared bounds, needed to clamp it under DP"
                    )
    if grant.expires and grant.valid_from and grant.expires <= grant.valid_from:
        raise InvalidArgument("expires must be after valid_from")
    return grant


# --- store ----------------------------------------------------------------------------

_COLUMNS = "id, dataset, grantee_kind, grantee, body, uses, epsilon_spent, revoked_at, created_at"


def _row_to_grant(row: tuple) -> Grant:
    body = json.loads(row[4])
    body["operations"] = tuple(body["operations"])
    body["columns"] = {k: tuple(v) for k, v in body["columns"].items()}
    return Grant(**{**body, "uses": row[5], "epsilon_spent": row[6], "revoked_at": row[7] or ""})


def public_fields(grant: Grant) -> dict:
    """What the audit log says about a grant."""
    return {
        "grant_id": grant.id,
        "dataset": grant.dataset,
        "grantee_kind": grant.grantee_kind,
        "grantee": grant.grantee,
        "grantee_org": grant.grantee_org,
        "operations": list(grant.operations),
        "columns": {k: list(v) for k, v in grant.columns.items()},
        "min_group_size": grant.min_group_size,
        "dp_epsilon": grant.dp_epsilon,
        "dp_budget": grant.dp_budget,
        "purpose": grant.purpose,
        "valid_from": grant.valid_from,
        "expires": grant.expires,
        "max_uses": grant.max_uses,
    }


class GrantStore:
    """Grants in the node's state; every change is audited in the same transaction."""

    def __init__(self, state: State) -> None:
        self._state = state

    def add(self, grant: Grant, *, actor: str = "", via: str = "") -> Grant:
        with self._state.transaction() as db:
            return self.add_in(db, grant, actor=actor, via=via)

    @staticmethod
    def add_in(db: sqlite3.Connection, grant: Grant, *, actor: str = "", via: str = "") -> Grant:
        """Write a grant and its audit entry inside the caller's transaction."""
        grant = replace(grant, id=grant.id or "g-" + secrets.token_hex(4))
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
        self, decision: Decision, now: str, record: Callable[[Grant], dict]
    ) -> tuple[Grant, Entry]:
        """Re-check the grant, spend one use and its epsilon, and write the release's audit
        entry: one transaction, so all three are durable together or none is.

        Runs at release time: a grant revoked, expired or used up since the request was
        checked stops the release here.
        """
        g = decision.grant

        def work(db: sqlite3.Connection) -> tuple[Grant, Entry]:
            row = db.execute(f"SELECT {_COLUMNS} FROM grants WHERE id = ?", (g.id,)).fetchone()
            if row is None:
                raise PermissionDenied(f"grant {g.id} no longer exists")
            current = _row_to_grant(row)
            status = current.status(now)
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
            return spent, AuditLog.append_in(db, record(spent))

        # Group commit: concurrent releases share one fsync; each is its own savepoint.
        return self._state.group(work)


# --- deciding ---------------------------------------------------------------------------


def _matches(grant: Grant, requester: Identity, home_node: str) -> bool:
    if grant.grantee_kind == "user":
        return grant.grantee == requester.id and grant.grantee_org == requester.org
    if grant.grantee_kind == "org":
        return grant.grantee == requester.org
    return grant.grantee == home_node


def _check_columns(grant: Grant, plan: QueryPlan) -> None:
    for column, roles in sorted(plan.column_roles.items()):
        allowed = set(grant.columns.get(column, ()))
        missing = sorted(set(roles) - allowed)
        if missing:
            allowed_text = ", ".join(sorted(allowed)) or "not named in the grant"
            raise PermissionDenied(
                f"column {column!r} may not be used as {missing[0]} under grant {grant.id} "
                f"(allowed: {allowed_text})"
            )


def decide(
    grants: list[Grant],
    plan: QueryPlan,
    desc: DatasetDescriptor,
    requester: Identity,
    home_node: str,
    purpose: str,
    now: str,
) -> Decision:
    """Pick the grant that permits this query, or refuse with the most useful reason."""
    used = list(plan.column_roles)
    level = effective_level(desc, [c for c in used if c in {x.name for x in desc.columns}])
    unknown = [c for c in used if c not in {x.name for x in desc.columns}]
    if unknown:
        raise InvalidArgument(f"{desc.name} has no column {unknown[0]!r}")
    floor = FLOORS[level]
    if not floor.releasable:
        core = [c for c in used if desc.column_level(c) == "L4"]
        what = f"column {core[0]!r} of {desc.name}" if core else desc.name
        raise PermissionDenied(f"{what} is {level} (core data): nothing leaves the node")
    candidates = [
        g
        for g in grants
        if g.dataset == desc.name and "query" in g.operations and _matches(g, requester, home_node)
    ]
    order = {"user": 0, "org": 1, "node": 2}
    candidates.sort(key=lambda g: order[g.grantee_kind])
    if not candidates:
        raise PermissionDenied(f"no grant lets {requester} query {desc.name}")
    reasons: list[tuple[type[Exception], str]] = []
    for g in candidates:
        status = g.status(now)
        if status == "budget spent":
            reasons.append((ResourceExhausted, f"the privacy budget of grant {g.id} is spent"))
            continue
        if status != "active":
            reasons.append((PermissionDenied, f"grant {g.id} is {status}"))
            continue
        if g.purpose and g.purpose.strip().lower() != purpose.strip().lower():
            reasons.append((PermissionDenied, f"grant {g.id} is for the purpose {g.purpose!r}"))
            continue
        try:
            _check_columns(g, plan)
            if plan.is_raw and not floor.raw:
                raise PermissionDenied(f"{desc.name} is {level}: only aggregates may leave")
            extremes = [
                a
                for a in plan.aggregates
                if a.func in ("min", "max")
                and a.column is not None
                and effective_level(desc, [a.column]) != "L1"
            ]
            if extremes:
                raise PermissionDenied(
                    f"{extremes[0].label} would show one record's value: MIN and MAX are "
                    "only released for L1 (open) columns"
                )
            if floor.dp_required and not g.uses_dp:
                raise PermissionDenied(f"{level} data needs a grant with differential privacy")
            if g.uses_dp:
                if plan.is_raw:
                    raise PermissionDenied(f"grant {g.id} uses DP: raw rows cannot be released")
                bad = [a.label for a in plan.aggregates if a.func not in DP_AGGREGATES]
                if bad:
                    raise PermissionDenied(f"{bad[0]} cannot be released under DP")
                specs = {c.name: c for c in desc.columns}
                unbounded = [
                    a.column
                    for a in plan.aggregates
                    if a.column is not None
                    and a.func != "count"
                    and (specs[a.column].lower is None or specs[a.column].upper is None)
                ]
                if unbounded:
                    raise PermissionDenied(
                        f"column {unbounded[0]!r} has no declared bounds, so it cannot be "
                        "clamped and noised under DP"
                    )
        except PermissionDenied as exc:
            reasons.append((PermissionDenied, exc.message))
            continue
        clamp = None
        if g.uses_dp:
            clamp = {
                c.name: (c.lower, c.upper)
                for c in desc.columns
                if c.lower is not None and c.upper is not None
            }
        k = max(g.min_group_size, floor.min_group_size)
        return Decision(g, k, g.dp_epsilon if g.uses_dp else 0.0, clamp, level)
    exc_type, message = reasons[0]
    raise exc_type(message)
