"""Refusals quote what the user wrote: function names, statement kinds and clauses as typed,
not sqlglot's normalised names (``list`` is parsed as ARRAY_AGG, ``string_agg`` as
GROUP_CONCAT, ``USING SAMPLE`` as TABLESAMPLE, ``LOAD`` as a Command)."""

from __future__ import annotations

import time

import pytest
from sqlglot import exp

from federation.sql.dialect import DUCKDB
from federation.sql.wording import CLAUSES, clause, describe, statement_kind, text_of, written


def _tree(sql: str) -> exp.Expr:
    trees = [t for t in DUCKDB.parse(sql) if t is not None]
    assert len(trees) == 1
    return trees[0]


def _nodes(sql: str, kind: type[exp.Expr]) -> list[exp.Expr]:
    """The nodes of ``kind`` in the query, in the order their text comes."""
    found = list(_tree(sql).find_all(kind))
    assert found, f"no {kind.__name__} in {sql!r}"
    return found


def _sqlglot_name(node: exp.Expr) -> str:
    """The name a refusal used before: sqlglot's name for the node's class."""
    if isinstance(node, exp.Anonymous):
        return str(node.this)
    return node.sql_name() if isinstance(node, exp.Func) else type(node).__name__


# (query, the node class sqlglot parses the call into, the name as typed, renamed by sqlglot)
CALLS = [
    ("SELECT list(x) FROM t", exp.ArrayAgg, "list", True),
    ("SELECT LIST(x) FROM t", exp.ArrayAgg, "LIST", True),
    ("SELECT array_agg(x) FROM t", exp.ArrayAgg, "array_agg", False),
    ("SELECT string_agg(x, ',') FROM t", exp.GroupConcat, "string_agg", True),
    ("SELECT String_Agg(DISTINCT x, ',' ORDER BY x) FROM t", exp.GroupConcat, "String_Agg", True),
    ("SELECT group_concat(x) FROM t", exp.GroupConcat, "group_concat", False),
    ("SELECT ListAgg(x) FROM t", exp.GroupConcat, "ListAgg", True),
    ("SELECT any_value(x) FROM t", exp.AnyValue, "any_value", False),
    ("SELECT arbitrary(x) FROM t", exp.Anonymous, "arbitrary", False),
    ("SELECT first(x) FROM t", exp.First, "first", False),
    ("SELECT stddev(x) FROM t", exp.Stddev, "stddev", False),
    ("SELECT STDDEV_SAMP(x) FROM t", exp.StddevSamp, "STDDEV_SAMP", False),
    ("SELECT var_samp(x) FROM t", exp.Variance, "var_samp", True),
    ("SELECT variance(x) FROM t", exp.Variance, "variance", False),
    ("SELECT approx_count_distinct(x) FROM t", exp.ApproxDistinct, "approx_count_distinct", True),
    ("SELECT count(*) FROM t WHERE regexp_matches(x, 'a')", exp.RegexpLike, "regexp_matches", True),
    ("SELECT count(*) FROM read_csv_auto('/etc/passwd')", exp.Anonymous, "read_csv_auto", False),
    ("SELECT Max(x) FROM t", exp.Max, "Max", False),
    ("SELECT MAX(floor(x)) FROM t", exp.Floor, "floor", False),
    ("SELECT approx_quantile(x, 0.5) FROM t", exp.ApproxQuantile, "approx_quantile", False),
    ("SELECT quantile_cont(x, 0.5) FROM t", exp.PercentileCont, "quantile_cont", True),
    ("SELECT max_by(x, y) FROM t", exp.ArgMax, "max_by", True),
    ("SELECT sum(ifnull(x, 0)) FROM t", exp.Coalesce, "ifnull", True),
    ("SELECT md5(x) FROM t", exp.MD5, "md5", False),
    ("SELECT Stddev_Pop(x) FILTER (WHERE y > 1) FROM t", exp.StddevPop, "Stddev_Pop", False),
    ("SELECT sum(x) OVER (PARTITION BY y) FROM t", exp.Sum, "sum", False),
    ('SELECT "My_Fn"(x) FROM t', exp.Anonymous, '"My_Fn"', False),
    ("SELECT\n  STRING_AGG( -- names\n    x,\n ',')\nFROM t", exp.GroupConcat, "STRING_AGG", True),
    ("SELECT count(*) FROM t WHERE x = trim(y)", exp.Trim, "trim", False),
    ("SELECT count(*) FROM t WHERE x = cast(y AS int)", exp.Cast, "cast", False),
]


@pytest.mark.parametrize(("sql", "kind", "typed", "renamed"), CALLS)
def test_a_call_is_named_as_typed(
    sql: str, kind: type[exp.Expr], typed: str, renamed: bool
) -> None:
    (node,) = _nodes(sql, kind)
    assert typed in sql
    assert written(node, sql) == typed
    assert describe(node, sql) == f"function {typed}()"
    # sqlglot's own name for the node is not what the user wrote: the reason for this module
    assert (_sqlglot_name(node).lower() != typed.lower()) == renamed


def test_each_of_several_equal_calls_keeps_its_own_spelling() -> None:
    sql = "SELECT max(x), MAX(x), Max(y) FROM t GROUP BY z HAVING mAx(x) > 1"
    maxes = sorted(_nodes(sql, exp.Max), key=lambda n: sql.index(n.this.name, 0))
    assert sorted(written(n, sql) or "" for n in maxes) == sorted(["max", "MAX", "Max", "mAx"])
    first, second = _tree(sql).expressions[:2]
    assert (written(first, sql), written(second, sql)) == ("max", "MAX")


def test_any_value_is_wrapped_by_its_builder_and_still_named() -> None:
    sql = "SELECT ANY_VALUE(x) FROM t"
    (node,) = _nodes(sql, exp.AnyValue)
    assert isinstance(node.parent, exp.IgnoreNulls)  # sqlglot's DuckDB builder adds it
    assert written(node, sql) == written(node.parent, sql) == "ANY_VALUE"


def test_keyword_forms_are_named_in_upper_case() -> None:
    sql = "SELECT count(*) FROM t WHERE d = current_date"
    (node,) = _nodes(sql, exp.CurrentDate)
    assert written(node, sql) == "current_date"
    assert describe(node, sql) == "CURRENT_DATE"
    sql = "SELECT sum(case when a > 1 then x end) FROM t"
    (case,) = _nodes(sql, exp.Case)
    assert describe(case, sql) == "CASE"


@pytest.mark.parametrize(
    ("sql", "kind", "text"),
    [
        ("SELECT count(*) FROM t WHERE t.b + 1", exp.Add, "t.b + 1"),
        ("SELECT count(*) FROM t WHERE x || 'a' = 'b'", exp.DPipe, "x || 'a'"),
        ("SELECT count(*) FROM t WHERE x::json = 'b'", exp.Cast, "x::json"),
        ("SELECT count(*) FROM t WHERE NOT x IS NULL", exp.Not, "NOT x IS NULL"),
        ("SELECT count(*) FROM t WHERE x LIKE 'a%'", exp.Like, "x LIKE 'a%'"),
        ("SELECT count(*) FROM t WHERE x ^ 2 > 1", exp.Pow, "x ^ 2"),
        (
            "SELECT count(*) FROM t\n WHERE   x\n  BETWEEN 1 AND  2",
            exp.Between,
            "x BETWEEN 1 AND 2",
        ),
        ("SELECT count(*) FROM t WHERE [1, 2] = x", exp.Array, "[1, 2]"),
    ],
)
def test_anything_else_is_quoted_as_typed(sql: str, kind: type[exp.Expr], text: str) -> None:
    (node,) = _nodes(sql, kind)
    assert text_of(node, sql) == text
    assert describe(node, sql) == text
    if not isinstance(node, exp.Cast):  # CAST(...) is a call; x::json is an operator
        assert written(node, sql) is None


def test_subqueries_and_table_functions() -> None:
    sql = "SELECT count(*) FROM t WHERE x IN (SELECT y FROM u)"
    (sub,) = [s for s in _nodes(sql, exp.Select) if s.parent is not None]
    assert describe(sub, sql) == "a subquery"
    sql = "SELECT count(*) FROM Read_CSV('/etc/passwd')"
    (table,) = _nodes(sql, exp.Table)
    assert describe(table, sql) == "function Read_CSV()"


def test_a_tree_whose_comments_the_survey_dropped_is_still_matched() -> None:
    sql = "SELECT /* a */ string_agg(x /* b */, ',') /* c */ FROM t"
    tree = _tree(sql)
    for node in tree.walk():
        node.comments = None  # as rules.survey does before any rule refuses
    (node,) = list(tree.find_all(exp.GroupConcat))
    assert describe(node, sql) == "function string_agg()"


def test_a_node_not_from_the_text_falls_back_to_sqlglots_name() -> None:
    made = exp.Max(this=exp.column("x"))
    assert written(made, "SELECT 1 FROM t") is None
    assert describe(made, "SELECT 1 FROM t") == "function max()"
    assert describe(made, "") == "function max()"
    assert text_of(exp.column("x").eq(1), "SELECT 1") == "x = 1"


def test_a_long_query_is_worded_in_bounded_time() -> None:
    """A refusal near the size limit: many calls without positions, the refused one last."""
    items = ", ".join(f"MAX(c{i})" for i in range(300)) + ", current_date"
    sql = f"SELECT {items} FROM t"
    assert len(sql) < 8_000
    (node,) = _nodes(sql, exp.CurrentDate)
    started = time.process_time()  # CPU: a loaded machine's waits do not count
    assert describe(node, sql) == "CURRENT_DATE"
    last_max = _tree(sql).expressions[299]
    assert written(last_max, sql) == "MAX"
    assert time.process_time() - started < 1.0


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT a FROM t UNION ALL SELECT a FROM u", "UNION ALL"),
        ("select a from t union select a from u", "UNION"),
        ("SELECT a FROM t INTERSECT SELECT a FROM u", "INTERSECT"),
        ("SELECT a FROM t EXCEPT SELECT a FROM u", "EXCEPT"),
        ("SELECT a FROM t except all SELECT a FROM u", "EXCEPT ALL"),
        ("SELECT a FROM t UNION ALL BY NAME SELECT a FROM u", "UNION ALL BY NAME"),
        ("(SELECT a FROM t) UNION (SELECT a FROM u)", "UNION"),
        ("SELECT * EXCLUDE (b) FROM t UNION SELECT a FROM u", "UNION"),
        ("LOAD httpfs", "LOAD"),
        ("install httpfs", "INSTALL"),
        ("ATTACH '/tmp/other.db' AS other", "ATTACH"),
        ("ATTACH DATABASE '/tmp/other.db' AS other", "ATTACH DATABASE"),
        ("COPY t TO '/tmp/stolen.csv'", "COPY"),
        ("PRAGMA database_list", "PRAGMA"),
        ("SET enable_external_access = true", "SET"),
        ("CREATE TABLE x AS SELECT 1", "CREATE TABLE"),
        ("create or replace temp table x as select 1", "CREATE OR REPLACE TEMP TABLE"),
        ("INSERT INTO t VALUES (1)", "INSERT INTO"),
        ("WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a", "INSERT INTO"),
        ("DELETE FROM t", "DELETE FROM"),
        ("DROP TABLE IF EXISTS t", "DROP TABLE"),
        ("UPDATE t SET a = 1", "UPDATE"),
        ("EXPLAIN SELECT 1", "EXPLAIN"),
        ("CALL pragma_version()", "CALL"),
        ("DESCRIBE t", "DESCRIBE"),
        ("VALUES (1)", "VALUES"),
        ("(SELECT a FROM t)", "a query in parentheses"),
    ],
)
def test_a_statement_that_is_not_a_select_is_named_as_typed(sql: str, kind: str) -> None:
    tree = _tree(sql)
    assert not isinstance(tree, exp.Select)
    assert statement_kind(sql, tree) == kind


def test_statement_kinds_are_not_sqlglots_class_names() -> None:
    for sql, parsed_as in [("LOAD httpfs", "COMMAND"), ("SELECT 1 UNION ALL SELECT 2", "UNION")]:
        tree = _tree(sql)
        assert type(tree).__name__.upper() == parsed_as  # what the refusal said before
    assert statement_kind("LOAD httpfs", _tree("LOAD httpfs")) == "LOAD"


@pytest.mark.parametrize(
    ("sql", "key", "words"),
    [
        ("SELECT count(*) FROM t QUALIFY count(*) > 1", "qualify", "QUALIFY"),
        ("SELECT sum(b) OVER w FROM t window w AS (PARTITION BY a)", "windows", "WINDOW"),
        ("SELECT count(*) FROM t USING SAMPLE 10%", "sample", "USING SAMPLE"),
        ("SELECT count(*) FROM t using sample reservoir(10 ROWS)", "sample", "USING SAMPLE"),
        ("SELECT count(*) FROM t LIMIT 5 OFFSET 2", "offset", "OFFSET"),
        ("SELECT count(*) FROM t OFFSET 2", "offset", "OFFSET"),
        ("SELECT a FROM t LIMIT 2, 5", "offset", "an offset in LIMIT (LIMIT offset, count)"),
        ("SELECT count(*) FROM t left outer join u USING (a)", "joins", "LEFT OUTER JOIN"),
        ("SELECT count(*) FROM t ASOF JOIN u ON t.a >= u.a", "joins", "ASOF JOIN"),
        ("SELECT count(*) FROM t, u", "joins", "a comma in FROM (a join)"),
        ("SELECT DISTINCT ON (a) a FROM t", "distinct", "SELECT DISTINCT ON"),
        ("select distinct a FROM t", "distinct", "SELECT DISTINCT"),
        ("with recursive r AS (SELECT 1) SELECT count(*) FROM t", "with_", "WITH RECURSIVE"),
        ("SELECT a INTO x FROM t", "into", "INTO"),
        ("SELECT a FROM t FOR UPDATE", "locks", "FOR UPDATE"),
    ],
)
def test_a_clause_is_named_as_typed(sql: str, key: str, words: str) -> None:
    select = _tree(sql)
    assert isinstance(select, exp.Select)
    assert select.args.get(key), f"sqlglot keeps this clause under {key!r}"
    assert clause(key, sql) == words


def test_tablesample_on_the_table_is_named_as_typed() -> None:
    sql = "SELECT count(*) FROM t TABLESAMPLE 10%"
    (table,) = _nodes(sql, exp.Table)
    assert table.args.get("sample")
    assert clause("sample", sql) == "TABLESAMPLE"


def test_clause_words_ignore_nested_queries_and_unknown_keys() -> None:
    sql = "SELECT count(*) FROM t WHERE a IN (SELECT b FROM u QUALIFY 1 = 1)"
    assert clause("qualify", sql) is None  # not this statement's clause
    assert clause("kind", "SELECT count(*) FROM t") is None
    assert clause("joins", "SELECT a, b FROM t WHERE c IN (1, 2)") is None
    assert set(CLAUSES) >= {"joins", "with_", "distinct", "qualify", "windows", "offset"}


def test_a_tree_whose_column_qualifiers_the_rules_dropped_is_still_matched() -> None:
    """rules.from_one_dataset turns ``t.x`` into ``x`` before the later rules refuse."""
    sql = "SELECT string_agg(t.x, ',') FROM t WHERE t.b || 'a' = 'c'"
    tree = _tree(sql)
    for col in tree.find_all(exp.Column):
        col.set("table", None)
    (agg,) = list(tree.find_all(exp.GroupConcat))
    (pipe,) = list(tree.find_all(exp.DPipe))
    assert describe(agg, sql) == "function string_agg()"
    assert describe(pipe, sql) == "t.b || 'a'"
