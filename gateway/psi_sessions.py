"""The owner's memory of its PSI sessions, per grant: the defence against differencing.

Two sessions whose sets differ by one identifier reveal, by the difference of their
cardinalities, whether that identifier is in the other owner's set. An owner therefore
refuses a session under a grant when, compared with an earlier session under the same
grant with the same peer, its own set changed (another digest) but by fewer than k
identifiers in size, or the peer's declared set size changed by 1 to k - 1. Repeating
the very same session (a new request with the same sets) is allowed; the same request
twice (a replayed envelope) is not. When both owners' grants are DP grants only replays
are refused: the noise bounds what a series of sessions tells, and a refusal by size
would be an exact answer of its own. An owner under DP whose peer has none still refuses
its own set's same-size or near change: only it can see one, and the peer without DP
relies on that (its epsilon may be a noise of nothing). Without DP the size rule is a
heuristic with a threshold an analyst can probe (docs/psi.md says how far it goes). A
grant's ``max_uses`` bounds the number of sessions as for queries; this table remembers
every session of a grant with a peer, up to ``KEEP``, then refuses more, with or without
DP (memory stays bounded; the `psi_sessions` table is owned by this module).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from gateway.audit import AuditLog
from gateway.clock import utc
from gateway.errors import FailedPrecondition, ResourceExhausted
from gateway.state import State

KEEP = 1000  # sessions remembered per grant and peer; then the grant takes no more


@dataclass(frozen=True)
class Session:
    grant_id: str
    session: str
    peer: str
    own_size: int
    own_digest: str
    peer_size: int


def _too_close(a: int, b: int, k: int) -> bool:
    return 0 < abs(a - b) < k


class PsiSessions:
    def __init__(self, state: State) -> None:
        self._state = state

    def admit(
        self, s: Session, k: int, role: str, invalid: int, *, dp: bool, peer_dp: bool
    ) -> None:
        """Refuse ``s`` if it was served before (a replayed envelope) or if it and an
        earlier session differ by fewer than ``k``; else remember it and write its set
        sizes to the audit log (never into a receipt: a receipt reaches the analyst, the
        sizes are this owner's to keep). One transaction: two sessions at once cannot
        both pass against the same memory. ``dp``: this owner's grant is a DP grant;
        ``peer_dp``: the peer's hello declared an epsilon."""
        entry = {
            "kind": "psi.session",
            "time": utc(),
            "request_id": s.session,
            "grant_id": s.grant_id,
            "peer": s.peer,
            "role": role,
            "own_size": s.own_size,
            "peer_size": s.peer_size,
            "invalid_identifiers": invalid,
        }

        def work(db: sqlite3.Connection) -> None:
            _check(db, s, k, dp, peer_dp)
            AuditLog.append_in(db, entry)
            db.execute(
                "INSERT INTO psi_sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (s.grant_id, s.session, s.peer, s.own_size, s.own_digest, s.peer_size, utc()),
            )

        self._state.group(work)


def _check(db: sqlite3.Connection, s: Session, k: int, dp: bool, peer_dp: bool) -> None:
    """The refusals say which rule, never the sizes (they are the owners' to keep).

    With both grants under DP only a replay is refused: the noise bounds what a series of
    sessions tells, and a refusal by size would itself be an exact, free answer. Under its
    own DP, facing a peer without, an owner keeps its own-set rule: a same-size swap of one
    identifier in its set is seen by no one else, and its own epsilon may be as large as
    1 000 (review, 2026-12-04: such swaps read the peer's list). The peer-size rule is the
    peer's own-set rule seen from here, and that peer applies it (docs/psi.md)."""
    seen = db.execute("SELECT 1 FROM psi_sessions WHERE session = ? LIMIT 1", (s.session,))
    if seen.fetchone():
        raise FailedPrecondition(
            f"session {s.session} was run here before: a replayed request is refused"
        )
    held = db.execute(
        "SELECT COUNT(*) FROM psi_sessions WHERE grant_id = ? AND peer = ?", (s.grant_id, s.peer)
    ).fetchone()[0]
    if held >= KEEP:  # never forget one to make room: a forgotten set could be differenced
        raise ResourceExhausted(
            f"grant {s.grant_id} has had {KEEP:,} PSI sessions with {s.peer}: the owner must "
            "write a new grant for more"
        )
    if dp and peer_dp:
        return
    rows = db.execute(
        "SELECT own_size, own_digest, peer_size FROM psi_sessions WHERE grant_id = ? AND peer = ?",
        (s.grant_id, s.peer),
    ).fetchall()
    for own_size, own_digest, peer_size in rows:
        if own_digest != s.own_digest and abs(own_size - s.own_size) < k:
            raise FailedPrecondition(
                f"this owner's set differs from an earlier session under grant {s.grant_id} "
                f"by fewer than k = {k} identifiers: refused as a differencing attack "
                "(docs/psi.md)"
            )
        if not dp and _too_close(peer_size, s.peer_size, k):
            raise FailedPrecondition(
                f"the other owner's set size changed by fewer than k = {k} since an earlier "
                f"session under grant {s.grant_id}: refused as a differencing attack "
                "(docs/psi.md)"
            )
