"""One owner's rows for a join: what the conditions keep decides no refusal (review,
2026-12-04: a refusal when a key repeated among the filtered rows read a row's value by
binary search, exactly and for free)."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from gateway.errors import FailedPrecondition
from gateway.roles import psi_rows
from gateway.roles.psi_rows import canonical


@pytest.mark.parametrize("values", [(), ("amount",)])
def test_a_key_that_repeats_is_dropped_with_its_rows_and_counted(values: tuple[str, ...]) -> None:
    table = pa.table(
        {
            "k": ["a", "b", " B", "c", "d", "d", ""],  # b twice once canonical, d twice
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
            "g": ["x", "x", "y", "y", "x", "y", "x"],
        }
    )
    rows = canonical(table, "k", ("g",), values, unique=True, dataset="t")
    assert sorted(rows.items.to_pylist()) == [b"A", b"C"]
    assert rows.invalid == 5  # the empty key, and both rows of each repeated key
    assert [rows.groups[i] for i in rows.group_index.tolist()] == [("x",), ("y",)]
    if values:
        assert rows.values == [[1.0, 4.0]]


def test_a_value_that_is_no_number_is_missing_like_a_null() -> None:
    table = pa.table({"k": ["a", "b", "c", "d"], "amount": [1.0, math.nan, math.inf, None]})
    rows = canonical(table, "k", (), ("amount",), unique=True, dataset="t")
    assert rows.values == [[1.0, None, None, None]] and rows.invalid == 0


def test_a_count_without_groups_counts_distinct_keys() -> None:
    table = pa.table({"k": ["a", "a", "b"]})
    rows = canonical(table, "k", unique=False, dataset="t")
    assert sorted(rows.items.to_pylist()) == [b"A", b"B"] and rows.invalid == 0


@pytest.mark.parametrize("unique", [False, True])
def test_the_size_limit_counts_distinct_identifiers(
    unique: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/psi.md bounds a side at 2 000 000 *distinct* valid identifiers; the rows were
    counted, repeats and all (review, 2026-12-04). Five stands for the limit here."""
    monkeypatch.setattr(psi_rows, "MAX_SET", 5)
    repeated = pa.table({"k": ["a", "a", "b", "b", "c", "c", "d"]})  # 7 rows, 4 keys
    assert len(canonical(repeated, "k", unique=unique, dataset="t").items) == (1 if unique else 4)
    too_many = pa.table({"k": ["a", "b", "c", "d", "e", "f"]})
    with pytest.raises(FailedPrecondition, match="more than 5 identifiers of t pass"):
        canonical(too_many, "k", unique=unique, dataset="t")
