"""What every operation's decision shares: candidates, status, purpose, refusal order.

The helpers here (a dataset, a grant, an analyst) are reused by the per-operation tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from federation.envelope import Requester
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from gateway.policy import Grant
from gateway.policy.decide import candidates, choose, dp_bounds, level_of, purpose_matches

NOW = "2025-06-01T00:00:00Z"
HOME = "anhui-home"
ANALYST = Requester("analyst", "zhang@anhui", "anhui")
EVERY_USE = ("aggregate", "filter", "group_by", "join_key")


def make_desc(level: str = "L2", **column_levels: str) -> DatasetDescriptor:
    """Enterprises: region, industry, credit code, revenue (bounded), staff (unbounded)."""
    columns: tuple[ColumnSpec, ...] = (
        ColumnSpec("region", "string"),
        ColumnSpec("industry", "string"),
        ColumnSpec("code", "string"),
        ColumnSpec("revenue", "float64", lower=0.0, upper=1e9),
        ColumnSpec("staff", "int64"),
        ColumnSpec("high_tech", "bool"),
    )
    columns = tuple(dataclasses.replace(c, level=column_levels.get(c.name, "")) for c in columns)
    return DatasetDescriptor("firms", "Firms", "", "", level, "static", "firms.csv", "csv", columns)


def make_grant(**overrides: Any) -> Grant:
    """An active org grant for the analyst's organisation: every operation, every column."""
    fields: dict[str, Any] = {
        "id": "g-org",
        "dataset": "firms",
        "grantee_kind": "org",
        "grantee": "anhui",
        "operations": ("query", "psi", "train"),
        "columns": {c.name: EVERY_USE for c in make_desc().columns},
        "min_group_size": 5,
        "valid_from": "2025-01-01T00:00:00Z",
    }
    return Grant(**{**fields, **overrides})


def dp(**overrides: Any) -> Grant:
    return make_grant(**{"dp_epsilon": 0.5, "dp_budget": 2.0, **overrides})


def allow(g: Grant) -> None:
    """An operation check that refuses nothing."""


def pick(grants: list[Grant], operation: str = "query", purpose: str = "", **kw: Any) -> Grant:
    return choose(
        grants, make_desc(), operation, ANALYST, HOME, purpose, NOW, kw.get("check", allow)
    )


# --- candidates -----------------------------------------------------------------------


def test_candidates_most_specific_grantee_first() -> None:
    node = make_grant(id="g-node", grantee_kind="node", grantee=HOME)
    org = make_grant(id="g-org")
    user = make_grant(id="g-user", grantee_kind="user", grantee="zhang@anhui", grantee_org="anhui")
    found = candidates([node, org, user], "firms", "query", ANALYST, HOME)
    assert [g.id for g in found] == ["g-user", "g-org", "g-node"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"dataset": "other"},
        {"operations": ("psi",)},
        {"grantee": "jiangsu"},
        {"grantee_kind": "user", "grantee": "li@anhui", "grantee_org": "anhui"},
        {"grantee_kind": "user", "grantee": "zhang@anhui", "grantee_org": "jiangsu"},
        {"grantee_kind": "node", "grantee": "jiangsu-home"},
    ],
)
def test_candidates_leave_out_grants_for_someone_or_something_else(
    overrides: dict[str, Any],
) -> None:
    assert candidates([make_grant(**overrides)], "firms", "query", ANALYST, HOME) == []


@pytest.mark.parametrize(
    ("operation", "verb"), [("query", "query"), ("psi", "run PSI on"), ("train", "train on")]
)
def test_no_candidate_names_requester_and_operation(operation: str, verb: str) -> None:
    with pytest.raises(PermissionDenied, match=f"no grant lets analyst:zhang@anhui {verb} firms"):
        pick([make_grant(operations=("other",))], operation)


# --- status and purpose ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"revoked_at": "2025-05-01T00:00:00Z"}, "revoked"),
        ({"expires": "2025-05-01T00:00:00Z"}, "expired"),
        ({"expires": NOW}, "expired"),
        ({"valid_from": "2025-07-01T00:00:00Z"}, "not yet valid"),
        ({"max_uses": 3, "uses": 3}, "used up"),
    ],
)
def test_inactive_grant_is_refused_with_its_status(overrides: dict[str, Any], status: str) -> None:
    with pytest.raises(PermissionDenied, match=f"^grant g-org is {status}$"):
        pick([make_grant(**overrides)])


def test_spent_budget_is_resource_exhausted() -> None:
    with pytest.raises(ResourceExhausted, match="privacy budget of grant g-org is spent"):
        pick([dp(epsilon_spent=1.75)])  # 0.25 left, a release costs 0.5
    assert pick([dp(epsilon_spent=1.5)]).id == "g-org"  # exactly the last 0.5 fits


def test_purpose_ignores_case_and_spaces_and_empty_allows_any() -> None:
    assert purpose_matches(make_grant(purpose="Health research"), "  health RESEARCH ")
    assert purpose_matches(make_grant(purpose=""), "anything")
    with pytest.raises(PermissionDenied, match="is for the purpose 'Health research'"):
        pick([make_grant(purpose="Health research")], purpose="marketing")


# --- which grant, which refusal -------------------------------------------------------


def test_a_later_candidate_that_permits_wins() -> None:
    user = make_grant(id="g-user", grantee_kind="user", grantee="zhang@anhui", grantee_org="anhui")
    chosen = pick([make_grant(id="g-org"), dataclasses.replace(user, revoked_at=NOW)])
    assert chosen.id == "g-org"


def test_the_most_specific_grants_refusal_is_reported() -> None:
    user = make_grant(
        id="g-user", grantee_kind="user", grantee="zhang@anhui", grantee_org="anhui", max_uses=1
    )
    org = make_grant(id="g-org", revoked_at=NOW)
    with pytest.raises(
        PermissionDenied, match=r"^grant g-user is used up \(grant g-org is revoked\)$"
    ):
        pick([org, dataclasses.replace(user, uses=1)])


def test_a_grant_in_force_speaks_before_an_ended_one() -> None:
    # The analyst's own grant was revoked; the organisation's lacks a control: its reason
    # says what to ask for, the revoked grant is named after it (seen by a new user).
    user = make_grant(
        id="g-user", grantee_kind="user", grantee="zhang@anhui", grantee_org="anhui", revoked_at=NOW
    )

    def no_extremes(g: Grant) -> None:
        raise PermissionDenied(f"column 'revenue' needs the extremes control under {g.id}")

    with pytest.raises(PermissionDenied) as info:
        pick([make_grant(id="g-org"), user], check=no_extremes)
    assert info.value.message == (
        "column 'revenue' needs the extremes control under g-org (grant g-user is revoked)"
    )
    with pytest.raises(PermissionDenied, match="^grant g-user is revoked$"):
        pick([user], check=no_extremes)
    # many old grants are named as one and a count (a message does not grow without end)
    old = [dataclasses.replace(user, id=f"g-old{i}", expires="2025-02-01") for i in range(50)]
    with pytest.raises(PermissionDenied) as info:
        pick([make_grant(id="g-org"), user, *old], check=no_extremes)
    assert info.value.message.endswith("(grant g-user is revoked; and 50 more ended)")


def test_status_is_checked_before_purpose_and_the_operation_check() -> None:
    def refuse(g: Grant) -> None:
        raise PermissionDenied("operation says no")

    with pytest.raises(PermissionDenied, match="is expired"):
        pick([make_grant(expires="2025-02-01", purpose="x")], purpose="y", check=refuse)
    with pytest.raises(PermissionDenied, match="purpose"):
        pick([make_grant(purpose="x")], purpose="y", check=refuse)
    with pytest.raises(PermissionDenied, match="operation says no"):
        pick([make_grant()], check=refuse)


# --- level ----------------------------------------------------------------------------


def test_level_is_the_strictest_of_dataset_and_columns() -> None:
    level, floor = level_of(make_desc("L2", revenue="L3"), ["region", "revenue"])
    assert level == "L3" and floor.dp_required and floor.min_group_size == 10
    assert level_of(make_desc("L2", revenue="L3"), ["region"])[0] == "L2"


def test_unknown_column_is_invalid_before_any_grant() -> None:
    with pytest.raises(InvalidArgument, match="firms has no column 'nope'"):
        level_of(make_desc(), ["region", "nope"])


def test_core_column_or_dataset_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="column 'code' of firms is L4 \\(core data\\)"):
        level_of(make_desc(code="L4"), ["region", "code"])
    with pytest.raises(PermissionDenied, match="^firms is L4 \\(core data\\)"):
        level_of(make_desc("L4"), [])


def test_dp_bounds_are_the_declared_ones() -> None:
    assert dp_bounds(make_desc()) == {"revenue": (0.0, 1e9)}
