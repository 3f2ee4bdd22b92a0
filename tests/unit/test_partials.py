"""Partials: only the shape the plan implies is merged; the SQL subset's new refusals."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from federation.partials import PartialError, check_partial, expected_columns
from federation.sql import QueryError, parse, partial_query


def test_expected_columns_follow_the_plan() -> None:
    plan = parse("SELECT city, COUNT(*), AVG(w), VAR_SAMP(w), MIN(x) FROM t GROUP BY city")
    assert expected_columns(plan) == [
        "city",
        "__n",
        "__c_w",
        "__s_w",
        "__m2_w",
        "__c_x",
        "__min_x",
    ]  # MIN/MAX carry their count: k applies to the rows behind them


def test_a_peer_cannot_smuggle_column_names_into_the_merge() -> None:
    plan = parse("SELECT g, COUNT(*) FROM t GROUP BY g")
    evil = pa.table({"g": ["a"], "__n": [1], '__min_z") FROM x --': [1]})
    with pytest.raises(PartialError, match="does not have the columns"):
        check_partial(plan, evil, "rogue")
    text = pa.table({"g": ["a"], "__n": ["1"]})
    with pytest.raises(PartialError, match="is not a whole count"):
        check_partial(plan, text, "rogue")
    good = pa.table({"g": ["a"], "__n": [1]})
    assert check_partial(plan, good, "ok") is good


@pytest.mark.parametrize(
    "sql, words",
    [
        ("SELECT COUNT(*) FROM t GROUP BY a ORDER BY 2", "there are 1 items in SELECT"),
        ("SELECT a, a FROM t", "selected twice"),
    ],
)
def test_more_refusals(sql: str, words: str) -> None:
    with pytest.raises(QueryError, match=words):
        parse(sql)


# --- merging in Arrow: the edge cases SQL defines ------------------------------------

import duckdb  # noqa: E402

from federation.partials import answer, merge  # noqa: E402
from federation.sql import MERGED_TABLE  # noqa: E402


def _duckdb(sql: str, name: str, table: pa.Table) -> pa.Table:
    con = duckdb.connect()
    con.register(name, table)
    return con.sql(sql).to_arrow_table()


def _partial(**columns) -> pa.Table:  # type: ignore[no-untyped-def]
    return pa.table(columns)


def test_negative_zero_and_zero_are_one_group_and_nulls_another() -> None:
    plan = parse("SELECT g, COUNT(*) AS n FROM t GROUP BY g")
    a = _partial(g=pa.array([0.0, None], pa.float64()), __n=pa.array([2, 1], pa.int64()))
    b = _partial(g=pa.array([-0.0, None], pa.float64()), __n=pa.array([3, 4], pa.int64()))
    got = sorted(merge(plan, [a, b]).to_pylist(), key=lambda r: (r["g"] is None, r["g"]))
    assert got == [{"g": 0.0, "__n": 5}, {"g": None, "__n": 5}]


def test_nan_in_the_data_stays_nan_and_nulls_are_skipped() -> None:
    plan = parse("SELECT STDDEV_POP(w) AS s FROM t")
    nan = float("nan")
    a = _partial(__n=[2], __c_w=[2], __s_w=[nan], __m2_w=[nan])
    b = _partial(__n=[1], __c_w=[1], __s_w=[2.0], __m2_w=[0.0])
    (row,) = answer(plan, [a, b], _duckdb).to_pylist()
    assert row["s"] != row["s"]  # NaN, as DuckDB gives for STDDEV_POP over a NaN


def test_large_integer_sums_are_exact_and_overflow_is_refused() -> None:
    plan = parse("SELECT g, SUM(x) AS s FROM t GROUP BY g")
    big = 10**17
    parts = [
        _partial(
            g=[f"g{i}" for i in range(200)],
            __n=pa.array([1] * 200, pa.int64()),
            __c_x=pa.array([1] * 200, pa.int64()),
            __s_x=pa.array([big] + [1] * 199, pa.int64()),
        )
        for _ in range(2)
    ]
    rows = {r["g"]: r["s"] for r in answer(plan, parts, _duckdb).to_pylist()}
    assert rows["g0"] == 2 * big and rows["g1"] == 2  # exact, 200 groups notwithstanding
    huge = [_partial(g=["a"], __n=[1], __c_x=[1], __s_x=pa.array([2**62], pa.int64()))] * 2
    with pytest.raises(PartialError, match="overflow"):
        merge(plan, huge)
    # Review (2026-12-04): a bound on the magnitudes refused totals that fit.
    for sums, total in (((5 * 10**18, 1), 5 * 10**18 + 1), ((5 * 10**18, -(5 * 10**18)), 0)):
        fits = [
            _partial(g=["a"], __n=[1], __c_x=[1], __s_x=pa.array([v], pa.int64())) for v in sums
        ]
        assert merge(plan, fits).column("__s_x").to_pylist() == [total]
    past = [
        _partial(g=["a"], __n=[1], __c_x=[1], __s_x=pa.array([v], pa.int64()))
        for v in (2**63 - 1, 1)
    ]
    with pytest.raises(PartialError, match="overflow"):
        merge(plan, past)


def test_partials_of_unexpected_types_are_refused_not_crashed_on() -> None:
    plan = parse("SELECT g, SUM(x) FROM t GROUP BY g")
    half = _partial(
        g=["a"], __n=pa.array([1], pa.int64()), __c_x=[1], __s_x=pa.array([1.0], pa.float16())
    )
    with pytest.raises(PartialError, match="non-numeric"):
        check_partial(plan, half, "rogue")
    nested = _partial(g=[[1, 2]], __n=[1], __c_x=[1], __s_x=[1])
    with pytest.raises(PartialError, match="has the group key g of type list<item: int64>"):
        check_partial(plan, nested, "rogue")


@pytest.mark.parametrize(
    "sql",
    [
        # the alias "Region" is the column "region" to DuckDB: the engine must decide
        "SELECT region AS x, COUNT(*) AS Region FROM t GROUP BY region "
        "ORDER BY region DESC LIMIT 2",
        "SELECT region, AVG(w) AS m FROM t GROUP BY region ORDER BY m DESC",  # NaN in m
        "SELECT region, COUNT(*) AS n FROM t GROUP BY region ORDER BY n DESC, region NULLS FIRST",
        "SELECT region AS r, SUM(w) FROM t GROUP BY region ORDER BY r DESC NULLS LAST LIMIT 3",
        "SELECT region, COUNT(*) AS n FROM t GROUP BY 1 ORDER BY 2 DESC, 1",  # positions
        "SELECT region, COUNT(*) FROM t GROUP BY region ORDER BY 1 NULLS FIRST LIMIT 2",
    ],
)
def test_the_arrow_final_step_agrees_with_the_engine(sql: str) -> None:
    plan = parse(sql)
    # Every region has its own count and its own average: no ties, so the order is total.
    regions = ["a"] + ["b"] * 2 + ["c"] * 3 + [None] * 4 + ["d"] * 5
    w = [float(i * i) for i in range(len(regions))]
    w[1] = float("nan")
    data = pa.table({"region": regions, "w": w})
    con = duckdb.connect()
    con.register("t", data)
    want = con.sql(sql).fetchall()
    state = pa.Table.from_batches(con.sql(partial_query(plan, "t")).to_arrow_table().to_batches())
    merged = answer(plan, [state.slice(0, 2), state.slice(2)], _duckdb)
    got = [tuple(r.values()) for r in merged.to_pylist()]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert list(g) == pytest.approx(list(w), nan_ok=True), (sql, got, want)
    assert MERGED_TABLE in plan.final_sql


def test_query_size_limits() -> None:
    many = ",".join(["1"] * 1600)  # short enough in characters, too many syntax nodes
    with pytest.raises(QueryError, match="too large"):
        parse(f"SELECT COUNT(*) FROM t WHERE g IN ({many})")
    with pytest.raises(QueryError, match="LIMIT may be at most"):
        parse("SELECT g, COUNT(*) FROM t GROUP BY g LIMIT 100001")
    capped = parse("SELECT city FROM t")  # a raw SELECT always has a row cap
    assert capped.limit == 1000 and parse("SELECT city FROM t LIMIT 5000").limit == 1000


def test_reserved_state_names_cannot_be_queried_or_registered() -> None:
    """Names starting with __ are the owners' state columns: a dataset column of that
    name could be mistaken for one (or overwrite a final value) in the merge."""
    from gateway.descriptor import ColumnSpec, DatasetDescriptor, validate
    from gateway.errors import InvalidArgument

    for sql in ("SELECT SUM(__n) FROM t", "SELECT __a0, COUNT(*) FROM t GROUP BY __a0"):
        with pytest.raises(QueryError, match="reserved"):
            parse(sql)

    def desc(*cols: ColumnSpec) -> DatasetDescriptor:
        return DatasetDescriptor("t", "T", "", "Dept", "L2", "daily", "t.parquet", "parquet", cols)

    with pytest.raises(InvalidArgument, match="reserved"):
        validate(desc(ColumnSpec("__a0", "int64")))
    for bad in (float("inf"), float("nan")):
        with pytest.raises(InvalidArgument, match="finite"):
            validate(desc(ColumnSpec("w", "float64", lower=0.0, upper=bad)))
    assert validate(desc(ColumnSpec("w", "float64", lower=0.0, upper=1.0)))
    with pytest.raises(ValueError, match="finite"):
        partial_query(parse("SELECT SUM(w) FROM t"), "t", clamp={"w": (0.0, float("inf"))})


def test_several_keys_with_nulls_merge_like_duckdb_on_the_pooled_rows() -> None:
    """Groups of two and three keys (NULL a group of its own in each) merge to exactly
    DuckDB's GROUP BY over all the rows, however the rows are split among owners."""
    plan = parse("SELECT a, b, c, COUNT(*) AS n, SUM(x) AS s FROM t GROUP BY a, b, c")
    rows = 300
    data = pa.table(
        {
            "a": [None if i % 7 == 0 else f"a{i % 5}" for i in range(rows)],
            "b": [None if i % 11 == 0 else i % 3 for i in range(rows)],
            "c": [None if i % 13 == 0 else float(i % 2) for i in range(rows)],
            "x": list(range(rows)),
        }
    )
    con = duckdb.connect()
    con.register("t", data)
    want = sorted(map(repr, con.sql(plan.sql).fetchall()))
    state = con.sql(partial_query(plan, "t", integer_columns=["b", "x"])).to_arrow_table()
    pieces = [state.slice(0, 10), state.slice(10, 25), state.slice(35)]
    got = sorted(repr(tuple(r.values())) for r in answer(plan, pieces, _duckdb).to_pylist())
    assert got == want


def test_owners_with_no_groups_at_all_merge_to_no_rows() -> None:
    plan = parse("SELECT a, b, COUNT(*) AS n FROM t GROUP BY a, b")
    empty = pa.table(
        {
            "a": pa.array([], pa.string()),
            "b": pa.array([], pa.int64()),
            "__n": pa.array([], pa.int64()),
        }
    )
    assert merge(plan, [empty, empty]).num_rows == 0
    assert answer(plan, [empty, empty], _duckdb).num_rows == 0


# --- decimals, small integers, floats and timestamps: exact merging --------------------

import datetime as dt  # noqa: E402
import random  # noqa: E402

from federation.partials import decimal_means  # noqa: E402


def _owner_sql(plan, table: str, exact: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    """The owner's SQL with exact sums as the owner would ask for them: each value as
    ``gateway.column_types.exact_kind`` says ("int" or "decimal")."""
    ints = [n for n, k in exact.items() if k == "int"]
    decimals = [n for n, k in exact.items() if k == "decimal"]
    return partial_query(plan, table, integer_columns=ints, decimals=decimals)


def _typed_rows(n: int, seed: int) -> pa.Table:
    rng = random.Random(seed)
    utc = dt.UTC
    return pa.table(
        {
            "region": pa.array([rng.choice(["east", "west", None]) for _ in range(n)]),
            "price": pa.array(
                [
                    None if rng.random() < 0.1 else Decimal(rng.randint(-(10**12), 10**13)) / 100
                    for _ in range(n)
                ],
                pa.decimal128(15, 2),
            ),
            "qty": pa.array([rng.randint(-128, 127) for _ in range(n)], pa.int8()),
            "units": pa.array([rng.randint(-32768, 32767) for _ in range(n)], pa.int16()),
            "visits": pa.array([rng.randint(0, 2**31 - 1) for _ in range(n)], pa.int32()),
            "ratio": pa.array([rng.uniform(0, 100) for _ in range(n)], pa.float32()),
            "seen": pa.array(
                [
                    dt.datetime(2025, 1, 1) + dt.timedelta(seconds=rng.randint(0, 10**7))
                    for _ in range(n)
                ],
                pa.timestamp("us"),
            ),
            "seen_tz": pa.array(
                [
                    dt.datetime(2025, 1, 1, tzinfo=utc)
                    + dt.timedelta(minutes=rng.randint(0, 10**6))
                    for _ in range(n)
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "day": pa.array(
                [dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 700)) for _ in range(n)],
                pa.date32(),
            ),
        }
    )


_EXACT = {"price": "decimal", "qty": "int", "units": "int", "visits": "int"}


def _same(a: object, b: object) -> bool:
    """Exact for everything but floats (1e-9 relative); a float where DuckDB has an exact
    value, or the reverse, is a mismatch."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and a == pytest.approx(b, rel=1e-9)
    return type(a) is type(b) and a == b


def test_typed_aggregates_merge_to_duckdbs_answer_on_the_pooled_rows() -> None:
    sql = (
        "SELECT region, SUM(price) AS sp, AVG(price) AS ap, COUNT(price) AS cp, "
        "MIN(price) AS lp, MAX(price) AS hp, VAR_POP(price) AS vp, SUM(qty) AS sq, "
        "AVG(qty) AS aq, MIN(qty) AS lq, SUM(units) AS su, SUM(visits) AS sv, "
        "SUM(ratio) AS sr, MIN(ratio) AS lr, MIN(seen) AS ls, MAX(seen_tz) AS ht, "
        "MIN(day) AS ld FROM t GROUP BY region"
    )
    plan = parse(sql)
    owners = [_typed_rows(400 + 50 * i, seed=i) for i in range(3)]
    partials = []
    for rows in owners:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.register("t", rows)
        partials.append(con.sql(_owner_sql(plan, "t", _EXACT)).to_arrow_table())
    assert partials[0].schema.field("__s_price").type == pa.decimal128(38, 2)
    assert check_partial(plan, partials[0], "owner") is partials[0]
    pooled = duckdb.connect()
    pooled.execute("SET TimeZone = 'UTC'")
    pooled.register("t", pa.concat_tables(owners))
    want = pooled.sql(sql).to_arrow_table()
    got = answer(plan, partials, _duckdb)
    for name in ("sp", "lp", "ls", "ht", "ld", "lq", "lr"):  # exact, and in their own type
        assert got.schema.field(name).type == want.schema.field(name).type, name

    def rows(table: pa.Table) -> list[dict]:
        return sorted(table.to_pylist(), key=lambda r: str(r["region"]))

    for g, w in zip(rows(got), rows(want), strict=True):
        assert g.keys() == w.keys()
        for k in w:
            if k in ("sq", "su", "sv"):  # DuckDB's pooled SUM of integers is a HUGEINT
                assert g[k] == int(w[k]), k
            else:
                assert _same(g[k], w[k]), (k, g[k], w[k])


def test_decimal_sums_past_a_double_stay_exact_and_overflow_is_refused() -> None:
    plan = parse("SELECT g, SUM(x) AS s, AVG(x) AS a FROM t GROUP BY g")
    big = Decimal("12345678901234567890123456789012.34")  # 34 digits: far past 2^53
    parts = [
        pa.table(
            {
                "g": ["a", "b"],
                "__n": pa.array([3, 1], pa.int64()),
                "__c_x": pa.array([3, 0], pa.int64()),
                "__s_x": pa.array([big + i, None], pa.decimal128(38, 2)),
            }
        )
        for i in range(3)
    ]
    merged = answer(plan, parts, _duckdb).to_pylist()
    a = next(r for r in merged if r["g"] == "a")
    b = next(r for r in merged if r["g"] == "b")
    assert a["s"] == 3 * big + 3  # every digit
    want = duckdb.connect().sql(f"SELECT {3 * big + 3}::DECIMAL(38,2) / 9 :: DOUBLE").fetchall()
    assert a["a"] == want[0][0]  # the exact sum over the count, rounded once
    assert b["s"] is None and b["a"] is None  # no value: NULL, as SQL says
    huge = Decimal("6" + "0" * 35)  # 6e35: two of them pass 10^36, the limit at scale 2
    over = [
        pa.table(
            {
                "g": ["a"],
                "__n": pa.array([1], pa.int64()),
                "__c_x": pa.array([1], pa.int64()),
                "__s_x": pa.array([huge], pa.decimal128(38, 2)),
            }
        )
    ] * 2
    with pytest.raises(PartialError, match=r"overflow a DECIMAL\(38,2\)"):
        merge(plan, over)


def test_decimal_averages_equal_duckdbs_on_both_paths() -> None:
    """The fast path (sums below 2^53) and the exact one agree with DuckDB's AVG."""
    rng = random.Random(7)
    con = duckdb.connect()
    for scale, digits in ((2, 12), (2, 30), (0, 36), (9, 20)):
        values = [
            Decimal(rng.randint(-(10**digits), 10**digits)).scaleb(-scale) for _ in range(500)
        ]
        typ = pa.decimal128(38, scale)
        data = pa.table({"g": [i % 7 for i in range(500)], "x": pa.array(values, typ)})
        con.register("t", data)
        want = dict(con.sql("SELECT g, AVG(x) FROM t GROUP BY g").fetchall())
        sums = con.sql(
            "SELECT g, SUM(x) AS s, COUNT(x) AS c FROM t GROUP BY g ORDER BY g"
        ).to_arrow_table()
        got = decimal_means(sums.column("s"), sums.column("c")).to_pylist()
        for g, mean in zip(sums.column("g").to_pylist(), got, strict=True):
            assert mean == pytest.approx(want[g], rel=1e-15), (scale, digits)


def test_a_decimal_sum_travels_only_as_decimal128_38() -> None:
    plan = parse("SELECT g, SUM(x), MIN(x) FROM t GROUP BY g")

    def partial(sum_type: pa.DataType, count_type: pa.DataType | None = None) -> pa.Table:
        return pa.table(
            {
                "g": ["a"],
                "__n": pa.array([1], pa.int64()),
                "__c_x": pa.array([1], count_type or pa.int64()),
                "__s_x": pa.array([Decimal("1.50")], sum_type),
                "__min_x": pa.array([Decimal("1.50")], pa.decimal128(15, 2)),  # its own type
            }
        )

    ok = partial(pa.decimal128(38, 2))
    assert check_partial(plan, ok, "owner") is ok
    for bad in (partial(pa.decimal128(15, 2)), partial(pa.decimal256(40, 2))):
        with pytest.raises(PartialError, match="non-numeric __s_x"):
            check_partial(plan, bad, "rogue")
    with pytest.raises(PartialError, match="__c_x is not a whole count"):
        check_partial(plan, partial(pa.decimal128(38, 2), pa.decimal128(38, 0)), "rogue")


def test_owners_that_declared_a_column_differently_merge_to_the_wider_type() -> None:
    plan = parse("SELECT SUM(x) AS s FROM t")

    def partial(values: pa.Array) -> pa.Table:
        return pa.table(
            {"__n": pa.array([1], pa.int64()), "__c_x": pa.array([1], pa.int64()), "__s_x": values}
        )

    two = partial(pa.array([Decimal("1.25")], pa.decimal128(38, 2)))
    three = partial(pa.array([Decimal("0.125")], pa.decimal128(38, 3)))
    whole = partial(pa.array([7], pa.int64()))
    exact = merge(plan, [two, three, whole])
    assert exact.schema.field("__s_x").type == pa.decimal128(38, 3)
    assert exact.column("__s_x").to_pylist() == [Decimal("8.375")]
    noised = partial(pa.array([0.5], pa.float64()))  # an owner under DP sends a float
    floated = merge(plan, [two, noised])
    assert floated.column("__s_x").to_pylist() == [1.75]


# --- found in review (2026-12-04): answers that did not equal DuckDB's ---------------------


def _owners_answer(sql: str, parts: list[pa.Table], whole: tuple[str, ...] = ()) -> list[dict]:
    """``sql`` as the owners run it (their generated SQL over their own rows, in DuckDB)
    and the home merges it."""
    plan = parse(sql)
    partials = [
        _duckdb(partial_query(plan, "t", integer_columns=whole, whole=whole), "t", p) for p in parts
    ]
    return answer(plan, partials, _duckdb).to_pylist()


def test_an_owners_integer_sum_past_64_bits_leaves_the_total_unknown_not_short() -> None:
    # One owner's rows sum past BIGINT (its own total is withheld as NULL): the federated
    # SUM, AVG and spread are NULL, not the other owner's 7; the count stays right.
    big = pa.table({"g": ["a", "a"], "v": pa.array([5 * 10**18] * 2, pa.int64())})
    small = pa.table({"g": ["a", "b"], "v": pa.array([7, 3], pa.int64())})
    sql = "SELECT g, SUM(v) AS s, AVG(v) AS m, VAR_POP(v) AS var, COUNT(v) AS n FROM t GROUP BY g"
    rows = {r["g"]: r for r in _owners_answer(sql, [big, small], whole=("v",))}
    assert rows["a"] == {"g": "a", "s": None, "m": None, "var": None, "n": 3}
    assert rows["b"] == {"g": "b", "s": 3, "m": 3.0, "var": 0.0, "n": 1}
    # the same from that owner alone (its partial is not merged): the spread is unknown too
    alone = _owners_answer(sql, [big], whole=("v",))
    assert alone == [{"g": "a", "s": None, "m": None, "var": None, "n": 2}]
    # a group whose values are all NULL at an owner is no such case: its sum is the others'
    empty = pa.table({"g": ["b"], "v": pa.array([None], pa.int64())})
    rows = {r["g"]: r for r in _owners_answer(sql, [empty, small], whole=("v",))}
    assert rows["b"]["s"] == 3


def test_max_over_a_nan_is_nan_wherever_the_nan_is_held() -> None:
    nan = float("nan")
    left = pa.table({"g": ["a", "a", "b"], "f": [nan, 1.0, nan]})
    right = pa.table({"g": ["a", "b", "c"], "f": [5.0, nan, 2.0]})
    sql = "SELECT g, MAX(f) AS hi, MIN(f) AS lo FROM t GROUP BY g ORDER BY g"
    pooled = _duckdb(sql, "t", pa.concat_tables([left, right])).to_pylist()
    got = _owners_answer(sql, [left, right])
    assert [str(r) for r in got] == [str(r) for r in pooled]  # str: NaN == NaN
    assert str(got[0]["hi"]) == "nan" and got[0]["lo"] == 1.0


def test_width_bucket_of_narrow_integers_computes_wide() -> None:
    # (x - lo) * n in the column's own type overflowed a TINYINT: the row fell in NULL
    tiny = pa.table(
        {
            "i8": pa.array([-120, -50, 0, 50, 120, 10, 90], pa.int8()),
            "i16": pa.array([0, 100, 10000, 20000, 29999, 15000, 25000], pa.int16()),
        }
    )
    # near bucket edges past 2^53, where a DOUBLE's division put 2^60 - 1 in bucket 2 and
    # 9e18 - 1 in n + 1 (found in review)
    edges = [0, 2**60 - 1, 2**60, 9 * 10**18 - 1, 2**62 - 3, 45 * 10**17, 1]
    tiny = tiny.append_column("i64", pa.array(edges, pa.int64()))
    cases = (
        ("i8", -100, 100, 3),
        ("i16", 0, 30000, 4),
        ("i64", 0, 9 * 10**18, 4),  # HUGEINT: (hi - lo) * n passes 2^63
        ("i64", 0, 2**61 - 1, 2),  # BIGINT
        ("i64", 0, 2**62 - 1, 3),  # HUGEINT
    )
    for column, lo, hi, n in cases:
        sql = (
            f"SELECT width_bucket({column}, {lo}, {hi}, {n}) AS b, COUNT(*) AS c FROM t GROUP BY b"
        )
        got = sorted(
            (r["b"], r["c"])
            for r in _owners_answer(sql, [tiny[:4], tiny[4:]], ("i8", "i16", "i64"))
        )
        values = tiny.column(column).to_pylist()
        want: dict[int, int] = {}
        for x in values:  # exactly, in Python's integers
            b = 0 if x < lo else n + 1 if x >= hi else (x - lo) * n // (hi - lo) + 1
            want[b] = want.get(b, 0) + 1
        assert got == sorted(want.items())


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_compressed_partial_is_refused_before_it_is_decompressed(codec: str) -> None:
    """Review (2026-12-04): 12 KB of zstd decoded to a 12 M-row partial, 344 MB at the
    home; 4 MB would have been ~100 GB. Nodes never compress: such a stream is refused from
    its metadata, and an uncompressed one decodes as before."""
    from federation.partials import PartialError, from_ipc, to_ipc

    rows = 1_000_000
    table = pa.table({"__n": pa.array(np.ones(rows, dtype=np.int64))})
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=codec)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    bomb = sink.getvalue().to_pybytes()
    assert len(bomb) < rows * 8 // 10  # 8 MB of ones, compressed
    with pytest.raises(PartialError, match="compressed Arrow record batch"):
        from_ipc(bomb)
    small = pa.table({"g": ["a", "b"], "__n": pa.array([5, 6], pa.int64())})
    assert from_ipc(to_ipc(small)).equals(small)


def test_rows_that_cost_no_bytes_are_refused() -> None:
    """Review (2026-12-04): a column of type null (no buffers) made 288 bytes a 10^9-row
    partial, real rows once merged."""
    from federation.partials import PartialError, check_partial, from_ipc, to_ipc
    from federation.sql import parse

    plan = parse("SELECT COUNT(*) AS n FROM t")
    ree = pa.RunEndEncodedArray.from_arrays([10**7], pa.array([5], pa.int64()))
    with pytest.raises(PartialError, match="10,000,000 rows in"):  # more rows than bits
        from_ipc(to_ipc(pa.table({"__n": ree})))
    ree = pa.RunEndEncodedArray.from_arrays([100], pa.array([5], pa.int64()))
    with pytest.raises(PartialError, match="run_end_encoded"):
        check_partial(plan, from_ipc(to_ipc(pa.table({"__n": ree}))), "m")
    raw = parse("SELECT x FROM t")
    with pytest.raises(PartialError, match="of type null"):
        check_partial(raw, from_ipc(to_ipc(pa.table({"x": pa.nulls(100)}))), "m")
    # the home's own answer may hold a NULL column (SELECT NULL AS note): decoded as it is
    assert from_ipc(to_ipc(pa.table({"note": pa.nulls(3)}))).num_rows == 3


def test_an_exact_integer_sum_past_2_53_merges_beside_a_dp_float_sum() -> None:
    """Review (2026-12-04): Arrow's safe cast refused int64 9007199254740993 beside a DP
    owner's float sum (failing the query and showing the total); beside a float every
    owner's sum of the column is merged as DOUBLE, as documented."""
    plan = parse("SELECT SUM(x) AS s FROM t")
    exact = _partial(__n=[3], __c_x=[3], __s_x=pa.array([2**53 + 1], pa.int64()))
    noisy = _partial(__n=[2], __c_x=[2], __s_x=pa.array([10.5], pa.float64()))
    merged = merge(plan, [exact, noisy])
    assert merged.column("__s_x").type == pa.float64()
    assert merged.column("__s_x")[0].as_py() == float(2**53 + 1) + 10.5


def test_nan_keys_of_any_bit_pattern_are_one_group() -> None:
    """Review (2026-12-04): NaNs were grouped by their bits (numpy's 0/0 against Python's
    nan), so one NaN group came out as two."""
    plan = parse("SELECT g, COUNT(*) AS n FROM t GROUP BY g")
    other_nan = np.array([0xFFF8 << 48], np.uint64).view(np.float64)  # numpy's 0/0
    first = _partial(g=pa.array([float("nan")], pa.float64()), __n=[1])
    second = _partial(g=pa.array(other_nan, pa.float64()), __n=[1])
    merged = merge(plan, [first, second])
    assert merged.num_rows == 1 and merged.column("__n").to_pylist() == [2]


def test_a_count_withheld_as_null_is_a_count_and_a_negative_one_is_not() -> None:
    """Under the L2 noise a value's own row count may be withheld (NULL): that partial is
    an owner's ordinary answer (the demo's first query, refused for a while on 2026-12-04);
    a negative or a float count is not."""
    plan = parse("SELECT g, AVG(x) AS a FROM t GROUP BY g")

    def with_count(counts: pa.Array) -> pa.Table:
        return _partial(g=["a"], __n=[9], __c_x=counts, __s_x=pa.array([1.0], pa.float64()))

    assert check_partial(plan, with_count(pa.array([None], pa.int64())), "owner").num_rows == 1
    for bad in (pa.array([-1], pa.int64()), pa.array([float("inf")], pa.float64())):
        with pytest.raises(PartialError, match="count"):
            check_partial(plan, with_count(bad), "rogue")


@pytest.mark.parametrize(
    "keys",
    [
        pa.array([2**53, 2**53 + 1], pa.int64()),
        pa.array([Decimal(2**53), Decimal(2**53 + 1)], pa.decimal128(38, 0)),
        pa.array([Decimal("0.1"), Decimal("0.1000000000000000001")], pa.decimal128(38, 20)),
    ],
    ids=["int64", "decimal-whole", "decimal-fraction"],
)
def test_keys_a_float_cannot_hold_are_refused_beside_another_owners_floats(
    keys: pa.Array,
) -> None:
    """Two groups of one owner must not become one beside another owner's float keys (a
    decimal cast to float64 was not checked: their counts were added under one key)."""
    plan = parse("SELECT g, COUNT(*) AS n FROM t GROUP BY g")
    exact = _partial(g=keys, __n=pa.array([10, 10], pa.int64()))
    floats = _partial(g=pa.array([1.5], pa.float64()), __n=pa.array([10], pa.int64()))
    for order in ([exact, floats], [floats, exact]):
        with pytest.raises(PartialError, match="a float cannot hold exactly") as caught:
            merge(plan, order)
        assert "9007199254740993" not in str(caught.value)
    # keys a float holds exactly merge as before
    small = _partial(g=pa.array([3, None], pa.int64()), __n=pa.array([10, 10], pa.int64()))
    got = merge(plan, [small, floats]).to_pylist()
    assert sorted(got, key=lambda r: (r["g"] is None, r["g"] or 0)) == [
        {"g": 1.5, "__n": 10},
        {"g": 3.0, "__n": 10},
        {"g": None, "__n": 10},
    ]
