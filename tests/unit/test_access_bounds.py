"""An access request is bounded in size as well as in number: a purpose is a sentence,
operations are the known ones, columns and controls are kept once each; times outside
datetime's range are refused as bad times, not internal errors."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from federation.envelope import MAX_PURPOSE_CHARS, Requester
from gateway import clock, identity
from gateway.access import MAX_ASKED_COLUMNS, AccessRequest, AccessRequests, ColumnControls
from gateway.errors import InvalidArgument
from gateway.state import State
from tests.unit.test_access import Parts, parts  # noqa: F401

ANALYST = Requester("analyst", "mallory@jiangsu", "Jiangsu")
OPERATOR = identity.Identity("operator", "op@anhui", "Anhui bureau", "1", clock.now())
ASK = AccessRequest(
    owner="anhui",
    dataset="firms",
    columns=(ColumnControls("city", ("group_by",)),),
    purpose="regional report",
)


@pytest.fixture
def access(request: pytest.FixtureRequest) -> tuple[AccessRequests, State]:
    """``test_access``'s node parts: requests over a registered dataset, and the state."""
    node: Parts = request.getfixturevalue("parts")
    return node.access, node.state


def _largest_row(state: State) -> int:
    with state.transaction() as db:
        rows = db.execute("SELECT MAX(LENGTH(body)) FROM access_requests").fetchone()[0]
        audit = db.execute(
            "SELECT MAX(LENGTH(body)) FROM audit WHERE kind = 'access.submitted'"
        ).fetchone()[0]
    return max(rows or 0, audit or 0)


def test_a_purpose_over_the_limit_is_refused(access: tuple[AccessRequests, State]) -> None:
    requests, state = access
    with pytest.raises(InvalidArgument, match=f"at most {MAX_PURPOSE_CHARS} characters"):
        requests.submit(replace(ASK, purpose="p" * 1_500_000), ANALYST, "jiangsu")
    assert requests.list() == [] and _largest_row(state) == 0
    kept = requests.submit(replace(ASK, purpose="p" * MAX_PURPOSE_CHARS), ANALYST, "jiangsu")
    assert kept.purpose == "p" * MAX_PURPOSE_CHARS


def test_operations_are_the_known_ones_each_once(access: tuple[AccessRequests, State]) -> None:
    requests, _ = access
    with pytest.raises(InvalidArgument, match="operations must be some of query, psi, train"):
        requests.submit(replace(ASK, operations=("anything-at-all " * 10_000,)), ANALYST, "js")
    with pytest.raises(InvalidArgument, match="operations must be some of"):
        requests.submit(replace(ASK, operations=("query", "export")), ANALYST, "js")
    asked = ("psi", "query", "psi") * 1000
    assert requests.submit(replace(ASK, operations=asked), ANALYST, "js").operations == (
        "psi",
        "query",
    )
    assert requests.submit(ASK, ANALYST, "js").operations == ("query",)  # none asked


def test_repeated_columns_and_controls_are_kept_once(access: tuple[AccessRequests, State]) -> None:
    """The reviewer's request: 10 copies of a column with 20,000 copies of a control, a
    3.5 MiB message, took ~6 MiB of state per request."""
    requests, state = access
    columns = (ColumnControls("city", ("group_by",) * 20_000),) * 10 + (
        ColumnControls("revenue", ("aggregate",)),
        ColumnControls("city", ("filter", "group_by")),
    )
    stored = requests.submit(replace(ASK, columns=columns), ANALYST, "jiangsu")
    assert stored.columns == (
        ColumnControls("city", ("group_by", "filter")),
        ColumnControls("revenue", ("aggregate",)),
    )
    assert requests.get(stored.id).columns == stored.columns
    with state.transaction() as db:
        body = db.execute(
            "SELECT body FROM audit WHERE kind = 'access.submitted' ORDER BY seq DESC"
        ).fetchone()[0]
    assert json.loads(body)["columns"] == {"city": ["group_by", "filter"], "revenue": ["aggregate"]}
    assert _largest_row(state) < 2048


def test_the_number_and_length_of_column_names_are_capped(
    access: tuple[AccessRequests, State],
) -> None:
    requests, state = access
    many = (ColumnControls("city", ("group_by",)),) * (MAX_ASKED_COLUMNS + 1)
    with pytest.raises(InvalidArgument, match=f"at most {MAX_ASKED_COLUMNS} columns"):
        requests.submit(replace(ASK, columns=many), ANALYST, "jiangsu")
    long = (ColumnControls("c" * 1_000_000, ("group_by",)),)
    with pytest.raises(InvalidArgument, match="is not a column of firms") as refused:
        requests.submit(replace(ASK, columns=long), ANALYST, "jiangsu")
    assert len(refused.value.message) < 300  # the name is quoted, cut
    assert requests.list() == []


@pytest.mark.parametrize(
    "field,value",
    [("expires", "9999-12-31T23:59:59-05:00"), ("valid_from", "0001-01-01T00:00:00+05:00")],
)
def test_a_time_outside_datetimes_range_is_a_bad_time(
    access: tuple[AccessRequests, State], field: str, value: str
) -> None:
    requests, _ = access
    with pytest.raises(InvalidArgument, match=f"{field} .* out of range"):
        requests.submit(replace(ASK, **{field: value}), ANALYST, "jiangsu")


@pytest.mark.parametrize(
    "value",
    ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "0001-01-01T00:00:00+01:00"],
)
def test_parse_time_refuses_what_overflows_in_utc(value: str) -> None:
    with pytest.raises(InvalidArgument, match="since .* out of range"):
        clock.parse_time(value, "since")
    # the edges of the range themselves are times
    assert clock.parse_time("9999-12-31T23:59:59Z", "until") == "9999-12-31T23:59:59Z"
    assert clock.parse_time("0001-01-01", "since") == "0001-01-01T00:00:00Z"
