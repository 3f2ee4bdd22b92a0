"""An owner's DP releases of a training run (gateway/training/dp.py)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord

from gateway.training.dp import (
    STD_SHARE,
    bound_standardisation,
    clamp_rows,
    noisy_stats,
    noisy_update,
)

BIG = 1e6  # epsilon so large the noise is negligible: what is left is the clamping/clipping


def test_an_update_is_clipped_to_its_l1_bound_then_noised() -> None:
    old = [np.zeros((3, 1)), np.zeros(1)]
    new = [np.array([[3.0], [-4.0], [1.0]]), np.array([2.0])]  # L1 norm 10
    out, charged = noisy_update(old, new, clip=1.0, epsilon=BIG)
    delta = np.concatenate([o.ravel() for o in out])
    assert np.abs(delta).sum() == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(delta, np.array([3, -4, 1, 2]) / 10, atol=1e-3)
    assert [o.shape for o in out] == [(3, 1), (1,)]
    assert 0 < charged <= BIG


def test_the_noise_follows_epsilon() -> None:
    old, new = [np.zeros(2000)], [np.zeros(2000)]
    out, charged = noisy_update(old, new, clip=1.0, epsilon=0.5)
    # Laplace of scale 2 * clip / epsilon = 4: mean absolute value 4.
    assert 3.5 < float(np.abs(out[0]).mean()) < 4.5
    assert charged == pytest.approx(0.5, rel=1e-6)


def test_a_change_that_overflows_is_taken_as_none_not_released_as_nan() -> None:
    # -1e308 to 1e308 overflows to inf: clipped by clip / inf it was NaN past the noise.
    old = [np.array([[-1e308], [0.0], [0.0]])]
    new = [np.array([[1e308], [0.3], [0.2]])]
    for epsilon in (0.5, 0.0):
        out, _ = noisy_update(old, new, clip=1.0, epsilon=epsilon)
        assert np.isfinite(out[0]).all()
    out, _ = noisy_update(old, new, clip=1.0, epsilon=0.0)
    np.testing.assert_array_equal(out[0], old[0])  # no change: the model it got


def test_statistics_are_clamped_to_the_declared_bounds() -> None:
    X = np.array([[0.0, 5.0], [10.0, 5.0], [1e9, 5.0]])  # 1e9 is clamped to 10
    s, charged = noisy_stats(X, [(0.0, 10.0), (0.0, 10.0)], BIG)
    assert s.count == 3
    np.testing.assert_array_equal(s.shift, [5.0, 5.0])  # the public midpoints
    np.testing.assert_allclose(s.sum, [5.0, 0.0], atol=1e-3)  # (-5 + 5 + 5), (0 + 0 + 0)
    np.testing.assert_allclose(s.sumsq, [75.0, 0.0], atol=1e-3)
    assert charged <= BIG


def test_under_max_examples_the_sums_noise_covers_a_swap() -> None:
    """A ``max_examples`` sample changes by a swap (one row out, one in): a sum moves by
    up to twice one row's bound, so its noise is twice as wide; the count's is not."""
    X, bounds = np.zeros((10, 4000)), [(-1.0, 1.0)] * 4000
    plain, _ = noisy_stats(X, bounds, epsilon=3.0)
    sampled, charged = noisy_stats(X, bounds, epsilon=3.0, sampled=True)
    # epsilon 1 for the sums: Laplace of scale 4000 (half of 1 per input) or twice that
    assert 3500 < float(np.abs(plain.sum).mean()) < 4500
    assert 7000 < float(np.abs(sampled.sum).mean()) < 9000
    assert charged == pytest.approx(3.0, rel=1e-6)


def test_rows_are_clamped_to_their_declared_bounds() -> None:
    X = np.array([[-5.0, 0.5], [3.0, 2.0], [0.0, -1.0]])
    got = clamp_rows(X, [(-1.0, 1.0), (0.0, 1.0)])
    np.testing.assert_array_equal(got, [[-1.0, 0.5], [1.0, 1.0], [0.0, 0.0]])


def test_the_homes_standardisation_is_held_to_the_bounds() -> None:
    """A mean outside the bounds, a std of 1e-308 or of 1e300, a NaN: each held to what the
    bounds allow (a mean within them, a std from 1/1000 of the range to the range); a
    mean or std of another length is left alone (the ClientApp refuses it)."""
    bounds = [(-100.0, 100.0), (0.0, 1.0), (5.0, 5.0)]
    rec = ConfigRecord({"mean": [-500.0, 0.3, 5.0], "std": [1e-308, 1e300, 0.0]})
    bound_standardisation([rec], bounds)
    assert rec["mean"] == [-100.0, 0.3, 5.0]
    assert rec["std"] == pytest.approx([200.0 * STD_SHARE, 1.0, 1e-12 * STD_SHARE])
    odd = ConfigRecord({"mean": [1e9], "std": [1e-308]})
    bound_standardisation([odd], bounds)
    assert odd["mean"] == [1e9] and odd["std"] == [1e-308]
    nan = ConfigRecord({"mean": [float("nan"), 0.5, 5.0], "std": [float("nan"), 0.5, 1.0]})
    bound_standardisation([nan], bounds)
    assert nan["mean"][0] == 0.0 and nan["std"][0] == pytest.approx(200.0 * STD_SHARE)
