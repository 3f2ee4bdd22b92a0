"""The SQL subset rule by rule: each rule refuses with its message and records what it
validated; the order of RULES is the order of priority of refusals."""

from __future__ import annotations

import pytest
from sqlglot import exp

from federation.sql import RULES, QueryError, parse, read
from federation.sql import rules as r


def _context(sql: str, upto: r.Rule | None = None) -> r.Context:
    """A context after the rules before ``upto`` (all of them if None) have run."""
    select = read(sql)
    ctx = r.Context(select, r.survey(select))
    for rule in RULES:
        if rule is upto:
            break
        rule(ctx)
    return ctx


def _refused(rule: r.Rule, sql: str, message: str) -> None:
    ctx = _context(sql, upto=rule)
    with pytest.raises(QueryError) as info:
        rule(ctx)
    assert str(info.value) == message


def test_the_rules_run_in_this_order() -> None:
    assert [rule.__name__ for rule in RULES] == [
        "within_depth",
        "within_size",
        "no_other_clauses",
        "no_window_functions",
        "no_subqueries",
        "no_parameters",
        "numbers_are_numbers",
        "only_aggregate_functions",
        "from_one_dataset",
        "where_condition",
        "group_by_columns",
        "select_list",
        "selects_a_column",
        "having_over_groups",
        "order_by",
        "limit_number",
    ]


@pytest.mark.parametrize(
    "sql, message",
    [
        # several faults: the first rule in RULES decides the message
        ("SELECT DISTINCT a FROM t JOIN u ON a = b", "JOIN is not allowed"),
        (
            "SELECT COUNT(*) OVER () FROM t WHERE x IN (SELECT 1)",
            "window functions are not allowed",
        ),
        ("SELECT COUNT(*) FROM t WHERE x IN (SELECT 1) AND y = ?", "subqueries are not allowed"),
        ("SELECT upper(a) FROM t AS u", "function upper() is not allowed"),
        ("SELECT a FROM t AS u WHERE b = now()", "function now() is not allowed"),
        ("SELECT a, COUNT(*) FROM t AS u", "table aliases are not allowed"),
        ("SELECT a FROM t WHERE t.b + 1 GROUP BY SUM(x)", "t.b + 1 is not allowed in WHERE"),
    ],
)
def test_refusal_priority(sql: str, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(sql)
    assert str(info.value) == message


def test_survey_finds_depth_size_kinds_and_columns_in_one_pass() -> None:
    select = read("SELECT g, SUM(x) FROM t /* hi */ WHERE upper(a) = lower(b) GROUP BY g")
    found = r.survey(select)
    assert found.depth == 6 and found.nodes == 20
    assert found.has_aggregate and not (found.window or found.subquery or found.parameter)
    # the first function outside the subset, in the order refusals have always named it
    assert isinstance(found.bad_function, exp.Lower)
    assert sorted(c.name for c in found.columns) == ["a", "b", "g", "g", "x"]
    assert all(node.comments is None for node in select.walk())  # no user text travels on


def test_within_depth_and_size() -> None:
    deep = "SELECT COUNT(*) FROM t WHERE " + "(" * 45 + "x = 1" + ")" * 45
    _refused(r.within_depth, deep, "the query is nested too deeply (limit 40)")
    many = ",".join(["1"] * 1600)
    _refused(
        r.within_size,
        f"SELECT COUNT(*) FROM t WHERE g IN ({many})",
        "the query is too large (limit 1500 syntax nodes)",
    )


@pytest.mark.parametrize(
    "sql, message",
    [
        ("SELECT COUNT(*) FROM t JOIN u ON t.a = u.a", "JOIN is not allowed"),
        ("WITH v AS (SELECT 1) SELECT COUNT(*) FROM t", "WITH (CTE) is not allowed"),
        ("SELECT DISTINCT a FROM t", "SELECT DISTINCT is not allowed"),
        ("SELECT COUNT(*) FROM t OFFSET 2", "OFFSET is not allowed"),
        ("SELECT COUNT(*) FROM t QUALIFY 1 = 1", "QUALIFY is not allowed"),
    ],
)
def test_no_other_clauses(sql: str, message: str) -> None:
    _refused(r.no_other_clauses, sql, message)


def test_no_window_subquery_parameter_or_function() -> None:
    _refused(
        r.no_window_functions, "SELECT COUNT(*) OVER () FROM t", "window functions are not allowed"
    )
    _refused(
        r.no_subqueries, "SELECT COUNT(*) FROM (SELECT * FROM t)", "subqueries are not allowed"
    )
    _refused(r.no_parameters, "SELECT COUNT(*) FROM t WHERE a = ?", "parameters are not allowed")
    for text, literal in (("1e", "1e"), (".5e", "0.5e"), ("2E AND a < 3", "2E")):
        # the parser keeps these as numbers; an owner's type check could not read them
        _refused(
            r.numbers_are_numbers,
            f"SELECT COUNT(*) FROM t WHERE a > {text}",
            f"{literal!r} is not a number",
        )
    for text in ("1e5", "1.", ".5", "1E-3", "00012", "1_000"):
        r.numbers_are_numbers(
            _context(f"SELECT COUNT(*) FROM t WHERE a > {text}", upto=r.numbers_are_numbers)
        )
    _refused(
        r.only_aggregate_functions,
        "SELECT COUNT(*) FROM read_csv('/etc/passwd')",
        "function read_csv() is not allowed",
    )


def test_from_one_dataset() -> None:
    ctx = _context("SELECT COUNT(*) FROM Anhui.Firms", upto=r.from_one_dataset)
    r.from_one_dataset(ctx)
    assert (ctx.dataset, ctx.node) == ("firms", "anhui")
    _refused(r.from_one_dataset, "SELECT 1", "the query needs FROM dataset (or FROM node.dataset)")
    _refused(r.from_one_dataset, "SELECT COUNT(*) FROM a.b.c", "FROM takes dataset or node.dataset")
    _refused(r.from_one_dataset, "SELECT COUNT(*) FROM t AS u", "table aliases are not allowed")
    _refused(
        r.from_one_dataset,
        'SELECT COUNT(*) FROM "/etc/passwd"',
        "'/etc/passwd' is not a dataset or node name",
    )


def test_where_condition_records_filter_columns() -> None:
    ctx = _context(
        "SELECT COUNT(*) FROM t WHERE (a > 1 OR b IN (1, 2)) AND NOT c IS NULL "
        "AND d BETWEEN DATE '2020-01-01' AND DATE '2021-01-01'",
        upto=r.where_condition,
    )
    r.where_condition(ctx)
    assert ctx.roles == {"a": {"filter"}, "b": {"filter"}, "c": {"filter"}, "d": {"filter"}}
    _refused(
        r.where_condition,
        "SELECT COUNT(*) FROM t WHERE a IS TRUE",
        "IS only takes NULL (IS NULL / IS NOT NULL)",
    )
    _refused(
        r.where_condition, "SELECT COUNT(*) FROM t WHERE a = b || c", "b || c is not a literal"
    )
    _refused(
        r.from_one_dataset,
        "SELECT COUNT(*) FROM t WHERE u.a = 1",
        "column u.a must name a column of t",
    )


def test_group_by_columns() -> None:
    ctx = _context("SELECT g, COUNT(*) FROM t GROUP BY g, t.h, g", upto=r.group_by_columns)
    r.group_by_columns(ctx)
    assert ctx.groups == ["g", "h"] and ctx.roles == {"g": {"group_by"}, "h": {"group_by"}}
    _refused(
        r.group_by_columns,
        "SELECT COUNT(*) FROM t GROUP BY SUM(x)",
        "GROUP BY cannot group by an aggregate",
    )
    _refused(
        r.group_by_columns,
        "SELECT g, COUNT(*) FROM t GROUP BY ROLLUP (g)",
        "GROUP BY ROLLUP is not allowed",
    )
    _refused(
        r.group_by_columns,
        "SELECT COUNT(*) FROM t GROUP BY 1 + 2",
        "GROUP BY 1 + 2 groups by a constant; name a column",
    )
    _refused(
        r.group_by_columns,
        "SELECT COUNT(*) FROM t GROUP BY 2",
        "GROUP BY 2: there are 1 items in SELECT",
    )


def test_select_list_aggregates_and_raw_reads() -> None:
    ctx = _context("SELECT g, COUNT(*), AVG(x), COUNT(*) + 1 FROM t GROUP BY g", upto=r.select_list)
    r.select_list(ctx)
    assert [a.label for a in ctx.aggregates] == ["count(*)", "avg(x)"]
    assert ctx.roles["x"] == {"aggregate"} and not ctx.raw
    raw = _context("SELECT a, b AS c FROM t", upto=r.select_list)
    r.select_list(raw)
    assert raw.raw == ["a", "b"] and raw.roles == {"a": {"raw"}, "b": {"raw"}}
    _refused(r.select_list, "SELECT a, a FROM t", "column 'a' is selected twice")
    _refused(r.select_list, "SELECT a + 1 FROM t", "a + 1 is not allowed in a raw SELECT")
    _refused(
        r.select_list,
        "SELECT g, x, COUNT(*) FROM t GROUP BY g",
        "column 'x' must be in GROUP BY or inside an aggregate function",
    )
    _refused(
        r.select_list,
        "SELECT COUNT(DISTINCT a) FROM t",
        "COUNT(DISTINCT ...) is not allowed; use approx_count_distinct",
    )
    _refused(r.select_list, "SELECT SUM(a || 'x') FROM t", "a || 'x' is not allowed inside SUM")
    _refused(r.select_list, "SELECT SUM(__n) FROM t", "'__n': names starting with __ are reserved")


def test_having_over_groups() -> None:
    ctx = _context("SELECT g, COUNT(*) FROM t GROUP BY g HAVING MAX(x) > 1", r.having_over_groups)
    r.having_over_groups(ctx)
    assert [a.label for a in ctx.aggregates] == ["count(*)", "max(x)"]
    _refused(r.having_over_groups, "SELECT a FROM t HAVING a > 1", "HAVING needs aggregates")


def test_order_by() -> None:
    ctx = _context("SELECT a AS b, c FROM t ORDER BY b DESC, c NULLS FIRST", upto=r.order_by)
    r.order_by(ctx)
    assert ctx.raw_order == [("a", True, False), ("c", False, True)]
    _refused(
        r.order_by,
        "SELECT COUNT(*) FROM t GROUP BY a ORDER BY 3",
        "ORDER BY 3: there are 1 items in SELECT",
    )
    _refused(
        r.order_by, "SELECT a FROM t ORDER BY b", "a raw SELECT may only be ordered by its columns"
    )


def test_limit_number_and_the_raw_row_cap() -> None:
    for sql, limit, cap in [
        ("SELECT g, COUNT(*) FROM t GROUP BY g LIMIT 5000", 5000, None),
        ("SELECT a FROM t", None, 1000),
        ("SELECT a FROM t LIMIT 5000", 5000, 1000),
        ("SELECT a FROM t LIMIT 0", 0, 0),
        ("SELECT a FROM t LIMIT 7", 7, 7),
    ]:
        ctx = _context(sql)
        assert (ctx.limit, ctx.row_cap) == (limit, cap), sql
    _refused(r.limit_number, "SELECT COUNT(*) FROM t LIMIT 'a'", "LIMIT takes a whole number")
    _refused(r.limit_number, "SELECT COUNT(*) FROM t LIMIT 100001", "LIMIT may be at most 100000")


def test_a_rule_list_can_grow() -> None:
    def no_raw_reads(ctx: r.Context) -> None:
        if ctx.raw:
            raise QueryError("raw reads are switched off here")

    r.check(read("SELECT COUNT(*) FROM t"), (*RULES, no_raw_reads))
    with pytest.raises(QueryError, match="switched off"):
        r.check(read("SELECT a FROM t"), (*RULES, no_raw_reads))
