"""Every function the local engine has, as DuckDB itself lists it, is refused by the SQL
subset wherever a query could put it, except the aggregates the subset documents (and
those only where aggregates belong). New DuckDB functions are covered as they appear."""

from __future__ import annotations

import duckdb
import pytest

from federation.sql import QueryError, parse

ALLOWED_AGGREGATES = {
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
PLACES = {
    "from": "SELECT COUNT(*) FROM {f}('/etc/passwd')",
    "select": "SELECT {f}(a) FROM t",
    "where": "SELECT COUNT(*) FROM t WHERE {f}(a) > 0",
    "having": "SELECT g, COUNT(*) FROM t GROUP BY g HAVING {f}(a) > 0",
    "nested": "SELECT SUM(a) FROM t WHERE a IN (SELECT {f}(a) FROM t)",
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
    else:
        assert passed == [], passed
