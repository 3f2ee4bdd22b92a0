"""decide_train: training needs a train grant with `aggregate` on every feature and the label."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gateway.descriptor import DatasetDescriptor
from gateway.errors import FailedPrecondition, InvalidArgument, PermissionDenied, ResourceExhausted
from gateway.policy import Decision, Grant, decide_train
from tests.unit.test_policy_decide import ANALYST, HOME, NOW, dp, make_desc, make_grant

FEATURES = ("industry", "revenue")
TRAIN_ONLY = {"industry": ("aggregate",), "revenue": ("aggregate",), "high_tech": ("aggregate",)}


def decide(
    grants: list[Grant],
    features: tuple[str, ...] = FEATURES,
    label: str = "high_tech",
    desc: DatasetDescriptor | None = None,
    **kw: Any,
) -> Decision:
    # A train grant names its tasks; the shared grants of the decide tests name none.
    grants = [replace(g, train_tasks=g.train_tasks or ("logreg",)) for g in grants]
    return decide_train(
        grants,
        desc or make_desc(),
        features,
        label,
        ANALYST,
        HOME,
        kw.get("purpose", ""),
        NOW,
        task=kw.get("task", "logreg"),
        rounds=kw.get("rounds", 1),
        dp=kw.get("dp", False),
    )


def test_aggregate_on_every_column_permits() -> None:
    grant = make_grant(operations=("train",), columns=TRAIN_ONLY, min_group_size=1, exact=True)
    d = decide([grant])
    assert (d.grant.id, d.min_group_size, d.epsilon, d.clamp, d.level) == (
        "g-org",
        5,
        0.0,
        None,
        "L2",
    )


def test_l3_needs_a_dp_grant_and_a_run_that_asks_for_dp() -> None:
    """L3 needs a DP grant; under a DP grant the run must ask for DP (a clipping bound),
    and then the decision carries the grant's epsilon and the declared bounds."""
    with pytest.raises(PermissionDenied, match="L3 data needs a grant with differential privacy"):
        decide([make_grant()], desc=make_desc("L2", revenue="L3"), dp=True)
    with pytest.raises(FailedPrecondition, match="ask with --dp CLIP"):
        decide([dp()], desc=make_desc("L2", revenue="L3"))
    d = decide([dp()], desc=make_desc("L2", revenue="L3"), dp=True)
    assert (d.epsilon, d.clamp, d.level, d.min_group_size) == (
        0.5,
        {"revenue": (0.0, 1e9)},
        "L3",
        10,
    )


def test_task_and_rounds_within_the_grant() -> None:
    grant = make_grant(
        operations=("train",), columns=TRAIN_ONLY, min_group_size=1,
        train_tasks=("logreg",), max_rounds=20, exact=True,
    )  # fmt: skip
    assert decide([grant], task="logreg", rounds=20).grant == grant
    with pytest.raises(PermissionDenied, match="does not allow the task 'mlp'"):
        decide([grant], task="mlp", rounds=5)
    with pytest.raises(PermissionDenied, match="21 rounds asked, the grant allows at most 20"):
        decide([grant], task="logreg", rounds=21)


def test_l2_without_dp_needs_the_owners_exact_opt_in() -> None:
    """Without DP the home chooses every round's model, and a model can single out rows:
    L2 data trains so only under a grant its owner marked exact (or under a DP grant)."""
    plain = make_grant(operations=("train",), columns=TRAIN_ONLY, min_group_size=1)
    with pytest.raises(PermissionDenied, match="marked exact"):
        decide([plain])
    assert decide([replace(plain, exact=True)]).epsilon == 0.0
    public = decide([plain], desc=make_desc("L1"))
    assert public.level == "L1"


def test_wrong_operation_is_no_grant() -> None:
    with pytest.raises(PermissionDenied, match="no grant lets analyst:zhang@anhui train on firms"):
        decide([make_grant(operations=("query", "psi"))])


@pytest.mark.parametrize("missing", ["industry", "revenue", "high_tech"])
def test_every_feature_and_the_label_need_aggregate(missing: str) -> None:
    columns = {**TRAIN_ONLY, missing: ("group_by", "filter", "join_key")}
    with pytest.raises(
        PermissionDenied,
        match=f"column '{missing}' may not be used as aggregate under grant g-org: it needs "
        r"the aggregate control \(allowed: filter, group_by, join_key\)",
    ):
        decide([make_grant(columns=columns)])


def test_column_not_named_in_the_grant() -> None:
    with pytest.raises(PermissionDenied, match=r"'staff' .* \(allowed: not named in the grant\)"):
        decide([make_grant(columns=TRAIN_ONLY)], ("industry", "staff"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"expires": "2025-05-01T00:00:00Z"}, "grant g-org is expired"),
        ({"revoked_at": "2025-05-01T00:00:00Z"}, "grant g-org is revoked"),
        ({"max_uses": 4, "uses": 4}, "grant g-org is used up"),
        ({"purpose": "audit"}, "grant g-org is for the purpose 'audit'"),
    ],
)
def test_unusable_grant(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(PermissionDenied, match=message):
        decide([make_grant(**overrides)], purpose="research")


def test_budget_spent() -> None:
    with pytest.raises(ResourceExhausted, match="the privacy budget of grant g-org is spent"):
        decide([dp(epsilon_spent=1.9)])


def test_core_data_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="column 'high_tech' of firms is L4"):
        decide([dp()], desc=make_desc("L3", high_tech="L4"))
    with pytest.raises(PermissionDenied, match="firms is L4"):
        decide([dp()], desc=make_desc("L4"))


def test_a_run_names_features_and_a_separate_known_label() -> None:
    with pytest.raises(InvalidArgument, match="at least one feature"):
        decide([make_grant()], ())
    with pytest.raises(InvalidArgument, match="'revenue' cannot be both a feature and the label"):
        decide([make_grant()], FEATURES, "revenue")
    with pytest.raises(InvalidArgument, match="firms has no column 'nope'"):
        decide([make_grant()], FEATURES, "nope")
