"""``--nodes all`` at the home: who lists the dataset, and what stops the run."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Message, RecordDict

from federation.envelope import Envelope
from federation.membership import Member, Membership
from federation.outcome import Code, Error
from federation.reports import OwnerReport
from federation.training.client_app import CONFIG, STATS_MESSAGE
from federation.training.config import SERVER_ROUND
from gateway.errors import DeadlineExceeded, NotFound, Unavailable
from gateway.policy.model import Grant
from gateway.receipt_store import ReceiptStore
from gateway.receipts import ReceiptCheck
from gateway.roles.train_home import FIRST_NODE_ID, TrainHome, _Reports, _why
from gateway.roles.train_owner import TrainOwner
from gateway.training.apps import AppStore
from gateway.training.grid import to_bytes
from gateway.training.settings import train_config
from gateway.training.spec import TrainSpec
from tests.unit.test_owner import ANALYST, Parts, _env
from tests.unit.training_grid import server_identity


def _home(found: list[str], silent: list[str]) -> TrainHome:
    unused: Any = None  # the run's other parts: not reached by these checks
    return TrainHome("home", unused, unused, unused, unused, lambda ds, timeout: (found, silent))


def test_every_member_that_lists_the_dataset() -> None:
    assert _home(["a", "b"], [])._publishers("ds", time.monotonic() + 5) == ("a", "b")


def test_a_member_that_did_not_answer_stops_the_run() -> None:
    """It may hold the dataset: training without it silently would change the run."""
    with pytest.raises(Unavailable, match="member.s. c .timed out. did not answer the catalog"):
        _home(["a"], ["c (timed out)"])._publishers("ds", time.monotonic() + 5)


def test_nobody_lists_it_or_no_time_is_left() -> None:
    with pytest.raises(NotFound, match="no member lists a dataset 'ds'"):
        _home([], [])._publishers("ds", time.monotonic() + 5)
    with pytest.raises(DeadlineExceeded):
        _home(["a"], [])._publishers("ds", time.monotonic() - 1)


# --- each reply backed by its own receipt (review, 2026-12-04) ----------------------------
# Real parts: the owner of ``test_owner``'s fixture (SQLite state, grants, audit log, its
# CA-issued key) answers a real Flower message through its release pipeline; the test
# plays that owner towards the home's ``_exchange`` with what its real releases gave.

OWNER_ID = "anhui"
SPEC = TrainSpec(
    task="linreg", dataset="firms", features=("revenue",), label="employees", rounds=2,
    seed=7, nodes=(OWNER_ID,),
)  # fmt: skip


@dataclass
class _Run:
    home: TrainHome
    env: Envelope
    stats: bytes  # the statistics message the home sends
    reply: bytes  # the owner's real reply to it
    report: OwnerReport  # with its real receipt
    parts: Parts
    answers: list[tuple[bytes, OwnerReport]]  # what the owner (the test) answers next


@pytest.fixture()
def run(parts: Parts, tmp_path: Path) -> _Run:
    parts.grants.add(
        Grant(
            "", "firms", "org", ANALYST.org, ("train",),
            {"revenue": ("aggregate",), "employees": ("aggregate",)}, 5,
            valid_from="2020-01-01T00:00:00Z", created_at="2020-01-01T00:00:00Z",
            exact=True, train_tasks=("linreg",), max_rounds=5,
        )
    )  # fmt: skip
    o = parts.owner
    owner = TrainOwner(
        OWNER_ID, o.catalog, o.grants, o.engine, o.pipeline, AppStore(tmp_path / "apps"),
        vouching=None,  # type: ignore[arg-type]  # (SecAgg+ only)
    )  # fmt: skip
    env = Envelope(
        uuid.uuid4().hex, ANALYST, "shanghai", "train", body=SPEC.body(),
        deadline=time.monotonic() + 60,
    )  # fmt: skip
    record = train_config(SPEC).to_record()
    record[SERVER_ROUND] = 0
    with server_identity():
        stats = to_bytes(Message(RecordDict({CONFIG: record}), FIRST_NODE_ID, STATS_MESSAGE))
    reply, report = owner.step(env, stats)
    assert report.ok and report.receipt
    answers: list[tuple[bytes, OwnerReport]] = []

    def ask_step(m: Member, e: Envelope, data: bytes, stop: Any) -> tuple[bytes, OwnerReport]:
        return answers.pop(0)

    store = ReceiptStore(parts.state, ReceiptCheck(parts.bundle))
    unused: Any = None
    home = TrainHome("shanghai", lambda: _members(OWNER_ID), unused, ask_step, store, unused)
    return _Run(home, env, stats, reply, report, parts, answers)


def _members(*ids: str) -> Membership:
    """The federation's document: the home and the owners named."""
    home = Member("shanghai", "SH", "127.0.0.1:2", "province")
    owners = (Member(i, "Anhui bureau", "127.0.0.1:1", "province") for i in ids)
    return Membership("t", 1, "2026-01-01T00:00:00Z", (home, *owners))


def _exchange(r: _Run, reports: _Reports, *answers: tuple[bytes, OwnerReport]) -> list:
    r.answers[:] = answers
    member = Member(OWNER_ID, "Anhui bureau", "127.0.0.1:1", "province")
    with ThreadPoolExecutor(1) as pool:
        got = r.home._exchange(
            [(FIRST_NODE_ID, r.stats)], 5.0, r.env, {FIRST_NODE_ID: member}, reports, pool,
            threading.Event(),
        )  # fmt: skip
    assert got is not None
    return got


def test_a_reply_whose_report_is_a_refusal_is_never_used(run: _Run) -> None:
    """An owner's report that carries an error made the home skip the receipt check and
    hand the bytes to the strategy as that owner's update, receipt or none."""
    refusal = Error(Code.UNAVAILABLE, "busy")
    reports = _Reports()
    assert _exchange(run, reports, (b"FORGED-UPDATE", OwnerReport(OWNER_ID, error=refusal))) == []
    # with its real reply and receipt too: a report that refuses is a refusal
    with_receipt = replace(run.report, error=refusal)
    assert _exchange(run, reports, (run.reply, with_receipt)) == []
    assert [r.error for r in reports.items] == [refusal, refusal]
    assert _why(OWNER_ID, reports) == "anhui refused (UNAVAILABLE): busy"


def test_a_receipt_counts_only_for_the_reply_it_names(run: _Run) -> None:
    """A receipt whose signature held was accepted with any reply: an owner could send
    its first receipt with every later update (a revoked grant then had updates averaged
    in with a release entry for none of them), or a query's receipt for the run."""
    reports = _Reports()
    assert _exchange(run, reports, (run.reply, run.report)) == [(FIRST_NODE_ID, run.reply)]
    # the same receipt with other bytes, or with the same bytes once more
    assert _exchange(run, reports, (b"ANOTHER-UPDATE", run.report)) == []
    assert _exchange(run, reports, (run.reply, run.report)) == []
    # a real release of another operation, under the run's request id
    run.parts.grants.add(
        Grant(
            "", "firms", "org", ANALYST.org, ("query",),
            {"city": ("group_by",), "revenue": ("aggregate",)}, 5,
            valid_from="2020-01-01T00:00:00Z", created_at="2020-01-01T00:00:00Z", exact=True,
        )
    )  # fmt: skip
    query = replace(_env(), request_id=run.env.request_id)
    answer = run.parts.owner.execute(query)
    assert answer.owners[0].ok
    assert _exchange(run, reports, (answer.payload, answer.owners[0])) == []
    said = "anhui answered without a valid receipt: "
    reasons = [r.error.reason.removeprefix(said) for r in reports.items if r.error is not None]
    assert reasons == [
        "its result digest is not the digest of the reply it came with",
        "it is the receipt of an earlier reply",
        "it is the receipt of another operation, not train",
    ]


def test_a_receipt_of_odd_types_fails_its_owner_not_the_run(run: _Run) -> None:
    """A final review: an owner whose certificate is in force could sign a release
    receipt whose audit_seq was a list; hashing it raised a TypeError that ended the
    whole run INTERNAL instead of that owner's answer."""
    from gateway.receipts import Receipt

    body = dict(Receipt.from_json(run.report.receipt).body)
    body["audit_seq"] = [1]
    odd = run.parts.owner.pipeline.signer.sign(body).to_json()
    reports = _Reports()
    assert _exchange(run, reports, (run.reply, replace(run.report, receipt=odd))) == []
    said = "anhui answered without a valid receipt: "
    reasons = [r.error.reason.removeprefix(said) for r in reports.items if r.error is not None]
    assert reasons == ["its receipt names no place in the owner's log"]


def test_an_owner_dropped_from_the_membership_mid_run_is_not_asked_again(run: _Run) -> None:
    """Review (2026-12-05): the members of a run were fixed when it started, so an owner
    the federation dropped (the way to stop trusting a member) kept receiving each
    round's model and having its updates averaged in until the run ended."""
    reports = _Reports()
    assert _exchange(run, reports, (run.reply, run.report)) == [(FIRST_NODE_ID, run.reply)]
    run.home.membership = lambda: _members()  # the next document drops it
    assert _exchange(run, reports, (run.reply, run.report)) == []
    assert run.answers == [(run.reply, run.report)]  # never asked
    error = reports.items[-1].error
    assert error is not None and error.code is Code.FAILED_PRECONDITION
    assert error.reason == f"{OWNER_ID} is no longer a member of the federation"
