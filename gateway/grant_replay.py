"""Replay of an owner's audit log against its grants: what an auditor checks offline.

Every release entry names its grant and the epsilon it was charged; every grant's
limits are in its ``grant.written`` entry, and its revocation is an entry of its own.
Replayed in the log's order with the node's own arithmetic (``policy.budget``: charges on
a 1e-12 grid), no release may come under a grant never written here, after its
revocation, past its expiry, beyond its ``max_uses`` or beyond its DP budget
(review, 2026-12-04: ``audit verify`` checked the chain and the signatures only).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.policy.budget import add_epsilon, within_budget

KINDS = ("grant.written", "grant.revoked", "release")
SLACK = dt.timedelta(seconds=5)  # a release is stamped a moment after its grant's check


@dataclass
class _Held:
    max_uses: int
    dp_budget: float
    expires: str
    uses: int = 0
    spent: float = 0.0
    revoked: bool = False


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def violations(entries: Iterable[tuple[int, str, str]]) -> list[str]:
    """``entries``: (seq, kind, body JSON) of the log's grant and release entries, in order.
    Returns what no grant covered, each naming the entry (empty when all is covered)."""
    grants: dict[str, _Held] = {}
    found: list[str] = []
    for seq, kind, body in entries:
        if kind == "release":  # most of a log's entries: read without a parser
            _release(seq, body, grants, found)
            continue
        e = json.loads(body)
        grant_id = str(e.get("grant_id", ""))
        if kind == "grant.written":
            limits = (e.get("max_uses") or 0, e.get("dp_budget") or 0.0, e.get("expires") or "")
            grants[grant_id] = _Held(int(limits[0]), float(limits[1]), str(limits[2]))
            continue
        held = grants.get(grant_id)
        if kind == "grant.revoked" and held is not None:
            held.revoked = True
    return found


_GRANT, _TIME, _EPSILON = '"grant_id":"', '"time":"', '"epsilon":'


def _text(body: str, needle: str) -> str:
    """A string field of canonical JSON (sorted keys, no spaces; ids and times hold no
    quote), read without parsing the whole body (a log is mostly releases)."""
    start = body.find(needle)
    if start < 0:
        return ""
    start += len(needle)
    return body[start : body.find('"', start)]


def _epsilon(body: str) -> float:
    start = body.find(_EPSILON)
    if start < 0:
        return 0.0
    start += len(_EPSILON)
    if body.startswith(("0.0,", "0,", "0.0}", "0}"), start):  # the common case, at once
        return 0.0
    comma, close = body.find(",", start), body.find("}", start)
    return float(body[start : close if comma < 0 or 0 <= close < comma else comma])


def _release(seq: int, body: str, grants: dict[str, _Held], found: list[str]) -> None:
    grant_id = _text(body, _GRANT)
    held = grants.get(grant_id)
    if held is None:
        found.append(f"release {seq} names grant {grant_id!r}, never written at this node")
        return
    if held.revoked:
        found.append(f"release {seq} under grant {grant_id} after its revocation")
    if held.expires:
        stamped = _text(body, _TIME)
        if stamped >= held.expires and _time(stamped) >= _time(held.expires) + SLACK:
            found.append(f"release {seq} under grant {grant_id} after it expired")
    held.uses += 1
    if held.max_uses and held.uses > held.max_uses:
        found.append(f"release {seq} under grant {grant_id} beyond its {held.max_uses} uses")
    epsilon = _epsilon(body)
    if epsilon:
        if not within_budget(held.spent, epsilon, held.dp_budget):
            found.append(f"release {seq} under grant {grant_id} beyond its DP budget")
        held.spent = add_epsilon(held.spent, epsilon)
