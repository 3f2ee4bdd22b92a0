"""Deciding an aggregate (or, for L1 data, raw) SQL query at the owner."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Protocol

from federation.envelope import Requester
from gateway.descriptor import DatasetDescriptor
from gateway.errors import PermissionDenied
from gateway.policy.decide import check_columns, choose, dp_bounds, level_of
from gateway.policy.floors import effective_level
from gateway.policy.model import Decision, Grant

# The aggregates the owner can noise (privacy.add_noise); MIN and MAX are not among them.
DP_AGGREGATES = frozenset(
    {"count", "sum", "avg", "var_samp", "var_pop", "stddev_samp", "stddev_pop"}
)


class AggregateUse(Protocol):
    """One aggregate call of a query, as deciding sees it."""

    @property
    def func(self) -> str: ...
    @property
    def column(self) -> str | None: ...  # None for COUNT(*)
    @property
    def label(self) -> str: ...


class QueryUse(Protocol):
    """What deciding needs of a parsed query: the columns it uses in which role, whether it
    reads raw rows, its aggregates. federation's QueryPlan has these; policy does not need
    to know how a query is planned."""

    @property
    def column_roles(self) -> Mapping[str, Set[str]]: ...
    @property
    def is_raw(self) -> bool: ...
    @property
    def aggregates(self) -> Sequence[AggregateUse]: ...


def decide_query(
    grants: Iterable[Grant],
    plan: QueryUse,
    desc: DatasetDescriptor,
    requester: Requester,
    home_node: str,
    purpose: str,
    now: str,
) -> Decision:
    """Pick the grant that permits this query, or refuse with the most useful reason."""
    level, floor = level_of(desc, plan.column_roles)

    def check(g: Grant) -> None:
        check_columns(g, plan.column_roles)
        if plan.is_raw and not floor.raw:
            raise PermissionDenied(f"{desc.name} is {level}: only aggregates may leave")
        extremes = [
            a
            for a in plan.aggregates
            if a.func in ("min", "max")
            and a.column is not None
            and effective_level(desc, [a.column]) != "L1"
        ]
        if extremes:
            raise PermissionDenied(
                f"{extremes[0].label} would show one record's value: MIN and MAX are "
                "only released for L1 (open) columns"
            )
        if floor.dp_required and not g.uses_dp:
            raise PermissionDenied(f"{level} data needs a grant with differential privacy")
        if g.uses_dp:
            if plan.is_raw:
                raise PermissionDenied(f"grant {g.id} uses DP: raw rows cannot be released")
            bad = [a.label for a in plan.aggregates if a.func not in DP_AGGREGATES]
            if bad:
                raise PermissionDenied(f"{bad[0]} cannot be released under DP")
            specs = {c.name: c for c in desc.columns}
            unbounded = [
                a.column
                for a in plan.aggregates
                if a.column is not None
                and a.func != "count"
                and (specs[a.column].lower is None or specs[a.column].upper is None)
            ]
            if unbounded:
                raise PermissionDenied(
                    f"column {unbounded[0]!r} has no declared bounds, so it cannot be "
                    "clamped and noised under DP"
                )

    g = choose(grants, desc, "query", requester, home_node, purpose, now, check)
    k = max(g.min_group_size, floor.min_group_size)
    if g.uses_dp:
        return Decision(g, k, g.dp_epsilon, dp_bounds(desc), level)
    sticky = level == "L2" and not plan.is_raw and not g.exact
    return Decision(g, k, 0.0, None, level, sticky_noise=sticky)
