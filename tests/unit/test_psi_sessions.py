"""The differencing memory (gateway/psi_sessions.py) over a real SQLite state: which rules
an owner applies, by its own grant's DP and its peer's (docs/psi.md, the differencing
defence)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import FailedPrecondition, ResourceExhausted
from gateway.psi_sessions import KEEP, PsiSessions, Session
from gateway.state import State

K = 5


def _sessions(tmp_path: Path, name: str) -> PsiSessions:
    return PsiSessions(State(tmp_path / f"{name}.sqlite3"))


def _admit(ps: PsiSessions, req: str, digest: str, *, dp: bool, peer_dp: bool) -> None:
    ps.admit(Session("g", req, "peer", 500, digest, 800), K, "matcher", 0, dp=dp, peer_dp=peer_dp)


def test_a_dp_owner_facing_an_owner_without_dp_refuses_a_swap_in_its_own_set(
    tmp_path: Path,
) -> None:
    """Review (2026-12-04): M under DP skipped every size rule, and O without DP saw M's
    size unchanged: a same-size swap in M's set (S, then S - {X} + {Y}) read whether X is
    on O's list. Only M sees the swap, so M refuses it when O's hello has no DP."""
    ps = _sessions(tmp_path, "m")
    _admit(ps, "s1", "with-x", dp=True, peer_dp=False)
    with pytest.raises(FailedPrecondition, match="this owner's set differs"):
        _admit(ps, "s2", "with-y", dp=True, peer_dp=False)
    _admit(ps, "s3", "with-x", dp=True, peer_dp=False)  # the same set again is allowed


def test_with_both_owners_under_dp_only_replays_are_refused(tmp_path: Path) -> None:
    ps = _sessions(tmp_path, "both")
    _admit(ps, "s1", "with-x", dp=True, peer_dp=True)
    _admit(ps, "s2", "with-y", dp=True, peer_dp=True)
    with pytest.raises(FailedPrecondition, match="replayed"):
        _admit(ps, "s2", "with-y", dp=True, peer_dp=True)


def test_a_dp_owner_leaves_the_peer_size_rule_to_the_peer(tmp_path: Path) -> None:
    """The peer-size rule is the peer's own-set rule seen from here: a peer without DP
    applies it itself; this owner's own data is under its own noise."""
    for dp in (True, False):
        ps = _sessions(tmp_path, f"peer-{dp}")
        ps.admit(Session("g", "s1", "peer", 500, "d", 800), K, "matcher", 0, dp=dp, peer_dp=False)
        closer = Session("g", "s2", "peer", 500, "d", 799)
        if dp:
            ps.admit(closer, K, "matcher", 0, dp=dp, peer_dp=False)
        else:
            with pytest.raises(FailedPrecondition, match="the other owner's set size changed"):
                ps.admit(closer, K, "matcher", 0, dp=dp, peer_dp=False)


def test_the_limit_of_sessions_holds_under_dp_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliberate (commit 081bc63): the memory stays bounded under DP as well."""
    monkeypatch.setattr("gateway.psi_sessions.KEEP", 3)
    ps = _sessions(tmp_path, "keep")
    for i in range(3):
        _admit(ps, f"s{i}", "d", dp=True, peer_dp=True)
    with pytest.raises(ResourceExhausted, match="has had 3 PSI sessions"):
        _admit(ps, "s3", "d", dp=True, peer_dp=True)
    assert KEEP == 1000
