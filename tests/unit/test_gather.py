"""Whom a member's answer may speak for (review, 2026-12-04: a city reported "hefei
refused" and OK reports with receipts for a sibling and for a node that is no member;
the home blamed hefei and kept the forged receipt in place of hefei's own)."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from federation.fanout import Outcome
from federation.gather import gather
from federation.membership import Member, Membership
from federation.outcome import Code, Error
from federation.partials import to_ipc
from federation.reports import OwnerReport, PartialAnswer
from federation.sql import parse

MEMBERS = Membership(
    "test",
    1,
    "2026-01-01T00:00:00Z",
    (
        Member("shanghai", "S", "127.0.0.1:1", "province"),
        Member("anhui", "A", "127.0.0.1:2", "province"),
        Member("hefei", "H", "127.0.0.1:3", "city", parent="anhui"),
        Member("wuhu", "W", "127.0.0.1:4", "city", parent="anhui"),
    ),
)
PLAN = parse("SELECT COUNT(*) AS n FROM t")


@dataclass(frozen=True)
class Target:
    id: str


def _answer(target: str, *reports: OwnerReport) -> Outcome[Target, PartialAnswer]:
    return Outcome(Target(target), PartialAnswer(target, True, b"", reports), None, 0.0)


def test_a_subtree_is_the_node_and_everything_below_it() -> None:
    assert MEMBERS.subtree("anhui") == {"anhui", "hefei", "wuhu"}
    assert MEMBERS.subtree("wuhu") == {"wuhu"}


def test_an_answer_for_a_node_outside_the_subtree_fails_its_member() -> None:
    refused = Error(Code.PERMISSION_DENIED, "no grant")
    outcomes = [
        _answer("wuhu", OwnerReport("wuhu"), OwnerReport("hefei", error=refused)),
        _answer("hefei", OwnerReport("hefei", receipt="{}")),
    ]
    found = gather(PLAN, outcomes, via="anhui", speaks_for=MEMBERS.subtree)
    by_node = {r.node_id: r for r in found.owners}
    assert by_node["hefei"].ok and by_node["hefei"].receipt == "{}"
    wuhu = by_node["wuhu"]
    assert wuhu.error is not None and wuhu.error.code is Code.FAILED_PRECONDITION
    assert "wuhu answered for hefei" in wuhu.error.reason


def test_a_node_reported_twice_fails_the_second_member() -> None:
    outcomes = [
        _answer("anhui", OwnerReport("anhui"), OwnerReport("hefei")),
        _answer("shanghai", OwnerReport("shanghai"), OwnerReport("ghost")),
    ]
    found = gather(PLAN, outcomes, speaks_for=MEMBERS.subtree)
    assert [r.node_id for r in found.owners if r.ok] == ["anhui", "hefei"]
    assert "shanghai answered for ghost" in found.owners[-1].error.reason  # type: ignore[union-attr]
    twice = [_answer("anhui", OwnerReport("anhui"), OwnerReport("wuhu"), OwnerReport("wuhu"))]
    found = gather(PLAN, twice, speaks_for=MEMBERS.subtree)
    assert "a second time" in found.owners[0].error.reason  # type: ignore[union-attr]


def test_a_partial_no_owner_reports_is_not_merged() -> None:
    """Review (2026-12-04): a member answering with a partial and no report had its data
    merged while it appeared nowhere: not among the owners, not missing."""
    silent = Outcome(Target("anhui"), PartialAnswer("anhui", True, b"data", ()), None, 0.0)
    found = gather(PLAN, [silent], speaks_for=MEMBERS.subtree)
    assert not found.tables and "without the report" in found.owners[0].error.reason  # type: ignore[union-attr]


def test_a_relay_reporting_a_childs_failed_partial_keeps_its_siblings() -> None:
    """Review (2026-12-04): a relay whose child's partial failed its check names the child
    twice (its release, then the error); that is no second answer: the home keeps the
    relay's answer. A second released report for one node still is."""
    failed = Error(Code.FAILED_PRECONDITION, "hefei's partial does not fit the plan")
    relay = _answer(
        "anhui",
        OwnerReport("anhui", receipt="{}"),
        OwnerReport("hefei", receipt="{}"),
        OwnerReport("hefei", error=failed, via="anhui"),
        OwnerReport("wuhu", receipt="{}"),
    )
    found = gather(PLAN, [relay], speaks_for=MEMBERS.subtree)
    assert [r.node_id for r in found.owners] == ["anhui", "hefei", "hefei", "wuhu"]
    twice = _answer("anhui", OwnerReport("hefei", receipt="{}"), OwnerReport("hefei"))
    assert "a second time" in gather(PLAN, [twice]).owners[0].error.reason  # type: ignore[union-attr]


BY_G = parse("SELECT g, COUNT(*) AS n FROM t GROUP BY g")


def _partial(target: str, keys: pa.Array, counts: pa.Array | None = None) -> Outcome:
    counts = pa.array([1] * len(keys), pa.int64()) if counts is None else counts
    payload = to_ipc(pa.table({"g": keys, "__n": counts}))
    answer = PartialAnswer(target, True, payload, (OwnerReport(target, receipt="{}"),))
    return Outcome(Target(target), answer, None, 0.0)


def test_a_partial_whose_keys_hold_other_kinds_of_value_fails_only_its_owner() -> None:
    """Review (2026-12-04): one owner that declared a code as a string where the others
    hold numbers failed the whole query at the merge, naming no owner."""
    numbers = pa.array([1, 2], pa.int64())
    outcomes = [
        _partial("shanghai", numbers),
        _partial("anhui", pa.array(["1", "2"])),
        _partial("jiangsu", pa.array([1.5, 2.0])),  # numbers too: merged as DOUBLE
    ]
    found = gather(BY_G, outcomes, speaks_for=MEMBERS.subtree)
    assert len(found.tables) == 2 and [s[0] for s in found.spans] == ["shanghai", "jiangsu"]
    assert [r.node_id for r in found.owners if r.ok] == ["shanghai", "jiangsu"]
    anhui = [r for r in found.owners if r.node_id == "anhui"]
    assert len(anhui) == 1 and anhui[0].receipt == "{}"  # failed, its release on record
    assert anhui[0].error == Error(
        Code.FAILED_PRECONDITION,
        "the partial from anhui: the group key g holds a string where the partials of 2 "
        "other owners hold a number",
    )
    tie = gather(BY_G, outcomes[:2], speaks_for=MEMBERS.subtree)  # one against one
    assert not tie.tables and not any(r.ok for r in tie.owners)


def test_a_partial_that_does_not_decode_or_holds_odd_types_fails_its_owner_once() -> None:
    good = _partial("shanghai", pa.array([1], pa.int64()))
    payload = bytearray(good.value.payload)  # type: ignore[union-attr]
    payload[-40:-20] = b"\xff" * 20
    flipped = Outcome(
        Target("anhui"),
        PartialAnswer("anhui", True, bytes(payload), (OwnerReport("anhui", receipt="{}"),)),
        None,
        0.0,
    )
    odd = [
        _partial("wuhu", pa.array([1.0], pa.float16())),
        _partial("hefei", pa.array([1], pa.int64()), pa.array([float("inf")], pa.float64())),
    ]
    found = gather(BY_G, [good, flipped, *odd], speaks_for=MEMBERS.subtree)
    assert len(found.tables) == 1
    reasons = {r.node_id: r.error.reason for r in found.owners if r.error is not None}
    assert set(reasons) == {"anhui", "wuhu", "hefei"} and len(found.owners) == 4
    assert "has the group key g of type halffloat" in reasons["wuhu"]
    assert "hefei's __n is not a whole count" in reasons["hefei"]


def test_a_partial_without_a_valid_receipt_is_not_merged_and_its_receipts_are_kept() -> None:
    """Review (2026-12-04): a relay merged a revoked city's partial and the home then
    refused the province's whole answer without keeping its receipts; each side now drops
    what does not hold as an unmerged partial, its owners missing, their receipts kept."""
    outcomes = [_partial("hefei", pa.array([1], pa.int64())), _partial("wuhu", pa.array([2]))]

    def problem(node: str, receipt: str, payload: bytes | None) -> str:
        return "signer certificate 5f has been revoked" if node == "wuhu" else ""

    found = gather(BY_G, outcomes, via="anhui", speaks_for=MEMBERS.subtree, receipt_problem=problem)
    assert [s[0] for s in found.spans] == ["hefei"]
    wuhu = [r for r in found.owners if r.node_id == "wuhu"]
    assert len(wuhu) == 1 and wuhu[0].receipt == "{}" and wuhu[0].error is not None
    assert wuhu[0].error.reason == (
        "wuhu sent a partial without a valid receipt of wuhu: signer certificate 5f has been "
        "revoked"
    )


def test_a_lone_release_is_checked_against_its_bytes_and_a_merge_of_several_is_not() -> None:
    """Review (2026-12-04): a query partial's receipt was checked for its signer but not
    tied to the bytes it came with (a training reply's was). Where one owner alone
    released into a partial, its bytes must be that release's; a relay's merge of several
    owners' releases is in no one receipt."""
    lone = _partial("hefei", pa.array([1], pa.int64()))
    merged = Outcome(
        Target("anhui"),
        PartialAnswer(
            "anhui",
            True,
            lone.value.payload if lone.value else b"",
            (OwnerReport("anhui", receipt="{a}"), OwnerReport("hefei", receipt="{h}")),
        ),
        None,
        0.0,
    )
    seen: list[tuple[str, bytes | None]] = []

    def problem(node: str, receipt: str, payload: bytes | None) -> str:
        seen.append((node, payload))
        return ""

    gather(BY_G, [lone], speaks_for=MEMBERS.subtree, receipt_problem=problem)
    assert lone.value is not None and seen == [("hefei", lone.value.payload)]
    seen.clear()
    gather(BY_G, [merged], speaks_for=MEMBERS.subtree, receipt_problem=problem)
    assert seen == [("anhui", None), ("hefei", None)]
