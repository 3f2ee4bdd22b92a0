"""Access requests at the owner, with real parts: SQLite state, catalog, grants, audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import json_format

from federation.envelope import Requester
from gateway import clock, identity, serde
from gateway.access import AccessDecision, AccessRequest, AccessRequests, ColumnControls, as_dict
from gateway.catalog import Catalog
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from gateway.policy.store import GrantStore
from gateway.rpc.v1 import common_pb2
from gateway.state import State

ORG = "上海 Big Data Center"  # not ASCII: the stored JSON escapes it, as json_format did
ANALYST = Requester("analyst", "li.wei@shanghai", ORG)
OPERATOR = identity.Identity("operator", "op@anhui", "Anhui bureau", "1", clock.now())
ASK = AccessRequest(
    owner="anhui",
    dataset="firms",
    columns=(
        ColumnControls("city", ("group_by",)),
        ColumnControls("revenue", ("aggregate", "filter")),
    ),
    purpose="研究 regional report",
    expires="2031-01-01",
)


@dataclass
class Parts:
    access: AccessRequests
    grants: GrantStore
    state: State
    catalog: Catalog
    data: Path  # the dataset root


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(
        pa.table({"city": ["hefei"] * 6, "revenue": [float(i) for i in range(6)]}),
        data / "firms.parquet",
    )
    state = State(tmp_path / "state.sqlite3")
    catalog = Catalog(state, (data,), "Anhui bureau")
    for name, level in (("firms", "L2"), ("core", "L4")):
        desc = DatasetDescriptor(
            name=name,
            title=name,
            description="",
            department="test",
            level=level,
            update_frequency="static",
            path=str(data / "firms.parquet"),
            format="parquet",
            columns=(
                ColumnSpec("city", "string"),
                ColumnSpec("revenue", "float64", lower=0.0, upper=1000.0),
            ),
        )
        catalog.register(desc, by=OPERATOR, when="2026-01-01T00:00:00Z")
    grants = GrantStore(state)
    try:
        yield Parts(AccessRequests("anhui", state, catalog, grants), grants, state, catalog, data)
    finally:
        state.close()


def _stored(state: State, request_id: str) -> str:
    with state.transaction() as db:
        row = db.execute("SELECT body FROM access_requests WHERE id = ?", (request_id,)).fetchone()
    return str(row[0])


def _as_json_format_wrote_it(req: AccessRequest) -> str:
    """What the node stored before the records were typed: the message, by json_format."""
    msg = serde.access_request_to_proto(req)
    return json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=None)


def _audit(state: State) -> list[dict[str, Any]]:
    """The entries since the fixture registered its datasets."""
    with state.transaction() as db:
        rows = db.execute("SELECT body FROM audit WHERE kind != 'dataset.registered' ORDER BY seq")
        return [json.loads(r[0]) for r in rows]


def test_submit_fills_in_the_owner_side_and_stores_the_same_json(parts: Parts) -> None:
    asked = replace(ASK, id="mine", state="approved")  # what the client says here is ignored
    req = parts.access.submit(asked, ANALYST, "shanghai")
    assert req.id.startswith("ar-") and req.owner == "anhui" and req.state == "pending"
    assert req.requester == ANALYST and req.home_node == "shanghai"
    assert req.operations == ("query",) and req.expires == "2031-01-01T00:00:00Z"
    assert req.columns == ASK.columns and req.submitted_at
    stored = _stored(parts.state, req.id)
    assert stored == _as_json_format_wrote_it(req)
    assert json.loads(stored) == as_dict(req)
    assert parts.access.get(req.id) == req
    (entry,) = _audit(parts.state)
    assert entry["kind"] == "access.submitted" and entry["request_id"] == req.id
    assert entry["requester"] == str(ANALYST) and entry["requester_org"] == ORG
    assert entry["columns"] == {"city": ["group_by"], "revenue": ["aggregate", "filter"]}
    assert entry["operations"] == ["query"]


def test_a_row_written_by_json_format_reads_back_as_the_same_request(parts: Parts) -> None:
    msg = common_pb2.AccessRequest(
        id="ar-0ld",
        owner="anhui",
        dataset="firms",
        requester=common_pb2.Requester(role="analyst", id="li.wei@shanghai", org=ORG),
        home_node="shanghai",
        columns=[common_pb2.ColumnControls(column="city", controls=["group_by"])],
        operations=["query", "psi"],
        purpose="研究",
        state="denied",
        decided_by="operator:op@anhui",
        decision_note="no",
        submitted_at="2026-01-01T00:00:00Z",
        decided_at="2026-01-02T00:00:00Z",
    )
    body = json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=None)
    with parts.state.transaction() as db:
        db.execute("INSERT INTO access_requests VALUES (?, ?, ?)", (msg.id, body, msg.state))
    req = parts.access.get("ar-0ld")
    assert req == serde.access_request_from_proto(msg)
    assert serde.access_request_to_proto(req) == msg
    assert parts.access.list("denied") == [req] and parts.access.list("pending") == []


def test_submit_refuses_what_the_owner_cannot_take(parts: Parts) -> None:
    with pytest.raises(NotFound):
        parts.access.submit(replace(ASK, dataset="nope"), ANALYST, "shanghai")
    with pytest.raises(NotFound):  # core data: not even its name
        parts.access.submit(replace(ASK, dataset="core"), ANALYST, "shanghai")
    with pytest.raises(InvalidArgument, match="not a column"):
        parts.access.submit(
            replace(ASK, columns=(ColumnControls("salary", ("aggregate",)),)), ANALYST, "x"
        )
    with pytest.raises(
        InvalidArgument,
        match=r"column 'city': unknown control 'peek' \(the controls: raw, group_by, ",
    ):
        parts.access.submit(
            replace(ASK, columns=(ColumnControls("city", ("peek",)),)), ANALYST, "x"
        )
    with pytest.raises(InvalidArgument, match="at least one column"):
        parts.access.submit(replace(ASK, columns=()), ANALYST, "x")
    with pytest.raises(InvalidArgument, match="purpose"):
        parts.access.submit(replace(ASK, purpose="  "), ANALYST, "x")
    for valid_from, expires in (("2030-01-01", "2029-01-01"), ("", "2020-01-01")):
        with pytest.raises(InvalidArgument, match="ends before it starts or has already ended"):
            parts.access.submit(replace(ASK, valid_from=valid_from, expires=expires), ANALYST, "x")
    # review (2026-12-04): terminal escapes that redraw the operator's row, a purpose of a
    # zero-width space
    for purpose in ("report\r\x1b[14Gindustry_section:group_by\x1b[K", "\u200b", "a\u202eb"):
        with pytest.raises(InvalidArgument, match="control or invisible character"):
            parts.access.submit(replace(ASK, purpose=purpose), ANALYST, "x")
    assert parts.access.list() == [] and _audit(parts.state) == []


def test_a_start_in_the_past_is_stored_as_the_time_of_asking(parts: Parts) -> None:
    """Review (2026-12-04): a request from 2001 published a grant "from 2001" once
    approved as asked."""
    req = parts.access.submit(replace(ASK, valid_from="2001-01-01"), ANALYST, "shanghai")
    assert req.valid_from == req.submitted_at


def test_approval_narrows_and_writes_the_grant(parts: Parts) -> None:
    req = parts.access.submit(ASK, ANALYST, "shanghai")
    decision = AccessDecision(
        id=req.id,
        approve=True,
        note="ok for the report",
        columns=(ColumnControls("city", ("group_by",)), ColumnControls("revenue", ("aggregate",))),
        expires="2030-06-30",
        max_uses=3,
    )
    decided = parts.access.decide(decision, OPERATOR)
    assert decided.state == "approved" and decided.grant_id
    assert decided.decided_by == str(OPERATOR) and decided.decision_note == "ok for the report"
    assert decided.columns == decision.columns and decided.decided_at
    assert decided.expires == "2030-06-30T00:00:00Z"  # the approved period, as the columns
    assert _stored(parts.state, req.id) == _as_json_format_wrote_it(decided)
    assert parts.access.get(req.id) == decided
    grant = parts.grants.get(decided.grant_id)
    assert grant.grantee_kind == "user" and grant.grantee == ANALYST.id
    assert grant.grantee_org == ORG and grant.purpose == ASK.purpose
    assert grant.columns == {"city": ("group_by",), "revenue": ("aggregate",)}
    assert grant.min_group_size == 5  # the L2 floor
    assert grant.expires == "2030-06-30T00:00:00Z" and grant.max_uses == 3
    kinds = [e["kind"] for e in _audit(parts.state)]
    assert kinds == ["access.submitted", "grant.written", "access.approved"]
    with pytest.raises(FailedPrecondition, match="already approved"):
        parts.access.decide(decision, OPERATOR)


def test_approval_may_not_widen_the_request(parts: Parts) -> None:
    req = parts.access.submit(ASK, ANALYST, "shanghai")
    wider = AccessDecision(id=req.id, approve=True, columns=(ColumnControls("city", ("raw",)),))
    with pytest.raises(InvalidArgument, match="only narrow"):
        parts.access.decide(wider, OPERATOR)
    other = AccessDecision(id=req.id, approve=True, columns=(ColumnControls("staff", ("filter",)),))
    with pytest.raises(InvalidArgument, match="column 'staff' was not asked for"):
        parts.access.decide(other, OPERATOR)
    longer = AccessDecision(id=req.id, approve=True, expires="2040-01-01")
    with pytest.raises(InvalidArgument, match="extend"):
        parts.access.decide(longer, OPERATOR)
    twice = (ColumnControls("city", ("group_by",)), ColumnControls("city", ("filter",)))
    with pytest.raises(InvalidArgument, match="named twice"):  # review: last one won
        parts.access.decide(AccessDecision(id=req.id, approve=True, columns=twice), OPERATOR)
    assert parts.access.get(req.id) == req and parts.grants.list() == []


def test_approving_a_train_request_names_the_tasks_the_grant_allows(parts: Parts) -> None:
    """Review (2026-12-05): approval wrote a train grant without tasks, which
    ``decide_train`` refuses for every task: the approval now names them (and the rounds),
    checked as a grant's are."""
    req = parts.access.submit(replace(ASK, operations=("query", "train")), ANALYST, "shanghai")
    with pytest.raises(InvalidArgument, match="asks to train: .* with --train-tasks"):
        parts.access.decide(AccessDecision(req.id, True), OPERATOR)
    unknown = AccessDecision(req.id, True, train_tasks=("logreg", "peek"))
    with pytest.raises(InvalidArgument, match="unknown training task 'peek'"):
        parts.access.decide(unknown, OPERATOR)
    with pytest.raises(InvalidArgument, match="max rounds"):
        parts.access.decide(replace(unknown, train_tasks=("logreg",), max_rounds=-1), OPERATOR)
    assert parts.access.get(req.id) == req and parts.grants.list() == []
    ok = AccessDecision(req.id, True, train_tasks=("logreg", "mlp"), max_rounds=20)
    grant = parts.grants.get(parts.access.decide(ok, OPERATOR).grant_id)
    assert grant.operations == ("query", "train")
    assert grant.train_tasks == ("logreg", "mlp") and grant.max_rounds == 20
    query_only = parts.access.submit(ASK, ANALYST, "shanghai")  # tasks without train
    with pytest.raises(InvalidArgument, match="train tasks are for grants with the train"):
        parts.access.decide(AccessDecision(query_only.id, True, train_tasks=("logreg",)), OPERATOR)


def test_approval_after_a_column_or_the_dataset_went_names_what_went(parts: Parts) -> None:
    """Review (2026-12-05): a request for a column a re-registration dropped failed the
    approval with INTERNAL (a KeyError from the level lookup); a dataset gone was an
    ``assert``."""
    req = parts.access.submit(ASK, ANALYST, "shanghai")
    pq.write_table(pa.table({"city": ["hefei"] * 6}), parts.data / "firms_city.parquet")
    desc = parts.catalog.get("firms")
    assert desc is not None
    parts.catalog.register(
        replace(
            desc.descriptor,
            path=str(parts.data / "firms_city.parquet"),
            columns=desc.descriptor.columns[:1],
        ),
        by=OPERATOR,
        when="2026-02-01T00:00:00Z",
    )
    message = "column 'revenue' is no longer a column of firms: narrow the approval"
    with pytest.raises(InvalidArgument, match=message):
        parts.access.decide(AccessDecision(req.id, True), OPERATOR)
    assert parts.access.get(req.id).state == "pending" and parts.grants.list() == []
    narrowed = AccessDecision(req.id, True, columns=(ColumnControls("city", ("group_by",)),))
    assert parts.access.decide(narrowed, OPERATOR).state == "approved"

    other = parts.access.submit(replace(ASK, columns=ASK.columns[:1]), ANALYST, "shanghai")
    with parts.state.transaction() as db:  # no call removes a dataset; a row gone by hand
        db.execute("DELETE FROM datasets WHERE name = 'firms'")
    access = AccessRequests(
        "anhui", parts.state, Catalog(parts.state, (parts.data,), ""), parts.grants
    )
    with pytest.raises(FailedPrecondition, match="'firms' is no longer registered at anhui"):
        access.decide(AccessDecision(other.id, True), OPERATOR)
    assert access.get(other.id).state == "pending"


def test_denial_keeps_the_note_and_writes_no_grant(parts: Parts) -> None:
    req = parts.access.submit(ASK, ANALYST, "shanghai")
    denied = parts.access.decide(AccessDecision(req.id, False, "names are L2"), OPERATOR)
    assert denied.state == "denied" and denied.decision_note == "names are L2"
    assert denied.grant_id == "" and denied.columns == ASK.columns
    assert _stored(parts.state, req.id) == _as_json_format_wrote_it(denied)
    assert parts.grants.list() == []
    assert [e["kind"] for e in _audit(parts.state)] == ["access.submitted", "access.denied"]
    with pytest.raises(FailedPrecondition, match="already denied"):
        parts.access.decide(AccessDecision(req.id, True), OPERATOR)
    with pytest.raises(NotFound):
        parts.access.decide(AccessDecision("ar-none", True), OPERATOR)


def test_status_is_for_the_requester_only(parts: Parts) -> None:
    req = parts.access.submit(ASK, ANALYST, "shanghai")
    assert parts.access.status_for(req.id, ANALYST) == req
    other = Requester("analyst", "zhang.min@anhui", "Anhui bureau")
    with pytest.raises(PermissionDenied, match="not yours"):
        parts.access.status_for(req.id, other)
    with pytest.raises(NotFound):
        parts.access.status_for("ar-none", ANALYST)


def test_list_by_state(parts: Parts) -> None:
    first = parts.access.submit(ASK, ANALYST, "shanghai")
    second = parts.access.submit(replace(ASK, operations=("query", "psi")), ANALYST, "shanghai")
    assert parts.access.list() == [first, second]
    denied = parts.access.decide(AccessDecision(first.id, False), OPERATOR)
    assert sorted(parts.access.list(), key=lambda r: r.id) == sorted(
        [denied, second], key=lambda r: r.id
    )
    assert parts.access.list("pending") == [second] and parts.access.list("denied") == [denied]


def test_wire_round_trips() -> None:
    req = replace(ASK, id="ar-1", requester=ANALYST, operations=("query",), state="pending")
    assert serde.access_request_from_proto(serde.access_request_to_proto(req)) == req
    decision = AccessDecision(
        "ar-1", True, "n", ASK.columns, "2030-01-01", 7, dp_epsilon=0.5, dp_budget=4.0,
        max_uses=2, train_tasks=("logreg", "mlp"), max_rounds=9,
    )  # fmt: skip
    assert serde.access_decision_from_proto(serde.access_decision_to_proto(decision)) == decision
    listed = serde.list_access_requests_response([req, req])
    assert [serde.access_request_from_proto(m) for m in listed.requests] == [req, req]


def test_an_analyst_cannot_prefill_the_operators_decision(parts: Parts) -> None:
    forged = replace(
        ASK, state="approved", decided_by="operator:op@anhui", decision_note="ok", grant_id="g-1"
    )
    stored = parts.access.submit(forged, ANALYST, "shanghai")
    assert (stored.state, stored.decided_by, stored.decision_note, stored.grant_id) == (
        "pending",
        "",
        "",
        "",
    )
    assert parts.access.get(stored.id) == stored


def test_pending_requests_are_bounded_per_requester(parts: Parts) -> None:
    from gateway.access import MAX_PENDING_PER_REQUESTER
    from gateway.errors import ResourceExhausted

    for _ in range(MAX_PENDING_PER_REQUESTER):
        parts.access.submit(ASK, ANALYST, "shanghai")
    with pytest.raises(ResourceExhausted, match="pending access requests"):
        parts.access.submit(ASK, ANALYST, "shanghai")
    assert len(parts.access.list("pending")) == MAX_PENDING_PER_REQUESTER
    # Another user (same name, another organisation) is not held back by it ...
    other = Requester("analyst", ANALYST.id, "Jiangsu bureau")
    first = parts.access.submit(ASK, other, "jiangsu")
    # ... and a decision makes room again.
    parts.access.decide(AccessDecision(id=first.id, approve=False, note="no"), OPERATOR)
    mine = parts.access.list("pending")[0]
    parts.access.decide(AccessDecision(id=mine.id, approve=False, note="no"), OPERATOR)
    parts.access.submit(ASK, ANALYST, "shanghai")


def test_a_denial_racing_an_approval_does_not_overwrite_it(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (2026-12-04): a denial read the request as pending, an approval committed
    its grant, then the denial saved the request as denied with the grant still active."""
    from gateway import access as access_module

    req = parts.access.submit(ASK, ANALYST, "shanghai")
    real_utc = access_module.utc
    approved: list[AccessRequest] = []
    calls: list[int] = []

    def approval_meanwhile() -> str:  # the denial's clock read, after it read the request
        calls.append(1)
        if len(calls) == 1:
            approved.append(parts.access.decide(AccessDecision(req.id, True), OPERATOR))
        return real_utc()

    monkeypatch.setattr(access_module, "utc", approval_meanwhile)
    with pytest.raises(FailedPrecondition, match="decided meanwhile"):
        parts.access.decide(AccessDecision(req.id, False, "no"), OPERATOR)
    stored = parts.access.get(req.id)
    assert stored.state == "approved" and stored.grant_id == approved[0].grant_id
    assert parts.grants.get(stored.grant_id).status(real_utc()) == "active"
    kinds = [e["kind"] for e in _audit(parts.state)]
    assert kinds.count("access.approved") == 1 and "access.denied" not in kinds


def test_one_organisation_cannot_fill_the_owners_store(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (2026-12-04): the only caps were per user and in all, and a home vouches for
    any user of its organisation: one node could lock every other organisation out."""
    from gateway import access as access_module
    from gateway.errors import ResourceExhausted

    monkeypatch.setattr(access_module, "MAX_PENDING_PER_ORG", 5)
    for i in range(5):
        parts.access.submit(ASK, Requester("analyst", f"user{i}@shanghai", ORG), "shanghai")
    with pytest.raises(ResourceExhausted, match=f"{ORG} already has 5 pending"):
        parts.access.submit(ASK, Requester("analyst", "user9@shanghai", ORG), "shanghai")
    other = Requester("analyst", "wang@jiangsu", "Jiangsu bureau")
    assert parts.access.submit(ASK, other, "jiangsu").state == "pending"


def test_requests_are_listed_a_page_at_a_time(parts: Parts) -> None:
    """Review (2026-12-04): decided requests are kept, and one reply of them all outgrew
    the message limit; a page holds about ``max_bytes`` of them (the node's servicer
    gives the smaller of PAGE_BYTES and half its message limit)."""
    made = [
        parts.access.submit(ASK, Requester("analyst", f"user{i}@shanghai", ORG), "shanghai")
        for i in range(7)
    ]
    one = len(_stored(parts.state, made[0].id))
    pages: list[list[str]] = []
    after = 0
    for _ in range(10):
        found, after = parts.access.page("", after, one * 3)
        pages.append([r.id for r in found])
        if not after:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == [r.id for r in made]
    assert parts.access.list() == made and parts.access.list("denied") == []
    listed = serde.list_access_requests_response(made[:2], 9)
    assert listed.next == 9 and len(listed.requests) == 2


def test_a_request_decided_while_the_list_is_read_keeps_its_place(parts: Parts) -> None:
    """Review (2026-12-04, night): saving a decision replaced the row, which moved it to
    the end: a list read page by page meanwhile showed it twice."""
    made = [
        parts.access.submit(ASK, Requester("analyst", f"user{i}@shanghai", ORG), "shanghai")
        for i in range(6)
    ]
    room = len(_stored(parts.state, made[0].id)) * 3
    first, after = parts.access.page("", 0, room)
    parts.access.decide(AccessDecision(first[0].id, False, "no"), OPERATOR)
    rest, _ = parts.access.page("", after, room)
    assert [r.id for r in first + rest] == [r.id for r in made]  # each once, in order
    assert [r.id for r in parts.access.list()] == [r.id for r in made]
