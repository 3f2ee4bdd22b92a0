"""Deciding an aggregate (or, for L1 data, raw) SQL query at the owner."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Protocol

from federation.envelope import Requester
from gateway.descriptor import DatasetDescriptor
from gateway.errors import PermissionDenied
from gateway.policy.decide import candidates, check_columns, choose, dp_bounds, level_of
from gateway.policy.floors import effective_level
from gateway.policy.model import Decision, Grant

# The aggregates the owner can noise (privacy.add_noise; quantiles as a noisy histogram).
DP_AGGREGATES = frozenset(
    {"count", "sum", "avg", "var_samp", "var_pop", "stddev_samp", "stddev_pop", "approx_quantile"}
)
# The aggregates that show single rows' values: the ``extremes`` control.
EXTREMES = frozenset({"min", "max", "approx_quantile"})
MAX_BUCKETS = 1_000  # groups a bucket of a filter-only column may make over its range
COARSE_UNITS = ("year", "quarter", "month")  # date buckets of a filter-only column


class AggregateUse(Protocol):
    """One aggregate call of a query, as deciding sees it."""

    @property
    def func(self) -> str: ...
    @property
    def columns(self) -> tuple[str, ...]: ...  # the dataset columns it reads
    @property
    def label(self) -> str: ...


class BucketUse(Protocol):
    """A group key that buckets a column (``federation.sql.Bucket``)."""

    @property
    def column(self) -> str: ...
    @property
    def width(self) -> float | None: ...
    @property
    def count(self) -> int | None: ...
    @property
    def unit(self) -> str | None: ...


class QueryUse(Protocol):
    """What deciding needs of a parsed query: the columns it uses in which role, whether it
    reads raw rows, its aggregates and buckets. federation's QueryPlan has these; policy
    does not need to know how a query is planned."""

    @property
    def column_roles(self) -> Mapping[str, Set[str]]: ...
    @property
    def is_raw(self) -> bool: ...
    @property
    def aggregates(self) -> Sequence[AggregateUse]: ...
    @property
    def buckets(self) -> Sequence[BucketUse]: ...


def _roles(
    desc: DatasetDescriptor, grant: Grant, roles: Mapping[str, Set[str]]
) -> dict[str, set[str]]:
    """The roles to check against ``grant``: on an open (L1) column, extremes are what
    ``aggregate`` or ``filter`` already allow (its rows are published as they are; a
    filter at k = 1 finds any one value)."""
    out = {c: set(r) for c, r in roles.items()}
    for column, used in out.items():
        allowed = grant.columns.get(column, ())
        if (
            "extremes" in used
            and effective_level(desc, [column]) == "L1"
            and ("aggregate" in allowed or "filter" in allowed)
        ):
            used.discard("extremes")
    return out


def _sketch_of_values(desc: DatasetDescriptor, grant: Grant, call: AggregateUse) -> None:
    """A distinct-count sketch travels to the home with a hash of every value in it, so
    whoever holds it can test a guessed value for presence: beyond open (L1) columns it
    needs the ``extremes`` control too (the owner accepts that single values show)."""
    for column in call.columns:
        if effective_level(desc, [column]) == "L1":
            continue
        if "extremes" not in grant.columns.get(column, ()):
            raise PermissionDenied(
                f"{call.label}: a distinct-count sketch of {column!r} shows whether a given "
                "value is present; beyond L1 it needs the extremes control as well as aggregate"
            )


def _one_key_each(buckets: Sequence[BucketUse], grant: Grant) -> None:
    """Refuse a column without the group_by control that two or more group keys bucket
    (the plan records one bucket per key and column it coarsens). Its date parts by year,
    quarter and month count as one key: each is a function of the month, so together
    they are no finer than ``date_trunc('month', col)``, which is allowed alone."""
    keys: dict[str, list[BucketUse]] = {}
    for b in buckets:
        if "group_by" not in grant.columns.get(b.column, ()):
            keys.setdefault(b.column, []).append(b)
    for column, found in keys.items():
        coarse = [b for b in found if b.unit in COARSE_UNITS]
        if len(found) - len(coarse) + min(len(coarse), 1) > 1:
            raise PermissionDenied(
                f"column {column!r} is bucketed by {len(found)} group keys; without the "
                "group_by control a column may be in one group key only (coarse keys of one "
                "column together make a fine one)"
            )


def check_buckets(
    buckets: Iterable[BucketUse],
    grant: Grant,
    ranges: Mapping[str, tuple[float, float]],
) -> None:
    """A bucket of a column the grant lets the analyst filter on but not group by must be
    coarser than the range filters already allowed: at most MAX_BUCKETS groups over the
    column's range (``ranges``: the declared bounds, on L1 columns with the registration's
    measured minimum and maximum: ``gateway.release.query.ranges``),
    and dates by year, quarter or month. And in one group key only: each key is judged
    alone, and several coarse keys of one column (``CASE WHEN x < 2000 ...``, ``x <
    2001``...; ``width_bucket``s with shifted bounds) together make a fine bucket."""
    buckets = list(buckets)
    _one_key_each(buckets, grant)
    for b in buckets:
        if "group_by" in grant.columns.get(b.column, ()):
            continue
        if b.unit is not None:
            if b.unit not in COARSE_UNITS:
                raise PermissionDenied(
                    f"a bucket of {b.column!r} by {b.unit} is as fine as the column itself: "
                    f"it needs the group_by control (by {', '.join(COARSE_UNITS)} it needs filter)"
                )
            continue
        count = b.count
        if count is None and b.width is not None:
            span = ranges.get(b.column)
            if span is None:
                raise PermissionDenied(
                    f"{b.column!r} has no declared bounds (beyond L1 only declared bounds "
                    "count), so a bucket of it cannot be shown to be coarse: it needs the "
                    "group_by control, or the owner must declare its bounds"
                )
            many = (span[1] - span[0]) / b.width
            if not math.isfinite(many):  # a width of 1e-320, a range of NaN (review)
                raise PermissionDenied(
                    f"a bucket of {b.column!r} of width {b.width!r} cannot be shown to be "
                    f"coarse over its range: without the group_by control at most "
                    f"{MAX_BUCKETS} buckets (use a wider bucket)"
                )
            count = int(many) + 1
        if count is not None and count > MAX_BUCKETS:
            raise PermissionDenied(
                f"a bucket of {b.column!r} would make about {count} groups over its range; "
                f"without the group_by control at most {MAX_BUCKETS} (use a wider bucket)"
            )


def decide_query(
    grants: Iterable[Grant],
    plan: QueryUse,
    desc: DatasetDescriptor,
    requester: Requester,
    home_node: str,
    purpose: str,
    now: str,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> Decision:
    """Pick the grant that permits this query, or refuse with the most useful reason."""
    level, floor = level_of(desc, plan.column_roles)

    def check(g: Grant) -> None:
        check_columns(g, _roles(desc, g, plan.column_roles))
        check_buckets(plan.buckets, g, ranges or {})
        if plan.is_raw and not floor.raw:
            raise PermissionDenied(f"{desc.name} is {level}: only aggregates may leave")
        for a in plan.aggregates:
            if a.func == "approx_count_distinct":
                _sketch_of_values(desc, g, a)
            if a.func not in EXTREMES or not a.columns:
                continue
            at = effective_level(desc, a.columns)
            if at not in ("L1", "L2") and not (g.uses_dp and a.func == "approx_quantile"):
                raise PermissionDenied(
                    f"{a.label} would show one record's value: {at} data allows extremes "
                    "only as DP quantiles (approx_quantile under a DP grant)"
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
                c
                for a in plan.aggregates
                if a.func != "count"
                for c in a.columns
                if specs[c].lower is None or specs[c].upper is None
            ]
            if unbounded:
                raise PermissionDenied(
                    f"column {unbounded[0]!r} has no declared bounds, so it cannot be "
                    "clamped and noised under DP"
                )

    grants = list(grants)
    g = choose(grants, desc, "query", requester, home_node, purpose, now, check)
    k = max(g.min_group_size, floor.min_group_size)
    if g.uses_dp:
        return Decision(g, k, g.dp_epsilon, dp_bounds(desc), level)
    sticky = level == "L2" and not plan.is_raw and not g.exact
    free = not any(
        c.uses_dp or c.max_uses
        for c in candidates(grants, desc.name, "query", requester, home_node)
    )
    return Decision(g, k, 0.0, None, level, sticky_noise=sticky, no_spend=free)
