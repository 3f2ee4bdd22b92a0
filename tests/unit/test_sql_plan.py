"""Plans as steps, the typed state columns of a partial, and the SQL generated from them."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest
from sqlglot import exp

from federation.partials import expected_columns, squares_to_m2
from federation.sql import (
    AggCall,
    AggregateStep,
    FinalStep,
    Kind,
    QueryPlan,
    ScanStep,
    StateColumn,
    parse,
    partial_query,
    partial_tree,
    row_counts,
    state_columns,
)


def test_an_aggregate_query_is_scan_aggregate_final() -> None:
    plan = parse(
        "SELECT city, COUNT(*) AS n, AVG(w) FROM anhui.t WHERE x > 1 GROUP BY city "
        "HAVING COUNT(*) > 2 ORDER BY n DESC LIMIT 5"
    )
    scan, agg, final = plan.steps
    assert isinstance(scan, ScanStep) and isinstance(agg, AggregateStep)
    assert isinstance(final, FinalStep)
    assert (scan.dataset, scan.node, scan.where_sql, scan.limit) == ("t", "anhui", "x > 1", None)
    assert scan.column_roles == {
        "x": frozenset({"filter"}),
        "city": frozenset({"group_by"}),
        "w": frozenset({"aggregate"}),
    }
    assert agg.group_by == ("city",)
    assert agg.aggregates == (AggCall("count", None), AggCall("avg", "w", ("w",)))
    assert final.merged == ("city", "__a0", "__a1") and final.limit == 5
    assert final.projection is None  # HAVING: the engine runs the final step
    assert final.sql == (
        'SELECT city, __a0 AS n, __a1 AS "AVG(w)" FROM __merged WHERE __a0 > 2 '
        "ORDER BY n DESC LIMIT 5"
    )
    # the single-dataset view the rest of the code reads
    assert (plan.dataset, plan.node, plan.group_by, plan.limit) == ("t", "anhui", ("city",), 5)
    assert plan.aggregates == agg.aggregates and plan.final_sql == final.sql
    assert not plan.is_raw and plan.where_sql == "x > 1"
    assert plan.digest == parse(plan.sql).digest


def test_a_raw_read_is_scan_then_final() -> None:
    plan = parse("SELECT a, b AS c FROM t WHERE a > 0 ORDER BY c DESC LIMIT 5000")
    scan, final = plan.steps
    assert isinstance(scan, ScanStep) and isinstance(final, FinalStep)
    assert plan.aggregate is None and plan.group_by == () and plan.aggregates == ()
    assert plan.is_raw and plan.raw_columns == ("a", "b")
    assert plan.raw_order == (("b", True, False),)
    assert scan.limit == 1000 == plan.limit  # each owner's row cap
    assert final.limit == 5000  # the query's own LIMIT
    assert state_columns(plan, dp=False) == state_columns(plan, dp=True) == ()
    projection = final.projection
    assert projection is not None and projection.columns == (("a", "a"), ("b", "c"))


def test_a_plan_starts_with_a_scan_and_ends_with_its_final_step() -> None:
    scan, agg, final = parse("SELECT COUNT(*) FROM t").steps
    with pytest.raises(ValueError, match="starts with a scan"):
        QueryPlan(sql="x", steps=(agg, final))
    with pytest.raises(ValueError, match="starts with a scan"):
        QueryPlan(sql="x", steps=(scan, agg))


def test_state_columns_are_typed_and_named_in_one_place() -> None:
    plan = parse("SELECT g, VAR_SAMP(w), MIN(x), COUNT(*), SUM(w), COUNT(y) FROM t GROUP BY g")
    plain = state_columns(plan, dp=False)
    assert plain == (
        StateColumn(Kind.ROWS, None, "__n"),
        StateColumn(Kind.COUNT, "w", "__c_w"),
        StateColumn(Kind.SUM, "w", "__s_w"),
        StateColumn(Kind.M2, "w", "__m2_w"),
        StateColumn(Kind.COUNT, "x", "__c_x"),
        StateColumn(Kind.MIN, "x", "__min_x"),
        StateColumn(Kind.COUNT, "y", "__c_y"),
    )
    private = state_columns(plan, dp=True)
    assert [s.kind for s in private] == [
        Kind.ROWS,
        Kind.COUNT,
        Kind.SUM,
        Kind.SQUARES,
        Kind.COUNT,
        Kind.MIN,
        Kind.COUNT,
    ]
    assert private[3].name == "__q_w"
    assert expected_columns(plan) == ["g", *(s.name for s in plain)]
    assert row_counts(expected_columns(plan)) == ["__c_w", "__c_x", "__c_y"]


def _rows(sql: str, table: pa.Table) -> list[dict]:
    con = duckdb.connect()
    con.register("data", table)
    return con.sql(sql).to_arrow_table().to_pylist()


DATA = pa.table(
    {
        "g": ["a", "a", "b", "b", "b", None],
        "w": [1.0, 3.0, None, 2.0, 200.0, 5.0],
        "x": [1, 2, 3, 4, 5, 6],
    }
)


def test_the_owners_query_has_the_plans_columns_and_its_where() -> None:
    plan = parse("SELECT g, SUM(x), AVG(w), VAR_POP(w) FROM t WHERE x > 1 GROUP BY g")
    rows = _rows(partial_query(plan, "data", integer_columns=["x"]), DATA)
    by_group = {r["g"]: r for r in rows}
    assert list(rows[0]) == expected_columns(plan)
    assert by_group["a"] == {
        "g": "a",
        "__n": 1,
        "__c_w": 1,
        "__s_w": 3.0,
        "__m2_w": 0.0,
        "__c_x": 1,
        "__s_x": 2,  # an integer column's sum stays an exact integer
    }
    assert by_group["b"]["__c_w"] == 2 and by_group["b"]["__s_w"] == 202.0


def test_under_dp_values_are_clamped_and_variance_travels_as_squares() -> None:
    plan = parse("SELECT g, VAR_POP(w) FROM t GROUP BY g")
    sql = partial_query(plan, "data", integer_columns=["x"], clamp={"w": (0.0, 10.0)})
    assert "LEAST(GREATEST(" in sql
    rows = {r["g"]: r for r in _rows(sql, DATA)}
    assert list(rows["b"]) == ["g", *(s.name for s in state_columns(plan, dp=True))]
    assert rows["b"]["__s_w"] == 12.0 and rows["b"]["__q_w"] == 104.0  # 200 clamped to 10


def test_noise_free_squares_become_the_plain_partials_m2() -> None:
    plan = parse("SELECT g, VAR_POP(w) FROM t GROUP BY g ORDER BY g")
    wide = partial_query(plan, "data", clamp={"w": (0.0, 1000.0)})  # clamps nothing here
    released = squares_to_m2(plan, pa.Table.from_pylist(_rows(wide, DATA)))
    plain = pa.Table.from_pylist(_rows(partial_query(plan, "data"), DATA))
    assert released.column_names == expected_columns(plan) == plain.column_names
    got = {r["g"]: r["__m2_w"] for r in released.to_pylist()}
    want = {r["g"]: r["__m2_w"] for r in plain.to_pylist()}
    assert got == pytest.approx(want) and want["b"] == pytest.approx(2 * 99.0**2)


def test_the_owners_where_is_built_from_the_plans_tree_not_shared_with_it() -> None:
    plan = parse("SELECT COUNT(*) FROM t WHERE a IN (1, 2) AND NOT (b IS NULL)")
    where = plan.scan.where
    assert where is not None
    before = where.sql()
    tree = partial_tree(plan, "data", types={"a": "int", "b": "int"})
    owner_where = tree.args["where"].this
    assert owner_where == where and owner_where is not where
    assert not any(a is b for a in owner_where.walk() for b in where.walk())
    assert where.sql() == before and where.parent is not tree.args["where"]
    assert isinstance(tree.args["from_"].this, exp.Table)


def test_a_raw_read_is_ordered_and_capped_at_the_owner() -> None:
    plan = parse("SELECT g, x FROM t WHERE x > 1 ORDER BY x DESC LIMIT 2")
    assert partial_query(plan, "data") == (
        'SELECT "g", "x" FROM "data" WHERE x > 1 ORDER BY "x" DESC LIMIT 2'
    )
    assert [r["x"] for r in _rows(partial_query(plan, "data"), DATA)] == [6, 5]


def test_clamping_bounds_are_finite_numbers_written_in_full() -> None:
    plan = parse("SELECT SUM(w) FROM t")
    sql = partial_query(plan, "t", clamp={"w": (-1e20, 2.5)})
    assert 'LEAST(GREATEST("w", -1e+20), 2.5e0)' in sql  # doubles, never DECIMAL
    with pytest.raises(ValueError, match="finite"):
        partial_query(plan, "t", clamp={"w": (0.0, float("nan"))})


def test_a_where_that_can_fail_on_a_row_runs_under_try() -> None:
    from federation.sql import partial_query

    types = {"a": "int", "b": "string"}
    plain = parse("SELECT COUNT(*) FROM t WHERE a > -5 AND b = 'x'")
    computed = parse("SELECT COUNT(*) FROM t WHERE a * 3 > 5 AND b = 'x'")
    assert "TRY(" not in partial_query(plain, "ds_t", types=types)
    assert "WHERE TRY(a * 3 > 5 AND b = 'x')" in partial_query(computed, "ds_t", types=types)
    # without the columns' types, a string literal might be converted: under TRY
    assert "WHERE TRY(a > -5 AND b = 'x')" in partial_query(plain, "ds_t")


def test_a_date_beside_a_timestamp_runs_under_try() -> None:
    """A DATE column compared with a TIMESTAMP column is cast to a timestamp, which fails
    past year 294 247: ``WHERE id = 17 AND d < ts`` raised only when row 17 held such a
    date (review, 2026-12-05). In the WHERE, a FILTER and a CASE value: under TRY, and
    the row whose date does not convert is simply not matched."""
    types = {"id": "int", "d": "date", "ts": "timestamp"}
    last_day = 2**31 - 2  # DuckDB's last DATE, in 5881580
    table = pa.table(
        {
            "id": pa.array([16, 17], pa.int64()),
            "d": pa.array([0, last_day], pa.int32()).cast(pa.date32()),
            "ts": pa.array([10**15, 10**15], pa.timestamp("us")),
        }
    )
    for sql in (
        "SELECT COUNT(*) FROM t WHERE id = {who} AND d < ts",
        "SELECT COUNT(*) FILTER (WHERE id = {who} AND d < ts) FROM t",
        "SELECT SUM(CASE WHEN id = {who} AND d >= ts THEN 1 END) FROM t",
    ):
        answers = []
        for who in (17, 18):
            generated = partial_query(parse(sql.format(who=who)), "data", types=types)
            assert "TRY(" in generated, generated
            answers.append(_rows(generated, table))
        assert answers[0] == answers[1], sql  # row 17's date fails: not matched


def test_clamping_under_dp_keeps_a_missing_value_missing() -> None:
    """A NULL must not enter a DP sum as the lower bound (GREATEST/LEAST skip NULLs)."""
    import duckdb
    import pyarrow as pa

    from federation.sql import partial_query

    table = pa.table({"g": ["a", "a", "a"], "x": pa.array([4.0, None, 20.0])})
    sql = partial_query(
        parse("SELECT g, SUM(x), AVG(x) FROM t GROUP BY g"), "t", clamp={"x": (2.0, 10.0)}
    )
    con = duckdb.connect()
    con.register("t", table)
    row = con.sql(sql).to_arrow_table().to_pylist()[0]
    sums = [v for k, v in row.items() if k.startswith("__s_")]
    counts = [v for k, v in row.items() if k.startswith("__c_")]
    assert sums == [14.0] and counts == [2]  # 4 and 20 -> 10; the NULL adds nothing
