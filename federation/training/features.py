"""Features computed across owners without raw values leaving them.

Standardisation: each owner releases, per column, its row count, its own mean rounded to
a float (the ``shift``) and the sum and sum of squares of its values minus that shift
(``local_stats``); the home moves every owner's sums to one common shift and adds them
(``combine``). This is numpy's two-pass computation spread over owners: the deviations
are taken from a nearby value, so nothing is lost to cancellation when a column's mean is
large against its spread, and the pooled mean and population std equal numpy's on the
pooled rows to about 1e-15 relative. What it discloses is what (count, sum, sum of
squares) would: the three are computable from each other.

Categorical columns become one-hot blocks over
the catalog's declared categories (a value outside them: all zeros), and class names
become class indices (a name outside the declared classes is refused).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from federation.training.errors import invalid

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

MIN_STD = 1e-12  # below this (relative to max(1, |mean|)) a column counts as constant


@dataclass(frozen=True)
class Stats:
    """One owner's per-column moments about its own mean: what it releases."""

    count: int
    shift: FloatArray  # the owner's mean per column (0 when it has no rows)
    sum: FloatArray  # sum of (x - shift): zero up to rounding, kept for exactness
    sumsq: FloatArray  # sum of (x - shift)^2


def local_stats(X: NDArray[np.generic]) -> Stats:
    """Count, mean, and sum and sum of squares about that mean, per column of the rows."""
    Xf = np.asarray(X, dtype=np.float64)
    if Xf.ndim != 2:
        raise invalid("features must be a table of rows and columns")
    if not np.isfinite(Xf).all():
        raise invalid("a feature value is missing or not finite")
    if Xf.shape[0] == 0:
        zeros = np.zeros(Xf.shape[1])
        return Stats(0, zeros, zeros.copy(), zeros.copy())
    shift = Xf.mean(axis=0)
    dev = Xf - shift
    return Stats(Xf.shape[0], shift, dev.sum(axis=0), np.einsum("ij,ij->j", dev, dev))


def combine(stats: Iterable[Stats], *, min_std: float = MIN_STD) -> tuple[FloatArray, FloatArray]:
    """Pooled mean and population std (ddof 0) of every column; constant columns get 1.

    Each owner's sums are moved to the shift of the largest owner c (for d = shift - c:
    sum + n d, and sumsq + 2 d sum + n d^2), added, and read as mean = c + S / N and
    var = Q / N - (S / N)^2. A std of 1 for a constant column maps it to 0 after
    centring, rather than dividing by a rounding error.
    """
    parts = [s for s in stats if s.count > 0]
    if not parts:
        raise invalid("no owner has rows to standardise")
    width = parts[0].shift.shape
    if any(a.shape != width for s in parts for a in (s.shift, s.sum, s.sumsq)):
        raise invalid("owners' statistics cover different numbers of columns")
    c = max(parts, key=lambda s: s.count).shift
    n = sum(s.count for s in parts)
    total = np.zeros(width)
    squares = np.zeros(width)
    for s in parts:
        d = s.shift - c
        total += s.sum + s.count * d
        squares += s.sumsq + 2.0 * d * s.sum + s.count * d * d
    mean_dev = total / n
    std = np.sqrt(np.maximum(squares / n - mean_dev**2, 0.0))
    mean = c + mean_dev
    constant = std <= min_std * np.maximum(1.0, np.abs(mean))
    return mean, np.where(constant, 1.0, std)


def standardise(X: NDArray[np.generic], mean: FloatArray, std: FloatArray) -> FloatArray:
    """(X - mean) / std, column by column."""
    Xf = np.asarray(X, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    if Xf.ndim != 2 or mean.shape != (Xf.shape[1],) or std.shape != mean.shape:
        raise invalid(
            f"standardising {Xf.shape[1] if Xf.ndim == 2 else '?'} columns needs as many "
            f"means and stds, not {mean.size} and {std.size}"
        )
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise invalid("standardisation needs finite means and positive stds")
    out: FloatArray = (Xf - mean) / std
    return out


def one_hot(values: Any, categories: Sequence[Any]) -> FloatArray:
    """One column per declared category; a null or undeclared value is all zeros."""
    idx = _index_in(values, categories, "category")
    out = np.zeros((len(idx), len(categories)))
    valid = idx >= 0
    out[np.nonzero(valid)[0], idx[valid]] = 1.0
    return out


def label_index(values: Any, classes: Sequence[Any]) -> IntArray:
    """Class indices of label values against the declared classes (in their order)."""
    idx = _index_in(values, classes, "class")
    if (idx < 0).any():
        raise invalid("a label is missing or is not one of the declared classes")
    return idx


def encode(
    columns: Mapping[str, Any],
    numeric: Sequence[str],
    categorical: Mapping[str, Sequence[Any]] | None = None,
) -> FloatArray:
    """The feature matrix: numeric columns in order, then each categorical's one-hot block.

    ``columns`` maps names to Arrow arrays or sequences; a null numeric value is refused
    (filter or impute before), as is a column that is named but absent.
    """
    import pyarrow as pa  # the encoders run at an owner, where Arrow is loaded; a run's
    import pyarrow.compute as pc  # server process (statistics only) starts ~0.1 s sooner

    blocks: list[FloatArray] = []
    for name in numeric:
        arr = _arrow(_column(columns, name))
        if not _numeric(arr.type):  # by its type alone: see ``_numeric``
            raise invalid(f"feature {name!r} is not numeric")
        if arr.null_count:
            raise invalid(f"numeric feature {name!r} has missing values")
        as_float = pc.cast(arr, pa.float64(), safe=False)  # rounds; never refuses a value
        blocks.append(np.asarray(as_float.to_numpy(), dtype=np.float64))
    for name, cats in (categorical or {}).items():
        blocks.append(one_hot(_column(columns, name), cats))
    if not blocks:
        raise invalid("a model needs at least one feature")
    return np.column_stack(blocks)


def _numeric(kind: Any) -> bool:
    """Whether a column of this Arrow type is a number (a bool counts as 0 and 1). Decided
    by the type, never the values: Arrow's safe cast refused an integer above 2**53 (not
    exact in float64) or a string that is no number, so whether an owner answered told
    of one row's value, under differential privacy too (review, 2026-12-04)."""
    import pyarrow as pa

    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_boolean(kind)
    )


def feature_names(
    numeric: Sequence[str], categorical: Mapping[str, Sequence[Any]] | None = None
) -> list[str]:
    """Names of ``encode``'s columns: numeric names, then ``column=category``."""
    names = list(numeric)
    for name, cats in (categorical or {}).items():
        names.extend(f"{name}={c}" for c in cats)
    return names


def _column(columns: Mapping[str, Any], name: str) -> Any:
    if name not in columns:
        raise invalid(f"feature {name!r} is not among the loaded columns")
    return columns[name]


def _arrow(values: Any) -> Any:
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    return pa.array(values.tolist() if isinstance(values, np.ndarray) else list(values))


def _index_in(values: Any, declared: Sequence[Any], what: str) -> IntArray:
    """Position of each value in ``declared`` (-1 for null or undeclared)."""
    if len(set(declared)) != len(declared) or not declared:
        raise invalid(f"the declared {what} list must be non-empty and without repeats")
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _arrow(values)
    value_set = pa.array(list(declared))
    if arr.type != value_set.type:
        try:
            arr = pc.cast(arr, value_set.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise invalid(f"values cannot be compared with the declared {what} list") from e
    found = pc.index_in(arr, value_set=value_set).fill_null(-1)
    out: IntArray = np.asarray(found.to_numpy(), dtype=np.int64)
    return out
