"""Every function the local engine has, as DuckDB itself lists it, is refused by the SQL
subset wherever a query could put it, except the aggregates, per-row functions and group
key functions the subset documents (docs/sql.md), and those only where they belong. New
DuckDB functions are covered as they appear."""

from __future__ import annotations

import duckdb
import pytest

from federation.sql import QueryError, parse

ALLOWED_AGGREGATES = {
    "approx_count_distinct",
    "median",
    "avg",
    "count",
    "max",
    "min",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "sum",
    "var_pop",
    "var_samp",
    "variance",
}
# Per-row functions: inside an aggregate's value, in conditions and in group keys.
ALLOWED_SCALARS = {"abs", "round", "coalesce", "least", "greatest"}
# Group keys only: buckets and prefixes.
ALLOWED_KEYS = {"year", "quarter", "month", "substr", "substring"}
PLACES = {
    "from": "SELECT COUNT(*) FROM {f}('/etc/passwd')",
    "select": "SELECT {f}(a) FROM t",
    "where": "SELECT COUNT(*) FROM t WHERE {f}(a) > 0",
    "having": "SELECT g, COUNT(*) FROM t GROUP BY g HAVING {f}(a) > 0",
    "nested": "SELECT SUM(a) FROM t WHERE a IN (SELECT {f}(a) FROM t)",
    "inside": "SELECT SUM({f}(a)) FROM t",
    "group": "SELECT COUNT(*) FROM t GROUP BY {f}(a)",
}


def _engine_functions() -> list[tuple[str, str]]:
    con = duckdb.connect()
    rows = con.sql("SELECT DISTINCT function_name, function_type FROM duckdb_functions()")
    return sorted((n, t) for n, t in rows.fetchall() if n.replace("_", "").isalnum())


FUNCTIONS = _engine_functions()


def test_the_engine_lists_its_dangerous_functions() -> None:
    names = {n for n, _ in FUNCTIONS}
    assert len(names) > 500  # the listing is real, not an empty catalog
    assert {"read_csv", "read_parquet", "glob", "read_text", "duckdb_settings"} <= names


@pytest.mark.parametrize("place", sorted(PLACES))
def test_every_engine_function_is_refused(place: str) -> None:
    passed = []
    for name, kind in FUNCTIONS:
        sql = PLACES[place].format(f=name)
        try:
            parse(sql)
        except QueryError:
            continue
        passed.append((name, kind))
    if place in ("select", "having"):
        assert {n for n, _ in passed} <= ALLOWED_AGGREGATES, passed
        assert all(kind == "aggregate" for _, kind in passed)
    elif place in ("where", "inside"):
        assert {n for n, _ in passed} <= ALLOWED_SCALARS, passed
    elif place == "group":
        assert {n for n, _ in passed} <= ALLOWED_SCALARS | ALLOWED_KEYS, passed
    else:
        assert passed == [], passed
