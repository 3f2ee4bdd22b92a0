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


def violations(entries: Iterable[tuple[int, str]]) -> list[str]:
    """``entries``: (seq, body JSON) of the log's grant and release entries, in order.
    Returns what no grant covered, each naming the entry (empty when all is covered)."""
    grants: dict[str, _Held] = {}
    found: list[str] = []
    for seq, body in entries:
        e = json.loads(body)
        kind, grant_id = e.get("kind"), str(e.get("grant_id", ""))
        if kind == "grant.written":
            limits = (e.get("max_uses") or 0, e.get("dp_budget") or 0.0, e.get("expires") or "")
            grants[grant_id] = _Held(int(limits[0]), float(limits[1]), str(limits[2]))
            continue
        held = grants.get(grant_id)
        if kind == "grant.revoked":
            if held is not None:
                held.revoked = True
            continue
        if held is None:
            found.append(f"release {seq} names grant {grant_id!r}, never written at this node")
            continue
        epsilon = float(e.get("epsilon") or 0.0)
        if held.revoked:
            found.append(f"release {seq} under grant {grant_id} after its revocation")
        if held.expires and _time(e.get("time", "")) >= _time(held.expires) + SLACK:
            found.append(f"release {seq} under grant {grant_id} after it expired")
        held.uses += 1
        if held.max_uses and held.uses > held.max_uses:
            found.append(f"release {seq} under grant {grant_id} beyond its {held.max_uses} uses")
        if epsilon and not within_budget(held.spent, epsilon, held.dp_budget):
            found.append(f"release {seq} under grant {grant_id} beyond its DP budget")
        held.spent = add_epsilon(held.spent, epsilon)
    return found
