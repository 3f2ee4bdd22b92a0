"""validate: a grant the dataset's classification does not allow is never written."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.clock import parse_time, utc
from gateway.errors import FailedPrecondition, InvalidArgument
from gateway.policy import validate
from tests.unit.test_policy_decide import dp, make_desc, make_grant


def test_a_good_grant_passes_unchanged() -> None:
    g = make_grant()
    assert validate(g, make_desc()) is g
    bounded = {c: ("aggregate",) for c in ("region", "revenue")}  # staff has no bounds
    assert validate(dp(min_group_size=10, columns=bounded), make_desc("L3")).uses_dp


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"grantee_kind": "team"}, "grantee kind 'team'"),
        ({"grantee": ""}, "grantee must not be empty"),
        ({"grantee": "   "}, "grantee must not be empty"),  # was written as org '   '
        ({"grantee_kind": "user", "grantee": "zhang@anhui"}, "names the user's organisation"),
        ({"dp_epsilon": float("nan")}, "dp_epsilon must be a finite number"),
        ({"min_group_size": 0}, "min_group_size >= 1"),
        ({"operations": ("query", "export")}, "operations must be some of query, psi, train"),
        ({"operations": ()}, "operations must be some of"),
        ({"columns": {}}, "at least one column"),
        ({"columns": {"nope": ("aggregate",)}}, "'nope' is not a column of firms"),
        # one wording with an access request's (review, 2026-12-05: a grant's named the
        # controls as a Python tuple and not the bad one)
        (
            {"columns": {"region": ("group_by", "peek")}},
            r"column 'region': unknown control 'peek' \(the controls: raw, group_by, "
            r"aggregate, filter, extremes, join_key\)",
        ),
        ({"columns": {"region": ()}}, "column 'region': no control given"),
        ({"dp_epsilon": 1.0, "dp_budget": 0.5}, "dp budget must be at least"),
        # Review (2026-12-04): a budget equal to epsilon past 1e-12 resolution was written
        # but permitted nothing (spends charge up, budgets round down).
        ({"dp_epsilon": 1.0000001e-6, "dp_budget": 1.0000001e-6}, "dp budget must be at least"),
        # ... and an org grant's --user-org was stored and shown but never matched.
        ({"grantee_kind": "org", "grantee_org": "Anhui"}, "only a user grant names the user's"),
        (
            {"valid_from": "2025-02-01", "expires": "2025-01-01"},
            r"expires \(2025-01-01\) must be after",
        ),
        ({"purpose": "p" * 501}, "the purpose may be at most 500 characters"),
        # review (2026-12-04): a "cap" that caps nothing; text that redraws a listing
        ({"dp_budget": 5.0}, "a DP budget without a DP epsilon limits nothing"),
        ({"purpose": "ok\n\n<!--"}, "the purpose holds a control or invisible character"),
        ({"grantee": "Anhui\u200b"}, "the grantee holds a control or invisible character"),
    ],
)
def test_malformed_grants_are_invalid(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate(make_grant(**overrides), make_desc())


@pytest.mark.parametrize(
    ("desc_level", "column_levels", "overrides", "message"),
    [
        ("L4", {}, {}, "firms is L4 \\(core\\)"),
        ("L2", {}, {"columns": {"region": ("raw",)}}, "'raw' needs L1 open data"),
        ("L2", {}, {"min_group_size": 4}, "L2 needs a minimum group size of at least 5"),
        ("L3", {}, {"min_group_size": 10}, "L3 needs differential privacy"),
        ("L2", {}, {"dp_epsilon": 1.0, "dp_budget": 2.0}, "'staff' has no declared bounds"),
    ],
)
def test_classification_floors_are_preconditions(
    desc_level: str, column_levels: dict[str, str], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(FailedPrecondition, match=message):
        validate(make_grant(**overrides), make_desc(desc_level, **column_levels))


def test_grant_times_are_stored_as_rfc3339_utc() -> None:
    assert parse_time("2025-03-01", "expires") == "2025-03-01T00:00:00Z"
    assert parse_time("2025-03-01T10:30:00+08:00", "expires") == "2025-03-01T02:30:00Z"
    assert parse_time("2025-03-01T02:30:00.5Z", "expires") == "2025-03-01T02:30:00Z"
    assert parse_time("", "expires") == ""
    with pytest.raises(InvalidArgument, match="valid_from 'soon' is not an ISO date"):
        parse_time("soon", "valid_from")
    assert len(utc()) == 20 and utc().endswith("Z")
