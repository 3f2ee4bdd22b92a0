"""The owner's DP quantile release: a noisy histogram per group, merged at the home.

Under a DP grant an owner does not release a sketch (its retained items are rows'
values) but, per group, the counts of the column's values in ``bins`` equal bins over its
declared bounds, each count plus discrete Laplace noise from OpenDP
(``federation.dp_hist`` holds the format, the merge and the home's quantile).

Privacy, in the unit of ``gateway.privacy`` (adding or removing one row): a row falls in
one group and, clamped into the bounds, in one bin, so it changes the vector of every
group's counts by one in one place: an L1 sensitivity of 1 for the whole vector, groups
and bins together. One Laplace measurement over that vector costs what OpenDP's privacy
map says for a distance of 1, at most the ``epsilon`` asked for, however many groups
(parallel composition, proved by the map rather than assumed). The quantile the home
takes from it is post-processing: free. Which groups appear is the rest of the release's
business (``gateway.privacy.add_noise`` thresholds the noisy row count), as for any DP
state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from federation.dp_hist import DEFAULT_BINS, HistError, bin_index, check_bounds, encode
from federation.dp_lib import laplace_within, opendp
from federation.sketches import SketchError, flatten_lists
from gateway.errors import InvalidArgument


@dataclass(frozen=True)
class NoisyHistograms:
    states: pa.Array  # binary: one ``federation.dp_hist`` state per group, in order
    epsilon: float  # charged: OpenDP's privacy map at distance 1, at most the epsilon asked
    scale: float  # of the discrete Laplace noise on each count


def _numbers(values: pa.Array) -> np.ndarray:
    kind = values.type
    if pa.types.is_dictionary(kind):
        return _numbers(values.dictionary_decode())
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return np.asarray(values.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False))
    raise InvalidArgument(f"a DP quantile is taken of a numeric column, not of type {kind}")


# Counts below this are noised as 32-bit integers: OpenDP samples them 2.5x faster than
# 64-bit ones, and the margin left to 2^31 is beyond any noise at a sane epsilon (past it
# OpenDP's sum saturates: accuracy, not privacy, would suffer).
_I32_SAFE = 1 << 30


def noisy_histograms(
    values: pa.Array | pa.ChunkedArray,
    *,
    lower: float,
    upper: float,
    epsilon: float,
    bins: int = DEFAULT_BINS,
) -> NoisyHistograms:
    """One noisy histogram per list of values (``list(x)`` per group from the owner's
    SQL; NULL values skipped, a NULL list counts as an empty group), over ``bins`` equal
    bins from ``lower`` to ``upper`` (the column's declared bounds), for ``epsilon``."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise InvalidArgument("a DP quantile needs a positive, finite epsilon")
    try:
        check_bounds(lower, upper, bins)
        offsets, child, missing = flatten_lists(values)
    except (HistError, SketchError) as exc:
        raise InvalidArgument(str(exc)) from None
    groups = len(missing)
    sizes = np.diff(offsets)
    gid = np.repeat(np.arange(groups, dtype=np.int64), sizes)
    cells = gid * bins + bin_index(_numbers(child), lower, upper, bins)
    counts = np.bincount(cells, minlength=groups * bins).astype(np.int64)
    small = counts.size == 0 or int(counts.max()) < _I32_SAFE
    kind = "i32" if small else "i64"
    dp = opendp()
    space = dp.vector_domain(dp.atom_domain(T=kind)), dp.l1_distance(T=kind)
    try:
        meas, charge, scale = laplace_within(space, 1, epsilon)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    noisy = np.asarray(meas(counts.tolist()) if counts.size else [], dtype=np.int64)
    states = [encode(lower, upper, noisy[g * bins : (g + 1) * bins]) for g in range(groups)]
    return NoisyHistograms(pa.array(states, pa.binary()), charge, scale)
