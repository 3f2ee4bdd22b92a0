"""DP quantiles that merge: noisy histograms over fixed bins, added at the home.

A DP quantile cannot be merged from the owners' DP quantiles, so each owner releases a
*histogram* of the column per group over ``bins`` equal bins spanning its declared bounds
[lower, upper] (values clamped into them first), each count noised with OpenDP's Laplace
mechanism (``gateway.dp_quantiles``). The home adds the owners' noisy histograms bin by bin
and takes the quantile from the sum with OpenDP's ``make_quantiles_from_counts``
(interpolating linearly inside the bin): post-processing, which spends no budget.

What travels is one state per group: a 24-byte header (magic, number of bins, lower,
upper) then one signed 64-bit count per bin. Owners whose declared bounds differ cannot be
merged: the histogram states say so and the merge refuses them.

Owners decide under their own grants, so one owner may answer a quantile with a noisy
histogram (DP) and another with a KLL sketch (``federation.sketches``). The quantile
state of a group is then either; ``merge_quantile_states`` takes both: without a
histogram it merges the sketches, with one it bins each sketch over the histogram's bins
(its CDF at the edges, times its count) and adds everything as histograms.

Error of the answer, for n rows behind it, O owners and noise scale s = 1 / epsilon:
the bin width (upper - lower) / bins in value (at most; linear interpolation inside a bin
does better on smooth data), plus a rank error from the noise of about
sqrt(2 * O * bins) * s / n (the standard deviation of the sum of the bins' noise up to the
quantile, as a share of n): with 5 owners, 128 bins and epsilon 1, 36 / n.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from federation import sketches
from federation.dp_lib import opendp

DEFAULT_BINS = 128
MAX_BINS = 4096
MAX_COUNT = 1 << 53  # one bin's count, in absolute value: sums of many stay exact
_MAGIC = b"FQH1"
_HEADER = struct.Struct("<4sIdd")


class HistError(ValueError):
    """Bytes that are not a noisy histogram, or histograms that do not merge."""


class Hist(NamedTuple):
    lower: float
    upper: float
    counts: np.ndarray  # int64, one per bin


def check_bounds(lower: float, upper: float, bins: int) -> None:
    if not (math.isfinite(lower) and math.isfinite(upper) and lower < upper):
        raise HistError("a DP quantile needs finite declared bounds, lower below upper")
    if not math.isfinite(upper - lower):  # its bins' arithmetic would overflow on a row
        raise HistError("a DP quantile's bounds are wider apart than a double holds")
    if not 1 <= bins <= MAX_BINS:
        raise HistError(f"a DP quantile's histogram has 1 to {MAX_BINS} bins")


def edges(lower: float, upper: float, bins: int) -> list[float]:
    """The bins' edges: ``bins + 1`` of them, evenly spaced from lower to upper."""
    check_bounds(lower, upper, bins)
    return [float(e) for e in np.linspace(lower, upper, bins + 1)]


def bin_index(values: np.ndarray, lower: float, upper: float, bins: int) -> np.ndarray:
    """Each value's bin, values clamped into [lower, upper] first (upper itself falls in
    the last bin, NaN too: SQL sorts NaN above every number). One row, one bin: a row
    changes one count by one, which is what bounds the histogram's sensitivity."""
    check_bounds(lower, upper, bins)
    clamped = np.clip(np.nan_to_num(values, nan=upper), lower, upper)
    index = np.floor((clamped - lower) / (upper - lower) * bins).astype(np.int64)
    return np.minimum(index, bins - 1)


def _check_counts(counts: np.ndarray) -> None:
    if counts.size and (int(counts.min()) < -MAX_COUNT or int(counts.max()) > MAX_COUNT):
        raise HistError("a histogram count is out of range")


def state_bytes(bins: int = DEFAULT_BINS) -> int:
    """The size of one histogram state: fixed by its bins, whatever its counts."""
    return _HEADER.size + 8 * bins


def encode(lower: float, upper: float, counts: np.ndarray) -> bytes:
    check_bounds(lower, upper, len(counts))
    counts = np.asarray(counts, dtype=np.int64)
    _check_counts(counts)
    return _HEADER.pack(_MAGIC, counts.size, lower, upper) + counts.astype("<i8").tobytes()


def decode(data: object) -> Hist:
    """A peer's histogram state, every field checked, or HistError."""
    if not isinstance(data, bytes) or len(data) < _HEADER.size:
        raise HistError("a histogram state must be bytes with a header")
    magic, bins, lower, upper = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise HistError("not a histogram state")
    check_bounds(lower, upper, bins)
    if len(data) != _HEADER.size + 8 * bins:
        raise HistError("a histogram state's size does not match its bins")
    counts = np.frombuffer(data, "<i8", bins, _HEADER.size).astype(np.int64)
    _check_counts(counts)
    return Hist(lower, upper, counts)


def merge_hists(states: Iterable[object]) -> bytes | None:
    """The bin-by-bin sum of histogram states (None skipped; None if there are none).
    Exact: the counts are integers."""
    total: Hist | None = None
    for data in states:
        if data is None:
            continue
        hist = decode(data)
        if total is None:
            total = hist
        elif (hist.lower, hist.upper, hist.counts.size) != (
            total.lower,
            total.upper,
            total.counts.size,
        ):
            raise HistError(
                "owners declared different bounds or bins for this column's DP quantile"
            )
        else:  # both within 2^53: the sum cannot wrap, and is checked again
            total = Hist(total.lower, total.upper, total.counts + hist.counts)
            _check_counts(total.counts)
    if total is None:
        return None
    return encode(total.lower, total.upper, total.counts)


def hist_quantile(data: object, q: float) -> float | None:
    """The q-quantile from a (merged) noisy histogram: negative noisy counts read as 0,
    then OpenDP's quantile from counts, linear inside the bin. None when nothing is left
    (every count at or below 0)."""
    if not 0.0 <= q <= 1.0:
        raise HistError("a quantile's fraction must be between 0 and 1")
    hist = decode(data)
    counts = np.maximum(hist.counts, 0).astype(np.float64)
    if counts.sum() <= 0:
        return None
    if q == 0.0:  # OpenDP divides 0 by 0 here when the first bin is empty
        first = int(np.flatnonzero(counts)[0])
        return edges(hist.lower, hist.upper, hist.counts.size)[first]
    post = _post(hist.lower, hist.upper, hist.counts.size, q)
    return float(post(counts)[0])  # a numpy array crosses into OpenDP faster than a list


@functools.lru_cache(maxsize=64)
def _post(lower: float, upper: float, bins: int, q: float) -> Any:
    """OpenDP's quantile-from-counts function for these bins and fraction (made once: a
    query asks it for every group)."""
    dp = opendp()
    return dp.t.make_quantiles_from_counts(
        edges(lower, upper, bins), alphas=[q], interpolation="linear"
    )


def _per_group(
    gid: np.ndarray,
    states: pa.Array | pa.ChunkedArray,
    groups: int,
    merge: Callable[[list[object]], bytes | None],
) -> pa.Array:
    """Per group number (0 to groups - 1), ``merge`` of the states in its rows."""
    column = states.to_pylist()
    gid = np.asarray(gid, dtype=np.int64)
    if gid.shape != (len(column),) or (gid.size and (gid.min() < 0 or gid.max() >= groups)):
        raise HistError("group numbers must be one per row, from 0 to groups - 1")
    rows: list[list[object]] = [[] for _ in range(groups)]
    for g, state in zip(gid.tolist(), column, strict=True):
        rows[g].append(state)
    return pa.array([merge(r) for r in rows], pa.binary())


def merge_groups(gid: np.ndarray, states: pa.Array | pa.ChunkedArray, groups: int) -> pa.Array:
    """Per group number (0 to groups - 1), the sum of the histogram states in its rows."""
    return _per_group(gid, states, groups, merge_hists)


def hist_quantiles(states: pa.Array | pa.ChunkedArray, q: float) -> pa.Array:
    """The q-quantile of each group's merged histogram (NULL where none is left)."""
    return pa.array(
        [None if s is None else hist_quantile(s, q) for s in states.to_pylist()], pa.float64()
    )


# --- a quantile state: a KLL sketch (no DP) or a noisy histogram (DP) ----------------------


def is_hist(data: object) -> bool:
    """Whether a quantile state is a histogram (else it is a KLL sketch: their first bytes
    differ, a KLL sketch starts with its preamble size, 2 or 5)."""
    return isinstance(data, bytes) and data[: len(_MAGIC)] == _MAGIC


def check_quantile_state(data: object) -> None:
    """A peer's quantile state, a histogram or a KLL sketch, checked: HistError or
    ``sketches.SketchError`` (both ValueErrors) if it is neither."""
    if is_hist(data):
        decode(data)
    else:
        sketches.check_kll(data)


def hist_from_kll(data: object, lower: float, upper: float, bins: int) -> bytes:
    """A KLL sketch as counts over ``bins`` equal bins from lower to upper, values outside
    clamped into the end bins as an owner's histogram does: the sketch's CDF at the inner
    edges times its count, rounded (within the sketch's rank error of the true counts)."""
    n = sketches.kll_count(data)
    counts = np.zeros(bins, np.int64)
    if n:
        inner = edges(lower, upper, bins)[1:-1]
        sketch = sketches.kll_sketch(data)
        cdf = np.array([0.0, *(sketch.get_cdf(inner) if inner else [1.0])[:-1], 1.0])
        cumulative = np.round(cdf * n).astype(np.int64)
        counts = np.diff(cumulative)
    return encode(lower, upper, counts)


def merge_quantile_states(states: Iterable[object]) -> bytes | None:
    """One group's quantile states merged: KLL sketches into a sketch; with any histogram,
    everything as histograms over its bins (None skipped; None if there are none)."""
    present = [s for s in states if s is not None]
    if not present:
        return None
    hists = [s for s in present if is_hist(s)]
    if not hists:
        return sketches.merge_kll(present)
    first = decode(hists[0])
    bins = first.counts.size
    return merge_hists(
        s if is_hist(s) else hist_from_kll(s, first.lower, first.upper, bins) for s in present
    )


def merge_quantile_groups(
    gid: np.ndarray, states: pa.Array | pa.ChunkedArray, groups: int
) -> pa.Array:
    """Per group number (0 to groups - 1), ``merge_quantile_states`` of its rows."""
    return _per_group(gid, states, groups, merge_quantile_states)


def state_quantiles(
    states: pa.Array | pa.ChunkedArray, q: float, value_type: pa.DataType | None = None
) -> pa.Array:
    """Each group's q-quantile from its merged quantile state (NULL for none or empty),
    as float64 or in ``value_type`` (a histogram's interpolated value is rounded to it)."""
    values = [
        None if s is None else hist_quantile(s, q) if is_hist(s) else sketches.kll_quantile(s, q)
        for s in states.to_pylist()
    ]
    floats = pa.array(values, pa.float64())
    return floats if value_type is None else sketches.as_type(floats, value_type)
