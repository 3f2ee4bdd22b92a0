"""Differential privacy of a training run, applied by each owner to what it releases.

Under a DP grant the owner, not the home, adds the noise, under its own grant's epsilon
per release (as for a query), so no exact value of its rows leaves it:

- the statistics: features clamped to their declared bounds, moments taken about the
  bounds' midpoints (public), and Laplace noise on the count, the sums and the sums of
  squares, the epsilon split in three (under a grant's ``max_examples`` the sums' noise
  doubled: one row more or less swaps one row of the sample for another);
- each round's update: the change to the model clipped to an L1 norm of ``clip`` (the
  run's ``--dp``), then Laplace noise of scale 2 clip / epsilon on every weight. The clip
  bounds what the owner's whole data can change, so the guarantee holds for each owner's
  data as a whole, and so for each of its rows; the update is reported with a weight of
  one (FedAvg then averages owners equally: a row count would be one more exact release);
- no evaluation: a loss or an accuracy over the rows would be one more;
- nothing that depends on the rows decides whether the owner answers: the rows are
  clamped to their declared bounds, the home's standardisation is held to what those
  bounds allow (``bound_standardisation``), and a round that diverges answers the model
  it got (``Task.fit``'s ``stay_if_diverged``). A refusal after the rows were touched
  would be an answer of its own that no noise covers (a standardisation that overflows
  only on a row above some value reads that value, one bit a message, for free).

The noise is OpenDP's Laplace mechanism (``gateway.privacy.laplace_noise``), charged by
its own privacy map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from flwr.app import ConfigRecord
from numpy.typing import NDArray

from federation.training import features
from gateway.privacy import laplace_noise


def noisy_stats(
    X: NDArray[np.float64],
    bounds: Sequence[tuple[float, float]],
    epsilon: float,
    *,
    sampled: bool = False,
) -> tuple[features.Stats, float]:
    """The moments an owner releases under DP, and the epsilon charged. ``sampled``: the
    rows are a grant's ``max_examples`` pick, which one row more or less changes by a
    swap at most (one row out, one in): the count does not move, a sum of squares moves
    by at most one row's bound (both rows' lie in [0, half²]), but a sum by twice it, so
    its noise is doubled. It is the grant's setting, not whether this table has more
    rows than the limit: a scale that depended on the row count would tell of it."""
    lo = np.array([b[0] for b in bounds], dtype=np.float64)
    hi = np.array([b[1] for b in bounds], dtype=np.float64)
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    dev = np.clip(X, lo, hi) - mid
    part = epsilon / 3
    count_noise, e1 = laplace_noise(1, 1.0, part)
    swap = 2.0 if sampled else 1.0
    sum_noise, e2 = laplace_noise(len(mid), swap * float(half.sum()) or 1.0, part)
    sq_noise, e3 = laplace_noise(len(mid), float((half**2).sum()) or 1.0, part)
    count = max(1, round(X.shape[0] + count_noise[0]))
    total = dev.sum(axis=0) + np.array(sum_noise)
    squares = np.maximum((dev**2).sum(axis=0) + np.array(sq_noise), 0.0)
    return features.Stats(count, mid, total, squares), e1 + e2 + e3


# the home's std of an input may be no smaller than this share of the input's declared
# range: a row then stands at most 1/STD_SHARE ranges from the mean once standardised
STD_SHARE = 1e-3


def clamp_rows(
    X: NDArray[np.float64], bounds: Sequence[tuple[float, float]]
) -> NDArray[np.float64]:
    """Each model input clamped to its declared bounds (what the DP statistics assume)."""
    lo = np.array([b[0] for b in bounds], dtype=np.float64)
    hi = np.array([b[1] for b in bounds], dtype=np.float64)
    out: NDArray[np.float64] = np.clip(X, lo, hi)
    return out


def bound_standardisation(
    records: Sequence[ConfigRecord], bounds: Sequence[tuple[float, float]]
) -> None:
    """The home's mean and std in these settings, held in place to what the declared
    bounds allow: a mean within them, a std between ``STD_SHARE`` of their range and the
    range. It depends on the home's numbers and the bounds only: no row decides it. A
    mean or std of another length is left for the ClientApp to refuse (as it refuses
    any run whose settings do not fit its rows)."""
    lo = np.array([b[0] for b in bounds], dtype=np.float64)
    hi = np.array([b[1] for b in bounds], dtype=np.float64)
    span = np.maximum(hi - lo, 1e-12)
    for rec in records:
        mean, std = rec.get("mean"), rec.get("std")
        if not isinstance(mean, list) or not isinstance(std, list):
            continue
        if len(mean) != len(bounds) or len(std) != len(bounds):
            continue
        m = np.nan_to_num(np.asarray(mean, dtype=np.float64), nan=0.0)
        sd = np.nan_to_num(np.asarray(std, dtype=np.float64), nan=0.0)
        rec["mean"] = [float(v) for v in np.clip(m, lo, hi)]
        rec["std"] = [float(v) for v in np.clip(sd, span * STD_SHARE, span)]


def clip_l2(
    old: Sequence[NDArray[np.float64]], new: Sequence[NDArray[np.float64]], clip: float
) -> list[NDArray[np.float64]]:
    """``new`` with its change from ``old`` scaled to an L2 norm of at most ``clip``: what
    Flower's ``fixedclipping_mod`` does, applied by the owner from the signed spec (the
    home's central DP, ``--dp NOISE,CLIP``, counts on it)."""
    deltas = [n - o for o, n in zip(old, new, strict=True)]
    norm = float(np.sqrt(sum(float((d**2).sum()) for d in deltas)))
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    return [o + d * scale for o, d in zip(old, deltas, strict=True)]


def noisy_update(
    old: Sequence[NDArray[np.float64]],
    new: Sequence[NDArray[np.float64]],
    clip: float,
    epsilon: float,
) -> tuple[list[NDArray[np.float64]], float]:
    """``new`` with its change from ``old`` clipped to L1 ``clip`` and noised; the
    epsilon charged. ``epsilon`` 0 (an owner whose grant has no DP, in a run that asked
    for it): clipped only, so that every owner's update counts alike. A change that is
    not finite (a NaN, or new - old overflowing to infinity) is taken as no change, as a
    round that diverges answers the model it got: clipped, it would be NaN past the noise."""
    with np.errstate(over="ignore", invalid="ignore"):
        delta = np.concatenate([(n - o).ravel() for o, n in zip(old, new, strict=True)])
    if not np.isfinite(delta).all():
        delta = np.zeros_like(delta)
    norm = float(np.abs(delta).sum())
    if norm > clip:
        delta *= clip / norm
    charged = 0.0
    if epsilon > 0:
        noise, charged = laplace_noise(delta.size, 2 * clip, epsilon)
        delta += np.array(noise)
    out, at = [], 0
    for o in old:
        out.append(o + delta[at : at + o.size].reshape(o.shape))
        at += o.size
    return out, charged
