"""The home's side of a PSI session or join aggregate: vouch, ask the matcher, keep.

The analyst's home signs one envelope (the session's SQL, its join form) and asks the
matching owner, which runs the exchange with the other owner itself (owner to owner,
over their own mTLS channel). The home passes the matcher's progress on, and keeps both
owners' receipts with its own audit entry, as for a query.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlglot import exp

from federation.envelope import Envelope, Requester
from federation.membership import Member, Membership
from federation.partials import PartialError, from_ipc
from federation.psi import frames as f
from federation.reports import QueryAnswer
from federation.sql import MAX_SQL_CHARS
from federation.sql.dialect import DUCKDB
from federation.sql.join import JoinPlan
from gateway.clock import utc
from gateway.errors import (
    FailedPrecondition,
    FedgateError,
    InvalidArgument,
    NotFound,
)
from gateway.limits import cut
from gateway.planning import join_or_refuse
from gateway.receipt_store import ReceiptStore
from gateway.receipts import Receipt
from gateway.roles.vouching import Vouching
from gateway.text import check_purpose

log = logging.getLogger("fedgate.home")

RunPsi = Callable[[Member, Envelope, threading.Event], Iterator[f.Event]]


@dataclass(frozen=True)
class PsiSideAsk:
    node: str
    dataset: str
    column: str
    where: str = ""


@dataclass(frozen=True)
class PsiAsk:
    left: PsiSideAsk
    right: PsiSideAsk
    purpose: str = ""
    explain: bool = False


def _qualified(where: str, alias: str) -> exp.Expr | None:
    """The user's conditions on one side, every column qualified by the side's alias
    (the join form checks them again, as the single-owner subset does)."""
    if not where.strip():
        return None
    # Before parsing: sqlglot takes seconds and gigabytes over a few megabytes of text,
    # which the whole query (checked after) could never be anyway.
    if len(where) > MAX_SQL_CHARS:
        raise InvalidArgument(
            f"the condition is {len(where)} characters; a query's limit is {MAX_SQL_CHARS}"
        )
    try:
        cond: exp.Expr = exp.maybe_parse(where, dialect=DUCKDB)
    except Exception:  # sqlglot's own parse error: say what was wrong, not where
        raise InvalidArgument(f"the condition {where[:200]!r} is not valid SQL") from None
    if not isinstance(cond, exp.Condition):  # "*", "a b" (an alias), "select", "a; b"
        raise InvalidArgument(f"the condition {where[:200]!r} is not a condition")
    for col in list(cond.find_all(exp.Column)):
        col.set("table", exp.to_identifier(alias))
    return cond


def psi_sql(left: PsiSideAsk, right: PsiSideAsk) -> str:
    """``fedgate psi`` as the join form: the count of matched identifiers."""
    for side in (left, right):
        if not (side.node and side.dataset and side.column):
            raise InvalidArgument("each side of a PSI is NODE:DATASET.COLUMN")
    if left.node == right.node:  # before the join form says it of a join aggregate
        raise InvalidArgument(
            f"--left and --right are both at node {left.node}: a PSI intersects the sets of"
            " two different nodes"
        )
    on = exp.column(left.column, "l").eq(exp.column(right.column, "r"))
    select = (
        exp.select(exp.alias_(exp.Count(this=exp.Star()), "intersection"))
        .from_(exp.table_(left.dataset, db=left.node, alias="l"))
        .join(exp.table_(right.dataset, db=right.node, alias="r"), on=on, join_type="inner")
    )
    conds = [c for c in (_qualified(left.where, "l"), _qualified(right.where, "r")) if c]
    if conds:
        select = select.where(exp.and_(*conds))
    return select.sql(dialect=DUCKDB)


class PsiHome:
    def __init__(
        self,
        node_id: str,
        membership: Callable[[], Membership],
        vouching: Vouching,
        run: RunPsi,
        receipts: ReceiptStore,
    ) -> None:
        self.node_id = node_id
        self.membership = membership
        self.vouching = vouching
        self.run = run
        self.receipts = receipts

    def psi(
        self,
        ask: PsiAsk,
        caller: Requester,
        deadline: float,
        stop: threading.Event | None = None,
    ) -> Iterator[f.Event]:
        plan = join_or_refuse(psi_sql(ask.left, ask.right))
        return self._session(plan, caller, ask.purpose, ask.explain, deadline, stop)

    def join(
        self,
        sql: str,
        caller: Requester,
        purpose: str,
        explain: bool,
        deadline: float,
        stop: threading.Event | None = None,
    ) -> QueryAnswer:
        """A join aggregate asked through ``fedgate query``: the same session, one answer."""
        plan = join_or_refuse(sql)
        answer = None
        for event in self._session(plan, caller, purpose, explain, deadline, stop):
            if isinstance(event, f.PsiAnswer):
                answer = event
        assert answer is not None
        return QueryAnswer(
            request_id=answer.request_id,
            plan_sql=plan.sql,
            plan_digest=hashlib.sha256(plan.sql.encode()).hexdigest(),
            owners=answer.owners,
            payload=answer.payload,
            epsilon_spent=answer.epsilon_spent,
        )

    def _session(
        self,
        plan: JoinPlan,
        caller: Requester,
        purpose: str,
        explain: bool,
        deadline: float,
        stop: threading.Event | None,
    ) -> Iterator[f.Event]:
        members = self.membership()
        self.vouching.check_own_user(caller)
        check_purpose(purpose)
        for side in plan.sides:
            if members.get(side.node) is None:
                raise NotFound(f"no member {side.node!r} in the federation")
        matcher = members.get(plan.sides[plan.matcher].node)
        assert matcher is not None
        request_id = uuid.uuid4().hex
        env = self.vouching.sign(
            Envelope(
                request_id=request_id,
                requester=caller,
                home_node=self.node_id,
                operation="psi",
                body=plan.sql,
                purpose=purpose,
                explain=explain,
                deadline=deadline,
            )
        )
        facts = {
            "request_id": request_id,
            "requester": str(caller),
            "sides": [f"{s.node}:{s.dataset}.{s.key}" for s in plan.sides],
            "plan_digest": hashlib.sha256(plan.sql.encode()).hexdigest(),
        }
        done = False
        released: list[tuple[str, str]] = []  # receipts of an answer not given: evidence

        def failed(code: str, reason: str) -> None:
            entry = {"kind": "psi.failed", "time": utc(), **facts}
            entry.update(code=code, reason=cut(reason))
            self.receipts.keep(request_id, released, entry)

        try:
            sides = {s.node for s in plan.sides}
            for event in self.run(matcher, env, stop or threading.Event()):
                if isinstance(event, f.PsiAnswer):
                    _check_answer(event, request_id, sides)
                    if not explain:
                        released = [(o.node_id, o.receipt) for o in event.owners if o.receipt]
                        self._check_receipts(event, plan)
                        self._keep(event, facts)
                    done = True
                    yield event
                    return
                if isinstance(event, f.Progress) and (
                    event.node_id not in sides or event.stage not in f.STAGES
                ):
                    raise FailedPrecondition("the matching owner sent progress of no side")
                yield event
            raise InvalidArgument("the matching owner ended the session without an answer")
        except FedgateError as exc:
            done = True
            failed(exc.code.name, exc.message)
            raise
        finally:
            if not done:  # the analyst went away (the generator was closed)
                failed("CANCELLED", "the analyst cancelled the session")

    def _check_receipts(self, answer: f.PsiAnswer, plan: JoinPlan) -> None:
        """Each side's release counts only with its own receipt for this request, signed
        by a certificate in force now, as a query's partial (review, 2026-12-04: a
        revoked owner's release reached the analyst, and a forged or missing receipt
        only left a note in the audit entry)."""
        reports = {o.node_id: o for o in answer.owners}
        matcher = plan.sides[plan.matcher].node
        for side in plan.sides:
            report = reports.get(side.node)
            receipt = report.receipt if report is not None else ""
            # The matcher released the answer itself: its receipt names those very bytes
            # and, without groups, that very count (review, 2026-12-04: tied to neither).
            covering = (answer.payload, "psi") if side.node == matcher else None
            problem = (
                self.receipts.problem(receipt, side.node, answer.request_id, covering)
                if receipt
                else "none was sent"
            )
            if not problem and covering:
                said = Receipt.from_json(receipt).body.get("intersection", _total(answer, plan))
                if said != answer.intersection:
                    problem = "it names another intersection than the one answered"
            if problem:
                raise FailedPrecondition(
                    f"owner {side.node} released without a valid receipt: {problem}",
                    details={"owner": side.node, "request_id": answer.request_id},
                )

    def _keep(self, answer: f.PsiAnswer, facts: dict) -> None:
        """(``answer`` names this request and only the two sides: ``_check_answer``.)"""
        kept = [(o.node_id, o.receipt) for o in answer.owners if o.receipt]
        entry = {
            "kind": "psi.answered",
            "time": utc(),
            **facts,
            "intersection": answer.intersection,
            "epsilon": answer.epsilon_spent,
        }
        self.receipts.keep(answer.request_id, kept, entry)
        log.info(
            "answered psi request=%s sides=%s intersection=%d",
            answer.request_id,
            ",".join(facts["sides"]),
            answer.intersection,
        )


def _check_answer(answer: f.PsiAnswer, request_id: str, sides: set[str]) -> None:
    """The matcher's answer is for this request and reports the two sides, each once: a
    matcher naming another request would have its receipts kept, and written by the
    analyst's CLI, under a name of its choosing (review, 2026-12-04)."""
    if answer.request_id != request_id:
        raise FailedPrecondition("the matching owner answered another request")
    named = [o.node_id for o in answer.owners]
    if not set(named) <= sides or len(named) != len(set(named)):
        raise FailedPrecondition("the matching owner reported for nodes outside the session")


def _total(answer: f.PsiAnswer, plan: JoinPlan) -> int:
    """The intersection a grouped answer's table holds: the total of its groups' counts
    (-1 without a group), which its receipt does not name but its bytes do. Without a
    count in the table, the one answered (nothing to hold it to)."""
    counts = [a.name for a in plan.aggregates if a.func == "count"]
    if not counts or not answer.payload:
        return answer.intersection
    try:
        column = from_ipc(answer.payload).column(counts[0]).to_pylist()
    except (PartialError, KeyError):
        return -2  # no table of this plan: no intersection it could name
    return sum(int(c) for c in column if c is not None) if column else -1
