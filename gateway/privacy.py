"""Disclosure control at the source: suppression of small groups and DP noise.

(Filters use numpy masks, not pyarrow.compute, whose kernels try to import the missing
optional ``dateutil`` on every call.)

Noise comes from OpenDP's Laplace mechanism, and the epsilon a release costs is what
OpenDP's privacy map says for the declared sensitivity, not a number we compute. Values
were clamped to the declared column bounds in the owner's SQL, which is what bounds the
sensitivity. The unit of privacy is one row of the dataset.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import pyarrow as pa

from federation.partials import ROWS


@functools.cache
def _dp():  # type: ignore[no-untyped-def]
    """Import OpenDP lazily: it costs start-up time and only DP releases need it."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


@dataclass(frozen=True)
class Released:
    table: pa.Table
    suppressed: int  # groups withheld for being under the minimum size
    epsilon: float  # spent by this release (0 without DP)


def suppress(table: pa.Table, k: int) -> Released:
    """Withhold groups with 0 < n < k rows (an empty global aggregate reveals no one), and
    groups where an aggregated column has values from 0 < c < k rows: an AVG over 10 rows
    of which one has a wage would otherwise be that person's wage."""
    if table.num_rows == 0 or ROWS not in table.column_names:
        return Released(table, 0, 0.0)
    n = table.column(ROWS).to_numpy()
    keep = (n >= k) | (n == 0)
    for name in table.column_names:
        if name.startswith("__c_"):
            c = table.column(name).to_numpy()
            keep &= (c >= k) | (c == 0)
    kept = table.filter(pa.array(keep))
    return Released(kept, table.num_rows - kept.num_rows, 0.0)


def _sensitivity(kind: str, bounds: tuple[float, float] | None) -> float:
    """How much one row can change this state (add/remove one row)."""
    if kind in ("n", "c"):
        return 1.0
    lo, hi = bounds or (0.0, 0.0)
    m = max(abs(lo), abs(hi))
    return m if kind == "s" else m * m


def _laplace_within(dp, space, sens: float, share: float):  # type: ignore[no-untyped-def]
    """The Laplace measurement whose charged epsilon (OpenDP's map, rounded up) is at
    most ``share``: the scale goes up an ulp at a time until the map fits, so ten
    releases of 0.1 fit a budget of 1.0 exactly instead of overrunning it by ulps."""
    scale = sens / share
    for _ in range(64):
        meas = dp.m.make_laplace(*space, scale=scale)
        if meas.map(sens) <= share:
            return meas
        scale = math.nextafter(scale, math.inf)
    raise ValueError(f"no Laplace scale charges at most {share!r}")


def _added(value: float, times: int) -> float:
    total = 0.0
    for _ in range(times):
        total += value
    return total


def add_noise(
    table: pa.Table, *, epsilon: float, k: int, clamp: dict[str, tuple[float, float]]
) -> Released:
    """Add Laplace noise to every state column, split epsilon evenly, then threshold.

    Each row of the dataset falls in one group, so within one state column the groups
    compose in parallel; the state columns compose sequentially.
    """
    dp = _dp()
    noisy_cols = [c for c in table.column_names if c.startswith("__")]
    share = epsilon / len(noisy_cols)
    # The charges are added one by one below; rounded addition is monotone, so charges of
    # at most ``share`` each cannot add up to more than ``epsilon`` once this holds.
    while _added(share, len(noisy_cols)) > epsilon:
        share = math.nextafter(share, 0.0)
    spent = 0.0
    columns: dict[str, pa.Array] = {c: table.column(c) for c in table.column_names}
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
    for name in noisy_cols:
        kind, _, column = name[2:].partition("_") if name != ROWS else ("n", "", "")
        sens = _sensitivity(kind, clamp.get(column))
        values = [float(v or 0.0) for v in table.column(name).to_pylist()]
        if not values:
            spent += share
            continue
        if sens == 0:
            spent += share
            continue
        meas = _laplace_within(dp, space, sens, share)
        eps = meas.map(sens)
        noisy = meas(values)
        spent += eps
        if kind in ("n", "c"):
            columns[name] = pa.array([max(0, round(v)) for v in noisy], pa.int64())
        else:
            columns[name] = pa.array(noisy, pa.float64())
    # Variance travels as M2 from here on (in the noisy sum of squares' place); the
    # noisy sums of squares themselves stay at the owner.
    ordered: dict[str, pa.Array] = {}
    for name in table.column_names:
        if not name.startswith("__q_"):
            ordered[name] = columns[name]
            continue
        column = name[4:]
        c = columns[f"__c_{column}"].to_pylist()
        s = columns[f"__s_{column}"].to_pylist()
        q = columns[name].to_pylist()
        ordered[f"__m2_{column}"] = pa.array(
            [
                max(0.0, qi - si * si / ci) if ci else 0.0
                for qi, si, ci in zip(q, s, c, strict=True)
            ],
            pa.float64(),
        )
    columns = ordered
    released = pa.table(columns)
    kept = released.filter(pa.array(released.column(ROWS).to_numpy() >= k))
    return Released(kept, released.num_rows - kept.num_rows, spent)
