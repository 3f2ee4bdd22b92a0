"""The range of an expression under DP (federation/sql/intervals.py), checked against DuckDB.

DuckDB is the truth: the rules' tight cases must equal the range DuckDB computes over the
corners of the bounds, and a property test draws random expressions, bounds and rows and
checks every value DuckDB computes lies in the derived interval, and that the clamped
expression lands in it even for values outside the bounds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple

import duckdb
import pytest
import sqlglot
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st
from sqlglot import exp

from federation.sql.intervals import (
    Interval,
    Unbounded,
    clamp_tree,
    clamped_value,
    interval_of,
    sensitivity,
)

Bounds = dict[str, tuple[float, float]]

BOUNDS: Bounds = {
    "price": (0.0, 1000.0),
    "discount": (0.0, 0.1),
    "a": (-2.0, 3.0),
    "b": (-5.0, 4.0),
    "pos": (2.0, 4.0),
    "neg": (-4.0, -2.0),
    "z": (0.0, 5.0),
    "qty": (0.0, 50.0),
}


def _tree(sql: str) -> exp.Expr:
    tree = sqlglot.parse_one(sql, read="duckdb")
    assert tree is not None
    return tree


def _of(sql: str, bounds: Mapping[str, tuple[float, float]] = BOUNDS) -> Interval:
    return interval_of(_tree(sql), bounds)


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    yield connection
    connection.close()


def _grid(con: duckdb.DuckDBPyConnection, sql: str, steps: int = 8) -> tuple[float, float]:
    """The least and greatest value DuckDB computes for ``sql`` over a grid of each
    column's bounds (its ends and 0 included) and NULL, every column a DOUBLE."""
    names = sorted({c.name for c in _tree(sql).find_all(exp.Column)})
    axes = [
        [None, 0.0] + [lo + (hi - lo) * i / steps for i in range(steps + 1)]
        if lo < 0 < hi
        else [None] + [lo + (hi - lo) * i / steps for i in range(steps + 1)]
        for lo, hi in (BOUNDS[n] for n in names)
    ]
    rows = list(itertools.product(*axes))
    row = "(" + ", ".join("CAST(? AS DOUBLE)" for _ in names) + ")"
    query = f"SELECT {sql} FROM (VALUES {', '.join([row] * len(rows))}) AS t({', '.join(names)})"
    values = [v for (v,) in con.execute(query, [x for r in rows for x in r]).fetchall()]
    present = [float(v) for v in values if v is not None]
    return min(present), max(present)


# --- tight rules: the interval is exactly the range DuckDB reaches -------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "price",
        "price * (1 - discount)",
        "a + b",
        "a - b",
        "a * b",
        "a / pos",
        "a / neg",
        "pos / neg",
        "-a",
        "- (a - b)",
        "ABS(a - b)",
        "ABS(b)",
        "ABS(pos)",
        "ABS(neg)",
        "LEAST(a, b)",
        "GREATEST(a, b)",
        "GREATEST(a, 0)",
        "LEAST(a, 1)",
        "CASE WHEN a > 0 THEN qty ELSE 0 END",
        "CASE WHEN b < 0 THEN pos WHEN b > 1 THEN neg ELSE a END",
        "COALESCE(a, b)",
        "CAST(a AS DOUBLE) * 2",
        "2 * a - 3 * b + 1",
    ],
)
def test_tight_rules_equal_duckdb_range(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    assert _of(sql) == Interval(*_grid(con, sql))


def test_a_column_used_twice_is_bounded_as_two(con: duckdb.DuckDBPyConnection) -> None:
    """Interval arithmetic does not know both factors of b * b are one value: the bound is
    sound (it holds DuckDB's range) but not tight."""
    assert _grid(con, "b * b") == (0.0, 25.0)
    assert _of("b * b") == Interval(-20.0, 25.0)


def test_expressions_from_the_issue() -> None:
    assert _of("price * (1 - discount)") == Interval(0.0, 1000.0)
    assert sensitivity("sum", _of("price * (1 - discount)")) == 1000.0
    region = _of("CASE WHEN region = 'x' THEN qty ELSE 0 END")  # region: a condition only
    assert region == Interval(0.0, 50.0)
    assert _of("ABS(a - b)") == Interval(0.0, 8.0)


# --- outward rules -------------------------------------------------------------------------


def test_a_literal_brackets_its_exact_value() -> None:
    """0.1 is a DECIMAL to DuckDB (exactly 1/10) and a double a little above it to Python:
    the interval holds both."""
    lo, hi = _of("0.1")
    assert Fraction(lo) <= Fraction(1, 10) <= Fraction(hi) and hi == 0.1
    assert math.nextafter(lo, math.inf) == hi
    assert _of("2") == Interval(2.0, 2.0)
    assert _of("-2.5") == Interval(-2.5, -2.5)
    assert _of("1.5e3") == Interval(1500.0, 1500.0)


def test_inexact_arithmetic_rounds_outward(con: duckdb.DuckDBPyConnection) -> None:
    """a * 0.3 over [-2, 3] is exactly [-0.6, 0.9]; neither end is a double, and the double
    nearest -0.6 is above it. DuckDB reaches -0.6 exactly with a DECIMAL column."""
    lo, hi = _of("a * 0.3")  # the literal's own bracket widens the product a little more
    assert Fraction(lo) < Fraction(-6, 10) and -0.6 - lo <= 2 * math.ulp(0.6)
    assert Fraction(9, 10) < Fraction(hi) and hi - 0.9 <= 2 * math.ulp(0.9)
    (exact,) = con.execute("SELECT CAST(-2 AS DECIMAL(4, 1)) * 0.3").fetchone() or ()
    assert exact == Decimal("-0.6") and Fraction(lo) <= Fraction(exact)
    assert Fraction(float(exact)) > Fraction(exact)  # a bracket of nearest doubles misses it


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("ROUND(a * 0.37)", (-1.0, 2.0)),  # [-0.74, 1.11] to whole numbers, outward
        ("ROUND(pos / 3, 1)", (0.6, 1.4)),  # [0.666.., 1.333..] to tenths
        ("ROUND(price, -2)", (0.0, 1000.0)),
        ("ROUND(price + 1, -2)", (0.0, 1100.0)),
        ("CAST(a * 0.5 AS INTEGER)", (-1.0, 2.0)),  # [-1, 1.5], whole numbers outward
        ("CAST(a / 3 AS BIGINT)", (-1.0, 1.0)),
        ("CAST(pos / 3 AS DECIMAL(10, 2))", (0.66, 1.34)),
        ("CAST(a AS DECIMAL)", (-2.0, 3.0)),
        ("TRY_CAST(a AS INTEGER)", (-2.0, 3.0)),
    ],
)
def test_rounding_forms_widen_to_their_grid(sql: str, expected: tuple[float, float]) -> None:
    lo, hi = _of(sql)
    assert lo == pytest.approx(expected[0], abs=1e-15) and lo <= expected[0]
    assert hi == pytest.approx(expected[1], abs=1e-15) and hi >= expected[1]


def test_cast_to_float_widens_to_float32(con: duckdb.DuckDBPyConnection) -> None:
    """FLOAT arithmetic rounds to single precision, also with a DECIMAL literal: 3 * 0.2 as
    a FLOAT is above the smallest double above 0.6, where double arithmetic would stop."""
    (value,) = con.execute("SELECT CAST(3.0 AS FLOAT) * 0.2").fetchone() or ()
    assert value > math.nextafter(0.6, 1.0)
    lo, hi = _of("CAST(a AS FLOAT) * 0.2")
    assert lo <= -0.4 and hi >= value
    single = interval_of(_tree("a * 0.2"), BOUNDS, singles={"a"})
    assert single.hi >= value
    assert interval_of(_tree("a * 0.2"), BOUNDS).hi < value
    assert _of("CAST(CAST(a AS FLOAT) AS DOUBLE)") == Interval(-2.0, 3.0)


def test_a_null_float_still_makes_the_others_floats(con: duckdb.DuckDBPyConnection) -> None:
    """COALESCE converts its arguments to their common type, also that of an argument that
    is always NULL: here FLOAT, which rounds 0.55 up."""
    sql = "COALESCE(CAST(0.1 AS DECIMAL(3, 2)) * 5.5, CAST(NULL AS FLOAT))"
    (value,) = con.execute(f"SELECT {sql}").fetchone() or ()
    assert value > 0.55
    assert _of("COALESCE(discount * 5.5, CAST(NULL AS FLOAT))").hi >= value
    assert _of("CASE WHEN a > 0 THEN discount * 5.5 ELSE CAST(NULL AS FLOAT) END").hi >= value
    assert _of("CAST(NULL AS FLOAT) + 1") == Interval(0.0, 0.0)


def test_null_contributes_nothing() -> None:
    assert _of("NULL") == Interval(0.0, 0.0)
    assert _of("a + NULL") == Interval(0.0, 0.0)
    assert _of("ABS(NULL)") == Interval(0.0, 0.0)
    assert _of("CASE WHEN a > 0 THEN NULL END") == Interval(0.0, 0.0)
    assert _of("CASE WHEN a > 0 THEN pos END") == Interval(2.0, 4.0)
    assert _of("CASE WHEN a > 0 THEN NULL ELSE neg END") == Interval(-4.0, -2.0)


def test_coalesce_stops_at_its_first_argument_that_is_never_null() -> None:
    assert _of("COALESCE(a, 7)") == Interval(-2.0, 7.0)
    assert _of("COALESCE(NULL, 7, a)") == Interval(7.0, 7.0)
    assert _of("COALESCE(a, pos, b)") == Interval(-5.0, 4.0)
    assert _of("IFNULL(pos, 0)") == Interval(0.0, 4.0)


def test_least_and_greatest_skip_nulls() -> None:
    """LEAST(a, 1) is at most 1 (the literal is never NULL); LEAST(a, b) may be either
    column alone when the other is NULL, so it reaches a's upper bound."""
    assert _of("LEAST(a, 1)") == Interval(-2.0, 1.0)
    assert _of("LEAST(a, pos)") == Interval(-2.0, 4.0)
    assert _of("GREATEST(a, neg)") == Interval(-4.0, 3.0)
    assert _of("GREATEST(a, NULL)") == Interval(-2.0, 3.0)
    assert _of("LEAST(NULL, NULL)") == Interval(0.0, 0.0)


def test_least_without_skipping_nulls_is_null_with_any_null(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """A LEAST built without sqlglot's ``ignore_nulls`` mark means the standard one, which
    is NULL as soon as an argument is: sqlglot writes it so for DuckDB."""
    strict = exp.Least(this=exp.Literal.number(0), expressions=[exp.Null()])
    (value,) = con.execute(f"SELECT {strict.sql(dialect='duckdb')}").fetchone() or ()
    assert value is None and interval_of(strict, BOUNDS) == Interval(0.0, 0.0)
    fallback = exp.Coalesce(this=strict, expressions=[_tree("a * 2")])
    assert interval_of(fallback, BOUNDS) == Interval(-4.0, 6.0)
    both = exp.Greatest(this=exp.column("a"), expressions=[exp.column("neg")])
    assert interval_of(both, BOUNDS) == Interval(-2.0, 3.0)  # NULL if either is


def test_a_condition_only_chooses_a_branch() -> None:
    """A simple CASE's operand and the WHEN conditions use columns with no bounds."""
    assert _of("CASE region WHEN 'x' THEN qty WHEN 'y' THEN -qty END") == Interval(-50.0, 50.0)
    assert _of("CASE WHEN day > '2024-01-01' AND NOT flag THEN 1 ELSE 0 END") == Interval(0, 1)


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("sql", ["a / z", "a / b", "a / (pos - 3)", "qty / (a * 0)", "1 / z"])
def test_division_by_a_range_holding_zero_is_refused(sql: str) -> None:
    with pytest.raises(Unbounded, match=r"division by .* may divide by 0.* no finite bound"):
        _of(sql)


def test_division_refusal_names_the_divisor_and_a_way_out() -> None:
    with pytest.raises(Unbounded) as refused:
        _of("price / z")
    message = str(refused.value)
    assert "division by z" in message and "[0.0, 5.0]" in message
    assert "GREATEST(z, 1)" in message
    assert _of("price / GREATEST(z, 1)") == Interval(0.0, 1000.0)


def test_a_column_without_bounds_is_refused() -> None:
    with pytest.raises(Unbounded, match="column tax has no declared bounds"):
        _of("price * tax")
    with pytest.raises(Unbounded, match="column tax has no declared bounds"):
        _of("CASE WHEN a > 0 THEN tax END")


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("SQRT(a)", "the function SQRT"),
        ("POWER(a, 2)", "the function POWER"),
        ("LN(pos)", "the function LN"),
        ("my_udf(a)", "the function MY_UDF"),
        ("a % pos", "the operator %"),
        ("a // pos", "the operator //"),
        ("SUM(a)", "the function SUM"),
        ("NULLIF(a, 0)", "the function NULLIF"),
        ("a > 0", "a condition is not a number"),
        ("CAST(a AS VARCHAR)", "CAST to TEXT has no numeric bound"),
        ("'12'", "text '12' has no numeric bound"),
        ("ROUND(a, pos)", "ROUND's number of decimals must be a whole number"),
        ("ROUND(a, 400)", "ROUND's number of decimals must be a whole number"),
    ],
)
def test_forms_without_a_rule_are_refused_by_name(sql: str, named: str) -> None:
    with pytest.raises(Unbounded) as refused:
        _of(sql)
    assert named in str(refused.value)


def test_a_range_beyond_the_doubles_is_refused() -> None:
    huge = {"x": (-1e300, 1e300)}
    with pytest.raises(Unbounded, match="x \\* x can reach -?inf"):
        _of("x * x", huge)
    with pytest.raises(Unbounded, match="can reach"):
        _of("1e400")
    with pytest.raises(Unbounded, match="range of FLOAT"):
        _of("CAST(x AS FLOAT)", huge)
    with pytest.raises(Unbounded, match="no finite declared bounds"):
        _of("x", {"x": (0.0, math.inf)})
    with pytest.raises(Unbounded, match="overflows"):
        sensitivity("squares", Interval(0.0, 1e200))


def test_sensitivity_matches_the_per_column_rule() -> None:
    """As gateway/privacy.py _sensitivity: a plain column's interval is its bounds."""
    assert sensitivity("count") == 1.0
    assert sensitivity("sum", _of("b")) == 5.0
    assert sensitivity("squares", _of("b")) == 25.0
    assert sensitivity("sum", _of("price * (1 - discount)")) == 1000.0
    assert sensitivity("sum", _of("neg * 2")) == 8.0
    with pytest.raises(ValueError, match="needs the values' interval"):
        sensitivity("sum")


# --- clamp_tree ----------------------------------------------------------------------------


def test_clamp_keeps_null_and_the_input_tree(con: duckdb.DuckDBPyConnection) -> None:
    tree = _tree("price * (1 - discount)")
    before = tree.sql(dialect="duckdb")
    clamped = clamp_tree(tree, Interval(0.0, 0.30000000000000004))
    assert tree.sql(dialect="duckdb") == before and tree.parent is None
    text = clamped.sql(dialect="duckdb")
    rows = [(None, 0.5), (2.0, None), (1.0, 0.5), (-5.0, 0.0), (float("nan"), 0.0)]
    query = (
        f"SELECT {text}, typeof({text}) FROM (VALUES "
        + ", ".join(["(CAST(? AS DOUBLE), CAST(? AS DOUBLE))"] * len(rows))
        + ") AS t(price, discount)"
    )
    got = con.execute(query, [v for r in rows for v in r]).fetchall()
    assert [v for v, _ in got] == [None, None, 0.30000000000000004, 0.0, 0.30000000000000004]
    assert {t for _, t in got} == {"DOUBLE"}


def test_clamp_bounds_are_exact_doubles(con: duckdb.DuckDBPyConnection) -> None:
    """0.1 written plainly is a DECIMAL; the clamp writes each bound as a DOUBLE literal."""
    tiny = math.nextafter(0.1, 0.0)
    text = clamp_tree(_tree("x"), Interval(-tiny, tiny)).sql(dialect="duckdb")
    got = con.execute(f"SELECT {text} FROM (VALUES (1.0::DOUBLE), (-1.0::DOUBLE)) t(x)")
    assert sorted(v for (v,) in got.fetchall()) == [-tiny, tiny]


def test_clamped_value_clamps_columns_not_conditions(con: duckdb.DuckDBPyConnection) -> None:
    """Columns in values are clamped to their bounds before the arithmetic; a condition's
    column needs no bounds and is compared as it is, as in a WHERE."""
    tree = _tree("CASE WHEN region = 'x' AND a > 5 THEN qty * pos ELSE 0 END")
    value, interval = clamped_value(tree, BOUNDS)
    assert interval == Interval(0.0, 200.0) and interval == interval_of(tree, BOUNDS)
    rows = [("x", 10.0, 80.0, 3.0), ("x", 10.0, 80.0, None), ("y", 10.0, 9.0, 3.0)]
    rows += [("x", 1.0, 9.0, 3.0), ("x", 6.0, -1.0, 100.0)]
    query = (
        f"SELECT {value.sql(dialect='duckdb')} FROM (VALUES "
        + ", ".join(["(?, CAST(? AS DOUBLE), CAST(? AS DOUBLE), CAST(? AS DOUBLE))"] * len(rows))
        + ") AS t(region, a, qty, pos)"
    )
    got = [v for (v,) in con.execute(query, [x for r in rows for x in r]).fetchall()]
    # qty 80 -> 50 and pos 3: 150; pos NULL: NULL; region y: 0; a 1 fails a > 5: 0;
    # qty -1 -> 0 times pos 100 -> 4: 0
    assert got == [150.0, None, 0.0, 0.0, 0.0]


def test_clamped_value_refuses_like_interval_of() -> None:
    with pytest.raises(Unbounded, match="column tax has no declared bounds"):
        clamped_value(_tree("CASE WHEN a > 0 THEN tax END"), BOUNDS)
    with pytest.raises(Unbounded, match="division by z may divide by 0"):
        clamped_value(_tree("qty / z"), BOUNDS)


# --- the property: DuckDB's values lie in the interval; clamped ones always do ---------------

COLUMNS = ("a", "b", "c")
MAGNITUDE = 100  # bounds within ±100; out-of-range values within ±1000 (or inf / NaN)


class Column(NamedTuple):
    sql_type: str  # DOUBLE, FLOAT, BIGINT or DECIMAL(12, 2)
    lo: float
    hi: float


class Case(NamedTuple):
    columns: dict[str, Column]
    tree: exp.Expr
    inside: list[tuple[Any, ...]]  # rows within the bounds (NULL allowed)
    outside: list[tuple[Any, ...]]  # rows outside them


def _ordered(pair: Sequence[float]) -> tuple[float, float]:
    return min(pair), max(pair)


@st.composite
def _column(draw: st.DrawFn) -> Column:
    kind = draw(st.sampled_from(["DOUBLE", "FLOAT", "BIGINT", "DECIMAL(12, 2)"]))
    positive = draw(st.booleans())  # a range away from 0 lets a division be bounded
    low = 0.5 if positive else -MAGNITUDE
    if kind == "BIGINT":
        ints = st.integers(int(math.ceil(low)), MAGNITUDE)
        return Column(kind, *_ordered([float(draw(ints)), float(draw(ints))]))
    if kind.startswith("DECIMAL"):  # quarters: a bound a double holds exactly
        quarters = st.integers(int(low * 4), MAGNITUDE * 4)
        return Column(kind, *_ordered([draw(quarters) / 4, draw(quarters) / 4]))
    reals = st.floats(low, MAGNITUDE, width=32 if kind == "FLOAT" else 64)
    return Column(kind, *_ordered([draw(reals), draw(reals)]))


def _value_inside(column: Column) -> st.SearchStrategy[Any]:
    if column.sql_type == "BIGINT":
        return st.integers(int(column.lo), int(column.hi))
    if column.sql_type.startswith("DECIMAL"):
        cents = st.integers(int(column.lo * 100), int(column.hi * 100))
        return cents.map(lambda c: Decimal(c) / 100)
    return st.floats(column.lo, column.hi, width=32 if column.sql_type == "FLOAT" else 64)


def _value_outside(column: Column) -> st.SearchStrategy[Any]:
    if column.sql_type == "BIGINT":
        return st.integers(-10 * MAGNITUDE, 10 * MAGNITUDE)
    if column.sql_type.startswith("DECIMAL"):
        return st.integers(-1000 * MAGNITUDE, 1000 * MAGNITUDE).map(lambda c: Decimal(c) / 100)
    return st.floats(width=32 if column.sql_type == "FLOAT" else 64)  # inf, NaN included


def _number() -> st.SearchStrategy[exp.Expr]:
    text = st.sampled_from(["0", "1", "2", "3", "7", "0.5", "0.1", "1.25", "2.75"])
    literal = text.map(exp.Literal.number)
    return st.one_of(literal, literal.map(lambda n: exp.Neg(this=n)))


def _paren(node: exp.Expr) -> exp.Expr:
    return exp.Paren(this=node)


_TYPES = ["DOUBLE", "INTEGER", "BIGINT", "DECIMAL(18, 3)", "DECIMAL(18, 1)", "FLOAT"]
_FORMS = [
    *["add", "sub", "mul"] * 3,
    "div",
    "neg",
    "abs",
    "round",
    "cast",
    "coalesce",
    "least",
    "greatest",
    "case",
    "leaf",
]


@st.composite
def _expression(draw: st.DrawFn, names: Sequence[str], depth: int) -> exp.Expr:
    """A random expression at most ``depth`` operations deep (mostly arithmetic, so that
    columns meet columns), every node new."""
    form = "leaf" if depth == 0 else draw(st.sampled_from(_FORMS))
    if form == "leaf":
        kind = draw(st.sampled_from(["column"] * 6 + ["number"] * 4 + ["null"]))
        if kind == "column":
            return exp.column(draw(st.sampled_from(list(names))))
        return draw(_number()) if kind == "number" else exp.Null()

    def inner() -> exp.Expr:
        return draw(_expression(names, depth - 1))

    if form in ("add", "sub", "mul", "div"):
        op = {"add": exp.Add, "sub": exp.Sub, "mul": exp.Mul, "div": exp.Div}[form]
        return op(this=_paren(inner()), expression=_paren(inner()))
    if form == "neg":
        return exp.Neg(this=_paren(inner()))
    if form == "abs":
        return exp.Abs(this=inner())
    if form == "round":
        return exp.Round(this=inner(), decimals=exp.Literal.number(draw(st.integers(-1, 2))))
    if form == "cast":
        to = exp.DataType.build(draw(st.sampled_from(_TYPES)), dialect="duckdb")
        return exp.Cast(this=inner(), to=to)
    if form in ("coalesce", "least", "greatest"):
        args = [inner() for _ in range(draw(st.integers(2, 3)))]
        if form == "coalesce":
            return exp.Coalesce(this=args[0], expressions=args[1:])
        op = exp.Least if form == "least" else exp.Greatest
        # DuckDB's own skip NULLs; sqlglot writes the others to be NULL with any NULL
        skips = draw(st.booleans())
        return op(this=args[0], expressions=args[1:], ignore_nulls=skips)
    whens = []
    for _ in range(draw(st.integers(1, 2))):
        compare = draw(st.sampled_from([exp.GT, exp.LT, exp.EQ]))
        column = exp.column(draw(st.sampled_from(list(names))))
        limit = exp.Literal.number(draw(st.integers(-3, 3)))
        whens.append(exp.If(this=compare(this=column, expression=limit), true=inner()))
    return exp.Case(ifs=whens, default=inner() if draw(st.booleans()) else None)


@st.composite
def _cases(draw: st.DrawFn) -> Case:
    names = COLUMNS[: draw(st.integers(1, 3))]
    columns = {n: draw(_column()) for n in names}
    tree = draw(_expression(names, draw(st.integers(1, 3))))
    corners = list(itertools.product(*[(c.lo, c.hi) for c in columns.values()]))
    corners = [
        tuple(
            int(v) if c.sql_type == "BIGINT" else v
            for v, c in zip(row, columns.values(), strict=True)
        )
        for row in corners
    ]

    def rows(value: Any) -> st.SearchStrategy[list[tuple[Any, ...]]]:
        cells = [st.one_of(value(c), value(c), value(c), st.none()) for c in columns.values()]
        return st.lists(st.tuples(*cells), min_size=1, max_size=4)

    return Case(columns, tree, corners + draw(rows(_value_inside)), draw(rows(_value_outside)))


def _parameter(column: Column, value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def _evaluate(
    con: duckdb.DuckDBPyConnection,
    columns: dict[str, Column],
    select: Sequence[str],
    rows: list[tuple[Any, ...]],
) -> list[tuple[Any, ...]]:
    """DuckDB's values of ``select`` over ``rows``, each cell cast to its column's type."""
    cells = ", ".join(f"CAST(? AS {c.sql_type})" for c in columns.values())
    query = (
        f"SELECT {', '.join(select)} FROM (VALUES "
        + ", ".join([f"({cells})"] * len(rows))
        + f") AS t({', '.join(columns)})"
    )
    params = [_parameter(c, v) for row in rows for c, v in zip(columns.values(), row, strict=True)]
    return con.execute(query, params).fetchall()


def _within(value: Any, interval: Interval) -> bool:
    """Exactly: a DECIMAL is compared as the number it is, not as a rounded double."""
    return Fraction(interval.lo) <= Fraction(value) <= Fraction(interval.hi)


def _justified(refusal: Unbounded, tree: exp.Expr, bounds: Bounds, singles: set[str]) -> bool:
    """The refusals the generator can meet: a division whose divisor's own interval holds 0
    (or is itself refused); or, after a division by a tiny divisor, a value beyond the
    doubles, or beyond the FLOATs where one is in play."""
    message = str(refusal)
    if "can reach" in message or "range of FLOAT" in message:
        floats = singles or any(
            c.to.this is exp.DataType.Type.FLOAT for c in tree.find_all(exp.Cast)
        )
        return next(tree.find_all(exp.Div), None) is not None and (
            "can reach" in message or bool(floats)
        )
    for division in tree.find_all(exp.Div):
        if f"division by {division.expression.sql(dialect='duckdb')} " not in message:
            continue
        try:
            lo, hi = interval_of(division.expression, bounds, singles=singles)
        except Unbounded:
            return True
        if lo <= 0 <= hi:
            return True
    return False


def _columns_meet(node: exp.Mul) -> bool:
    return all(next(side.find_all(exp.Column), None) for side in (node.this, node.expression))


_ENGINE_ERRORS = (duckdb.OutOfRangeException, duckdb.ConversionException)


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=_cases())
def test_duckdb_values_lie_in_the_interval(con: duckdb.DuckDBPyConnection, case: Case) -> None:
    bounds = {n: (c.lo, c.hi) for n, c in case.columns.items()}
    singles = {n for n, c in case.columns.items() if c.sql_type == "FLOAT"}
    sql = case.tree.sql(dialect="duckdb")
    try:
        interval = interval_of(case.tree, bounds, singles=singles)
    except Unbounded as refusal:
        assert _justified(refusal, case.tree, bounds, singles), (sql, str(refusal))
        event("refused")
        return
    assert math.isfinite(interval.lo) and math.isfinite(interval.hi)
    assert interval.lo <= interval.hi
    clamped = clamp_tree(case.tree, interval).sql(dialect="duckdb")
    assert case.tree.sql(dialect="duckdb") == sql  # not changed by the clamp
    try:
        inside = _evaluate(con, case.columns, [sql, clamped], case.inside)
    except _ENGINE_ERRORS:
        reject()  # an overflow or a failed CAST: an error, no value at all
    event(f"values checked: {min(sum(v is not None for v, _ in inside), 4)}")
    event(f"columns multiplied: {any(_columns_meet(m) for m in case.tree.find_all(exp.Mul))}")
    for value, clamp in inside:
        assert (value is None) == (clamp is None), (sql, value, clamp)
        if value is not None:
            assert _within(value, interval), (sql, bounds, interval, value)
            assert clamp == pytest.approx(float(value), rel=1e-15), (sql, value, clamp)
    dp_value = clamped_value(case.tree, bounds)[0].sql(dialect="duckdb")
    for row in case.outside + case.inside:  # one at a time: an overflow errs the whole query
        try:
            ((clamp, dp),) = _evaluate(con, case.columns, [clamped, dp_value], [row])
        except _ENGINE_ERRORS:
            continue
        assert dp is None or (isinstance(dp, float) and _within(dp, interval)), (dp_value, dp)
        assert clamp is None or (isinstance(clamp, float) and _within(clamp, interval)), (
            clamped,
            interval,
            clamp,
        )
