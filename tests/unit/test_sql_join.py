"""The join-aggregate form: what it accepts, the plan it makes, each owner's SQL (run on
DuckDB), and every refusal, in the user's words."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import duckdb
import pytest

from federation.sql import (
    MAX_LIMIT,
    MAX_SQL_CHARS,
    JoinAgg,
    JoinPlan,
    QueryError,
    is_join,
    parse,
    parse_join,
)

REG = "anhui.enterprise_registry"
TAX = "zhejiang.tax"
JOIN = f"FROM {REG} AS a JOIN {TAX} AS b ON a.credit_code = b.credit_code"


def _refused(sql: str) -> str:
    with pytest.raises(QueryError) as info:
        parse_join(sql)
    return str(info.value)


# --- accepted forms and the plan -------------------------------------------------------------


def test_the_plan_of_a_grouped_sum() -> None:
    plan = parse_join(
        "SELECT b.industry AS ind, COUNT(*) n, SUM(a.revenue), AVG(a.revenue) AS av"
        f" {JOIN} WHERE a.revenue > 10 AND (b.industry = 'it' OR b.industry IS NULL)"
        " AND a.employees BETWEEN 1 AND 500 GROUP BY b.industry ORDER BY n DESC, 1 LIMIT 5"
    )
    a, b = plan.sides
    assert (a.node, a.dataset, a.alias, a.key) == (
        "anhui",
        "enterprise_registry",
        "a",
        "credit_code",
    )
    assert (b.node, b.dataset, b.alias, b.key) == ("zhejiang", "tax", "b", "credit_code")
    assert a.filter_sql == (
        "SELECT COUNT(*) FROM enterprise_registry"
        " WHERE revenue > 10 AND employees BETWEEN 1 AND 500"
    )
    assert b.filter_sql == "SELECT COUNT(*) FROM tax WHERE (industry = 'it' OR industry IS NULL)"
    assert a.filter_columns == ("employees", "revenue")
    assert b.filter_columns == ("industry",)
    assert (a.group_columns, a.value_columns) == ((), ("revenue",))
    assert (b.group_columns, b.value_columns) == (("industry",), ())
    assert plan.aggregates == (
        JoinAgg("count", None, None, "n"),
        JoinAgg("sum", 0, "revenue", "sum_revenue"),
        JoinAgg("avg", 0, "revenue", "av"),
    )
    assert (plan.group_side, plan.value_side, plan.matcher) == (1, 0, 1)
    assert plan.group_outputs == ("ind",)
    assert plan.outputs == ("ind", "n", "sum_revenue", "av")
    assert plan.order_by == (("n", True), ("ind", False))
    assert plan.limit == 5
    # Each side's conditions are what its owner re-parses as a single-owner query.
    for side in plan.sides:
        assert parse(side.filter_sql).dataset == side.dataset


def test_the_normalised_text_plans_the_same() -> None:
    sql = (
        f"select b.industry, sum(a.revenue) total {JOIN} where b.year = 2024"
        " group by 1 order by total desc limit 3"
    )
    plan = parse_join(sql)
    again = parse_join(plan.sql)
    assert again == plan
    assert parse_join(again.sql).sql == plan.sql


def test_aliases_with_or_without_as_or_none() -> None:
    with_as = parse_join(f"SELECT COUNT(*) FROM {REG} AS r JOIN {TAX} AS t ON r.k = t.k")
    without = parse_join(f"SELECT COUNT(*) FROM {REG} r JOIN {TAX} t ON r.k = t.k")
    names = parse_join(f"SELECT COUNT(*) FROM {REG} JOIN {TAX} ON enterprise_registry.k = tax.k")
    assert [s.alias for s in with_as.sides] == ["r", "t"]
    assert [s.alias for s in without.sides] == ["r", "t"]
    assert [s.alias for s in names.sides] == ["enterprise_registry", "tax"]
    assert [s.key for s in names.sides] == ["k", "k"]
    inner = parse_join(f"SELECT COUNT(*) FROM {REG} a INNER JOIN {TAX} b ON a.k = b.k")
    renamed = tuple(replace(s, alias=x) for s, x in zip(without.sides, "ab", strict=True))
    assert inner.sides == renamed


def test_reversed_on_keeps_each_key_with_its_side() -> None:
    plan = parse_join(f"SELECT COUNT(*) FROM {REG} a JOIN {TAX} b ON b.tax_id = a.credit_code")
    assert [s.key for s in plan.sides] == ["credit_code", "tax_id"]
    paren = parse_join(f"SELECT COUNT(*) FROM {REG} a JOIN {TAX} b ON (a.credit_code = b.tax_id)")
    assert [s.key for s in paren.sides] == ["credit_code", "tax_id"]


def test_where_conditions_split_by_side_in_the_order_written() -> None:
    plan = parse_join(
        f"SELECT COUNT(*) {JOIN} WHERE b.year = 2024 AND a.city IN ('hefei', 'wuhu')"
        " AND (b.amount > 5 AND b.amount < 9)"
    )
    a, b = plan.sides
    assert (
        a.filter_sql == "SELECT COUNT(*) FROM enterprise_registry WHERE city IN ('hefei', 'wuhu')"
    )
    assert (
        b.filter_sql == "SELECT COUNT(*) FROM tax WHERE year = 2024 AND amount > 5 AND amount < 9"
    )
    assert (a.filter_columns, b.filter_columns) == (("city",), ("amount", "year"))
    one_side = parse_join(f"SELECT COUNT(*) {JOIN} WHERE b.year = 2024")
    assert one_side.sides[0].filter_sql == "" and one_side.sides[0].filter_columns == ()


@pytest.mark.parametrize("side", ["a", "b"])
def test_count_groups_by_either_side(side: str) -> None:
    plan = parse_join(f"SELECT {side}.city, COUNT(*) AS n {JOIN} GROUP BY {side}.city")
    index = "ab".index(side)
    assert plan.group_side == index and plan.matcher == index
    assert plan.value_side is None
    assert plan.sides[index].group_columns == ("city",)
    assert plan.sides[1 - index].group_columns == ()
    assert plan.group_outputs == ("city",)


def test_count_of_the_join_key_is_count_star() -> None:
    plan = parse_join(f"SELECT COUNT(b.credit_code) {JOIN}")
    assert plan.aggregates == (JoinAgg("count", None, None, "count"),)
    assert plan.matcher == 0 and plan.group_side is None and plan.value_side is None


def test_sums_without_groups_are_matched_by_the_other_side() -> None:
    plan = parse_join(f"SELECT SUM(b.amount), AVG(b.amount), SUM(b.rate) {JOIN}")
    assert (plan.value_side, plan.group_side, plan.matcher) == (1, None, 0)
    assert plan.sides[1].value_columns == ("amount", "rate")
    assert [a.name for a in plan.aggregates] == ["sum_amount", "avg_amount", "sum_rate"]


def test_group_by_positions_aliases_and_several_columns() -> None:
    plan = parse_join(
        f"SELECT a.city AS c, a.sector, SUM(b.amount) AS s {JOIN} GROUP BY c, 2"
        " ORDER BY s DESC, a.sector, c ASC LIMIT 10"
    )
    assert plan.sides[0].group_columns == ("city", "sector")
    assert plan.group_outputs == ("c", "sector")
    assert plan.order_by == (("s", True), ("sector", False), ("c", False))
    assert plan.limit == 10


def test_order_by_an_aggregate_as_written_in_select() -> None:
    plan = parse_join(f"SELECT a.city, COUNT(*) {JOIN} GROUP BY a.city ORDER BY COUNT(*) DESC")
    assert plan.order_by == (("count", True),)


def test_spec_is_canonical_json() -> None:
    plan = parse_join(
        f"SELECT b.industry, AVG(a.revenue) {JOIN} WHERE a.revenue > 1 GROUP BY 1 ORDER BY 2"
    )
    spec = plan.spec()
    assert json.loads(json.dumps(spec, sort_keys=True)) == spec
    assert spec == parse_join(plan.sql).spec()
    assert spec["sides"][0]["filter_sql"] == plan.sides[0].filter_sql
    assert spec["matcher"] == 1 and spec["group_side"] == 1 and spec["value_side"] == 0
    assert spec["aggregates"] == [
        {"func": "avg", "side": 0, "column": "revenue", "name": "avg_revenue"}
    ]
    assert spec["order_by"] == [["avg_revenue", False]]


def test_is_join_routes_only_joins() -> None:
    assert is_join(f"SELECT COUNT(*) {JOIN}")
    assert is_join(f"SELECT COUNT(*) FROM {REG} a LEFT JOIN {TAX} b ON a.k = b.k")
    assert not is_join(f"SELECT COUNT(*) FROM {REG}")
    assert not is_join("SELECT COUNT(*) FROM t WHERE join_date > DATE '2024-01-01'")
    assert not is_join("SELECT COUNT(*) FROM JOIN JOIN")  # does not parse: parse() says why
    assert not is_join("SELECT COUNT(*) FROM a, b")


def test_the_single_owner_parse_refuses_a_join() -> None:
    with pytest.raises(QueryError, match="JOIN is not allowed"):
        parse(f"SELECT COUNT(*) {JOIN}")


# --- each owner's SQL, on DuckDB --------------------------------------------------------------

_REG_ROWS = [
    # credit_code, city, sector, revenue, employees
    ("c1", "hefei", "it", 100, 10),
    ("c2", "hefei", "it", 50, 200),
    ("c3", "wuhu", "food", None, 20),
    ("c4", "wuhu", "it", 70, 5),
    ("c5", None, "food", 30, 7),
    (None, "hefei", "it", 999, 1),
    ("c9", "bengbu", "food", 11, 3),
]
_TAX_ROWS = [
    # credit_code, industry, amount, year
    ("c1", "soft", 5.5, 2024),
    ("c1", "soft", 1.5, 2023),  # a duplicate key: both rows join
    ("c2", "hard", 2.0, 2024),
    ("c3", "soft", None, 2024),
    ("c4", None, 4.0, 2024),
    ("c5", "hard", 8.0, 2022),
    (None, "soft", 100.0, 2024),
    ("c7", "soft", 3.0, 2024),
]


@pytest.fixture(scope="module")
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    """Each owner's table (``reg``, ``tax``), and the same under the query's names
    (``anhui.enterprise_registry``...) so that DuckDB can run the whole join as the truth."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE reg (credit_code VARCHAR, city VARCHAR, sector VARCHAR,"
        " revenue BIGINT, employees INTEGER)"
    )
    con.executemany("INSERT INTO reg VALUES (?, ?, ?, ?, ?)", _REG_ROWS)
    con.execute("CREATE TABLE tax (credit_code VARCHAR, industry VARCHAR, amount DOUBLE, year INT)")
    con.executemany("INSERT INTO tax VALUES (?, ?, ?, ?)", _TAX_ROWS)
    con.execute("CREATE SCHEMA anhui")
    con.execute("CREATE SCHEMA zhejiang")
    con.execute("CREATE VIEW anhui.enterprise_registry AS SELECT * FROM main.reg")
    con.execute("CREATE VIEW zhejiang.tax AS SELECT * FROM main.tax")
    yield con
    con.close()


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_side_sql_reads_the_key_groups_and_values_of_the_rows_that_pass(
    db: duckdb.DuckDBPyConnection,
) -> None:
    plan = parse_join(
        f"SELECT b.industry, SUM(a.revenue), AVG(a.employees) {JOIN}"
        " WHERE a.employees < 100 AND b.year >= 2023 GROUP BY b.industry"
    )
    left = _rows(db, plan.side_sql(0, "reg"))
    right = _rows(db, plan.side_sql(1, "tax"))
    assert list(left[0]) == ["credit_code", "revenue", "employees"]
    assert list(right[0]) == ["credit_code", "industry"]
    truth_left = db.execute(
        "SELECT credit_code, revenue, employees FROM reg"
        " WHERE employees < 100 AND credit_code IS NOT NULL"
    ).fetchall()
    truth_right = db.execute(
        "SELECT credit_code, industry FROM tax WHERE year >= 2023 AND credit_code IS NOT NULL"
    ).fetchall()
    assert sorted(tuple(r.values()) for r in left) == sorted(truth_left)
    assert sorted(tuple(r.values()) for r in right) == sorted(truth_right)


def test_side_sql_without_a_condition_still_drops_null_keys(db: duckdb.DuckDBPyConnection) -> None:
    plan = parse_join(f"SELECT COUNT(*) {JOIN}")
    sql = plan.side_sql(1, "tax")
    assert sql == 'SELECT "credit_code" FROM "tax" WHERE NOT "credit_code" IS NULL'
    keys = sorted(r["credit_code"] for r in _rows(db, sql))
    truth = db.execute("SELECT credit_code FROM tax WHERE credit_code IS NOT NULL").fetchall()
    assert keys == sorted(k for (k,) in truth)


def test_side_sql_quotes_the_table_and_guards_conditions_that_can_fail(
    db: duckdb.DuckDBPyConnection,
) -> None:
    plan = parse_join(f"SELECT COUNT(*) {JOIN} WHERE a.revenue / (a.employees - 10) > 1")
    sql = plan.side_sql(0, "reg")
    assert 'FROM "reg"' in sql and "TRY(" in sql  # a division by zero matches no row
    truth = db.execute(
        "SELECT credit_code FROM reg WHERE credit_code IS NOT NULL"
        " AND TRY(revenue / (employees - 10) > 1)"
    ).fetchall()
    assert sorted(r["credit_code"] for r in _rows(db, sql)) == sorted(k for (k,) in truth)


def _joined(plan: JoinPlan, sides: list[list[dict[str, Any]]]) -> list[tuple[Any, ...]]:
    """The join aggregate computed from the two owners' rows only (what the protocol
    computes, in the clear): match on the key, group at the group side, aggregate."""
    by_key: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in sides[1]:
        by_key[row[plan.sides[1].key]].append(row)
    groups: dict[tuple[Any, ...], list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for row in sides[0]:
        for other in by_key.get(row[plan.sides[0].key], []):
            pair = (row, other)
            g = plan.group_side
            key = () if g is None else tuple(pair[g][c] for c in plan.sides[g].group_columns)
            groups[key].append(pair)
    if plan.group_side is None and not groups:
        groups[()] = []
    out = []
    for key, pairs in groups.items():
        values: list[Any] = []
        for agg in plan.aggregates:
            if agg.func == "count":
                values.append(len(pairs))
                continue
            assert agg.side is not None and agg.column is not None
            present = [p[agg.side][agg.column] for p in pairs]
            present = [v for v in present if v is not None]
            total = sum(present) if present else None
            values.append(total if agg.func == "sum" or total is None else total / len(present))
        by_name = dict(zip(plan.group_outputs, key, strict=True))
        by_name.update({a.name: v for a, v in zip(plan.aggregates, values, strict=True)})
        out.append(tuple(by_name[n] for n in plan.outputs))
    return out


def _key(row: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(repr(v) for v in row)


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT COUNT(*) {JOIN}",
        f"SELECT COUNT(*) AS n {JOIN} WHERE a.city = 'nowhere'",
        f"SELECT b.industry, COUNT(*), SUM(a.revenue), AVG(a.revenue) {JOIN} GROUP BY b.industry",
        f"SELECT a.city, a.sector, COUNT(*), SUM(b.amount) AS s {JOIN}"
        " WHERE b.year >= 2023 AND a.employees <= 200 GROUP BY 1, 2",
        f"SELECT AVG(b.amount), SUM(b.year) {JOIN} WHERE a.sector = 'it'",
        f"SELECT b.industry AS ind, COUNT(*) n FROM {REG} a JOIN {TAX} b"
        " ON b.credit_code = a.credit_code GROUP BY ind",
    ],
)
def test_the_owners_rows_give_duckdb_s_answer(db: duckdb.DuckDBPyConnection, sql: str) -> None:
    plan = parse_join(sql)
    tables = ["reg", "tax"]
    sides = [_rows(db, plan.side_sql(i, tables[i])) for i in (0, 1)]
    got = _joined(plan, sides)
    truth = db.execute(plan.sql).fetchall()
    assert len(db.execute(plan.sql).description) == len(plan.outputs)
    assert len(got) == len(truth)
    for mine, theirs in zip(sorted(got, key=_key), sorted(truth, key=_key), strict=True):
        assert mine == pytest.approx(theirs)


# --- refusals -----------------------------------------------------------------------------------


def test_refuses_text_over_the_limit() -> None:
    sql = f"SELECT COUNT(*) {JOIN} WHERE a.x IN ({', '.join(['1'] * MAX_SQL_CHARS)})"
    assert f"the limit is {MAX_SQL_CHARS}" in _refused(sql)


def test_refuses_two_tables_at_one_node() -> None:
    message = _refused(f"SELECT COUNT(*) FROM {REG} a JOIN anhui.tax b ON a.k = b.k")
    assert "anhui.enterprise_registry and anhui.tax are both at node anhui" in message


def test_refuses_a_self_join() -> None:
    message = _refused(f"SELECT COUNT(*) FROM {REG} a JOIN {REG} b ON a.k = b.k")
    assert "both at node anhui" in message


def test_refuses_a_table_without_its_node() -> None:
    message = _refused(f"SELECT COUNT(*) FROM enterprise_registry a JOIN {TAX} b ON a.k = b.k")
    assert "FROM enterprise_registry AS a: name the node" in message


def test_refuses_a_catalog() -> None:
    message = _refused(f"SELECT COUNT(*) FROM fed.{REG} a JOIN {TAX} b ON a.k = b.k")
    assert "fed.anhui.enterprise_registry" in message


def test_refuses_three_tables() -> None:
    message = _refused(f"SELECT COUNT(*) {JOIN} JOIN jiangsu.permits c ON a.k = c.k")
    assert "exactly two tables, not 3" in message


@pytest.mark.parametrize("kind", ["LEFT", "RIGHT OUTER", "FULL OUTER", "CROSS", "NATURAL", "ASOF"])
def test_refuses_other_joins(kind: str) -> None:
    on = "" if kind in ("CROSS", "NATURAL") else " ON a.k = b.k"
    message = _refused(f"SELECT COUNT(*) FROM {REG} a {kind} JOIN {TAX} b{on}")
    assert message.startswith(f"{kind} JOIN is not allowed")


def test_refuses_a_comma_join() -> None:
    message = _refused(f"SELECT COUNT(*) FROM {REG} a, {TAX} b WHERE a.join_day = 1")
    assert message.startswith("a comma in FROM (a join) is not allowed")


def test_refuses_using() -> None:
    assert "JOIN ... USING is not allowed" in _refused(
        f"SELECT COUNT(*) FROM {REG} a JOIN {TAX} b USING (credit_code)"
    )


def test_refuses_a_join_without_on() -> None:
    assert "needs ON a.key = b.key" in _refused(f"SELECT COUNT(*) FROM {REG} a JOIN {TAX} b")


@pytest.mark.parametrize(
    "on",
    ["a.k = b.k AND a.y = b.y", "a.k > b.k", "a.k = 'x'", "abs(a.k) = b.k"],
)
def test_refuses_on_other_than_one_equality(on: str) -> None:
    message = _refused(f"SELECT COUNT(*) FROM {REG} a JOIN {TAX} b ON {on}")
    assert message.startswith(f"ON {on}: a join aggregate joins on one equality")


def test_refuses_on_two_columns_of_one_side() -> None:
    message = _refused(f"SELECT COUNT(*) FROM {REG} a JOIN {TAX} b ON a.k = a.j")
    assert message.startswith("ON a.k = a.j compares two columns of a")


def test_refuses_two_tables_of_one_name() -> None:
    message = _refused(f"SELECT COUNT(*) FROM {REG} JOIN zhejiang.enterprise_registry ON x = y")
    assert "both tables are named enterprise_registry; give them aliases" in message


def test_refuses_a_subquery() -> None:
    message = _refused(f"SELECT COUNT(*) FROM {REG} a JOIN (SELECT * FROM {TAX}) b ON a.k = b.k")
    assert message == "subqueries are not allowed"


def test_refuses_a_cte() -> None:
    message = _refused(f"WITH t AS (SELECT 1) SELECT COUNT(*) {JOIN}")
    assert message.startswith("WITH")


def test_refuses_having() -> None:
    message = _refused(f"SELECT a.city, COUNT(*) {JOIN} GROUP BY a.city HAVING COUNT(*) > 1")
    assert message.startswith("HAVING is not allowed")


def test_refuses_an_unqualified_column() -> None:
    message = _refused(f"SELECT city, COUNT(*) {JOIN} GROUP BY city")
    assert "column city must be qualified by its table (a.city or b.city)" in message


def test_refuses_a_column_of_no_table() -> None:
    message = _refused(f"SELECT COUNT(*) {JOIN} WHERE c.city = 'x'")
    assert "column c.city: c is not a table of this query (a or b)" in message


def test_refuses_a_node_qualified_column() -> None:
    message = _refused(f"SELECT SUM(anhui.a.revenue) {JOIN}")
    assert "column anhui.a.revenue: qualify a column by its table's alias only" in message


def test_refuses_select_star() -> None:
    assert "SELECT * is not allowed" in _refused(f"SELECT * {JOIN}")
    assert "a.* is not allowed" in _refused(f"SELECT a.*, COUNT(*) {JOIN}")


def test_refuses_another_aggregate() -> None:
    assert _refused(f"SELECT max(b.amount) {JOIN}").startswith("MAX is not allowed")


def test_refuses_count_of_a_column_other_than_the_key() -> None:
    message = _refused(f"SELECT COUNT(b.amount) {JOIN}")
    assert message.startswith("COUNT(b.amount): a join aggregate counts matched rows")


def test_refuses_an_expression_inside_an_aggregate() -> None:
    message = _refused(f"SELECT SUM(b.amount * 2) {JOIN}")
    assert message.startswith("SUM(b.amount * 2): a join aggregate takes SUM(a.column)")


def test_refuses_distinct_and_filter() -> None:
    assert _refused(f"SELECT COUNT(DISTINCT a.credit_code) {JOIN}").startswith(
        "COUNT(DISTINCT a.credit_code): DISTINCT is not allowed"
    )
    message = _refused(f"SELECT SUM(b.amount) FILTER (WHERE b.year = 1) {JOIN}")
    assert message.startswith("SUM(b.amount) FILTER (WHERE b.year = 1): FILTER is not allowed")


def test_refuses_an_expression_of_aggregates() -> None:
    message = _refused(f"SELECT SUM(b.amount) / COUNT(*) {JOIN}")
    assert message.startswith("SUM(b.amount) / COUNT(*) is not allowed in a join aggregate")


def test_refuses_no_aggregate() -> None:
    message = _refused(f"SELECT a.city {JOIN} GROUP BY a.city")
    assert message == "a join aggregate computes at least one of COUNT(*), SUM, AVG"


def test_refuses_sums_of_both_sides() -> None:
    message = _refused(f"SELECT SUM(a.revenue), AVG(b.amount) {JOIN}")
    assert message.startswith("SUM(a.revenue) and AVG(b.amount) read values of both tables")


def test_refuses_groups_of_both_sides() -> None:
    message = _refused(f"SELECT a.city, b.industry, COUNT(*) {JOIN} GROUP BY a.city, b.industry")
    assert message.startswith("GROUP BY a.city, b.industry groups by columns of both tables")


def test_refuses_a_group_column_not_selected() -> None:
    message = _refused(f"SELECT COUNT(*) {JOIN} GROUP BY a.city")
    assert message.startswith("GROUP BY a.city: a join aggregate shows its group columns")


def test_refuses_a_selected_column_not_grouped() -> None:
    message = _refused(f"SELECT a.city, COUNT(*) {JOIN}")
    assert message == "column a.city must be in GROUP BY or inside an aggregate function"


def test_refuses_a_group_expression() -> None:
    message = _refused(f"SELECT COUNT(*) {JOIN} GROUP BY year(b.day)")
    assert message.startswith("GROUP BY year(b.day) is not allowed in a join aggregate")


def test_refuses_grouping_by_an_aggregate() -> None:
    message = _refused(f"SELECT a.city, COUNT(*) {JOIN} GROUP BY 2")
    assert message == "GROUP BY 2: cannot group by an aggregate"


def test_refuses_grouping_by_the_join_key() -> None:
    message = _refused(f"SELECT a.credit_code, COUNT(*) {JOIN} GROUP BY a.credit_code")
    assert message.startswith("GROUP BY a.credit_code groups by the join key")


def test_refuses_sums_grouped_by_their_own_side() -> None:
    message = _refused(f"SELECT a.city, SUM(a.revenue) {JOIN} GROUP BY a.city")
    assert message == (
        "a join aggregate sums the values of one side grouped by the other side's columns:"
        " SUM(a.revenue) and GROUP BY a.city are both of anhui.enterprise_registry"
    )


def test_refuses_a_condition_over_both_sides() -> None:
    message = _refused(f"SELECT COUNT(*) {JOIN} WHERE a.revenue > 1 AND (a.x = 1 OR b.y = 2)")
    assert message.startswith("WHERE (a.x = 1 OR b.y = 2) uses columns of both tables")


def test_refuses_a_condition_without_columns() -> None:
    assert _refused(f"SELECT COUNT(*) {JOIN} WHERE 1 = 1").startswith("WHERE 1 = 1 names no column")


def test_refuses_a_condition_the_single_owner_subset_refuses() -> None:
    message = _refused(f"SELECT COUNT(*) {JOIN} WHERE b.year = 1 AND a.city LIKE 'H%'")
    assert message == "WHERE a.city LIKE 'H%': city LIKE 'H%' is not allowed in WHERE"
    message = _refused(f"SELECT COUNT(*) {JOIN} WHERE a.x = 1 AND b.amount > SUM(b.y)")
    assert message.startswith("WHERE b.amount > SUM(b.y): SUM(...)")


def test_refuses_an_engine_function() -> None:
    message = _refused(f"SELECT COUNT(*) {JOIN} WHERE lower(a.city) = 'x'")
    assert message == "function lower() is not allowed"


def test_refuses_order_by_what_is_not_an_output() -> None:
    message = _refused(f"SELECT COUNT(*) AS n {JOIN} ORDER BY b.amount")
    assert message == "ORDER BY b.amount: order by an output name or position (n)"
    assert _refused(f"SELECT COUNT(*) {JOIN} ORDER BY 3") == (
        "ORDER BY 3: there are 1 items in SELECT"
    )


def test_refuses_nulls_first() -> None:
    message = _refused(f"SELECT a.city, COUNT(*) {JOIN} GROUP BY 1 ORDER BY 1 NULLS FIRST")
    assert message.startswith("ORDER BY 1 NULLS FIRST: NULLS FIRST is not allowed")


def test_refuses_a_limit_over_the_cap() -> None:
    message = _refused(f"SELECT COUNT(*) {JOIN} LIMIT {MAX_LIMIT + 1}")
    assert message == f"LIMIT may be at most {MAX_LIMIT}"


def test_refuses_two_outputs_of_one_name() -> None:
    message = _refused(f"SELECT COUNT(*), COUNT(*) {JOIN}")
    assert message == "two outputs are named count; give them different aliases"


def test_refuses_an_output_name_outside_identifiers() -> None:
    message = _refused(f'SELECT COUNT(*) AS "n; drop" {JOIN}')
    assert message.startswith("'n; drop' is not allowed as an output name")


def test_refuses_a_column_alias_list_on_a_table() -> None:
    message = _refused(f"SELECT COUNT(*) FROM {REG} AS a(x, y) JOIN {TAX} b ON a.x = b.k")
    assert "a table alias names the table, not its columns" in message
