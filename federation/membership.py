"""The federation membership document: which nodes exist, where, at what level, under whom.

It is one JSON document signed by the federation CA key. Nodes verify it with the CA
certificate and refuse any peer that is not in it. This module only needs key objects,
so it does not depend on the gateway.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import asdict, dataclass, field, fields

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from federation.canonical import canonical

LEVELS = ("ministry", "province", "city")
ALGORITHM = "ecdsa-p256-sha256"
MAX_SERIAL = 2**63 - 1  # a serial fits every store that keeps it (SQLite's INTEGER)


class MembershipError(ValueError):
    """The document is malformed, inconsistent or not signed by the federation CA."""


@dataclass(frozen=True)
class Member:
    id: str
    org: str
    address: str  # host:port of its gRPC server
    level: str
    parent: str = ""
    name: str = ""  # display name, e.g. "Anhui Province"


@dataclass(frozen=True)
class Membership:
    federation: str
    serial: int
    issued_at: str
    members: tuple[Member, ...] = field(default_factory=tuple)

    def get(self, node_id: str) -> Member | None:
        for m in self.members:
            if m.id == node_id:
                return m
        return None

    def children(self, node_id: str) -> list[Member]:
        return [m for m in self.members if m.parent == node_id]

    def subtree(self, node_id: str) -> frozenset[str]:
        """The node and every member below it: whom its answer may speak for."""
        found = {node_id}
        frontier = [node_id]
        while frontier:  # parents are members and form no cycle (``check``)
            below = [m.id for m in self.members if m.parent in frontier and m.id not in found]
            found.update(below)
            frontier = below
        return frozenset(found)

    def others(self, node_id: str) -> list[Member]:
        return [m for m in self.members if m.id != node_id]


RESERVED_ID = "all"


_MEMBER_FIELDS = tuple(f.name for f in fields(Member))
_REQUIRED = ("id", "org", "address", "level")


def member_from(raw: object, index: int) -> Member:
    """A member from its table (an operator's TOML input, a signed document), naming the
    member and the field that is wrong rather than a Python call's complaint."""
    if not isinstance(raw, dict):
        raise MembershipError(f"member {index + 1} is not a table of fields")
    who = repr(raw["id"]) if isinstance(raw.get("id"), str) else str(index + 1)
    unknown = sorted(str(k) for k in raw if k not in _MEMBER_FIELDS)
    if unknown:
        raise MembershipError(
            f"member {who}: no field {unknown[0]!r} (the fields: {', '.join(_MEMBER_FIELDS)})"
        )
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise MembershipError(f"member {who}: the field {missing[0]!r} is missing")
    return Member(**raw)


def _check_types(membership: Membership) -> None:
    """Every field of its declared type: a document (or a TOML input) may hold anything."""
    if not isinstance(membership.federation, str) or not isinstance(membership.issued_at, str):
        raise MembershipError("the federation name and the issue time must be strings")
    if not isinstance(membership.serial, int) or isinstance(membership.serial, bool):
        raise MembershipError("the serial must be an integer")
    if not 1 <= membership.serial <= MAX_SERIAL:
        raise MembershipError(f"the serial must be between 1 and {MAX_SERIAL}")
    for m in membership.members:
        for name in ("id", "org", "address", "level", "parent", "name"):
            value = getattr(m, name)
            if not isinstance(value, str):
                raise MembershipError(f"member field {name!r} must be a string, got {value!r}")


def check(membership: Membership) -> Membership:
    _check_types(membership)
    ids = [m.id for m in membership.members]
    if len(set(ids)) != len(ids):
        raise MembershipError("a node id appears twice in the membership document")
    if RESERVED_ID in ids:  # ``fedgate train --nodes all`` means every member
        raise MembershipError(f"{RESERVED_ID!r} is not a node id (it means every member)")
    for m in membership.members:
        if m.level not in LEVELS:
            raise MembershipError(f"member {m.id!r}: level {m.level!r} is not one of {LEVELS}")
        if m.parent and m.parent not in ids:
            raise MembershipError(f"member {m.id!r}: parent {m.parent!r} is not a member")
        if m.level == "city" and not m.parent:
            raise MembershipError(f"member {m.id!r}: a city node needs a parent")
        host, _, port = m.address.rpartition(":")
        if not host or not (0 < len(port) <= 5 and port.isascii() and port.isdigit()):
            raise MembershipError(f"member {m.id!r}: address {m.address!r} is not host:port")
        if int(port) > 65535:
            raise MembershipError(f"member {m.id!r}: port {port} is over 65535")
    parents = {m.id: m.parent for m in membership.members}
    for m in membership.members:  # every chain of parents ends at a top-level member
        seen = {m.id}
        up = m.parent
        while up:
            if up in seen:
                raise MembershipError(f"member {m.id!r}: its parents form a cycle through {up!r}")
            seen.add(up)
            up = parents.get(up, "")
    return membership


def sign(membership: Membership, key: ec.EllipticCurvePrivateKey) -> bytes:
    """Serialise and sign with the federation CA key."""
    document = asdict(check(membership))
    signature = key.sign(canonical(document).encode(), ec.ECDSA(hashes.SHA256()))
    envelope = {
        "document": document,
        "algorithm": ALGORITHM,
        "signature": base64.b64encode(signature).decode(),
    }
    return json.dumps(envelope, indent=2, ensure_ascii=False).encode() + b"\n"


def verify(data: bytes, ca_keys: list[ec.EllipticCurvePublicKey]) -> Membership:
    """Parse a signed document; raise MembershipError unless a CA key signed exactly it."""
    try:
        envelope = json.loads(data)
        document = envelope["document"]
        signature = base64.b64decode(envelope["signature"], validate=True)
        algorithm = envelope.get("algorithm")
    except (ValueError, KeyError, TypeError) as exc:
        raise MembershipError(f"membership document is malformed: {exc}") from None
    if algorithm != ALGORITHM:
        raise MembershipError(f"membership signature algorithm {algorithm!r} is not supported")
    try:
        payload = canonical(document).encode()
    except (UnicodeEncodeError, TypeError, ValueError) as exc:  # a lone surrogate, say
        raise MembershipError(f"membership document is malformed: {exc}") from None
    for key in ca_keys:
        try:
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            break
        except (InvalidSignature, TypeError):
            continue
    else:
        raise MembershipError("membership document signature does not verify with the CA")
    try:
        members = tuple(member_from(m, i) for i, m in enumerate(document["members"]))
        membership = Membership(
            federation=str(document["federation"]),
            serial=int(document["serial"]),
            issued_at=str(document["issued_at"]),
            members=members,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MembershipError(f"membership document has bad fields: {exc}") from None
    return check(membership)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
