"""Federated standardisation, class counts and encodings equal their pooled computation."""

from __future__ import annotations

import decimal

import numpy as np
import pyarrow as pa
import pytest

from federation.training import features
from federation.training.errors import TrainingError


def _columns(seed: int, n: int) -> np.ndarray:
    """Columns that stress the combination: a large mean with a small spread, a constant,
    a wide range, integers."""
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.normal(1e6, 0.5, size=n),
            np.full(n, 3.25),
            rng.normal(0, 1e3, size=n),
            rng.integers(0, 7, size=n).astype(np.float64),
            rng.exponential(2.0, size=n),
        ]
    )


@pytest.mark.parametrize("sizes", [(500, 300, 200), (1, 999, 40), (0, 250, 250, 7)])
def test_federated_mean_and_std_equal_numpys_on_the_pooled_rows(sizes: tuple[int, ...]) -> None:
    X = _columns(1, sum(sizes))
    parts = np.split(X, np.cumsum(sizes)[:-1])
    mean, std = features.combine(features.local_stats(p) for p in parts)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-12, atol=1e-12)
    varying = X.std(axis=0) > 0
    np.testing.assert_allclose(std[varying], X.std(axis=0)[varying], rtol=1e-12, atol=1e-12)
    assert std[~varying].tolist() == [1.0]  # the constant column is only centred


def test_standardised_pooled_rows_have_zero_mean_and_unit_std() -> None:
    X = _columns(2, 900)
    mean, std = features.combine(features.local_stats(p) for p in np.array_split(X, 3))
    Z = features.standardise(X, mean, std)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(Z.std(axis=0)[[0, 2, 3, 4]], 1, rtol=1e-9)
    assert np.all(Z[:, 1] == 0)


def test_one_hot_uses_the_declared_categories_and_zeros_for_the_rest() -> None:
    values = pa.array(["b", "a", None, "zz", "c", "a"])
    got = features.one_hot(values, ["a", "b", "c"])
    expected = np.array(
        [[v == c for c in ["a", "b", "c"]] for v in values.to_pylist()], dtype=np.float64
    )
    np.testing.assert_array_equal(got, expected)
    assert got[2].sum() == 0 and got[3].sum() == 0


def test_one_hot_of_integer_codes_against_integer_categories() -> None:
    got = features.one_hot(np.array([3, 1, 2, 9]), [1, 2, 3])
    np.testing.assert_array_equal(got.argmax(axis=1)[:3], [2, 0, 1])
    assert got[3].sum() == 0


def test_label_index_refuses_an_undeclared_class() -> None:
    np.testing.assert_array_equal(
        features.label_index(["no", "yes", "yes"], ["no", "yes"]), [0, 1, 1]
    )
    with pytest.raises(TrainingError, match="declared classes"):
        features.label_index(["no", "maybe"], ["no", "yes"])
    with pytest.raises(TrainingError, match="declared classes"):
        features.label_index(pa.array(["no", None]), ["no", "yes"])


def test_encode_builds_numeric_then_one_hot_blocks_in_declared_order() -> None:
    table = pa.table(
        {
            "size": pa.array([1, 5, 3], pa.int32()),
            "revenue": pa.array([2.5, 0.0, 1.0]),
            "industry": pa.array(["it", "retail", "farm"]),
        }
    )
    cats = {"industry": ["retail", "it"]}
    X = features.encode({n: table[n] for n in table.column_names}, ["revenue", "size"], cats)
    names = features.feature_names(["revenue", "size"], cats)
    assert names == ["revenue", "size", "industry=retail", "industry=it"]
    expected = np.column_stack(
        [
            table["revenue"].to_numpy(),
            table["size"].to_numpy().astype(np.float64),
            [[v == c for c in cats["industry"]] for v in table["industry"].to_pylist()],
        ]
    )
    np.testing.assert_array_equal(X, expected)


def test_encode_refuses_missing_or_absent_numeric_columns() -> None:
    with pytest.raises(TrainingError, match="missing values"):
        features.encode({"a": pa.array([1.0, None])}, ["a"])
    with pytest.raises(TrainingError, match="not among"):
        features.encode({"a": pa.array([1.0])}, ["b"])
    with pytest.raises(TrainingError, match="not numeric"):
        features.encode({"a": pa.array(["x"])}, ["a"])


def test_encode_refuses_by_type_never_by_a_value() -> None:
    """Review (2026-12-04): Arrow's safe cast refused an int64 above 2**53 ('not numeric')
    and took the string '1.5': whether an owner answered, under DP too (encoding comes
    before clamping), depended on one row's value. Integers and decimals are rounded to
    float64; a string column is refused whatever it holds."""
    big = 2**53 + 1
    for values, kind in (([1, 2, big], pa.int64()), ([1, 2, 2**64 - 1], pa.uint64())):
        X = features.encode({"x": pa.array(values, kind)}, ["x"])
        np.testing.assert_array_equal(X[:, 0], np.array(values, dtype=np.float64))
    dec = pa.array([decimal.Decimal("12345678901234567890.125")], pa.decimal128(38, 3))
    assert features.encode({"x": dec}, ["x"])[0, 0] == pytest.approx(1.2345678901234567e19)
    for strings in (["1.5", "2"], ["1.5", "x"]):
        with pytest.raises(TrainingError, match="'x' is not numeric"):
            features.encode({"x": pa.array(strings)}, ["x"])
