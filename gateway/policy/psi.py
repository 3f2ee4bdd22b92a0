"""Deciding one owner's side of a PSI session or join aggregate at the owner."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from federation.envelope import Requester
from gateway.descriptor import DatasetDescriptor
from gateway.errors import PermissionDenied
from gateway.policy.decide import check_columns, choose, dp_bounds, level_of
from gateway.policy.model import Decision, Grant


def decide_join_side(
    grants: Iterable[Grant],
    desc: DatasetDescriptor,
    roles: Mapping[str, Collection[str]],
    requester: Requester,
    home_node: str,
    purpose: str,
    now: str,
) -> Decision:
    """Pick the grant that lets this owner's side of a PSI session or join aggregate run.

    ``roles`` says how the session uses each column of this side: the key ``join_key``
    (matched only, never released), conditions ``filter``, group keys ``group_by``, summed
    columns ``aggregate``. The grant must allow the ``psi`` operation and every role. k is
    max(grant, floor) on every released count; under a DP grant the release is noised
    with the grant's epsilon (counts by the matching owner, sums by the owner of the
    values), clamped to the declared bounds.
    """
    level, floor = level_of(desc, list(roles))

    def check(g: Grant) -> None:
        check_columns(g, roles)
        if floor.dp_required and not g.uses_dp:
            raise PermissionDenied(f"{level} data needs a grant with differential privacy")

    g = choose(grants, desc, "psi", requester, home_node, purpose, now, check)
    k = max(g.min_group_size, floor.min_group_size)
    if g.uses_dp:
        return Decision(g, k, g.dp_epsilon, dp_bounds(desc), level)
    return Decision(g, k, 0.0, None, level)
