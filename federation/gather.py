"""Gather what fanned-out members answered into owner reports and checked partials.

The home does it for the members it asked and a relay for its children: every member's
report is kept (answered, refused or silent), and every partial is checked against the
plan before it is merged, so one malformed partial fails only its own owner.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
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
    plan: QueryPlan, outcomes: Sequence[Outcome[TargetT, PartialAnswer]], via: str = ""
) -> Gathered:
    found = Gathered()
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
