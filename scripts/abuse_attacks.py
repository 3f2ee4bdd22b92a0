"""The attacks and the benign workload of bench_abuse.py: an analyst with an L2 grant.

Every attack knows its victim's quasi-identifiers (city, industry, founding year,
employees: unique in the pooled data) and wants its revenue, or whether it exists. Each
is run against the noised dataset and against the same rows under the owner's opt-out
(exact answers, k only), and prints the error it achieves and the queries it took.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from abuse_setup import CITIES, EXACT, INDUSTRIES, NOISED, Bench

from gateway import sticky_noise
from gateway.client import Client, ClientError, QueryResult

Victim = dict  # a row of the pooled data


@dataclass
class Asker:
    """Queries one dataset, counting them; a refusal or a withheld total is None."""

    client: Client
    dataset: str
    queries: int = 0

    def rows(self, sql: str) -> list[dict]:
        result = self.result(sql)
        return [] if result is None else result.table.to_pylist()

    def released(self, sql: str, owner: str) -> bool:
        """Whether ``owner`` released a group (the per-owner report every answer has)."""
        result = self.result(sql)
        return result is not None and any(
            o.node_id == owner and o.groups_released > 0 for o in result.owners
        )

    def result(self, sql: str) -> QueryResult | None:
        self.queries += 1
        for _ in range(50):
            try:
                return self.client.query(sql.replace("FROM ds", f"FROM {self.dataset}"))
            except ClientError as exc:
                wait = exc.details.get("retry_after_seconds")
                if wait is None:
                    return None
                time.sleep(float(wait))
        return None

    def one(self, sql: str, column: str) -> float | None:
        got = self.rows(sql)
        return None if not got or got[0].get(column) is None else float(got[0][column])


def _iso(v: Victim) -> str:
    return (
        f"city = '{v['city']}' AND industry_code = '{v['industry_code']}' "
        f"AND founding_year = {v['founding_year']} AND employees = {v['employees']}"
    )


def _backgrounds(v: Victim, n: int) -> list[str]:
    """Different conditions that all hold for the victim (so a pair's difference is it)."""
    out = [f"founding_year <= {v['founding_year'] + j}" for j in range(0, 46)]
    out += [f"founding_year >= {v['founding_year'] - j}" for j in range(0, 46)]
    out += [f"employees <= {v['employees'] + 10 * j}" for j in range(0, 50)]
    random.Random(v["employees"]).shuffle(out)
    return out[:n]


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _mean(values: list[float | None]) -> float | None:
    got = [x for x in values if x is not None]
    return statistics.fmean(got) if got else None


# --- the attacks: each returns the estimate of the victim's revenue -----------------------


def _paired(
    ask: Asker, v: Victim, pairs: int, select: str, with_it: str, without: str
) -> float | None:
    """``select`` (one value, ``x``) where ``with_it`` holds minus where ``without`` does
    (the same rows but the victim): over the whole dataset for one pair, else over
    ``pairs`` backgrounds, averaged."""
    bases = [""] if pairs == 1 else [f"{b} AND " for b in _backgrounds(v, pairs)]
    return _mean(
        [
            _diff(
                ask.one(f"{select} WHERE {b}{with_it}", "x"),
                ask.one(f"{select} WHERE {b}{without}", "x"),
            )
            for b in bases
        ]
    )


def complement(ask: Asker, v: Victim, pairs: int) -> float | None:
    """Issue 13: SUM over everything minus SUM over everything but the victim."""
    return _paired(ask, v, pairs, "SELECT SUM(revenue) AS x FROM ds", "TRUE", f"NOT ({_iso(v)})")


def range_edge(ask: Asker, v: Victim, pairs: int) -> float | None:
    """Issue 13: ``employees >= e`` minus ``employees > e`` (the victim's e is unique)."""
    e = v["employees"]
    select = "SELECT SUM(revenue) AS x FROM ds"
    return _paired(ask, v, pairs, select, f"employees >= {e}", f"employees > {e}")


def avg_times_count(ask: Asker, v: Victim, pairs: int) -> float | None:
    """Issue 13: AVG x COUNT over everything, minus the same without the victim."""

    def total(where: str) -> float | None:
        got = ask.rows(f"SELECT AVG(revenue) AS a, COUNT(revenue) AS n FROM ds {where}")
        return None if not got or got[0]["a"] is None else got[0]["a"] * got[0]["n"]

    return _diff(total(""), total(f"WHERE NOT ({_iso(v)})"))


def tracker(ask: Asker, v: Victim, pairs: int) -> float | None:
    """Denning's general tracker T: q(C) = q(C or T) + q(C or not T) - q(T) - q(not T),
    every query set large; averaged over many trackers."""
    c = _iso(v)
    trackers = [f"industry_code = '{s}{d:02d}'" for s in "ABCDE" for d in range(6)]
    trackers += [f"founding_year >= {y}" for y in range(1985, 2020)]
    random.Random(v["employees"]).shuffle(trackers)
    estimates = []
    for t in trackers[: max(1, pairs // 2)]:
        parts = [
            ask.one(f"SELECT SUM(revenue) AS r FROM ds WHERE ({c}) OR ({w})", "r")
            for w in (t, f"NOT ({t})")
        ]
        minus = [
            ask.one(f"SELECT SUM(revenue) AS r FROM ds WHERE {w}", "r") for w in (t, f"NOT ({t})")
        ]
        if None in parts or None in minus:
            continue
        estimates.append(sum(p for p in parts if p) - sum(m for m in minus if m))
    return _mean(list(estimates))


def averaging(ask: Asker, v: Victim, pairs: int) -> float | None:
    """The complement pair asked again and again, as written and rewritten (conjuncts
    reordered, BETWEEN, IN, always-true padding), the answers averaged."""
    e, y = v["employees"], v["founding_year"]
    forms = [
        _iso(v),
        f"employees = {e} AND founding_year = {y} AND city = '{v['city']}' "
        f"AND industry_code = '{v['industry_code']}'",
        _iso(v).replace(f"employees = {e}", f"employees BETWEEN {e} AND {e}"),
        _iso(v).replace(f"employees = {e}", f"employees IN ({e})"),
    ]
    estimates = []
    for i in range(max(1, pairs)):
        form = forms[i % len(forms)]
        pad = f" AND founding_year > {1000 - i}" if i >= len(forms) else ""
        estimates.append(
            _diff(
                ask.one(f"SELECT SUM(revenue) AS r FROM ds WHERE employees >= 0{pad}", "r"),
                ask.one(f"SELECT SUM(revenue) AS r FROM ds WHERE NOT ({form}){pad}", "r"),
            )
        )
    return _mean(estimates)


def split_ranges(ask: Asker, v: Victim, pairs: int, cuts: list[int]) -> float | None:
    """The total minus the sum over ranges of employees that leave out only the victim's
    value; each range holds enough rows to pass k. Repeated with shifted cuts."""
    e = v["employees"]
    estimates = []
    rounds = max(1, pairs // (len(cuts) + 2))
    for r in range(rounds):
        edges = sorted({c + r for c in cuts if abs(c + r - e) > 1})
        lows = [x for x in edges if x < e] + [e]
        highs = [e] + [x for x in edges if x > e] + [10**9]
        total = ask.one("SELECT SUM(revenue) AS r FROM ds", "r")
        parts = [
            ask.one(
                f"SELECT SUM(revenue) AS r FROM ds WHERE employees >= {a} AND employees < {b}", "r"
            )
            for a, b in zip([0, *lows[:-1]], lows, strict=True)
        ]
        parts += [
            ask.one(
                f"SELECT SUM(revenue) AS r FROM ds WHERE employees > {a} AND employees <= {b}", "r"
            )
            for a, b in zip(highs[:-1], highs[1:], strict=True)
        ]
        if total is not None:
            estimates.append(total - sum(p for p in parts if p is not None))
    return _mean(list(estimates))


def having_oracle(ask: Asker, v: Victim, pairs: int) -> float | None:
    """HAVING as an oracle: binary search of the victim's group sum with and without it
    (``HAVING SUM(revenue) > t``), to 0.01 % of its size; the difference is the victim."""

    def search(extra: str) -> float | None:
        base = (
            f"SELECT city, SUM(revenue) AS r FROM ds WHERE city = '{v['city']}'{extra} "
            "GROUP BY city HAVING SUM(revenue) > {}"
        )
        lo, hi = 0.0, 1e9
        if not ask.rows(base.format(lo)):
            return None
        for _ in range(40):
            mid = (lo + hi) / 2
            if ask.rows(base.format(mid)):
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-4 * max(lo, 1.0):
                break
        return (lo + hi) / 2

    return _diff(search(""), search(f" AND NOT ({_iso(v)})"))


def existence(ask: Asker, v: Victim, pairs: int) -> float | None:
    """COUNT(*) pairs around a victim that may not exist: the mean difference (1 or 0)."""
    return _paired(ask, v, pairs, "SELECT COUNT(*) AS x FROM ds", "TRUE", f"NOT ({_iso(v)})")


def retries_needed(miss: float) -> int:
    """Retries an attacker who knows the mechanism gives each step, so that a group of
    exactly k (k - 1 known firms and the victim) is released at least once with
    probability ``1 - miss``: the release chance at k is 1 / (THRESHOLD_SPREAD + 1)."""
    p = 1 / (sticky_noise.THRESHOLD_SPREAD + 1)
    return max(0, math.ceil(math.log(miss) / math.log(1 - p)) - 1)


def _pads(con: duckdb.DuckDBPyConnection, where: str) -> list[str]:
    """Padding tests that keep the group's rows (values none of them has) but each match
    other rows of the dataset: one fresh threshold draw per retry."""
    pads = []
    for column, values in (
        ("founding_year", [str(y) for y in range(1980, 2025)]),
        ("city", [f"'{c}'" for c in CITIES]),
        ("industry_code", [f"'{i}'" for i in INDUSTRIES]),
    ):
        held = {
            str(x) if column == "founding_year" else f"'{x}'"
            for (x,) in con.execute(f"SELECT {column} FROM own WHERE {where}").fetchall()
        }
        pads += [f" AND {column} <> {v}" for v in values if v not in held]
    pairs = set(con.execute(f"SELECT city, industry_code FROM own WHERE {where}").fetchall())
    pads += [
        f" AND NOT (city = '{c}' AND industry_code = '{i}')"
        for c in CITIES
        for i in INDUSTRIES
        if (c, i) not in pairs
    ]
    random.Random(0).shuffle(pads)
    return pads


def _split_exact(lo: int, hi: int) -> int | None:
    """Halving until one value is left: reads the value exactly."""
    return (lo + hi) // 2 if hi - lo > 1 else None


def _split_5pct(lo: int, hi: int) -> int | None:
    """Halving in log scale until the interval's middle is within 5 % of all of it:
    about 8 steps over (0, 100 000]."""
    if hi - lo <= 1 or (lo >= 1 and hi - lo - 1 <= 0.1 * (lo + 1)):
        return None
    mid = int(math.sqrt(max(lo, 0.5) * hi))
    return min(max(mid, lo + 1), hi - 1)


def threshold_oracle(
    bench: Bench,
    client: Client,
    dataset: str,
    n: int,
    retries: int,
    split: Callable[[int, int], int | None],
    cap: int,
) -> tuple[list[float], list[int]]:
    """The exact k as an oracle: k - 1 enterprises the attacker knows (an owner's largest
    employers) plus the victim when ``employees <= T``; whether that owner releases the
    group says whether the test holds. A search on T (``split`` picks the next T, None
    when done) reads the victim's employee count (a filter column); each step is retried
    with up to ``retries`` paddings while the group stays withheld; the attacker gives
    up on a victim after ``cap`` queries. Returns each victim's relative error (1.0 when
    it gave up) and the queries each took."""
    errors, took = [], []
    for owner, table in bench.data.items():
        con = duckdb.connect()
        con.register("own", table)
        known = con.execute(  # the 4th largest employee count, held by exactly 4 firms
            "SELECT employees FROM own ORDER BY employees DESC LIMIT 1 OFFSET 3"
        ).fetchone()
        assert known is not None
        floor = known[0]
        held = con.execute(f"SELECT COUNT(*) FROM own WHERE employees >= {floor}").fetchone()
        if held is None or held[0] != 4:  # ties at the 4th: no set of exactly k - 1 here
            continue
        victims = con.execute(
            "SELECT city, industry_code, founding_year, employees FROM own "
            f"WHERE employees < {floor} AND (city, industry_code, founding_year) IN "
            "(SELECT (city, industry_code, founding_year) FROM own GROUP BY ALL "
            f"HAVING COUNT(*) = 1) ORDER BY employees DESC LIMIT {n}"
        ).fetchall()
        for city, industry, year, employees in victims:
            ask = Asker(client, dataset)
            who = f"city = '{city}' AND industry_code = '{industry}' AND founding_year = {year}"
            pads = _pads(con, f"employees >= {floor} OR ({who})")[:retries]
            lo, hi = 0, 100_000  # the declared range: the victim's count is in (lo, hi]
            while (mid := split(lo, hi)) is not None and ask.queries < cap:
                sql = (
                    f"SELECT COUNT(*) AS n FROM ds WHERE (employees >= {floor} "
                    f"OR ({who} AND employees <= {mid}))"
                )
                if any(ask.released(sql + pad, owner) for pad in ["", *pads]):
                    hi = mid
                else:
                    lo = mid
            gave_up = split(lo, hi) is not None
            estimate = (lo + 1 + hi) / 2
            errors.append(1.0 if gave_up else abs(estimate - employees) / employees)
            took.append(ask.queries)
    return errors, took


def k_oracle(bench: Bench, *, targets: int, cap: int = 600) -> None:
    """The threshold oracle by an attacker who knows the mechanism: a careful one
    (retries for a 1 % miss per step), a hasty one (10 %) and a reckless one (50 %),
    reading the value exactly (halving) or within 5 % (halving in log scale); the exact
    search also against the owner's opt-out (no retries), for comparison."""
    plans = [
        ("exactly", _split_exact, 0.01),
        ("within 5 %", _split_5pct, 0.01),
        ("within 5 %", _split_5pct, 0.1),
        ("within 5 %", _split_5pct, 0.5),
    ]
    with Client(bench.analyst, timeout=60) as client:
        for goal, split, miss in plans:
            retries = retries_needed(miss)
            line = f"  {f'k oracle, {goal}, {retries} retries/step':<44}"
            # against the opt-out only once, without retries: exact answers need none
            runs = [(NOISED, retries)] + ([(EXACT, 0)] if split is _split_exact else [])
            for dataset, tries in runs:
                errors, took = threshold_oracle(
                    bench, client, dataset, max(1, targets // 2), tries, split, cap
                )
                right = sorted(q for e, q in zip(errors, took, strict=True) if e <= 0.05)
                fast = sum(q < 100 for q in right)
                label = "noised" if dataset == NOISED else "exact (opt-out)"
                line += (
                    f" | {label}: read for {len(right)}/{len(errors)}, in < 100 queries "
                    f"for {fast}/{len(errors)}"
                )
                if right:
                    line += f" ({right[0]}-{right[-1]} queries)"
            print(line + f"; the attacker gives up after {cap} queries", flush=True)


def equal_answers(bench: Bench, client: Client, dataset: str, n: int) -> tuple[int, int, int]:
    """A review's attack: ``X OR (victim AND employees <= T)`` and ``X AND NOT (victim AND
    employees <= T)`` select the same rows exactly when the test fails; with noise drawn
    from the rows and the set of tests alone their answers were then identical (to the
    last bits a sum's order leaves). A binary search on T, two queries a step. Returns
    (victims read exactly, victims, the most queries one took); victims unique by city,
    industry and founding year (the test must single them out)."""
    con = _pooled(bench)
    victims = (
        con.sql(
            "SELECT * FROM pooled QUALIFY COUNT(*) OVER "
            "(PARTITION BY city, industry_code, founding_year) = 1 ORDER BY revenue"
        )
        .to_arrow_table()
        .to_pylist()
    )
    victims = victims[:: max(1, len(victims) // n)][:n]
    exact, most = 0, 0
    for v in victims:
        ask = Asker(client, dataset)
        other = next(c for c in CITIES if c != v["city"])
        who = (
            f"city = '{v['city']}' AND industry_code = '{v['industry_code']}' "
            f"AND founding_year = {v['founding_year']}"
        )
        lo, hi = 0, 100_000
        while hi - lo > 1:
            mid = (lo + hi) // 2
            test = f"({who} AND employees <= {mid})"
            a = ask.one(f"SELECT SUM(revenue) AS x FROM ds WHERE city = '{other}' OR {test}", "x")
            b = ask.one(
                f"SELECT SUM(revenue) AS x FROM ds WHERE city = '{other}' AND NOT {test}", "x"
            )
            same = a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9)
            lo, hi = (mid, hi) if same else (lo, mid)
        exact += hi == v["employees"]
        most = max(most, ask.queries)
    return exact, len(victims), most


def _pooled(bench: Bench) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("pooled", pa.concat_tables(list(bench.data.values())))
    return con


def _victims(con: duckdb.DuckDBPyConnection, n: int) -> list[Victim]:
    """Enterprises unique by their quasi-identifiers and by their employee count."""
    rows = (
        con.sql(
            "SELECT * FROM pooled QUALIFY COUNT(*) OVER (PARTITION BY employees) = 1 "
            "ORDER BY revenue"
        )
        .to_arrow_table()
        .to_pylist()
    )
    step = max(1, len(rows) // n)
    return [*rows[::step][: n - 2], *rows[-2:]]  # with the two largest


def attacks(bench: Bench, *, pairs: int, targets: int) -> None:
    con = _pooled(bench)
    victims = _victims(con, targets)
    quantiles = ", ".join(str(i / 10) for i in range(1, 10))
    found = con.execute(f"SELECT quantile_disc(employees, [{quantiles}]) FROM pooled").fetchone()
    cuts = sorted({int(x) for x in (found[0] if found else [])})
    print(
        f"\nattacks: {len(victims)} victims (unique enterprises, revenue "
        f"{victims[0]['revenue']:,.0f} to {victims[-1]['revenue']:,.0f}); goal: no victim's "
        "revenue within +-5 % in under 100 queries"
    )
    plans: list[tuple[str, Callable[[Asker, Victim, int], float | None], int]] = [
        ("complement (all minus NOT victim), 1 pair", complement, 1),
        (f"complement over {pairs} backgrounds", complement, pairs),
        ("range edge (>= e minus > e), 1 pair", range_edge, 1),
        (f"range edge over {pairs} backgrounds", range_edge, pairs),
        ("AVG x COUNT, 1 pair", avg_times_count, 1),
        (f"tracker (Denning), {pairs // 2} trackers", tracker, pairs),
        (f"averaging {pairs} repeats and rewrites", averaging, pairs),
        ("splitting a filter into ranges", lambda a, v, p: split_ranges(a, v, p, cuts), pairs),
        ("HAVING as an oracle (binary search)", having_oracle, pairs),
    ]
    with Client(bench.analyst, timeout=60) as client:
        for name, attack, p in plans:
            line = f"  {name:<44}"
            for dataset in (NOISED, EXACT):
                errors, took = [], []
                for v in victims:
                    ask = Asker(client, dataset)
                    estimate = attack(ask, v, p)
                    took.append(ask.queries)
                    if estimate is not None:
                        errors.append(abs(estimate - v["revenue"]) / v["revenue"])
                within = sum(e <= 0.05 for e in errors)
                median = f"{statistics.median(errors):.1%}" if errors else "none"
                largest = f"{errors[-1]:.1%}" if len(errors) == len(victims) else "none"
                if dataset == NOISED:
                    line += (
                        f" | noised: within 5 %: {within}/{len(victims)}, median error "
                        f"{median}, largest firm's {largest}; {max(took)} queries"
                    )
                else:
                    line += f" | exact (opt-out): within 5 %: {within}/{len(victims)}"
            print(line)
        present = victims
        absent = [dict(v, employees=v["employees"] + 100_000) for v in victims]  # no one
        for p in (1, pairs):
            line = f"  {f'existence by COUNT pairs, {p} pair(s)':<44}"
            for dataset in (NOISED, EXACT):
                right = 0
                for v, exists in [(x, True) for x in present] + [(x, False) for x in absent]:
                    ask = Asker(client, dataset)
                    d = existence(ask, v, p)
                    right += (d is not None and d > 0.5) == exists
                label = "noised" if dataset == NOISED else "exact (opt-out)"
                total = len(present) + len(absent)
                line += f" | {label}: right {right}/{total} ({2 * p} queries each)"
            print(line)
        # a total over the victim's exact description: withheld whether or not it exists
        same = 0
        for v in victims:
            ask = Asker(client, NOISED)
            one = ask.rows(f"SELECT COUNT(*) AS n FROM ds WHERE {_iso(v)}")
            nobody = _iso(dict(v, employees=v["employees"] + 100_000))
            none = ask.rows(f"SELECT COUNT(*) AS n FROM ds WHERE {nobody}")
            same += one == none
        print(
            f"  {'withheld-total oracle (COUNT WHERE victim)':<44} | noised: the answer for a "
            f"victim and for no one is the same for {same}/{len(victims)} victims"
        )
        line = f"  {'equal answers (X OR test, X AND NOT test)':<44}"
        for dataset in (NOISED, EXACT):
            read, tried, most = equal_answers(bench, client, dataset, targets)
            label = "noised" if dataset == NOISED else "exact (opt-out)"
            line += f" | {label}: employees read exactly for {read}/{tried} ({most} queries)"
        print(line)


def benign(bench: Bench) -> None:
    """Ordinary questions: each group's released values against the pooled truth."""
    con = _pooled(bench)
    questions = [
        ("city", ""),
        ("industry_code", ""),
        ("city", "WHERE founding_year >= 2000"),
        ("industry_code", "WHERE employees >= 10"),
    ]
    errors: dict[str, list[float]] = {"COUNT(*)": [], "SUM(employees)": [], "AVG(revenue)": []}
    dominated: list[float] = []
    sums: list[float] = []
    with Client(bench.analyst, timeout=60) as client:
        for key, where in questions:
            sql = (
                f"SELECT {key}, COUNT(*) AS n, SUM(employees) AS e, AVG(revenue) AS a, "
                f"SUM(revenue) AS r FROM {{}} {where} GROUP BY {key}"
            )
            got = {r[key]: r for r in client.query(sql.format(NOISED)).table.to_pylist()}
            truth = (
                con.sql(
                    sql.format("pooled").replace(
                        "SUM(revenue) AS r", "SUM(revenue) AS r, MAX(revenue) / SUM(revenue) AS top"
                    )
                )
                .to_arrow_table()
                .to_pylist()
            )
            for t in truth:
                g = got.get(t[key])
                if t["n"] < 100 or g is None:
                    continue
                errors["COUNT(*)"].append(abs(g["n"] - t["n"]) / t["n"])
                errors["SUM(employees)"].append(abs(g["e"] - t["e"]) / t["e"])
                errors["AVG(revenue)"].append(abs(g["a"] - t["a"]) / t["a"])
                err = abs(g["r"] - t["r"]) / t["r"]
                (dominated if t["top"] > 0.04 else sums).append(err)
    print("\nbenign: groups of >= 100 rows, released (noised) against the pooled truth")
    for name, errs in [
        *errors.items(),
        ("SUM(revenue), no firm > 4 % of it", sums),
        ("SUM(revenue), one firm > 4 % (dominated)", dominated),
    ]:
        if not errs:
            continue
        errs.sort()
        p95 = errs[min(len(errs) - 1, round(0.95 * (len(errs) - 1)))]
        within = sum(e <= 0.01 for e in errs)
        print(
            f"  {name:<42} {len(errs):3d} groups: median error {statistics.median(errs):.2%}, "
            f"p95 {p95:.2%}, within 1 %: {within}/{len(errs)}"
        )
