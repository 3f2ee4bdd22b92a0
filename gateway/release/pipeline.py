"""One release pipeline: decide → compute → protect → spend → audit → sign.

Whatever leaves an owner (a query partial now; a PSI answer and a model update next)
passes these steps in this order. An ``Operation`` supplies the three that depend on
what is released (decide against the owner's own grants, compute, protect); the
pipeline does the rest the same way for every operation: it refuses a result too large
to send or too late to matter, spends the grant's use and privacy budget and writes the
release's audit entry in one durable transaction, and only then signs the receipt.
Every refusal on the way is an audit entry too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from federation.envelope import Envelope
from federation.reports import Explanation
from gateway import receipts
from gateway.audit import AuditLog, Entry
from gateway.clock import utc
from gateway.errors import (
    DeadlineExceeded,
    FedgateError,
    NoisedTooLarge,
    NoiseSent,
    ResourceExhausted,
)
from gateway.limits import check_size, cut
from gateway.policy.model import Decision, Grant
from gateway.policy.store import GrantStore
from gateway.receipts import Receipt, Signer
from gateway.release.inflight import InFlight

log = logging.getLogger("fedgate.owner")  # the owner's releases, as before the pipeline

C = TypeVar("C")

ENVELOPE_BYTES = 64 * 1024  # room for the response around the payload


@dataclass(frozen=True)
class Protected:
    """What an operation releases, after its disclosure control."""

    payload: bytes  # exactly the bytes that leave (their digest is in the receipt)
    epsilon: float  # charged by this release (OpenDP's privacy map); 0 without DP
    facts: Mapping[str, Any] = field(default_factory=dict)  # for the audit entry
    value: Any = None  # the same release in memory (a relay merges tables)


@dataclass(frozen=True)
class Released:
    grant: Grant  # as it stands after the spend
    entry: Entry  # the durable audit entry of the release
    receipt: Receipt
    protected: Protected
    no_spend: bool = False  # Decision.no_spend


class Operation(Protocol[C]):
    """The steps that depend on what is released."""

    @property
    def name(self) -> str:
        """query | psi | train: the grant operation, and the audit entry's."""

    @property
    def once_per_request(self) -> bool:
        """Whether this node releases at most once per (home node, request id)."""

    @property
    def noises_in_compute(self) -> bool:
        """Whether its compute step already draws noise (a PSI session's counts, a
        training update): then no refusal after compute is free."""

    @property
    def subject(self) -> Mapping[str, str]:
        """What was asked, for the audit entries (dataset, plan digest, ...)."""

    def decide(self, env: Envelope) -> Decision: ...

    def explain(self, decision: Decision) -> Explanation: ...

    def compute(self, decision: Decision, deadline: float) -> C: ...

    def protect(self, computed: C, decision: Decision) -> Protected: ...


# --- the steps the pipeline owns, each testable on its own --------------------------------


def check_deadline(deadline: float, now: float | None = None) -> None:
    """Nobody is waiting for a release past its deadline: do not spend on it."""
    if (time.monotonic() if now is None else now) >= deadline:
        raise DeadlineExceeded("the query's deadline passed before the release")


def release_entry(
    node_id: str, env: Envelope, op: Operation[Any], protected: Protected, grant: Grant, at: str
) -> dict[str, Any]:
    """The audit entry of one release (its receipt signs this very body), stamped ``at``:
    the time the spend checked the grant. What the operation adds (its subject, its facts)
    may not replace what the pipeline writes."""
    r = env.requester
    entry = {
        "kind": "release",
        "time": at,
        "grant_id": grant.id,
        "request_id": env.request_id,
        "owner": node_id,
        "requester": str(r),
        "requester_org": r.org,
        "home_node": env.home_node,
        "purpose": env.purpose,
        "operation": op.name,
        "result_digest": receipts.digest(protected.payload),
        "epsilon": protected.epsilon,
    }
    return {**_own(entry, op.subject, protected.facts), **entry}


def _own(entry: Mapping[str, Any], *parts: Mapping[str, Any]) -> dict[str, Any]:
    """The operation's own fields, refused where they would overwrite the pipeline's."""
    out: dict[str, Any] = {}
    for part in parts:
        clash = set(part) & (set(entry) | set(out))
        if clash:
            raise ValueError(f"an operation may not set the audit fields {sorted(clash)}")
        out.update(part)
    return out


def spend(
    grants: GrantStore,
    decision: Decision,
    epsilon: float,
    record: Callable[[Grant, str], dict[str, Any]],
    once: tuple[str, str] | None = None,
) -> tuple[Grant, Entry]:
    """Re-check the grant, spend a use and ``epsilon`` (what OpenDP really charged) and
    write the release's audit entry: one durable transaction, all or nothing (``once``:
    the request's home and id, refused if this node released it before). The time is
    read in that transaction: the grant is checked at the time the entry bears."""
    return grants.spend(dataclasses.replace(decision, epsilon=epsilon), utc, record, once)


def sign(signer: Signer, entry: Entry) -> Receipt:
    """The receipt: the release entry as logged, with its place in the hash chain."""
    return signer.sign({**entry.data, "audit_seq": entry.seq, "audit_hash": entry.hash})


class Withheld(FedgateError):
    """A noised release that does not go: recorded as a ``release`` entry, ``withheld``."""

    why = ""  # the entry's ``withheld``


class TooLarge(Withheld, ResourceExhausted):
    """Over the message limit once noised."""

    why = "over the message limit"

    def __init__(self) -> None:
        super().__init__(
            "the noised result is over the message limit (its privacy budget is spent: the "
            "noise was drawn): ask for less"
        )


class Late(Withheld, DeadlineExceeded):
    """Past the deadline once noised."""

    why = "past the deadline"

    def __init__(self) -> None:
        super().__init__(
            "the query's deadline passed once the result was noised (its privacy budget is "
            "spent: the noise was drawn)"
        )


class Ended(Withheld):
    """Ended (by whatever, its cause's status and reason) once its noise had left."""

    why = "ended once its noise was sent"

    def __init__(self, cause: FedgateError) -> None:
        super().__init__(
            f"{cause.message} (its privacy budget is spent: its noise had left this node)",
            details=cause.details,
        )
        self.code = cause.code


class Broke(Withheld):
    """Failed by a fault of this node (not a typed refusal) under DP, once noise may have
    been drawn: whether it fails may be read from the data (review, 2026-12-05: a DP
    quantile whose bins overflowed on one row's value crashed after its noise, for free,
    an exact bit of that value), so its epsilon is spent all the same."""

    why = "failed once noised"

    def __init__(self) -> None:
        super().__init__(
            "internal error, see the node log (its privacy budget is spent: noise may have "
            "been drawn)"
        )


class ReleasePipeline:
    def __init__(
        self,
        node_id: str,
        grants: GrantStore,
        audit: AuditLog,
        signer: Signer,
        max_message_bytes: int,
    ) -> None:
        self.node_id = node_id
        self.grants = grants
        self.audit = audit
        self.signer = signer
        self.max_payload_bytes = max_message_bytes - ENVELOPE_BYTES
        self.inflight = InFlight(grants)

    def run(
        self, op: Operation[Any], env: Envelope, *, max_payload_bytes: int | None = None
    ) -> Released | Explanation:
        """One release, or (for a dry run) what it would be; a refusal is audited and
        raised as the typed error it is. A release larger than one gRPC message may be
        (``max_payload_bytes``) only where its operation carries it in pieces."""
        try:
            decision = op.decide(env)
            if env.explain or env.check:  # decided: nothing computed, nothing spent
                return op.explain(decision)
            with self.inflight.hold(decision.grant, decision.epsilon) as let_go:
                once = (env.home_node, env.request_id) if op.once_per_request else None
                try:
                    computed = op.compute(decision, env.deadline)
                    if not op.noises_in_compute:
                        check_deadline(env.deadline)  # free: no noise drawn yet
                    protected = op.protect(computed, decision)
                except NoisedTooLarge as big:  # read from the noise drawn: spent all the same
                    drawn = decision.epsilon if big.epsilon is None else big.epsilon
                    self._withheld(op, env, decision, drawn, TooLarge(), let_go, once)
                except NoiseSent as out:  # its noise left before it ended: spent all the same
                    self._withheld(op, env, decision, out.epsilon, Ended(out.cause), let_go, once)
                except FedgateError:
                    raise
                except Exception:
                    if decision.epsilon <= 0:
                        raise
                    log.exception("release %s failed once noise may have been drawn", op.name)
                    self._withheld(op, env, decision, decision.epsilon, Broke(), let_go, once)
                limit = max_payload_bytes or self.max_payload_bytes
                spent, now = protected.epsilon, time.monotonic()  # one reading of the clock
                if spent > 0:  # whatever ends it now is read from its noise too
                    if len(protected.payload) > limit:
                        self._withheld(op, env, decision, spent, TooLarge(), let_go, once)
                    if now >= env.deadline:
                        self._withheld(op, env, decision, spent, Late(), let_go, once)
                check_size(protected.payload, limit)
                check_deadline(env.deadline, now)

                def record(g: Grant, at: str) -> dict[str, Any]:
                    return release_entry(self.node_id, env, op, protected, g, at)

                grant, entry = spend(self.grants, decision, protected.epsilon, record, once)
                # Let go once the spend is committed, not in its transaction: until the
                # commit no decision sees the use, and none must see it free (review,
                # 2026-12-05: a release decided during the commit computed, or exchanged
                # its points, before the spend refused it).
                let_go()
        except FedgateError as exc:
            if not isinstance(exc, Withheld):  # a withheld release is its own entry
                self.refused(op.name, env, op.subject, exc)
            raise
        except Exception:  # a fault, not a refusal: audited too (the edge logs it)
            with contextlib.suppress(Exception):  # the fault's own status goes out whatever
                fault = FedgateError("internal error, see the node log")
                self.refused(op.name, env, op.subject, fault)
            raise
        receipt = sign(self.signer, entry)
        log.info(
            "released %s request=%s requester=%s home=%s %s grant=%s %s epsilon=%g",
            op.name,
            env.request_id,
            env.requester,
            env.home_node,
            _pairs(op.subject),
            grant.id,
            _pairs(protected.facts),
            protected.epsilon,
        )
        return Released(grant, entry, receipt, protected, decision.no_spend)

    def _withheld(
        self,
        op: Operation[Any],
        env: Envelope,
        decision: Decision,
        epsilon: float,
        why: Withheld,
        let_go: Callable[[], None],
        once: tuple[str, str] | None,
    ) -> None:
        """A noised result that cannot go (too large, or too late once noised; or a session
        that ended once its noise had left this owner): whether it can, and its size, are
        read from the noise just drawn, so telling either is a release of it. Its epsilon
        is spent, in a ``release`` entry of nothing sent with ``withheld`` (the request's
        one entry), and the refusal names no size (review, 2026-12-05: free refusals with
        the exact byte count were fresh samples of the noisy group count, as many as
        asked)."""
        withheld = Protected(b"", epsilon, {"withheld": why.why})

        def record(g: Grant, at: str) -> dict[str, Any]:
            return release_entry(self.node_id, env, op, withheld, g, at)

        spend(self.grants, decision, epsilon, record, once)
        let_go()  # committed: see ``run``
        log.warning(
            "withheld %s request=%s requester=%s home=%s %s epsilon=%g: %s",
            op.name,
            env.request_id,
            env.requester,
            env.home_node,
            _pairs(op.subject),
            epsilon,
            why.message,
        )
        raise why

    def refused(
        self, operation: str, env: Envelope, subject: Mapping[str, str], exc: FedgateError
    ) -> None:
        """The refusal's audit entry and log line. The reason and the subject's values
        (names the caller chose: a 1 MB dataset name made a 1.9 MiB entry) are cut to
        ``AUDIT_TEXT_CHARS``, as the edge's own refusal entries."""
        r = env.requester
        subject = {k: cut(v) if isinstance(v, str) else v for k, v in subject.items()}
        reason = cut(exc.message)
        entry = {
            "kind": f"{operation}.refused",
            "time": utc(),
            "request_id": cut(env.request_id),  # cut too: a caller chose them
            "requester": cut(str(r)),
            "requester_org": cut(r.org),
            "home_node": cut(env.home_node),
            "code": exc.code.name,
            "reason": reason,
            "dry_run": env.explain,
        }
        self.audit.append({**_own(entry, subject), **entry})
        log.warning(
            "refused %s request=%s requester=%s home=%s %s code=%s reason=%s",
            operation,
            env.request_id,
            r,
            env.home_node,
            _pairs(subject),
            exc.code.name,
            reason,
        )


def _pairs(fields: Mapping[str, Any]) -> str:
    """``key=value ...`` for a log line."""
    return " ".join(f"{k}={v}" for k, v in fields.items())
