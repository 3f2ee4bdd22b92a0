"""Gather what fanned-out members answered into owner reports and checked partials.

The home does it for the members it asked and a relay for its children: every member's
report is kept (answered, refused or silent), and every partial is checked against the
plan before it is merged, so one malformed partial fails only its own owner. An answer
may speak only for the member asked and the members below it (``speaks_for``), each
once: a member that reports for any other node (a sibling's refusal, a receipt under
another's name) fails as a whole, its partial unmerged. Given ``receipt_problem``, a
partial counts only with a receipt that holds for every owner that released into it (a
revoked owner's answer is not merged: the door checks only callers, not the nodes a home
calls); where one owner alone released into it, its receipt must be the receipt of
exactly the partial's bytes (a relay's merge of several is in no one receipt).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import pyarrow as pa

from federation.fanout import Outcome
from federation.outcome import Code, Error
from federation.partials import PartialError, check_partial, disagreeing, from_ipc
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
    # Per table: the member that sent it and the span of ``owners`` its answer reported.
    spans: list[tuple[str, int, int]] = field(default_factory=list)
    published: bool = False  # some member holds the dataset


def gather(
    plan: QueryPlan,
    outcomes: Sequence[Outcome[TargetT, PartialAnswer]],
    via: str = "",
    speaks_for: Callable[[str], Collection[str]] | None = None,
    receipt_problem: Callable[[str, str, bytes | None], str] | None = None,
    agree: bool = True,
) -> Gathered:
    """``receipt_problem(node_id, receipt, payload)``: why a released partial's receipt
    does not hold ("" when it does); ``payload``: the bytes it must be the receipt of, or
    None (a merge of several owners' releases). ``agree``: keep only the partials whose
    kinds of value agree (a relay does that once, over its own partial and its children's
    together)."""
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
        if stray:
            bad = Error(Code.FAILED_PRECONDITION, stray)
            found.owners.append(OwnerReport(node_id=out.target.id, error=bad, via=via))
            continue
        seen.update(r.node_id for r in answer.owners)
        start = len(found.owners)
        for report in answer.owners:
            found.owners.append(
                report if report.via or not via else dataclasses.replace(report, via=via)
            )
        if answer.payload:
            span = (start, len(found.owners))
            why = _bad_receipt(out.target.id, answer, receipt_problem) if receipt_problem else ""
            if why:  # not merged; the receipts that hold are kept with the others
                _unmerged(found, out.target.id, span, why, via)
                continue
            try:
                table = check_partial(plan, from_ipc(answer.payload), out.target.id)
            except PartialError as exc:
                _unmerged(found, out.target.id, span, str(exc), via)
                continue
            found.tables.append(table)
            found.payloads.append(answer.payload)
            found.spans.append((out.target.id, start, len(found.owners)))
    if agree:
        keep_agreeing(plan, found, via)
    return found


def keep_agreeing(plan: QueryPlan, found: Gathered, via: str) -> None:
    """Only partials whose group keys, extremes and raw columns hold the kinds of values
    most owners' do are merged: one owner's other declaration (a code as a string where
    the others hold numbers) failed the whole query at the merge, naming no owner."""
    if len(found.tables) < 2:
        return
    weights = [max(1, sum(1 for r in found.owners[a:b] if r.ok)) for _, a, b in found.spans]
    reasons = disagreeing(plan, found.tables, weights)
    if not any(reasons):
        return
    for (target, a, b), reason in zip(found.spans, reasons, strict=True):
        if reason:
            _unmerged(found, target, (a, b), f"the partial from {target}: {reason}", via)
    keep = [i for i, reason in enumerate(reasons) if not reason]
    found.tables = [found.tables[i] for i in keep]
    found.payloads = [found.payloads[i] for i in keep]
    found.spans = [found.spans[i] for i in keep]


def _unmerged(found: Gathered, target: str, span: tuple[int, int], reason: str, via: str) -> None:
    """A partial that is not merged: the owners that released into it are reported as
    failed (their receipts kept: they did release), not as contributors."""
    a, b = span
    found.owners[a:b] = not_merged(
        found.owners[a:b], target, Error(Code.FAILED_PRECONDITION, reason), via
    )


def not_merged(
    reports: Sequence[OwnerReport], target: str, error: Error, via: str
) -> list[OwnerReport]:
    """``reports`` of a partial that goes nowhere: each owner that released into it
    failed with ``error``, its receipt kept (it did release); ``target``, whose partial
    it was, named among them (first: the one a status names)."""
    out = [dataclasses.replace(r, error=error) if r.ok else r for r in reports]
    if not any(r.node_id == target for r in out):
        out.insert(0, OwnerReport(node_id=target, error=error, via=via))
    return out


def _bad_receipt(
    target: str, answer: PartialAnswer, receipt_problem: Callable[[str, str, bytes | None], str]
) -> str:
    """Why a partial's receipts do not hold ("" when they do)."""
    released = [r for r in answer.owners if r.ok]
    alone = answer.payload if len(released) == 1 else None  # its bytes are that release's
    for r in released:
        problem = receipt_problem(r.node_id, r.receipt, alone) if r.receipt else "none was sent"
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
