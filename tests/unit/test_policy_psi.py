"""decide_join_side: a PSI session's side needs a psi grant with join_key on its key.

(It replaced ``decide_psi``, which was unused and weaker: no DP on L3, no epsilon.)"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.descriptor import DatasetDescriptor
from gateway.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from gateway.policy import Decision, Grant
from gateway.policy.psi import decide_join_side
from tests.unit.test_policy_decide import ANALYST, HOME, NOW, dp, make_desc, make_grant


def decide(
    grants: list[Grant], column: str = "code", desc: DatasetDescriptor | None = None, **kw: Any
) -> Decision:
    return decide_join_side(
        grants,
        desc or make_desc(),
        {column: ("join_key",)},
        ANALYST,
        HOME,
        kw.get("purpose", ""),
        NOW,
    )


def test_join_key_grant_permits_with_k_of_grant_or_floor() -> None:
    d = decide([make_grant(operations=("psi",), columns={"code": ("join_key",)}, min_group_size=1)])
    assert (d.grant.id, d.min_group_size, d.epsilon, d.clamp, d.level) == (
        "g-org",
        5,
        0.0,
        None,
        "L2",
    )
    assert decide([make_grant(min_group_size=50)]).min_group_size == 50
    assert decide([dp()], desc=make_desc("L3")).min_group_size == 10


def test_l3_needs_a_dp_grant_whose_epsilon_is_charged() -> None:
    with pytest.raises(PermissionDenied, match="L3 data needs a grant with differential privacy"):
        decide([make_grant()], desc=make_desc("L3"))
    assert decide([dp()], desc=make_desc("L3")).epsilon == dp().dp_epsilon > 0


def test_wrong_operation_is_no_grant() -> None:
    with pytest.raises(
        PermissionDenied, match="no grant lets analyst:zhang@anhui run PSI on firms"
    ):
        decide([make_grant(operations=("query", "train"))])


def test_column_without_join_key() -> None:
    grant = make_grant(columns={"code": ("group_by", "filter")})
    with pytest.raises(
        PermissionDenied,
        match=r"column 'code' may not be used as join_key under grant g-org: it needs the "
        r"join_key control \(allowed: filter, group_by\)",
    ):
        decide([grant])
    with pytest.raises(PermissionDenied, match=r"'region' .* \(allowed: not named in the grant\)"):
        decide([grant], "region")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"expires": "2025-05-01T00:00:00Z"}, "grant g-org is expired"),
        ({"revoked_at": "2025-05-01T00:00:00Z"}, "grant g-org is revoked"),
        ({"max_uses": 1, "uses": 1}, "grant g-org is used up"),
        ({"purpose": "audit"}, "grant g-org is for the purpose 'audit'"),
    ],
)
def test_unusable_grant(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(PermissionDenied, match=message):
        decide([make_grant(**overrides)], purpose="research")


def test_budget_spent() -> None:
    with pytest.raises(ResourceExhausted, match="the privacy budget of grant g-org is spent"):
        decide([dp(epsilon_spent=2.0)])


def test_core_column_or_dataset_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="column 'code' of firms is L4"):
        decide([make_grant()], desc=make_desc(code="L4"))
    with pytest.raises(PermissionDenied, match="firms is L4"):
        decide([make_grant()], desc=make_desc("L4"))


def test_unknown_column() -> None:
    with pytest.raises(InvalidArgument, match="firms has no column 'nope'"):
        decide([make_grant()], "nope")
