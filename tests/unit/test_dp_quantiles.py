"""DP quantiles: each owner releases a noisy histogram (OpenDP's discrete Laplace over
counts with L1 sensitivity 1), the home adds them and takes the quantile from the sum.
The truth (bins, quantiles) comes from DuckDB on the pooled rows."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from federation.dp_hist import (
    DEFAULT_BINS,
    HistError,
    check_quantile_state,
    decode,
    encode,
    hist_from_kll,
    hist_quantile,
    hist_quantiles,
    is_hist,
    merge_groups,
    merge_hists,
    merge_quantile_groups,
    merge_quantile_states,
    state_quantiles,
)
from federation.sketches import KLL_K, group_lists, kll_sketches, merge_kll
from gateway.dp_quantiles import noisy_histograms
from gateway.errors import InvalidArgument

OWNERS = 5


def _rng() -> np.random.Generator:
    return np.random.default_rng(20260412)


def _one_list(values: np.ndarray | pa.Array) -> pa.Array:
    values = values if isinstance(values, pa.Array) else pa.array(values)
    return pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)


def _true_counts(
    values: pa.Array, lower: float, upper: float, bins: int, gid: np.ndarray | None = None
) -> np.ndarray:
    """The exact histogram of each group (rows: groups), by DuckDB: values clamped into
    the bounds, equal bins, the upper bound in the last one, NULLs skipped."""
    gid = np.zeros(len(values), np.int64) if gid is None else gid
    con = duckdb.connect()
    try:
        con.register("pooled", pa.table({"g": gid, "x": values}))
        rows = con.execute(
            f"""SELECT g, least(floor((least(greatest(x::DOUBLE, {lower}), {upper}) - {lower})
                                      / ({upper} - {lower}) * {bins}), {bins} - 1)::BIGINT AS b,
                       count(*)
                FROM pooled WHERE x IS NOT NULL GROUP BY g, b"""
        ).fetchall()
    finally:
        con.close()
    counts = np.zeros((int(gid.max()) + 1, bins), np.int64)
    for g, b, c in rows:
        counts[g, b] = c
    return counts


def test_each_count_is_noised_at_the_scale_the_charge_says() -> None:
    """The charge is OpenDP's map at distance 1 (1/scale for the discrete Laplace), at
    most the epsilon asked, and the noise actually added has that scale's variance:
    2 e^(-1/s) / (1 - e^(-1/s))^2."""
    rng = _rng()
    groups, lower, upper = 100, 0.0, 100.0
    gid = rng.integers(0, groups, 200_000)
    values = pa.array(rng.uniform(-10, 110, 200_000))
    for epsilon in (1.0, 0.3):
        released = noisy_histograms(
            group_lists(gid, values, groups), lower=lower, upper=upper, epsilon=epsilon
        )
        assert released.epsilon <= epsilon and released.epsilon == pytest.approx(epsilon)
        assert released.epsilon == pytest.approx(1 / released.scale)
        true = _true_counts(values, lower, upper, DEFAULT_BINS, gid)
        noisy = np.stack([decode(state).counts for state in released.states.to_pylist()])
        noise_all = (noisy - true).ravel()
        assert np.count_nonzero(noise_all) > noise_all.size / 2  # noise is there
        r = math.exp(-1 / released.scale)
        variance = 2 * r / (1 - r) ** 2
        assert noise_all.var() == pytest.approx(variance, rel=0.1)
        assert abs(noise_all.mean()) < 4 * math.sqrt(variance / noise_all.size)


def test_the_charge_does_not_grow_with_the_number_of_groups() -> None:
    """One row is in one group and one bin: the whole vector has sensitivity 1, so many
    groups cost what one does (OpenDP's map over the vector says so)."""
    rng = _rng()
    values = pa.array(rng.uniform(0, 1, 10_000))
    one = noisy_histograms(_one_list(values), lower=0, upper=1, epsilon=0.5)
    many = noisy_histograms(
        group_lists(rng.integers(0, 300, 10_000), values, 300), lower=0, upper=1, epsilon=0.5
    )
    assert len(one.states) == 1 and len(many.states) == 300
    assert many.epsilon == one.epsilon <= 0.5


def test_a_merged_histogram_is_the_sum_of_the_owners() -> None:
    rng = _rng()
    states = [
        noisy_histograms(_one_list(rng.normal(50, 10, 1_000)), lower=0, upper=100, epsilon=1)
        .states[0]
        .as_py()
        for _ in range(OWNERS)
    ]
    merged = decode(merge_hists(states))
    assert np.array_equal(merged.counts, sum(decode(s).counts for s in states))
    assert (merged.lower, merged.upper) == (0.0, 100.0)
    assert merge_hists([None]) is None
    gid = np.array([1, 0, 1, 0, 1])
    per_group = merge_groups(gid, pa.array(states, pa.binary()), 3).to_pylist()
    assert per_group[0] == merge_hists([states[1], states[3]])
    assert per_group[1] == merge_hists([states[0], states[2], states[4]])
    assert per_group[2] is None


@pytest.mark.parametrize(
    "name, lower, upper",
    [("normal", 0.0, 200.0), ("lognormal", 0.0, 500.0), ("uniform", -1.0, 1.0), ("ints", 0, 1000)],
)
def test_dp_quantile_at_large_n_is_within_one_bin_of_the_truth(
    name: str, lower: float, upper: float
) -> None:
    """At n = 200 000 over five owners and epsilon 1, the noise moves the rank by about
    sqrt(2 * 5 * 128) / n = 2e-4: what is left is the bin, (upper - lower) / 128 wide."""
    rng = _rng()
    n = 200_000
    pooled = {
        "normal": rng.normal(100, 20, n),
        "lognormal": rng.lognormal(3, 1, n),
        "uniform": rng.uniform(-1, 1, n),
        "ints": rng.integers(0, 1000, n),
    }[name]
    parts = np.array_split(pooled, OWNERS)
    states = [
        noisy_histograms(_one_list(p), lower=lower, upper=upper, epsilon=1.0).states[0].as_py()
        for p in parts
    ]
    merged = merge_hists(states)
    width = (upper - lower) / DEFAULT_BINS
    con = duckdb.connect()
    try:
        con.register("pooled", pa.table({"x": pooled}))
        for q in (0.05, 0.25, 0.5, 0.75, 0.95):
            ((truth,),) = con.execute(
                f"SELECT quantile_cont(least(greatest(x, {lower}), {upper}), {q}) FROM pooled"
            ).fetchall()
            assert abs(hist_quantile(merged, q) - truth) <= width, (q, truth)
    finally:
        con.close()


def test_ends_and_empty_histograms() -> None:
    counts = np.zeros(8, np.int64)
    counts[2], counts[5] = 10, 10
    state = encode(0.0, 8.0, counts)
    assert hist_quantile(state, 0.0) == 2.0  # the first non-empty bin's lower edge
    assert hist_quantile(state, 1.0) == 6.0  # the last one's upper edge
    assert hist_quantile(state, 0.5) == 3.0
    assert hist_quantile(encode(0.0, 8.0, -np.ones(8, np.int64)), 0.5) is None
    assert hist_quantiles(pa.array([state, None], pa.binary()), 0.5).to_pylist() == [3.0, None]


def test_nulls_are_skipped_and_a_null_group_is_empty() -> None:
    lists = pa.array([[1.0, None, 2.0], None], pa.list_(pa.float64()))
    released = noisy_histograms(lists, lower=0, upper=4, epsilon=50.0, bins=4)
    # At epsilon 50 the discrete Laplace is 0 with probability tanh(25): all but certain.
    assert decode(released.states[0].as_py()).counts.tolist() == [0, 1, 1, 0]
    assert decode(released.states[1].as_py()).counts.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    "values, kwargs, words",
    [
        (pa.array([["a"]]), {"lower": 0, "upper": 1, "epsilon": 1}, "numeric"),
        (pa.array([[1.0]]), {"lower": 1, "upper": 0, "epsilon": 1}, "bounds"),
        (pa.array([[1.0]]), {"lower": 0, "upper": math.inf, "epsilon": 1}, "bounds"),
        (pa.array([[1.0]]), {"lower": 0, "upper": 1, "epsilon": 0}, "epsilon"),
        (pa.array([[1.0]]), {"lower": 0, "upper": 1, "epsilon": 1, "bins": 0}, "bins"),
        (pa.array([1.0]), {"lower": 0, "upper": 1, "epsilon": 1}, "lists"),
    ],
)
def test_bad_requests_are_refused(values: pa.Array, kwargs: dict, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        noisy_histograms(values, **kwargs)


def test_a_peers_histogram_is_checked() -> None:
    good = encode(0.0, 1.0, np.arange(4, dtype=np.int64))
    other = encode(0.0, 2.0, np.arange(4, dtype=np.int64))
    for bad in [b"", b"XXXX" + good[4:], good[:-1], good + b"\0" * 8, "text", None]:
        with pytest.raises(HistError):
            decode(bad)
    huge = bytearray(good)
    huge[-8:] = (-(2**63)).to_bytes(8, "little", signed=True)  # |INT64_MIN| wraps in numpy
    with pytest.raises(HistError, match="out of range"):
        decode(bytes(huge))
    with pytest.raises(HistError, match="different bounds"):
        merge_hists([good, other])
    check_quantile_state(good)
    check_quantile_state(kll_sketches(_one_list(np.arange(10.0)))[0].as_py())
    for bad in [good[:-1], b"\x05garbage"]:
        with pytest.raises(ValueError):
            check_quantile_state(bad)
    at_limit = encode(0.0, 1.0, np.full(4, 2**53, np.int64))
    with pytest.raises(HistError, match="out of range"):
        merge_hists([at_limit, at_limit])


def test_owners_answering_with_and_without_dp_merge_as_histograms() -> None:
    """One owner under a DP grant sends a noisy histogram, two others KLL sketches: the
    sketches are binned over the histogram's bins and everything is added."""
    rng = _rng()
    parts = [rng.normal(100, 20, 60_000) for _ in range(3)]
    lower, upper = 0.0, 200.0
    hist = noisy_histograms(_one_list(parts[0]), lower=lower, upper=upper, epsilon=1.0)
    klls = [kll_sketches(_one_list(p))[0].as_py() for p in parts[1:]]
    assert is_hist(hist.states[0].as_py()) and not any(is_hist(k) for k in klls)
    merged = merge_quantile_states([klls[0], hist.states[0].as_py(), None, klls[1]])
    assert is_hist(merged)
    pooled = pa.array(np.concatenate(parts))
    # The sketches' counts are within their rank error (2 x 1.33 %, generously) of DuckDB's.
    for kll, part in zip(klls, parts[1:], strict=True):
        binned = decode(hist_from_kll(kll, lower, upper, DEFAULT_BINS)).counts
        truth = _true_counts(pa.array(part), lower, upper, DEFAULT_BINS)[0]
        assert binned.sum() == len(part)
        assert np.abs(np.cumsum(binned) - np.cumsum(truth)).max() <= 0.027 * len(part)
    width = (upper - lower) / DEFAULT_BINS
    con = duckdb.connect()
    try:
        con.register("pooled", pa.table({"x": pooled}))
        ((truth,),) = con.execute("SELECT quantile_cont(x, 0.5) FROM pooled").fetchall()
    finally:
        con.close()
    found = state_quantiles(pa.array([merged], pa.binary()), 0.5)[0].as_py()
    assert abs(found - truth) <= 2 * width
    # Without a histogram the sketches merge as sketches.
    assert merge_quantile_states(klls) is not None and not is_hist(merge_quantile_states(klls))
    assert len(merge_quantile_states(klls)) == len(merge_kll(klls))
    per_group = merge_quantile_groups(
        np.array([0, 1, 0]), pa.array([klls[0], klls[1], hist.states[0].as_py()]), 2
    )
    assert is_hist(per_group[0].as_py()) and not is_hist(per_group[1].as_py())
    small = kll_sketches(_one_list(np.arange(KLL_K // 2, dtype=float)))[0].as_py()
    assert state_quantiles(pa.array([small]), 0.5, pa.int64()).to_pylist() == [49]
