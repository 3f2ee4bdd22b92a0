"""Disclosure control at the source: suppression of small groups and DP noise.

(Filters use numpy masks, not pyarrow.compute, whose kernels try to import the missing
optional ``dateutil`` on every call.)

Noise comes from OpenDP's Laplace mechanism, and the epsilon a release costs is what
OpenDP's privacy map says for the declared sensitivity, not a number we compute. Values
were clamped to the declared column bounds in the owner's SQL, which is what bounds the
sensitivity. The unit of privacy is one row of the dataset.

Every noised sum is released as float64, whatever the column's type: an integer or a
decimal sum (decimal128(38, s)) included. Once noised it is not exact, so the exact
digits of a decimal would promise what it is not; the home merges it with the other
owners' sums as float64.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import pyarrow as pa

from federation.dp_hist import state_bytes
from federation.dp_lib import laplace_within, opendp
from federation.partials import squares_to_m2
from federation.sql import (
    COUNT_KINDS,
    ROWS,
    Kind,
    QueryPlan,
    StateColumn,
    row_counts,
    state_columns,
)
from gateway.dp_quantiles import noisy_histograms
from gateway.errors import FailedPrecondition, InvalidArgument, NoisedTooLarge


@dataclass(frozen=True)
class Released:
    table: pa.Table
    suppressed: int  # groups withheld for being under the minimum size
    epsilon: float  # spent by this release (0 without DP)


def suppress(
    table: pa.Table, k: int, *, keep_empty: bool = True, per_value: Collection[str] = ()
) -> Released:
    """Withhold groups with 0 < n < k rows, and groups where an aggregated column has
    values from 0 < c < k rows: an AVG over 10 rows of which one has a wage would
    otherwise be that person's wage. A total over no rows (only a global aggregate has
    one) is kept with ``keep_empty``; without, it is withheld like one over a few: "0"
    beside a withheld "1" would say whether the one entity a condition describes exists.
    The row counts named in ``per_value`` are left to their own check (the L2 noise
    withholds such a value, not its group)."""
    if table.num_rows == 0 or ROWS not in table.column_names:
        return Released(table, 0, 0.0)
    n = table.column(ROWS).to_numpy()
    keep = (n >= k) | ((n == 0) & keep_empty)
    for name in row_counts(table.column_names):
        if name in per_value:
            continue
        c = table.column(name).to_numpy()
        keep &= (c >= k) | (c == 0)
    kept = table.filter(pa.array(keep))
    return Released(kept, table.num_rows - kept.num_rows, 0.0)


def _sensitivity(
    state: StateColumn, clamp: dict[str, tuple[float, float]], plan: QueryPlan
) -> float:
    """How much one row can change this state (add/remove one row): 1 for a count; the
    largest clamped magnitude m for a sum, m * m for a sum of squares (m from the value's
    interval: a column's bounds, or what they imply for an expression)."""
    if state.kind in COUNT_KINDS:
        return 1.0
    bounds = plan.bounds_of(state.column, clamp) if state.column is not None else None
    if bounds is None:  # never released without noise: decide refuses unbounded values
        raise FailedPrecondition(
            f"{state.column!r} has no declared bounds, so it cannot be noised under DP"
        )
    lo, hi = bounds
    m = max(abs(lo), abs(hi))
    return m if state.kind is Kind.SUM else m * m


def _named(plan: QueryPlan, state: StateColumn) -> str:
    """The aggregate a state serves, as the user wrote it (``sum(x * 2)``)."""
    call = next((c for c in plan.aggregates if c.column == state.column), None)
    return call.label if call is not None else repr(state.column)


def _added(value: float, times: int) -> float:
    total = 0.0
    for _ in range(times):
        total += value
    return total


def add_noise(
    table: pa.Table,
    plan: QueryPlan,
    *,
    epsilon: float,
    k: int,
    clamp: dict[str, tuple[float, float]],
    max_bytes: int | None = None,
) -> Released:
    """Add Laplace noise to every state column, split epsilon evenly, then threshold.

    ``table`` is the owner's partial for ``plan`` under DP (``state_columns(plan,
    dp=True)`` after the group keys). Each row of the dataset falls in one group, so
    within one state column the groups compose in parallel; the state columns compose
    sequentially. Variance leaves as M2 (``squares_to_m2``), never as a sum of squares.
    A quantile's noisy histograms are drawn for the groups the noisy row count keeps
    only (the others are never released: the same release, for their cost alone); when
    those would not fit ``max_bytes`` (a histogram's size is fixed by its bins), the noise
    drawn so far decides it and ``NoisedTooLarge`` says so, its epsilon to be spent.
    """
    dp = opendp()
    states = state_columns(plan, dp=True)
    share = epsilon / len(states)
    # The charges are added one by one below; rounded addition is monotone, so charges of
    # at most ``share`` each cannot add up to more than ``epsilon`` once this holds.
    while _added(share, len(states)) > epsilon:
        share = math.nextafter(share, 0.0)
    spent = 0.0
    columns: dict[str, pa.Array | pa.ChunkedArray] = {c: table.column(c) for c in plan.group_by}
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
    quantiles = [s for s in states if s.kind is Kind.QHIST]
    for state in states:
        columns[state.name] = table.column(state.name)
        if state.kind is Kind.QHIST:  # drawn below, for the groups kept
            continue
        sens = _sensitivity(state, clamp, plan)
        # A decimal sum too (Decimal -> float): noised and released as float64.
        values = [float(v or 0.0) for v in table.column(state.name).to_pylist()]
        if not values or sens == 0:
            # Every value is 0: released as 0 whether rows had a value or not (a NULL
            # beside a 0 would tell which, at no noise).
            whole = state.kind in COUNT_KINDS  # a count stays a whole count (check_partial)
            columns[state.name] = pa.array(
                [round(v) for v in values] if whole else values,
                pa.int64() if whole else pa.float64(),
            )
            spent += share
            continue
        if not math.isfinite(sens / share):  # never an OpenDP error from deep inside
            raise InvalidArgument(
                f"{_named(plan, state)} under DP: no finite bound on what one row adds "
                "(its noise would be infinite)"
            )
        meas, eps, _ = laplace_within(space, sens, share)
        noisy = meas(values)
        spent += eps
        if state.kind in COUNT_KINDS:
            columns[state.name] = pa.array([max(0, round(v)) for v in noisy], pa.int64())
        else:
            columns[state.name] = pa.array(noisy, pa.float64())
    kept = pa.table(columns).filter(pa.array(columns[ROWS].to_numpy() >= k))
    fits = max_bytes is None or kept.num_rows * len(quantiles) * state_bytes() <= max_bytes
    if not fits:  # a histogram's size is fixed by its bins: known before any is drawn
        raise NoisedTooLarge("the noised quantiles are over the message limit")
    for state in quantiles:  # quantiles: a noisy histogram over the bounds
        lo, hi = plan.bounds_of(state.column or "", clamp) or (0.0, 0.0)
        hist = noisy_histograms(kept.column(state.name), lower=lo, upper=hi, epsilon=share)
        at = kept.schema.get_field_index(state.name)
        kept = kept.set_column(at, state.name, hist.states)
        spent += hist.epsilon
    return Released(squares_to_m2(plan, kept), table.num_rows - kept.num_rows, spent)


def laplace_noise(n: int, sensitivity: float, epsilon: float) -> tuple[list[float], float]:
    """``n`` Laplace draws for values that one row changes by at most ``sensitivity``,
    each under ``epsilon`` (OpenDP's map, rounded up), and the epsilon charged. For
    releases where the owner holds no plain value to noise (a PSI count, a join's masked
    sums: the noise is added to what it does hold)."""
    if n == 0:
        return [], 0.0
    if sensitivity <= 0 or not math.isfinite(sensitivity / epsilon):
        raise InvalidArgument("no finite bound on what one row adds: its noise would be infinite")
    dp = opendp()
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
    meas, charge, _ = laplace_within(space, sensitivity, epsilon)
    return list(meas([0.0] * n)), charge
