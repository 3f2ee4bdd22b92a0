"""One witnessing round, as the node being witnessed, with a typed result.

The node checkpoints its log, then walks each peer forward from the size that peer last
countersigned, at most ``DIGESTS_PER_REQUEST`` entries a step. A peer that holds another
size answers FAILED_PRECONDITION with the size in ``details["last_size"]``; the round
resends from there. Whatever else a peer answers is that peer's failure, reported in the
round's result, never raised: one slow or broken peer does not stop the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from federation.membership import Member
from federation.outcome import Code, Error
from gateway import serde
from gateway.audit import AuditLog
from gateway.clock import utc
from gateway.errors import DeadlineExceeded, FailedPrecondition, FedgateError
from gateway.transport import Transport
from gateway.witness import COUNTERSIGNED, LAST_SIZE, Witness, WitnessedHead, WitnessRequest

log = logging.getLogger("fedgate.witness")
MAX_STEPS = 1000  # per peer and round: 1000 x 40 000 entries
MAX_STALE = 3  # "I hold another size" answers a peer may give in one round
# A witness's countersignature is an entry in its own log (``COUNTERSIGNED``). Were such
# entries witnessed in turn, an idle federation would never rest (each round's
# countersignatures the next round's news: ~30 MB a node a day at the defaults; review,
# 2026-12-04). The background rounds leave a peer be while this node's log grew only by
# them; they are witnessed with the next entry of any other kind, or by a round asked for
# (`fedgate audit witness`).


@dataclass(frozen=True)
class PeerFailure:
    peer: str
    error: Error

    def __str__(self) -> str:
        """The text WitnessNow returns and the log shows: "peer: CODE: reason"."""
        return f"{self.peer}: {self.error}"


@dataclass(frozen=True)
class WitnessRound:
    heads: tuple[WitnessedHead, ...]  # the latest head, countersigned, one per peer that did
    errors: tuple[PeerFailure, ...]  # one per peer that failed


Send = Callable[[WitnessRequest], WitnessedHead]


def last_size(exc: FedgateError) -> int | None:
    """The size a witness says it holds, when it refused a request for a stale from_size."""
    if exc.code != Code.FAILED_PRECONDITION:
        return None
    try:
        return int(exc.details[LAST_SIZE])
    except (KeyError, ValueError):  # no such detail: a real failure, not a stale from_size
        return None


def witness_peer(
    witness: Witness, audit: AuditLog, peer: str, send: Send, *, skip_idle: bool = False
) -> WitnessedHead | None:
    """Bring ``peer`` up to this node's latest head; its countersignature of that head, or
    None when MAX_STEPS did not get there. A peer's failure raises its FedgateError. With
    ``skip_idle``, a peer that countersigned all but this node's own countersignatures is
    not asked; its last countersignature is the answer."""
    if skip_idle:
        last = witness.latest_receipt(peer)
        if (
            last is not None
            and audit.hash_at(last.size) == last.head  # of this log as it is
            and not audit.grew_since(last.size, ignoring=COUNTERSIGNED)
        ):
            return last
    seen: int | None = None
    stale = 0
    for _step in range(MAX_STEPS):
        req = witness.request_for(peer, seen)
        try:
            w = send(req)
        except FedgateError as exc:
            seen = last_size(exc)
            if seen is None:
                raise
            stale += 1
            # A size is news only once: a peer that answers the size it was just sent,
            # or keeps answering sizes, had this node rebuild and hash up to 40 000
            # entries a step, 1 000 steps a round (review, 2026-12-04).
            if seen == req.from_size or stale > MAX_STALE:
                raise FailedPrecondition(
                    f"did not take this node's head: it holds size {seen} "
                    f"after a request from size {req.from_size}"
                ) from None
            continue
        witness.check_answer(peer, req, w)  # before it is kept (and trusted by the skip)
        witness.keep(w)
        seen = w.size
        latest = audit.latest_head()
        if w.size >= req.head.size and latest is not None and req.head.size == latest.size:
            return w
    return None


def witness_round(
    witness: Witness,
    audit: AuditLog,
    transport: Transport,
    timeout: float,
    *,
    skip_idle: bool = False,
    deadline: float | None = None,
) -> WitnessRound:
    """Send this node's signed head to every peer; keep their countersignatures. With
    ``deadline`` (an operator's ``WitnessNow``), no peer is asked past it (the round had
    gone on, a peer after another, long after the caller gave up: review, 2026-12-04)."""
    audit.checkpoint(utc())
    heads: list[WitnessedHead] = []
    errors: list[PeerFailure] = []
    for member in transport.members():
        if deadline is not None and time.monotonic() >= deadline:
            late = Error(Code.DEADLINE_EXCEEDED, "not asked: the call's deadline passed")
            errors.append(PeerFailure(member.id, late))
            continue
        send = _sender(transport, member, timeout, deadline)
        try:
            w = witness_peer(witness, audit, member.id, send, skip_idle=skip_idle)
        except FedgateError as exc:
            errors.append(PeerFailure(member.id, exc.error))
            continue
        except Exception as exc:  # one peer's odd answer must not end the round for all
            log.exception("witnessing %s failed", member.id)
            errors.append(PeerFailure(member.id, Error(Code.INTERNAL, type(exc).__name__)))
            continue
        if w is None:  # a peer that did not countersign is not a success
            behind = Error(Code.DEADLINE_EXCEEDED, f"did not reach the head in {MAX_STEPS} steps")
            errors.append(PeerFailure(member.id, behind))
            continue
        heads.append(w)
    return WitnessRound(tuple(heads), tuple(errors))


def _sender(transport: Transport, member: Member, timeout: float, deadline: float | None) -> Send:
    def send(req: WitnessRequest) -> WitnessedHead:
        now = time.monotonic()
        ends = now + timeout
        if deadline is not None and deadline <= now:
            # no time left to ask: said as such, not as a peer that did not finish
            raise DeadlineExceeded("not asked: the call's deadline passed")
        resp = transport.call(
            member,
            "Witness",
            serde.witness_request_to_proto(req),
            deadline=ends if deadline is None else min(ends, deadline),
        )
        return serde.witnessed_head_from_proto(resp)

    return send
