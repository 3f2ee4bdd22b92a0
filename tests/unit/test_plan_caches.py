"""The plan caches are bounded by the memory they hold, not only by their entries (review,
2026-12-05): 512 plans of the largest text allowed took ~0.5 GB at the home and every
owner (any analyst fills the cache in a second, with queries on datasets that do not even
exist), and 1 024 generated statements of 140 KB each ~140 MB at an owner."""

from __future__ import annotations

import importlib

from gateway.release import query as query_release

parse_module = importlib.import_module("federation.sql.parse")


def _big(i: int) -> str:
    aggs = ", ".join(f"STDDEV(x{j}) AS s{j}" for j in range(280))
    return f"SELECT region, {aggs} FROM people WHERE y > {i} GROUP BY region"


def test_the_plan_cache_keeps_plans_within_its_bytes() -> None:
    plans = parse_module._Plans(512, max_bytes=4 * 1024 * 1024)
    small = parse_module.parse("SELECT city, COUNT(*) AS n FROM firms GROUP BY city")
    for i in range(40):  # each ~0.6 MB of trees, counted ~0.77 MB
        plans.keep(_big(i), parse_module.build(parse_module.check(parse_module.read(_big(i)))))
        assert plans.bytes <= 4 * 1024 * 1024
    kept = [i for i in range(40) if plans.get(_big(i)) is not None]
    assert 0 < len(kept) <= 6 and kept == list(range(40 - len(kept), 40))  # the newest
    plans.keep("select 1 as x from firms", small)
    assert plans.get("select 1 as x from firms") is small
    # the node's own cache holds far fewer than 512 of the largest plans
    per_plan = parse_module.plan_cost(_big(0))
    assert parse_module.PLAN_CACHE_BYTES // per_plan < 64


def test_the_owners_generated_sql_is_kept_within_its_characters() -> None:
    cache = query_release.PlanCache()
    text = "x" * (140 * 1024)
    for i in range(300):  # 300 x 140 KB: 42 MB without the bound
        cache._keep(("q", i), text)
        assert cache._sql_chars <= query_release.SQL_CACHE_CHARS
    assert sum(len(v) for v in cache._sql.values()) == cache._sql_chars
    cache._keep(("same",), "aaaa")
    cache._keep(("same",), "a")  # a key kept again counts its new text only
    assert sum(len(v) for v in cache._sql.values()) == cache._sql_chars
