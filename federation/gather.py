"""Gather what fanned-out members answered into owner reports and checked partials.

The home does it for the members it asked and a relay for its children: every member's
report is kept (answered, refused or silent), and every partial is checked against the
plan before it is merged, so one malformed partial fails only its own owner. An answer
may speak only for the member asked and the members below it (``speaks_for``), each
once: a member that reports for any other node (a sibling's refusal, a receipt under
another's name) fails as a whole, its partial unmerged. Given ``receipt_problem``, a
partial counts only with a receipt that holds for every owner that released into it (a
revoked owner's answer is not merged: the door checks only callers, not the nodes a home
calls).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import pyarrow as pa

from federation.fanout import Outcome
from federation.outcome import Code, Error
from federation.partials import PartialError, check_partial, from_ipc
from federation.reports import OwnerReport, PartialAnswer
from federation.sql import QueryPlan


class Target(Protocol):
    @property
    def id(self) -> str: ...


TargetT = TypeVar("TargetT", bound=Target)


@dataclass
class Gathered:
    owners: list[OwnerReport] = field(default_factory=list)
    tables: list[pa.Table] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)  # the tables' bytes, same order
    published: bool = False  # some member holds the dataset


def gather(
    plan: QueryPlan,
    outcomes: Sequence[Outcome[TargetT, PartialAnswer]],
    via: str = "",
    speaks_for: Callable[[str], Collection[str]] | None = None,
    receipt_problem: Callable[[str, str], str] | None = None,
) -> Gathered:
    """``receipt_problem(node_id, receipt)``: why a released partial's receipt does not
    hold ("" when it does)."""
    found = Gathered()
    seen: set[str] = set()
    for out in outcomes:
        answer = out.value
        if answer is None:
            error = out.error or Error(Code.UNAVAILABLE, "no answer")
            found.owners.append(OwnerReport(node_id=out.target.id, error=error, via=via))
            found.published = True
            continue
        if not answer.published:
            continue
        found.published = True
        stray = _stray(out.target.id, answer, seen, speaks_for)
        if not stray and receipt_problem is not None and answer.payload:
            stray = _bad_receipt(out.target.id, answer, receipt_problem)
        if stray:
            bad = Error(Code.FAILED_PRECONDITION, stray)
            found.owners.append(OwnerReport(node_id=out.target.id, error=bad, via=via))
            continue
        seen.update(r.node_id for r in answer.owners)
        for report in answer.owners:
            found.owners.append(
                report if report.via or not via else dataclasses.replace(report, via=via)
            )
        if answer.payload:
            try:
                table = check_partial(plan, from_ipc(answer.payload), out.target.id)
            except (PartialError, pa.ArrowInvalid) as exc:
                bad = Error(Code.FAILED_PRECONDITION, str(exc))
                found.owners.append(OwnerReport(node_id=out.target.id, error=bad, via=via))
                continue
            found.tables.append(table)
            found.payloads.append(answer.payload)
    return found


def _bad_receipt(
    target: str, answer: PartialAnswer, receipt_problem: Callable[[str, str], str]
) -> str:
    """Why a partial's receipts do not hold ("" when they do)."""
    for r in answer.owners:
        if not r.ok:
            continue
        problem = receipt_problem(r.node_id, r.receipt) if r.receipt else "none was sent"
        if problem:
            return f"{target} sent a partial without a valid receipt of {r.node_id}: {problem}"
    return ""


def _stray(
    target: str,
    answer: PartialAnswer,
    seen: set[str],
    speaks_for: Callable[[str], Collection[str]] | None,
) -> str:
    """Why ``target``'s answer cannot be taken ("" when it can)."""
    allowed = speaks_for(target) if speaks_for is not None else None
    if answer.payload and not any(r.ok for r in answer.owners):  # data nobody answers for
        return f"{target} sent a partial without the report of an owner that released it"
    counted: set[str] = set()
    for r in answer.owners:
        node = r.node_id
        if allowed is not None and node not in allowed:
            return f"{target} answered for {node}, which is not {target} or below it"
        if node in seen:
            return f"{target} answered for {node}, which another member answered for"
        # A node may be named again only by an error without a receipt (a relay adds one
        # for a child whose partial failed its check, or for its own failed merge).
        if r.ok or r.receipt:
            if node in counted:
                return f"{target} answered for {node} a second time"
            counted.add(node)
    return ""
