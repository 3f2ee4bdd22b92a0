"""An auditor's offline replay of a log against its grants (review, 2026-12-04:
``audit verify`` checked the chain and signatures, not that each release was covered)."""

from __future__ import annotations

from federation.canonical import canonical
from gateway.grant_replay import violations


def _log(*bodies: dict) -> list[tuple[int, str, str]]:
    """As the verifier hands them over: each entry's number, kind and canonical body."""
    return [(i, b["kind"], canonical(b)) for i, b in enumerate(bodies, start=1)]


def _written(grant: str, **limits: object) -> dict:
    return {"kind": "grant.written", "grant_id": grant, **limits}


def _release(grant: str, epsilon: float = 0.0, time: str = "2026-12-04T10:00:00Z") -> dict:
    return {"kind": "release", "grant_id": grant, "epsilon": epsilon, "time": time}


def test_releases_within_their_grants_pass() -> None:
    log = _log(
        _written("g1", max_uses=2, dp_budget=0.3, expires="2026-12-05T00:00:00Z"),
        _release("g1", 0.1),
        _release("g1", 0.2),  # 0.1 + 0.2 is 0.3 exactly on the node's grid
        _written("g2"),
        *[_release("g2") for _ in range(50)],  # no limits
    )
    assert violations(log) == []


def test_each_kind_of_uncovered_release_is_named() -> None:
    log = _log(
        _release("ghost"),
        _written("uses", max_uses=1),
        _release("uses"),
        _release("uses"),
        _written("dp", dp_budget=1.0),
        _release("dp", 0.6),
        _release("dp", 0.6),
        _written("old", expires="2026-12-01T00:00:00Z"),
        _release("old"),
        _written("gone"),
        {"kind": "grant.revoked", "grant_id": "gone"},
        _release("gone"),
    )
    assert violations(log) == [
        "release 1 names grant 'ghost', never written at this node",
        "release 4 under grant uses beyond its 1 uses",
        "release 7 under grant dp beyond its DP budget",
        "release 9 under grant old after it expired",
        "release 12 under grant gone after its revocation",
    ]
