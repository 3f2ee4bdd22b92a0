"""Hostile queries: each refused with a clear status, logged, and nothing released.

Every query here goes through the analyst's home node like a real one. Refusals that
depend on grants are made by the owners (and logged there); queries outside the SQL
subset are refused by the home node and, sent straight to an owner by a member node
(a home node that skipped its checks), by the owner too.
"""

from __future__ import annotations

import datetime as dt
import re
import time

import grpc
import pytest

from gateway.client import ClientError
from gateway.clock import utc
from gateway.rpc.v1 import common_pb2, peer_pb2, peer_pb2_grpc
from tests.conftest import RunningFederation

pytestmark = pytest.mark.integration

PD, IA, NF, RE = (
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)
ER = "enterprise_registry"

# (id, sql, expected status, words the message must contain)
HOSTILE = [
    ("raw-non-raw-column", f"SELECT revenue FROM {ER}", PD, "may not be used as raw"),
    (
        "raw-name",
        f"SELECT enterprise_name FROM {ER}",
        PD,
        "'enterprise_name' may not be used as raw",
    ),
    ("raw-l3", "SELECT monthly_wage FROM social_insurance", PD, "raw"),
    (
        "group-by-uncontrolled",
        f"SELECT credit_code, COUNT(*) FROM {ER} GROUP BY credit_code",
        PD,
        "credit_code",
    ),
    (
        "where-on-aggregate-only",
        f"SELECT COUNT(*) FROM {ER} WHERE revenue > 100",
        PD,
        "'revenue' may not be used as filter",
    ),
    ("aggregate-uncontrolled", f"SELECT SUM(division_code) FROM {ER}", PD, "division_code"),
    (
        "single-out-credit-code",
        f"SELECT COUNT(*), SUM(revenue) FROM {ER} WHERE credit_code = '91310000MA1FL0XX4D'",
        PD,
        "credit_code",
    ),
    (
        "single-out-name",
        f"SELECT AVG(employees) FROM {ER} WHERE enterprise_name = 'Acme Co., Ltd.'",
        PD,
        "enterprise_name",
    ),
    ("unknown-column", f"SELECT SUM(nope) FROM {ER}", IA, "no column 'nope'"),
    ("unknown-dataset", "SELECT COUNT(*) FROM nothing_here", NF, "nothing_here"),
    (
        "l4-column",
        "SELECT person_id, COUNT(*) FROM social_insurance GROUP BY person_id",
        PD,
        "person_id",
    ),
    ("max-under-dp", "SELECT MAX(monthly_wage) FROM social_insurance", PD, "the extremes control"),
    ("read-csv", "SELECT * FROM read_csv('/etc/passwd')", IA, "read_csv"),
    ("read-parquet", "SELECT COUNT(*) FROM read_parquet('/etc/shadow')", IA, "read_parquet"),
    ("read-text", "SELECT COUNT(*) FROM read_text('/etc/hosts')", IA, "read_text"),
    ("glob", "SELECT COUNT(*) FROM glob('/etc/*')", IA, "glob"),
    ("quoted-path", 'SELECT COUNT(*) FROM "/etc/passwd"', IA, "not a dataset"),
    ("copy", f"COPY {ER} TO '/tmp/stolen.csv'", IA, "only SELECT"),
    ("attach", "ATTACH '/tmp/other.db' AS other", IA, "only SELECT"),
    ("install", "INSTALL httpfs", IA, "only SELECT"),
    ("load", "LOAD httpfs", IA, "only SELECT"),
    ("pragma", "PRAGMA database_list", IA, "only SELECT"),
    ("set", "SET enable_external_access = true", IA, "only SELECT"),
    ("create", "CREATE TABLE x AS SELECT 1", IA, "only SELECT"),
    ("drop", f"DROP TABLE {ER}", IA, "only SELECT"),
    ("stacked", f"SELECT COUNT(*) FROM {ER}; DROP TABLE {ER}", IA, "exactly one statement"),
    (
        "comment-hides-statement",
        f"SELECT COUNT(*) FROM {ER} /* x */; ATTACH 'x.db'",
        IA,
        "exactly one statement",
    ),
    (
        "line-comment-then-statement",
        f"SELECT COUNT(*) FROM {ER} -- harmless\n; COPY {ER} TO '/tmp/x'",
        IA,
        "exactly one statement",
    ),
    ("subquery-from", f"SELECT COUNT(*) FROM (SELECT * FROM {ER})", IA, "subquer"),
    (
        "subquery-in",
        f"SELECT COUNT(*) FROM {ER} WHERE city IN (SELECT city FROM {ER})",
        IA,
        "subquer",
    ),
    ("cte", f"WITH t AS (SELECT * FROM {ER}) SELECT COUNT(*) FROM t", IA, "WITH"),
    ("join", f"SELECT COUNT(*) FROM {ER} a JOIN social_insurance b ON a.city = b.city", IA, "JOIN"),
    (
        "union",
        f"SELECT COUNT(*) FROM {ER} UNION SELECT COUNT(*) FROM social_insurance",
        IA,
        "only SELECT",
    ),
    ("window", f"SELECT COUNT(*) OVER () FROM {ER}", IA, "window"),
    (
        "settings-function",
        f"SELECT COUNT(*) FROM {ER} WHERE current_setting('threads') = 1",
        IA,
        "current_setting",
    ),
    ("catalog-function", "SELECT COUNT(*) FROM duckdb_settings()", IA, "duckdb_settings"),
    ("getenv", f"SELECT COUNT(*) FROM {ER} WHERE city = getenv('HOME')", IA, "getenv"),
    ("distinct", f"SELECT DISTINCT city FROM {ER}", IA, "DISTINCT"),
    ("count-distinct", f"SELECT COUNT(DISTINCT city) FROM {ER}", IA, "DISTINCT"),
    (
        "oversized",
        f"SELECT COUNT(*) FROM {ER} WHERE " + " OR ".join(["city = 'x'"] * 700),
        IA,
        "characters",
    ),
    (
        "deeply-nested",
        f"SELECT COUNT(*) FROM {ER} WHERE " + "(" * 60 + "city = 'x'" + ")" * 60,
        IA,
        "nested too deeply",
    ),
    ("star", f"SELECT * FROM {ER}", IA, "SELECT *"),
]

SI = "social_insurance"
# Issue 10's forms (expressions and CASE inside aggregates, FILTER, expression and bucket
# group keys, extremes, sketches), each used to smuggle a column past its grant's control.
# The sample grants: enterprise_registry (L2) has city, industry_*, high_tech and
# founding_year as group_by,filter; employees as aggregate,filter (0..100000, no group_by);
# revenue and registered_capital as aggregate; credit_code, enterprise_name and
# division_code not at all. social_insurance (L3, DP) has gender and city as group_by
# only, birth_year as filter only, monthly_wage and contribution_months as aggregate.
SMUGGLED = [
    # an ungranted (or non-aggregate) column inside an aggregate's value
    (
        "times-zero",
        f"SELECT SUM(revenue + division_code * 0) FROM {ER}",
        PD,
        "'division_code' may not be used as aggregate",
    ),
    (
        "in-coalesce",
        f"SELECT SUM(COALESCE(revenue, registered_capital, division_code)) FROM {ER}",
        PD,
        "'division_code' may not be used as aggregate",
    ),
    (
        "in-case-then",
        f"SELECT SUM(CASE WHEN employees > 10 THEN credit_code ELSE 0 END) FROM {ER}",
        PD,
        "'credit_code' may not be used as aggregate",
    ),
    (
        "in-case-else",
        f"SELECT AVG(CASE WHEN high_tech THEN revenue ELSE enterprise_name END) FROM {ER}",
        PD,
        "'enterprise_name' may not be used as aggregate",
    ),
    (
        "in-least",
        f"SELECT SUM(LEAST(revenue, division_code)) FROM {ER}",
        PD,
        "'division_code' may not be used as aggregate",
    ),
    (
        "in-cast",
        f"SELECT SUM(TRY_CAST(credit_code AS DOUBLE)) FROM {ER}",
        PD,
        "'credit_code' may not be used as aggregate",
    ),
    (
        "group-key-in-abs",
        f"SELECT AVG(ABS(founding_year - 2000)) FROM {ER}",
        PD,
        "'founding_year' may not be used as aggregate",
    ),
    (
        "filter-only-in-value",
        f"SELECT SUM(monthly_wage + birth_year * 0) FROM {SI}",
        PD,
        "'birth_year' may not be used as aggregate",
    ),
    (
        "count-of-ungranted",
        f"SELECT COUNT(credit_code) FROM {ER}",
        PD,
        "'credit_code' may not be used as aggregate",
    ),
    # a column without filter in a condition: CASE WHEN, a simple CASE's operand, FILTER
    (
        "group-by-only-in-case-when",
        f"SELECT SUM(CASE WHEN gender = 'F' THEN monthly_wage ELSE 0 END) FROM {SI}",
        PD,
        "'gender' may not be used as filter",
    ),
    (
        "aggregate-only-in-simple-case",
        f"SELECT SUM(CASE revenue WHEN 0 THEN 1 ELSE 0 END) FROM {ER}",
        PD,
        "'revenue' may not be used as filter",
    ),
    (
        "aggregate-only-in-filter",
        f"SELECT SUM(employees) FILTER (WHERE revenue > 100) FROM {ER}",
        PD,
        "'revenue' may not be used as filter",
    ),
    (
        "ungranted-in-filter",
        f"SELECT COUNT(*) FILTER (WHERE credit_code = '91310000MA1FL0XX4D') FROM {ER}",
        PD,
        "'credit_code' may not be used as filter",
    ),
    (
        "group-by-only-in-filter",
        f"SELECT COUNT(*) FILTER (WHERE city = 'Hefei') FROM {SI}",
        PD,
        "'city' may not be used as filter",
    ),
    (
        "filter-in-having",
        f"SELECT city, COUNT(*) AS n FROM {ER} GROUP BY city "
        "HAVING SUM(employees) FILTER (WHERE registered_capital > 5) > 0",
        PD,
        "'registered_capital' may not be used as filter",
    ),
    (
        "filter-with-function",
        f"SELECT SUM(employees) FILTER (WHERE length(enterprise_name) > 5) FROM {ER}",
        IA,
        "length",
    ),
    # group keys: expressions and buckets that are as fine as the column itself
    (
        "width-1-bucket",
        f"SELECT floor(employees / 1) AS b, COUNT(*) FROM {ER} GROUP BY b",
        PD,
        "a bucket of 'employees' would make about 100001 groups",
    ),
    (
        "width-1-bucket-by-position",
        f"SELECT floor(employees / 1) * 1, COUNT(*) FROM {ER} GROUP BY 1",
        PD,
        "a bucket of 'employees' would make about 100001 groups",
    ),
    (
        "tiny-width-bucket",
        f"SELECT COUNT(*) FROM {ER} GROUP BY floor(employees / 0.001)",
        PD,
        "a bucket of 'employees' would make about",
    ),
    # found in review: each was answered before its fix
    (
        "floor-decimals-secret",
        f"SELECT floor(employees / 3, revenue) AS b, COUNT(*) FROM {ER} GROUP BY 1",
        IA,
        "floor() takes no decimals argument",
    ),
    (
        "width-bucket-narrow-range",
        f"SELECT width_bucket(employees, 1000, 1998, 998) AS b, COUNT(*) FROM {ER} GROUP BY b",
        PD,
        "would make about 100001 groups",
    ),
    (
        "case-key-per-value",
        f"SELECT CASE WHEN employees = 1 THEN 1 WHEN employees = 2 THEN 2 ELSE 0 END AS b, "
        f"COUNT(*) FROM {ER} GROUP BY b",
        PD,
        "would make about 100001 groups",
    ),
    (
        "l2-case-zero-difference",
        f"SELECT SUM(revenue), SUM(CASE WHEN employees = 17 THEN 0 ELSE revenue END) FROM {ER}",
        PD,
        "DP or the exact option",
    ),
    ("l2-negated-value", f"SELECT SUM(revenue), SUM(-revenue) FROM {ER}", PD, "exact option"),
    (
        "max-of-a-test",
        f"SELECT MAX(CASE WHEN employees = 17 THEN 1 ELSE 0 END) FROM {ER}",
        IA,
        "of a constant shows nothing",
    ),
    (
        "width-bucket-fine",
        f"SELECT width_bucket(employees, 0, 1e6, 100000) AS b, COUNT(*) FROM {ER} GROUP BY b",
        PD,
        "a bucket of 'employees' would make about 10001 groups",
    ),
    (
        "bucket-of-negated-column",
        f"SELECT COUNT(*) FROM {ER} GROUP BY floor(-employees / 100)",
        IA,
        "floor() in GROUP BY takes a column and literals",
    ),
    (
        "key-arithmetic-of-filter-only",
        f"SELECT employees + 0 AS e, COUNT(*) FROM {ER} GROUP BY e",
        PD,
        "'employees' may not be used as group_by",
    ),
    (
        "bucket-of-aggregate-only",
        f"SELECT COUNT(*) FROM {ER} GROUP BY floor(revenue / 1000000)",
        PD,
        "'revenue' may not be used as bucket",
    ),
    (
        "negative-width",
        f"SELECT COUNT(*) FROM {ER} GROUP BY floor(employees / -10)",
        IA,
        "width must be a positive number",
    ),
    (
        "date-by-day",
        "SELECT date_trunc('day', date) AS d, COUNT(*) FROM air_quality GROUP BY d",
        PD,
        "a bucket of 'date' by day is as fine as the column itself",
    ),
    (
        "date-by-week",
        "SELECT COUNT(*) FROM air_quality GROUP BY date_trunc('week', date)",
        PD,
        "a bucket of 'date' by week",
    ),
    (
        "case-key-of-aggregate-only",
        f"SELECT CASE WHEN revenue > 1000 THEN 'big' ELSE 'small' END AS size, COUNT(*) "
        f"FROM {ER} GROUP BY size",
        PD,
        "'revenue' may not be used as bucket",
    ),
    (
        "case-key-then-column",
        f"SELECT COUNT(*) FROM {ER} GROUP BY CASE WHEN employees > 1 THEN credit_code END",
        IA,
        "a CASE group key maps to literals",
    ),
    (
        "key-expression-of-aggregate-only",
        f"SELECT ROUND(revenue, -3) AS r, COUNT(*) FROM {ER} GROUP BY r",
        PD,
        "'revenue' may not be used as group_by",
    ),
    (
        "substr-of-ungranted",
        f"SELECT substr(credit_code, 1, 17) AS p, COUNT(*) FROM {ER} GROUP BY p",
        PD,
        "'credit_code' may not be used as group_by",
    ),
    (
        "group-by-position-of-ungranted",
        f"SELECT credit_code, COUNT(*) FROM {ER} GROUP BY 1",
        PD,
        "'credit_code' may not be used as group_by",
    ),
    (
        "alias-shadows-a-key",
        f"SELECT credit_code AS city, COUNT(*) FROM {ER} GROUP BY city",
        PD,
        "'credit_code' may not be used as group_by",
    ),
    (
        "group-by-position-of-aggregate",
        f"SELECT SUM(revenue), COUNT(*) FROM {ER} GROUP BY 1",
        IA,
        "cannot group by an aggregate",
    ),
    # extremes: MIN/MAX/quantiles need the extremes control on L2, never on L3
    ("min-l2", f"SELECT MIN(revenue) FROM {ER}", PD, "'revenue' may not be used as extremes"),
    (
        "max-in-order-by",
        f"SELECT city, COUNT(*) FROM {ER} GROUP BY city ORDER BY MAX(revenue) DESC",
        PD,
        "'revenue' may not be used as extremes",
    ),
    (
        "median-l2",
        f"SELECT median(employees) FROM {ER}",
        PD,
        "'employees' may not be used as extremes",
    ),
    (
        "quantile-in-having",
        f"SELECT city, COUNT(*) FROM {ER} GROUP BY city "
        "HAVING approx_quantile(registered_capital, 0.99) > 0",
        PD,
        "'registered_capital' may not be used as extremes",
    ),
    (
        "min-l3",
        f"SELECT gender, MIN(contribution_months) FROM {SI} GROUP BY gender",
        PD,
        "'contribution_months' may not be used as extremes",
    ),
    (
        "median-l3-without-extremes",
        f"SELECT median(monthly_wage) FROM {SI}",
        PD,
        "'monthly_wage' may not be used as extremes",
    ),
    # sketches over columns without the control they need
    (
        "distinct-count-ungranted",
        f"SELECT approx_count_distinct(credit_code) FROM {ER}",
        PD,
        "'credit_code' may not be used as aggregate",
    ),
    (
        "distinct-count-group-key",
        f"SELECT approx_count_distinct(city) FROM {ER}",
        PD,
        "'city' may not be used as aggregate",
    ),
    (
        "distinct-count-under-dp",
        f"SELECT approx_count_distinct(monthly_wage) FROM {SI}",
        PD,
        "needs the extremes control as well",
    ),
    (
        "quantile-out-of-range",
        f"SELECT approx_quantile(employees, 2) FROM {ER}",
        IA,
        "between 0 and 1",
    ),
    # forms outside the subset, wherever they hide
    ("cast-to-text", f"SELECT SUM(CAST(revenue AS VARCHAR)) FROM {ER}", IA, "cast to a number"),
    ("nested-aggregate", f"SELECT SUM(SUM(revenue)) FROM {ER}", IA, "aggregate cannot be used"),
    (
        "aggregate-in-filter",
        f"SELECT SUM(revenue) FILTER (WHERE SUM(revenue) > 1) FROM {ER}",
        IA,
        "aggregate cannot be used",
    ),
    (
        "subquery-in-filter",
        f"SELECT SUM(revenue) FILTER (WHERE city IN (SELECT city FROM {ER})) FROM {ER}",
        IA,
        "subquer",
    ),
    ("count-distinct-value", f"SELECT COUNT(DISTINCT revenue) FROM {ER}", IA, "DISTINCT"),
    ("sum-distinct", f"SELECT SUM(DISTINCT revenue) FROM {ER}", IA, "DISTINCT"),
    # the refusal quotes the function as the user wrote it (sqlglot says ARRAY_AGG...)
    ("list", f"SELECT list(revenue) FROM {ER}", IA, "function list() is not allowed"),
    (
        "string-agg",
        f"SELECT string_agg(enterprise_name, ',') FROM {ER}",
        IA,
        "function string_agg() is not allowed",
    ),
    (
        "window-in-case",
        f"SELECT SUM(CASE WHEN row_number() OVER () = 1 THEN revenue ELSE 0 END) FROM {ER}",
        IA,
        "window",
    ),
    # a decimal overflow: refused without quoting a value (DuckDB's own message would)
    (
        "decimal-sum-overflow",
        f"SELECT SUM(CAST(revenue AS DECIMAL(38, 0)) * CAST(1e33 AS DECIMAL(38, 0))) FROM {ER}",
        IA,
        "compute with smaller numbers",
    ),
    (
        "decimal-avg-overflow-by-city",
        f"SELECT city, AVG(CAST(employees AS DECIMAL(38, 0)) * CAST(1e36 AS DECIMAL(38, 0))) "
        f"FROM {ER} GROUP BY city",
        IA,
        "compute with smaller numbers",
    ),
    # DP: a value without a finite bound cannot be noised
    (
        "dp-division-by-a-column",
        f"SELECT SUM(monthly_wage / contribution_months) FROM {SI}",
        IA,
        "division by contribution_months may divide by 0",
    ),
    (
        "dp-value-beyond-doubles",
        f"SELECT SUM(monthly_wage * 1e300 * 1e300) FROM {SI}",
        IA,
        "can exceed the largest DOUBLE",  # the type check, before DP's bounds
    ),
    (
        "dp-square-beyond-doubles",
        f"SELECT VAR_POP(monthly_wage * 1e200) FROM {SI}",
        IA,
        "no finite bound",
    ),
    (
        "dp-noise-scale-beyond-doubles",
        f"SELECT SUM(monthly_wage * 8e302) FROM {SI}",
        IA,
        "its sum can exceed a DOUBLE",  # the type check, before DP's bounds
    ),
]
# Refused by the owner's decision (grant, types, DP bounds), not by the subset: the
# direct-to-owner test below sends only what the subset itself refuses.
DECIDED = {c[0] for c in SMUGGLED if c[0].startswith(("dp-", "decimal-"))}


def released_count(federation: RunningFederation) -> int:
    return federation.releases()


def refusal_entry(federation: RunningFederation, error: ClientError, timeout: float = 5) -> dict:
    """The durable audit entry of a refusal: at the owner that refused (the error's
    details name it and the request), else at the home node, which refused before asking
    any owner (its entry holds the home's own message)."""
    owner = error.details.get("owner")
    if owner:
        node, kind = owner, "query.refused"

        def matches(e: dict) -> bool:
            return e["request_id"] == error.details["request_id"]
    else:
        node, kind = "shanghai", "rpc.refused"

        def matches(e: dict) -> bool:
            return bool(e["reason"] == error.args[0][:500])  # the edge keeps 500 characters

    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in federation.audit(node, kind) if matches(e)]
        if found or time.monotonic() > deadline:
            assert found, f"no {kind} entry at {node} for: {error}"
            return found[-1]
        time.sleep(0.05)


def assert_refused(
    federation: RunningFederation, sql: str, code: grpc.StatusCode, words: str
) -> ClientError:
    """``sql`` asked by li.wei is refused with ``code`` and ``words``, the refusal is in
    the refusing node's signed log, and no owner released anything."""
    before = released_count(federation)
    purpose = "labour market statistics" if "social_insurance" in sql else ""
    with federation.client("li.wei@shanghai") as c, pytest.raises(ClientError) as info:
        c.query(sql, purpose=purpose)
    assert info.value.code == code, str(info.value)
    assert words.lower() in str(info.value).lower(), str(info.value)
    entry = refusal_entry(federation, info.value)
    assert entry["code"] in (code.name, "NOT_FOUND"), entry
    assert released_count(federation) == before, "something was released"
    return info.value


@pytest.mark.parametrize("case", HOSTILE + SMUGGLED, ids=[c[0] for c in HOSTILE + SMUGGLED])
def test_hostile_query_is_refused(federation: RunningFederation, case) -> None:  # type: ignore[no-untyped-def]
    _id, sql, code, words = case
    error = assert_refused(federation, sql, code, words)
    if _id.startswith(("decimal-", "dp-")):  # an engine's or a bound's failure: no engine text
        assert not re.search(r"overflow in|exception|error:", error.args[0].lower()), error
    if _id.startswith("decimal-"):  # ... and says where, never which value: no number
        assert not re.search(r"\d{3,}", error.args[0]), error


# Copies whose user grants give the extremes control: si_extremes (L3, DP) on monthly_wage,
# where the floor still allows extremes only as DP quantiles; er_extremes (L2) on revenue
# only, next to columns without it.
WITH_EXTREMES = [
    (
        "l3-max-with-extremes",
        "SELECT MAX(monthly_wage) FROM si_extremes",
        PD,
        "L3 data allows extremes only as DP quantiles",
    ),
    (
        "l3-min-by-group",
        "SELECT gender, MIN(monthly_wage) FROM si_extremes GROUP BY gender",
        PD,
        "L3 data allows extremes only as DP quantiles",
    ),
    (
        "l3-max-of-expression",
        "SELECT MAX(monthly_wage * 1 + 0) FROM si_extremes",
        PD,
        "L3 data allows extremes only as DP quantiles",
    ),
    (
        "l3-max-in-having",
        "SELECT gender, COUNT(*) FROM si_extremes GROUP BY gender HAVING MAX(monthly_wage) > 0",
        PD,
        "L3 data allows extremes only as DP quantiles",
    ),
    (
        "l3-max-filtered",
        "SELECT MAX(monthly_wage) FILTER (WHERE birth_year > 1990) FROM si_extremes",
        PD,
        "'birth_year' may not be used as extremes",
    ),
    (
        "extremes-beside-a-column-without",
        "SELECT MAX(revenue + employees) FROM er_extremes",
        PD,
        "'employees' may not be used as extremes",
    ),
    (
        "quantile-without-extremes",
        "SELECT approx_quantile(employees, 0.5) FROM er_extremes",
        PD,
        "'employees' may not be used as extremes",
    ),
    (
        "min-of-case-on-a-group-key",
        "SELECT MIN(CASE WHEN city = 'Wuhu' THEN revenue END) FROM er_extremes",
        PD,
        "'city' may not be used as extremes",
    ),
    (
        "max-filtered-by-aggregate-only",
        "SELECT MAX(revenue) FILTER (WHERE employees > 100) FROM er_extremes",
        PD,
        "'employees' may not be used as extremes",
    ),
    (
        "distinct-count-of-a-group-key",
        "SELECT approx_count_distinct(city) FROM er_extremes",
        PD,
        "'city' may not be used as aggregate",
    ),
]


@pytest.fixture(scope="module")
def extremes(federation: RunningFederation) -> None:
    federation.register_copy("hefei", SI, "si_extremes")
    federation.grant(
        "hefei",
        dataset="si_extremes",
        grantee_kind="user",
        grantee="li.wei@shanghai",
        min_group_size=10,
        dp_epsilon=1.0,
        dp_budget=10.0,
        columns={
            "gender": "group_by",
            "birth_year": "filter",
            "monthly_wage": "aggregate,extremes",
        },
    )
    federation.register_copy("wuhu", ER, "er_extremes")
    federation.grant(
        "wuhu",
        dataset="er_extremes",
        grantee_kind="user",
        grantee="li.wei@shanghai",
        min_group_size=5,
        columns={"city": "group_by", "revenue": "aggregate,extremes", "employees": "aggregate"},
    )


@pytest.mark.parametrize("case", WITH_EXTREMES, ids=[c[0] for c in WITH_EXTREMES])
def test_extremes_control_is_not_a_way_around_the_others(  # type: ignore[no-untyped-def]
    federation: RunningFederation, extremes, case
) -> None:
    _id, sql, code, words = case
    assert_refused(federation, sql, code, words)


def test_extremes_control_allows_min_and_max_on_l2(federation: RunningFederation, extremes) -> None:  # type: ignore[no-untyped-def]
    """The refusals above are the grant's and the floor's: with the control, MIN and MAX
    of the L2 column are answered."""
    sql = "SELECT city, MIN(revenue) AS lo, MAX(revenue) AS hi FROM er_extremes GROUP BY city"
    with federation.client("li.wei@shanghai") as c:
        rows = c.query(sql).table.to_pylist()
    assert rows and all(r["lo"] <= r["hi"] for r in rows)


def test_owner_revalidates_sql_sent_by_a_member_node(federation: RunningFederation) -> None:
    """A home node that skipped its own checks still gets refused by every owner."""
    profile_org = federation.fed.node("anhui").org
    refused = 0
    with federation.peer_channel("anhui", "jiangsu") as ch:
        stub = peer_pb2_grpc.PeerStub(ch)
        for _id, sql, code, _words in HOSTILE + SMUGGLED:
            if code != IA or "no column" in _words or _id in DECIDED:
                continue
            req = peer_pb2.PartialRequest(
                request_id=f"direct-{_id}",
                sql=sql,
                home_node="anhui",
                issued_at=utc(),
                requester=common_pb2.Requester(
                    role="analyst", id="zhang.min@anhui", org=profile_org
                ),
            )
            with pytest.raises(grpc.RpcError) as info:
                stub.Execute(req, timeout=10)
            assert info.value.code() == IA
            refused += 1
    assert refused >= 25
    assert federation.node_log("jiangsu").count("method=/fedgate.v1.Peer/Execute") >= refused
    entries = [
        e
        for e in federation.audit("jiangsu", "rpc.refused")
        if e["method"] == "/fedgate.v1.Peer/Execute" and e["code"] == "INVALID_ARGUMENT"
    ]
    assert len(entries) >= refused  # each refusal is in the owner's own signed log
    released = federation.audit("jiangsu", "release")
    assert not [e for e in released if e["request_id"].startswith("direct-")]


def test_home_may_not_vouch_for_another_orgs_user(federation: RunningFederation) -> None:
    with federation.peer_channel("anhui", "jiangsu") as ch:
        req = peer_pb2.PartialRequest(
            request_id="forged",
            sql=f"SELECT COUNT(*) FROM {ER}",
            home_node="anhui",
            issued_at=utc(),
            requester=common_pb2.Requester(
                role="analyst", id="li.wei@shanghai", org=federation.fed.node("shanghai").org
            ),
        )
        with pytest.raises(grpc.RpcError) as info:
            peer_pb2_grpc.PeerStub(ch).Execute(req, timeout=10)
    assert info.value.code() == PD and "may only vouch for users of" in info.value.details()


# --- grant lifecycle: each case has its own dataset copy and a user grant ---------------


def _ago(days: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).isoformat()


CASES = {
    "er_expired": dict(valid_from=_ago(10), expires=_ago(1)),
    "er_not_yet": dict(valid_from=_ago(-5), expires=_ago(-10)),
    "er_purpose": dict(purpose="urban planning"),
    "er_revoked": {},
    "er_used": dict(max_uses=2),
}


@pytest.fixture(scope="module")
def lifecycle(federation: RunningFederation) -> dict[str, str]:
    ids = {}
    for name, extra in CASES.items():
        federation.register_copy("jiangsu", ER, name)
        g = federation.grant(
            "jiangsu",
            dataset=name,
            grantee_kind="user",
            grantee="li.wei@shanghai",
            min_group_size=5,
            columns={"city": "group_by", "employees": "aggregate"},
            **extra,
        )
        ids[name] = g.id
    return ids


def _ask(federation: RunningFederation, dataset: str, purpose: str = ""):  # type: ignore[no-untyped-def]
    with federation.client("li.wei@shanghai") as c:
        return c.query(
            f"SELECT city, SUM(employees) FROM jiangsu.{dataset} GROUP BY city", purpose=purpose
        )


@pytest.mark.parametrize(
    "dataset, words",
    [
        ("er_expired", "is expired"),
        ("er_not_yet", "is not yet valid"),
        ("er_purpose", "for the purpose 'urban planning'"),
    ],
)
def test_grant_state_refusals(federation: RunningFederation, lifecycle, dataset, words) -> None:  # type: ignore[no-untyped-def]
    before = released_count(federation)
    with pytest.raises(ClientError) as info:
        _ask(federation, dataset, purpose="research")
    assert info.value.code == PD and words in str(info.value)
    assert lifecycle[dataset] in str(info.value)
    assert released_count(federation) == before
    refused = refusal_entry(federation, info.value)
    assert refused["dataset"] == dataset and refused["code"] == "PERMISSION_DENIED"
    assert re.search(
        rf"refused query .*dataset={dataset} code=PERMISSION_DENIED", federation.node_log("jiangsu")
    )


def test_matching_purpose_is_allowed(federation: RunningFederation, lifecycle) -> None:  # type: ignore[no-untyped-def]
    assert _ask(federation, "er_purpose", purpose="Urban Planning").table.num_rows > 0


def test_revoked_grant_refuses_at_once(federation: RunningFederation, lifecycle) -> None:  # type: ignore[no-untyped-def]
    assert _ask(federation, "er_revoked").table.num_rows > 0
    with federation.client("ops@jiangsu") as ops:
        assert ops.revoke_grant(lifecycle["er_revoked"]).status == "revoked"
    before = released_count(federation)
    with pytest.raises(ClientError) as info:
        _ask(federation, "er_revoked")
    assert info.value.code == PD and "is revoked" in str(info.value)
    assert refusal_entry(federation, info.value)["code"] == "PERMISSION_DENIED"
    assert released_count(federation) == before


def test_used_up_grant(federation: RunningFederation, lifecycle) -> None:  # type: ignore[no-untyped-def]
    _ask(federation, "er_used")
    _ask(federation, "er_used")
    before = released_count(federation)
    with pytest.raises(ClientError) as info:
        _ask(federation, "er_used")
    assert info.value.code == PD and "used up" in str(info.value)
    assert refusal_entry(federation, info.value)["code"] == "PERMISSION_DENIED"
    assert released_count(federation) == before
    with federation.client("ops@jiangsu") as ops:
        (g,) = [g for g in ops.list_grants("er_used")]
    assert g.uses == 2 and g.status == "used up"


def test_other_analyst_without_grant_is_refused(federation: RunningFederation, lifecycle) -> None:  # type: ignore[no-untyped-def]
    with federation.client("zhang.min@anhui") as c, pytest.raises(ClientError) as info:
        c.query("SELECT city, SUM(employees) FROM jiangsu.er_purpose GROUP BY city")
    assert info.value.code == PD and "no grant lets analyst:zhang.min@anhui" in str(info.value)


def test_dp_column_that_lost_its_bounds_is_refused(federation: RunningFederation) -> None:
    """Re-registered without clamping bounds, a DP column cannot be noised: refuse it."""
    import dataclasses

    from gateway import descriptor

    federation.register_copy("hefei", "social_insurance", "si_bounds")
    federation.grant(
        "hefei",
        dataset="si_bounds",
        grantee_kind="user",
        grantee="li.wei@shanghai",
        min_group_size=10,
        dp_epsilon=1.0,
        dp_budget=10.0,
        columns={"gender": "group_by", "monthly_wage": "aggregate"},
    )
    path = federation.fed.data_dir("hefei") / "si_bounds.toml"
    desc = descriptor.load(path)
    cols = tuple(dataclasses.replace(c, lower=None, upper=None) for c in desc.columns)
    path.write_text(
        descriptor.dumps(dataclasses.replace(desc, path="si_bounds.parquet", columns=cols))
    )
    with federation.client("ops@hefei") as ops:
        ops.register(path)
    with federation.client("li.wei@shanghai") as c, pytest.raises(ClientError) as info:
        c.query("SELECT gender, SUM(monthly_wage) FROM hefei.si_bounds GROUP BY gender")
    assert info.value.code == PD and "no declared bounds" in str(info.value)


def test_home_serves_only_its_own_organisation(federation: RunningFederation) -> None:
    with federation.client("ops@hefei", node="anhui") as c, pytest.raises(ClientError) as info:
        c.query(f"SELECT COUNT(*) FROM {ER}")
    assert info.value.code == PD and "not the home node" in str(info.value)


def test_l4_dataset_is_answered_as_unknown(federation: RunningFederation) -> None:
    federation.register_copy("wuhu", "social_insurance", "si_core", level="L4")
    with federation.client("li.wei@shanghai") as c, pytest.raises(ClientError) as info:
        c.query("SELECT COUNT(*) FROM wuhu.si_core")
    assert info.value.code == NF
    assert '"dataset":"si_core"' in federation.client("ops@wuhu").audit_export().decode()


def test_qualified_columns_and_overlapping_nodes(federation: RunningFederation) -> None:
    with federation.client("li.wei@shanghai") as c:
        a = c.query(
            f"SELECT {ER}.city, COUNT(*) AS n FROM {ER} WHERE {ER}.employees > 1 "
            f"GROUP BY {ER}.city",
            nodes=["anhui", "hefei"],
        )
        b = c.query(f"SELECT city, COUNT(*) AS n FROM anhui.{ER} WHERE employees > 1 GROUP BY city")
    assert sorted(a.table.to_pylist(), key=str) == sorted(b.table.to_pylist(), key=str)
    assert sorted(a.contributors) == ["anhui", "hefei", "wuhu"]  # hefei counted once


def _execute_as(federation: RunningFederation, via: str, target: str, **fields):  # type: ignore[no-untyped-def]
    with (
        federation.peer_channel(via, target) as ch,
        pytest.raises(grpc.RpcError) as info,
    ):
        req = peer_pb2.PartialRequest(issued_at=utc(), **fields)
        peer_pb2_grpc.PeerStub(ch).Execute(req, timeout=10)
    return info.value


def test_relay_cannot_speak_for_another_home(federation: RunningFederation) -> None:
    """anhui is hefei's parent, but a request claiming home shanghai needs shanghai's
    signature; without it hefei refuses."""
    shanghai = federation.fed.node("shanghai")
    err = _execute_as(
        federation,
        "anhui",
        "hefei",
        request_id="forged-relay",
        sql=f"SELECT COUNT(*) FROM {ER}",
        home_node="shanghai",
        requester=common_pb2.Requester(role="analyst", id="li.wei@shanghai", org=shanghai.org),
    )
    assert err.code() == PD and "not vouched for by home node shanghai" in err.details()


def test_user_grant_is_bound_to_the_users_organisation(federation: RunningFederation) -> None:
    """jiangsu claims a user id with a grant for Shanghai's li.wei, but with its own org."""
    federation.register_copy("zhejiang", ER, "er_bound")
    federation.grant(
        "zhejiang",
        dataset="er_bound",
        grantee_kind="user",
        grantee="li.wei@shanghai",
        min_group_size=5,
        columns={"city": "group_by"},
    )
    jiangsu_org = federation.fed.node("jiangsu").org
    with federation.peer_channel("jiangsu", "zhejiang") as ch:
        resp = peer_pb2_grpc.PeerStub(ch).Execute(
            peer_pb2.PartialRequest(
                request_id="borrowed-user",
                sql="SELECT city, COUNT(*) FROM er_bound GROUP BY city",
                home_node="jiangsu",
                issued_at=utc(),
                requester=common_pb2.Requester(
                    role="analyst", id="li.wei@shanghai", org=jiangsu_org
                ),
            ),
            timeout=10,
        )
    (owner,) = resp.owners
    assert not owner.ok and owner.error_code == "PERMISSION_DENIED" and not resp.arrow_ipc
    with federation.client("li.wei@shanghai") as c:  # the real user still may
        assert c.query("SELECT city, COUNT(*) FROM zhejiang.er_bound GROUP BY city").table


def test_min_max_only_on_open_columns(federation: RunningFederation) -> None:
    with federation.client("li.wei@shanghai") as c, pytest.raises(ClientError) as info:
        c.query(f"SELECT city, MAX(employees) FROM {ER} GROUP BY city")
    assert info.value.code == PD and "needs the extremes control" in str(info.value)


def test_grant_with_nonsense_dp_settings_is_refused(federation: RunningFederation) -> None:
    with pytest.raises(ClientError) as info:
        federation.grant(
            "zhejiang",
            dataset="social_insurance",
            grantee_kind="org",
            grantee="x",
            min_group_size=10,
            dp_epsilon=1.0,
            dp_budget=float("nan"),
            columns={"gender": "group_by"},
        )
    assert info.value.code == IA and "finite" in str(info.value)


def test_raw_order_by_limit_across_owners(federation: RunningFederation) -> None:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    regional = ("shanghai", "jiangsu", "zhejiang", "anhui", "hefei", "wuhu")
    pooled = pa.concat_tables(
        [pq.read_table(federation.fed.data_dir(n) / "air_quality.parquet") for n in regional]
    )
    con = duckdb.connect()
    con.register("air_quality", pooled)
    sql = "SELECT station_id, aqi FROM air_quality ORDER BY aqi DESC, station_id LIMIT 5"
    with federation.client("li.wei@shanghai") as c:
        got = [tuple(r.values()) for r in c.query(sql).table.to_pylist()]
    assert [g[1] for g in got] == [r[1] for r in con.sql(sql).fetchall()]


def test_singling_out_with_allowed_filters_is_suppressed(federation: RunningFederation) -> None:
    """Every column used is granted, but the filter narrows to one enterprise: its owner
    withholds the group (k = 5), so nothing about that enterprise leaves it. And the
    answer is the same as for a filter that describes no one: neither the answer nor the
    owner's report says whether the enterprise exists."""
    import pyarrow.parquet as pq

    biggest = []
    for node in ("shanghai", "jiangsu", "zhejiang", "anhui", "hefei", "wuhu"):
        path = federation.fed.data_dir(node) / "enterprise_registry.parquet"
        col = pq.read_table(path, columns=["employees"]).column("employees").to_pylist()
        biggest.append((max(v for v in col if v is not None), node))
    (top, node), (second, _) = sorted(biggest, reverse=True)[:2]
    assert top > second  # one enterprise in the whole federation has that many employees
    sql = (
        f"SELECT COUNT(*) AS n, SUM(revenue) AS r FROM enterprise_registry WHERE employees >= {top}"
    )
    nobody = sql.replace(f">= {top}", f">= {top + 1}")
    with federation.client("li.wei@shanghai") as c:
        result, empty = c.query(sql), c.query(nobody)
    assert result.table.to_pylist() == empty.table.to_pylist()
    for one, none in zip(result.owners, empty.owners, strict=True):
        assert one.node_id == none.node_id
        assert one.groups_released == none.groups_released == 0
    entry = next(
        e for e in federation.audit(node, "release") if e["request_id"] == result.request_id
    )
    assert entry["groups_released"] == 0 and "groups_suppressed" not in entry


def test_differencing_one_l2_enterprise_yields_no_exact_value(
    federation: RunningFederation,
) -> None:
    """Issue 13's attack: everything minus everything-but-one-enterprise. Under the L2
    noise the difference is far from the enterprise's revenue, and asking again gives the
    same answers (nothing to average); on a copy whose grant the owner opted out of the
    noise (``exact``), the same two queries give the revenue exactly."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    nodes = ("shanghai", "jiangsu", "zhejiang", "anhui", "hefei", "wuhu")
    pooled = pa.concat_tables(
        [pq.read_table(federation.fed.data_dir(n) / "enterprise_registry.parquet") for n in nodes]
    )
    here = federation.fed.data_dir("wuhu") / "enterprise_registry.parquet"
    con = duckdb.connect()
    con.register("pooled", pooled)
    con.register("here", pq.read_table(here))
    keys = "city, industry_code, founding_year, employees"
    victim = con.execute(  # one of wuhu's enterprises, unique in the whole federation
        f"SELECT {keys}, revenue FROM here WHERE revenue IS NOT NULL AND ({keys}) IN "
        f"(SELECT ({keys}) FROM pooled GROUP BY ALL HAVING COUNT(*) = 1) "
        "ORDER BY revenue LIMIT 1 OFFSET 10"
    ).fetchone()
    assert victim is not None
    city, industry, year, employees, revenue = victim
    iso = (
        f"city = '{city}' AND industry_code = '{industry}' AND founding_year = {year} "
        f"AND employees = {employees}"
    )
    federation.register_copy("wuhu", "enterprise_registry", "er_exact")

    def difference(dataset: str) -> float:
        total = f"SELECT SUM(revenue) AS r FROM {dataset}"
        with federation.client("li.wei@shanghai") as c:
            everyone, others = c.query(total), c.query(f"{total} WHERE NOT ({iso})")
            again = c.query(f"{total} WHERE NOT ({iso})")
        assert others.table.equals(again.table)  # sticky: the same rows, the same answer
        return everyone.table.column("r")[0].as_py() - others.table.column("r")[0].as_py()

    noised = difference("enterprise_registry")
    assert abs(noised - revenue) > 0.05 * revenue
    # The opt-out, for one user at wuhu: the attack works there, so this test could fail.
    federation.grant(
        "wuhu",
        dataset="er_exact",
        grantee_kind="user",
        grantee="li.wei@shanghai",
        min_group_size=5,
        exact=True,
        columns={c: "filter" for c in ("city", "industry_code", "founding_year")}
        | {"employees": "aggregate,filter", "revenue": "aggregate"},
    )
    assert difference("er_exact") == pytest.approx(revenue, rel=1e-9)


def test_the_k_oracle_through_filter_values_is_refused_on_l2(
    federation: RunningFederation,
) -> None:
    """Review finding: ``COUNT(*) FILTER (WHERE <k - 1 known> OR (victim AND employees <=
    T))`` for many T in one query would be many tries of the k oracle at once. Under the
    L2 noise a value's own condition may test only group_by columns: refused at the
    owner, audited, nothing released; the same test in the WHERE is answered."""
    values = ", ".join(
        f"COUNT(*) FILTER (WHERE employees <= {t}) AS le_{t}" for t in (10, 100, 1000)
    )
    with federation.client("li.wei@shanghai") as c:
        with pytest.raises(ClientError) as err:
            c.query(f"SELECT COUNT(*) AS n, {values} FROM wuhu.enterprise_registry")
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert "'employees' may not be tested inside an aggregate" in str(err.value)
        request_id = err.value.details.get("request_id", "")
        answered = c.query(
            "SELECT COUNT(*) AS n FROM wuhu.enterprise_registry WHERE employees <= 100"
        )
    assert answered.table.num_rows == 1
    refused = [
        e for e in federation.audit("wuhu", "query.refused") if e.get("request_id") == request_id
    ]
    assert (
        request_id
        and refused
        and not [
            e for e in federation.audit("wuhu", "release") if e.get("request_id") == request_id
        ]
    )


def _relayed_envelope(federation: RunningFederation, issued_at: str = ""):  # type: ignore[no-untyped-def]
    """A query of Shanghai's analyst as Shanghai would send it through Anhui (unsigned)."""
    import uuid

    from federation.envelope import Envelope, Requester

    return Envelope(
        request_id=uuid.uuid4().hex,
        requester=Requester("analyst", "li.wei@shanghai", federation.fed.node("shanghai").org),
        home_node="shanghai",
        operation="query",
        body="SELECT city, COUNT(*) AS n FROM enterprise_registry GROUP BY city",
        path=("shanghai", "anhui"),
        issued_at=issued_at,
    )


def test_a_relay_replaying_a_homes_envelope_gets_no_second_release(
    federation: RunningFederation,
) -> None:
    """Review (2026-12-04): a province kept a home's signed envelope and sent it to its
    city again and again; each time the city released and spent (6 releases, 3.0 epsilon
    for one request). Now an owner releases a query once per home and request id: the
    replay is refused, audited, nothing released, nothing spent."""
    from gateway.serde import envelope_to_proto, partial_answer_from_proto
    from tests.integration.test_psi_attacks import sign_as

    env = _relayed_envelope(federation)
    signed = sign_as(federation, "shanghai", env)
    answers = []
    with federation.peer_channel("anhui", "hefei") as ch:
        stub = peer_pb2_grpc.PeerStub(ch)
        for _ in range(3):
            got = stub.Execute(envelope_to_proto(signed), timeout=10)
            answers.append(partial_answer_from_proto(got).owners[0])
    assert answers[0].ok and answers[0].receipt
    for again in answers[1:]:
        assert again.error is not None and again.error.code.name == "FAILED_PRECONDITION"
        assert "was released here before" in again.error.reason
    mine = [e for e in federation.audit("hefei", "release") if e["request_id"] == env.request_id]
    refused = federation.audit("hefei", "query.refused")
    assert len(mine) == 1
    assert len([e for e in refused if e["request_id"] == env.request_id]) == 2


def test_a_stale_or_retimed_envelope_is_refused(federation: RunningFederation) -> None:
    """The home signs when it signed: an owner refuses an envelope older than an hour, so
    it need remember released requests only that long (``released_requests`` was never
    pruned), and a relay cannot make an old envelope look new (the time is signed)."""
    import dataclasses
    import datetime as dt

    from gateway.clock import now
    from gateway.serde import envelope_to_proto
    from tests.integration.test_psi_attacks import sign_as

    env = _relayed_envelope(federation, issued_at=utc(now() - dt.timedelta(hours=2)))
    stale = sign_as(federation, "shanghai", env)
    retimed = dataclasses.replace(stale, issued_at=utc())  # fresh, but not what was signed
    before = len(federation.audit("hefei", "release"))
    errors = []
    with federation.peer_channel("anhui", "hefei") as ch:
        stub = peer_pb2_grpc.PeerStub(ch)
        for signed in (stale, retimed):
            with pytest.raises(grpc.RpcError) as info:
                stub.Execute(envelope_to_proto(signed), timeout=10)
            errors.append(info.value)
    assert errors[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "more than 60 minutes ago: a stale or replayed request is refused" in (
        errors[0].details() or ""
    )
    assert errors[1].code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not vouched for by home node shanghai" in (errors[1].details() or "")
    refused = [e for e in federation.audit("hefei", "rpc.refused") if env.request_id in e["reason"]]
    assert [e["code"] for e in refused] == ["FAILED_PRECONDITION"]
    assert len(federation.audit("hefei", "release")) == before


def test_an_answer_with_a_null_column_reaches_the_analyst(federation: RunningFederation) -> None:
    """Review (2026-12-04): the client refused the home's answer when a column was of
    Arrow type null (``NULL AS note``), a check meant for peers' partials only."""
    with federation.client("li.wei@shanghai") as c:
        got = c.query("SELECT COUNT(*) AS n, NULL AS note FROM air_quality")
    assert got.table.column_names == ["n", "note"] and got.table.column("n")[0].as_py() > 0
