"""Federated answers equal DuckDB on the pooled rows (grants without DP, no suppression).

An open (L1, k = 1) copy of the enterprise registry is registered by each of the six
regional owners; hypothesis writes queries; each federated answer, computed by real node
processes (including Anhui relaying for Hefei and Wuhu), is compared with the same SQL
run by DuckDB on all rows pooled in one table: exact for integers, 1e-9 relative for
floats.
"""

from __future__ import annotations

import math

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RunningFederation

pytestmark = pytest.mark.integration

REGIONAL = ("shanghai", "jiangsu", "zhejiang", "anhui", "hefei", "wuhu")
DATASET = "enterprise_open"
GROUPS = ("industry_section", "city", "high_tech", "founding_year")
NUMERIC = ("employees", "revenue", "registered_capital", "founding_year")
FUNCS = ("COUNT", "SUM", "AVG", "MIN", "MAX", "VAR_SAMP", "VAR_POP", "STDDEV_SAMP", "STDDEV_POP")
CONTROLS = {
    "industry_section": "group_by,filter",
    "industry_code": "group_by,filter",
    "city": "group_by,filter",
    "high_tech": "group_by,filter",
    "founding_year": "group_by,filter,aggregate",
    "employees": "aggregate,filter",
    "revenue": "aggregate,filter",
    "registered_capital": "aggregate,filter",
}


@pytest.fixture(scope="module")
def pooled(federation: RunningFederation) -> duckdb.DuckDBPyConnection:
    """Register the open copy at every regional owner, grant it, and pool its rows."""
    tables = []
    for node in REGIONAL:
        data = federation.register_copy(
            node, "enterprise_registry", DATASET, level="L1", columns=_l1_columns(federation, node)
        )
        federation.grant(
            node,
            dataset=DATASET,
            grantee_kind="user",
            grantee="li.wei@shanghai",
            min_group_size=1,
            columns=CONTROLS,
        )
        tables.append(pq.read_table(data))
    con = duckdb.connect()
    con.register(DATASET, pa.concat_tables(tables))
    return con


def _l1_columns(federation: RunningFederation, node: str):  # type: ignore[no-untyped-def]
    import dataclasses

    from gateway import descriptor

    src = next(p for p in federation.written[node] if p.stem == "enterprise_registry")
    return tuple(dataclasses.replace(c, level="") for c in descriptor.load(src).columns)


def _literal(column: str, draw) -> str:  # type: ignore[no-untyped-def]
    if column == "industry_section":
        return "'" + draw(st.sampled_from("CIFMGKJ")) + "'"
    if column == "industry_code":
        return "'" + draw(st.sampled_from(["C39", "I65", "F51", "C38", "K70"])) + "'"
    if column == "city":
        return "'" + draw(st.sampled_from(["Suzhou", "Hefei", "Wuhu", "Hangzhou", "Nanjing"])) + "'"
    if column == "high_tech":
        return draw(st.sampled_from(["TRUE", "FALSE"]))
    if column == "founding_year":
        return str(draw(st.integers(1985, 2024)))
    if column == "employees":
        return str(draw(st.integers(0, 500)))
    return str(draw(st.integers(0, 20000)))


@st.composite
def conditions(draw, depth: int = 0) -> str:  # type: ignore[no-untyped-def]
    kind = draw(
        st.sampled_from(
            ["cmp", "in", "between", "null", "and", "or", "not"]
            if depth < 2
            else ["cmp", "in", "between", "null"]
        )
    )
    column = draw(st.sampled_from(sorted(c for c, v in CONTROLS.items() if "filter" in v)))
    if kind == "cmp":
        op = draw(st.sampled_from(["=", "<>", "<", "<=", ">", ">="]))
        if column in ("high_tech",):
            op = draw(st.sampled_from(["=", "<>"]))
        return f"{column} {op} {_literal(column, draw)}"
    if kind == "in":
        values = [_literal(column, draw) for _ in range(draw(st.integers(1, 3)))]
        return f"{column} {draw(st.sampled_from(['IN', 'NOT IN']))} ({', '.join(values)})"
    if kind == "between":
        column = draw(st.sampled_from(["employees", "founding_year", "revenue"]))
        a, b = sorted([int(_literal(column, draw)), int(_literal(column, draw))])
        return f"{column} BETWEEN {a} AND {b}"
    if kind == "null":
        column = draw(st.sampled_from(["revenue", "registered_capital", "employees"]))
        return f"{column} IS {draw(st.sampled_from(['', 'NOT ']))}NULL"
    if kind == "not":
        return f"NOT ({draw(conditions(depth + 1))})"
    left, right = draw(conditions(depth + 1)), draw(conditions(depth + 1))
    return f"({left}) {kind.upper()} ({right})"


@st.composite
def queries(draw) -> tuple[str, bool]:  # type: ignore[no-untyped-def]
    groups = draw(st.lists(st.sampled_from(GROUPS), max_size=2, unique=True))
    aggs = []
    for _ in range(draw(st.integers(1, 4))):
        func = draw(st.sampled_from(FUNCS))
        if func == "COUNT" and draw(st.booleans()):
            aggs.append("COUNT(*)")
        else:
            aggs.append(f"{func}({draw(st.sampled_from(NUMERIC))})")
    if draw(st.booleans()):  # arithmetic over aggregates
        aggs.append(f"{aggs[0]} * 2 + 1")
    select = ", ".join([*groups, *(f"{a} AS a{i}" for i, a in enumerate(aggs))])
    sql = f"SELECT {select} FROM {DATASET}"
    if draw(st.booleans()):
        sql += f" WHERE {draw(conditions())}"
    if groups:
        sql += f" GROUP BY {', '.join(groups)}"
        having = draw(st.sampled_from(["", "COUNT(*) > {}", "SUM(employees) >= {}0"]))
        if having:
            sql += " HAVING " + having.format(draw(st.integers(0, 50)))
    ordered = bool(groups) and draw(st.booleans())
    if ordered:
        # Always a total order (the group keys break ties), and by an exact aggregate, so
        # the comparison with the pooled answer is row by row. The three forms cover the
        # post-merge step in Arrow (one NULL placement) and in the engine (mixed).
        form = draw(st.sampled_from(["keys", "count", "mixed"]))
        if form == "keys":
            keys = [f"{g} NULLS FIRST" for g in groups]
        elif form == "count":
            keys = ["COUNT(*) DESC", *groups]
        else:
            keys = ["COUNT(*) DESC NULLS LAST", *(f"{g} NULLS FIRST" for g in groups)]
        sql += " ORDER BY " + ", ".join(keys)
        if draw(st.booleans()):
            sql += f" LIMIT {draw(st.integers(1, 10))}"
    return sql, ordered


def _same(a: object, b: object) -> bool:
    """Floats within 1e-9 relative; everything else (integers included) exactly. An
    integer answer that came back as a float is a mismatch."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        if not (isinstance(a, float) and isinstance(b, float)):
            return False
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b  # DuckDB's pooled SUM of integers is a whole Decimal: compared exactly


def _rows(table: pa.Table) -> list[tuple]:
    return [tuple(r.values()) for r in table.to_pylist()]


def _key(row: tuple) -> tuple:
    return tuple((v is None, str(v)) for v in row)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=queries())
def test_federated_equals_pooled(
    federation: RunningFederation, pooled: duckdb.DuckDBPyConnection, case: tuple[str, bool]
) -> None:
    sql, ordered = case
    with federation.client("li.wei@shanghai") as c:
        result = c.query(sql)
    expected = pooled.sql(sql).to_arrow_table()
    got, want = _rows(result.table), _rows(expected)
    if not ordered:
        got, want = sorted(got, key=_key), sorted(want, key=_key)
    assert len(got) == len(want), sql
    for g, w in zip(got, want, strict=True):
        assert all(_same(x, y) for x, y in zip(g, w, strict=True)), (sql, g, w)
    assert sorted(result.contributors) == sorted(REGIONAL)
    assert not result.missing and result.epsilon_spent == 0


def test_integer_results_are_integers(
    federation: RunningFederation, pooled: duckdb.DuckDBPyConnection
) -> None:
    sql = f"SELECT COUNT(*) AS n, SUM(employees) AS e FROM {DATASET}"
    with federation.client("li.wei@shanghai") as c:
        row = c.query(sql).table.to_pylist()[0]
    want = pooled.sql(sql).fetchall()[0]
    assert isinstance(row["e"], int) and row["e"] == int(want[1]) and row["n"] == want[0]


def test_vertical_link_covers_the_cities(
    federation: RunningFederation, pooled: duckdb.DuckDBPyConnection
) -> None:
    sql = f"SELECT city, COUNT(*) AS n, SUM(employees) AS e FROM anhui.{DATASET} GROUP BY city"
    with federation.client("li.wei@shanghai") as c:
        result = c.query(sql)
    got = {r["city"]: (r["n"], r["e"]) for r in result.table.to_pylist()}
    anhui_cities = pooled.sql(
        f"SELECT city, COUNT(*), SUM(employees) FROM {DATASET} "
        "WHERE division_code LIKE '34%' GROUP BY city"
    ).fetchall()
    assert got == {c: (n, int(e)) for c, n, e in anhui_cities}
    assert {"Hefei", "Wuhu"} <= set(got)
    via = {o.node_id: o.via for o in result.owners}
    assert via == {"anhui": "", "hefei": "anhui", "wuhu": "anhui"}
