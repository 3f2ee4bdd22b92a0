"""Partials: only the shape the plan implies is merged; the SQL subset's new refusals."""

from __future__ import annotations

import pyarrow as pa
import pytest

from federation.partials import PartialError, check_partial, expected_columns
from federation.sqlsubset import QueryError, parse


def test_expected_columns_follow_the_plan() -> None:
    plan = parse("SELECT city, COUNT(*), AVG(w), VAR_SAMP(w), MIN(x) FROM t GROUP BY city")
    assert expected_columns(plan) == ["city", "__n", "__c_w", "__s_w", "__m2_w", "__min_x"]


def test_a_peer_cannot_smuggle_column_names_into_the_merge() -> None:
    plan = parse("SELECT g, COUNT(*) FROM t GROUP BY g")
    evil = pa.table({"g": ["a"], "__n": [1], '__min_z") FROM x --': [1]})
    with pytest.raises(PartialError, match="does not have the columns"):
        check_partial(plan, evil, "rogue")
    text = pa.table({"g": ["a"], "__n": ["1"]})
    with pytest.raises(PartialError, match="non-numeric"):
        check_partial(plan, text, "rogue")
    good = pa.table({"g": ["a"], "__n": [1]})
    assert check_partial(plan, good, "ok") is good


@pytest.mark.parametrize(
    "sql, words",
    [
        ("SELECT COUNT(*) FROM t GROUP BY a ORDER BY 2", "not positions"),
        ("SELECT a, a FROM t", "selected twice"),
    ],
)
def test_more_refusals(sql: str, words: str) -> None:
    with pytest.raises(QueryError, match=words):
        parse(sql)
