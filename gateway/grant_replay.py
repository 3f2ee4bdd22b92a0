"""Replay of an owner's audit log against its grants: what an auditor checks offline.

Every release entry names its grant and the epsilon it was charged; every grant's
limits are in its ``grant.written`` entry, and its revocation is an entry of its own.
Replayed in the log's order with the node's own arithmetic (``policy.budget``: charges on
a 1e-12 grid), no release may come under a grant never written here, after its
revocation, before it was valid or past its expiry, for another dataset,
operation, grantee or purpose than the grant's, beyond its ``max_uses`` or beyond its DP budget
(review, 2026-12-04: ``audit verify`` checked the chain and the signatures only).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass

from federation.canonical import canonical
from federation.envelope import Requester
from gateway.policy.budget import add_epsilon, within_budget
from gateway.policy.decide import matches, purpose_matches
from gateway.policy.model import Grant

KINDS = ("grant.written", "grant.revoked", "release")
SLACK = dt.timedelta(seconds=5)  # a release is stamped a moment after its grant's check
MAX_JUDGED = 4096  # (grant, what a release asked) pairs whose coverage is remembered


@dataclass
class _Held:
    grant: Grant
    # What a covered release's body holds, as canonical JSON pairs: each of ``required``
    # and one of ``either`` (empty: none needed). None: judged field by field (user
    # grants, grants with a purpose).
    required: tuple[str, ...] | None
    either: tuple[str, ...] = ()
    uses: int = 0
    spent: float = 0.0
    revoked: bool = False


def _pair(key: str, value: str) -> str:
    return canonical({key: value})[1:-1]  # '"key":"value"', escaped as the log writes it


def _held(g: Grant) -> _Held:
    """A quoted pair cannot occur inside a string value of canonical JSON (its quotes
    would be escaped there), so finding each in a body is finding the field's value."""
    if g.grantee_kind not in ("org", "node") or g.purpose:
        return _Held(g, None)
    who = "requester_org" if g.grantee_kind == "org" else "home_node"
    ops = tuple(_pair("operation", o) for o in g.operations)
    required = (_pair("dataset", g.dataset), _pair(who, g.grantee))
    if len(ops) == 1:
        return _Held(g, (*required, *ops))
    return _Held(g, required, ops)


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _is_time(text: str) -> bool:
    try:
        _time(text)
    except ValueError:
        return False
    return True


def _grant(e: dict[str, object]) -> Grant:
    """The grant as its ``grant.written`` entry states it (``policy.model.public_fields``)."""

    def text(key: str) -> str:
        return str(e.get(key) or "")

    def number(key: str) -> float:
        v = e.get(key)
        return float(v) if isinstance(v, int | float) else 0.0

    ops = e.get("operations")
    return Grant(
        id=text("grant_id"),
        dataset=text("dataset"),
        grantee_kind=text("grantee_kind"),
        grantee=text("grantee"),
        grantee_org=text("grantee_org"),
        operations=tuple(str(o) for o in ops) if isinstance(ops, list) else (),
        columns={},
        min_group_size=0,
        purpose=text("purpose"),
        valid_from=text("valid_from"),
        expires=text("expires"),
        max_uses=int(number("max_uses")),
        dp_budget=number("dp_budget"),
    )


def violations(entries: Iterable[tuple[int, str, str]]) -> list[str]:
    """``entries``: (seq, kind, body JSON) of the log's grant and release entries, in order.
    Returns what no grant covered, each naming the entry (empty when all is covered)."""
    grants: dict[str, _Held] = {}
    judged: dict[tuple[str, ...], str] = {}
    found: list[str] = []
    for seq, kind, body in entries:
        if kind == "release":  # most of a log's entries: read without a parser
            _release(seq, body, grants, judged, found)
            continue
        e = json.loads(body)
        grant_id = str(e.get("grant_id", ""))
        if kind == "grant.written":
            if grant_id in grants:  # a node never reuses an id: a second one is forged
                found.append(f"grant {grant_id} is written again at entry {seq}")
                continue  # judged by the first: a rewrite must not reset uses and budget
            grants[grant_id] = _held(_grant(e))
            continue
        held = grants.get(grant_id)
        if kind == "grant.revoked" and held is not None:
            held.revoked = True
    return found


_EPSILON = '"epsilon":'
# The string fields a release is judged by, in the order canonical JSON (sorted keys)
# writes them, so each is looked for after the one before.
_FIELDS = (
    "dataset",
    "grant_id",
    "home_node",
    "operation",
    "purpose",
    "requester",
    "requester_org",
    "time",
)


_NEEDLES = tuple(f'"{name}":"' for name in _FIELDS)


def _strings(body: str) -> tuple[str, ...]:
    """The release's ``_FIELDS`` from its canonical JSON (sorted keys, no spaces), each
    looked for after the one before; a body whose fields hold an escaped character, or
    are not where canonical JSON puts them, is parsed whole."""
    out = []
    at = 0
    for needle in _NEEDLES:
        start = body.find(needle, at)
        if start < 0:
            return _parsed(body)
        start += len(needle)
        at = body.find('"', start)
        value = body[start:at]
        if "\\" in value:
            return _parsed(body)
        out.append(value)
    return tuple(out)


def _parsed(body: str) -> tuple[str, ...]:
    e = json.loads(body)
    return tuple(str(e.get(name, "")) for name in _FIELDS)


def _epsilon(body: str) -> float:
    start = body.find(_EPSILON)
    if start < 0:
        return 0.0
    start += len(_EPSILON)
    if body.startswith(("0.0,", "0,", "0.0}", "0}"), start):  # the common case, at once
        return 0.0
    comma, close = body.find(",", start), body.find("}", start)
    try:
        return float(body[start : close if comma < 0 or 0 <= close < comma else comma])
    except ValueError:
        return math.nan


_GRANT, _TIME = '"grant_id":"', '"time":"'


def _text(body: str, needle: str) -> str:
    """A string field holding no quote (ids, times), read without parsing the body."""
    start = body.find(needle)
    if start < 0:
        return ""
    start += len(needle)
    return body[start : body.find('"', start)]


def _holds(body: str, held: _Held) -> bool:
    required = held.required
    if required is None:
        return False
    for needle in required:
        if needle not in body:
            return False
    return not held.either or any(n in body for n in held.either)


def _uncovered(held: _Held, fields: tuple[str, ...]) -> str:
    """Why the grant did not cover what the release asked ("" if it did), by the
    owner's own rules (``policy.decide``): its dataset, operation, grantee, purpose."""
    dataset, _grant_id, home_node, operation, purpose, requester, org, _time_ = fields
    g = held.grant
    if dataset != g.dataset:
        return f"of dataset {dataset!r}, not the grant's {g.dataset!r}"
    if operation not in g.operations:
        return f"a {operation!r} release, which the grant does not allow"
    role, _, user = requester.partition(":")
    if not matches(g, Requester(role, user, org), home_node):
        return f"for {requester} of {org!r} via {home_node!r}, not the grant's grantee"
    if not purpose_matches(g, purpose):
        return "for another purpose than the grant's"
    return ""


def _release(
    seq: int,
    body: str,
    grants: dict[str, _Held],
    judged: dict[tuple[str, ...], str],
    found: list[str],
) -> None:
    grant_id = _text(body, _GRANT)
    held = grants.get(grant_id)
    if held is None:
        found.append(f"release {seq} names grant {grant_id!r}, never written at this node")
        return
    g = held.grant
    if not _holds(body, held):  # the common case costs a few substring tests
        fields = _strings(body)
        key = fields[:7]  # all but the time
        why = judged.get(key)
        if why is None:
            if len(judged) >= MAX_JUDGED:
                judged.clear()
            why = judged[key] = _uncovered(held, fields)
        if why:
            found.append(f"release {seq} under grant {grant_id} is {why}")
    if held.revoked:
        found.append(f"release {seq} under grant {grant_id} after its revocation")
    if g.valid_from or g.expires:
        # "time" is a release's last key in sorted order: found from the end
        at = body.rfind(_TIME) + len(_TIME)
        stamped = body[at : body.find('"', at)] if at >= len(_TIME) else ""
        if not _is_time(stamped):
            found.append(f"release {seq} under grant {grant_id} has no time of release")
            stamped = g.valid_from or g.expires  # judged as at the edge of its period
        if g.valid_from and stamped < g.valid_from and _time(stamped) < _time(g.valid_from):
            found.append(f"release {seq} under grant {grant_id} before it was valid")
        if g.expires and stamped >= g.expires and _time(stamped) >= _time(g.expires) + SLACK:
            found.append(f"release {seq} under grant {grant_id} after it expired")
    held.uses += 1
    if g.max_uses and held.uses > g.max_uses:
        found.append(f"release {seq} under grant {grant_id} beyond its {g.max_uses} uses")
    epsilon = _epsilon(body)
    if not (math.isfinite(epsilon) and epsilon >= 0):
        found.append(f"release {seq} under grant {grant_id} charged an epsilon of {epsilon}")
    elif epsilon:
        if not within_budget(held.spent, epsilon, g.dp_budget):
            found.append(f"release {seq} under grant {grant_id} beyond its DP budget")
        held.spent = add_epsilon(held.spent, epsilon)
