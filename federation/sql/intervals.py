"""The range of a scalar expression over clamped columns, by interval arithmetic (for DP).

Under a DP grant each column has declared bounds [lower, upper] and the owner clamps it to
them. The noise of ``SUM(price * (1 - discount))`` is scaled to how much one row's value
can change the sum, so it needs the range of the expression itself: ``interval_of`` derives
it from the columns' bounds, and ``clamp_tree`` clamps each row's value into that range
again, so that one row moves the released sum by at most ``sensitivity`` whatever the
engine's rounding does.

Soundness. Each operation's exact result is bracketed by the nearest doubles below and
above it (computed with ``Fraction``), so the interval holds the value whether the engine
computes exactly (integers, decimals) or in doubles: rounding to nearest is monotone, so a
rounded result cannot leave a bracket whose ends are doubles. Where DuckDB computes in
single precision (an operand that is a FLOAT turns the operation into FLOAT arithmetic, also
with a DECIMAL), operands and result are widened to float32 ends in the same way.
Conditions (``CASE WHEN``) only choose a branch: every branch is taken to be reachable.

NULL. A NULL value is skipped by every aggregate, so it contributes nothing. Whether an
expression may be NULL (a column may; a literal may not) is tracked only to be exact about
COALESCE, LEAST and GREATEST; an expression that is always NULL has no values (an empty
range that still carries its type, which decides how COALESCE and CASE convert the others).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Collection, Iterable, Mapping
from fractions import Fraction
from typing import Literal, NamedTuple

from sqlglot import exp

from federation.sql.dialect import DUCKDB
from federation.sql.plan import column_name
from federation.sql.trees import rebuilt

_Type = exp.DataType.Type


class Unbounded(ValueError):
    """No finite range follows for an expression under DP; the message says why and where."""


class Interval(NamedTuple):
    """Every value an expression can take lies in [lo, hi] (finite doubles, lo <= hi)."""

    lo: float
    hi: float

    @property
    def magnitude(self) -> float:
        """The largest absolute value in the interval: what one row adds to a sum, at most."""
        return max(abs(self.lo), abs(self.hi))


class _Values(NamedTuple):
    """The non-NULL values of an expression, whether it may also be NULL, and whether the
    engine may hold it as a FLOAT (float32: arithmetic on it rounds to single precision)."""

    lo: float
    hi: float
    nullable: bool
    single: bool = False

    @property
    def empty(self) -> bool:
        """Always NULL: no values at all."""
        return self.lo > self.hi


def _null(single: bool = False) -> _Values:
    return _Values(math.inf, -math.inf, True, single)


class _Scope(NamedTuple):
    bounds: Mapping[str, tuple[float, float]]
    singles: Collection[str]


_INTEGERS = {
    _Type.TINYINT,
    _Type.SMALLINT,
    _Type.INT,
    _Type.BIGINT,
    _Type.INT128,
    _Type.UTINYINT,
    _Type.USMALLINT,
    _Type.UINT,
    _Type.UBIGINT,
    _Type.UINT128,
}
_NUMERIC = _INTEGERS | {_Type.DOUBLE, _Type.FLOAT, _Type.DECIMAL}
_DECIMAL_SCALE = 3  # DuckDB's DECIMAL without parameters is DECIMAL(18, 3)
_MAX_DIGITS = 38  # ROUND(x, n) beyond this many decimals (either way) is refused

_RULES = "+ - * /, unary minus, ABS, ROUND, COALESCE, CAST, LEAST, GREATEST and CASE"
_OPERATORS: dict[type[exp.Expr], str] = {
    exp.Mod: "%",
    exp.IntDiv: "//",
    exp.BitwiseAnd: "&",
    exp.BitwiseOr: "|",
    exp.BitwiseXor: "xor",
    exp.BitwiseLeftShift: "<<",
    exp.BitwiseRightShift: ">>",
    exp.DPipe: "||",
}


def _text(node: exp.Expr) -> str:
    """The expression as SQL, for a message."""
    return node.sql(dialect=DUCKDB)


# --- exact results, bracketed by doubles (and by float32s) --------------------------------


def _finite(value: float, node: exp.Expr) -> float:
    if not math.isfinite(value):
        raise Unbounded(
            f"{_text(node)} can reach {value} within the declared bounds of its columns: "
            "no finite bound for the noise; declare narrower bounds"
        )
    return value


def _nearest(exact: Fraction, node: exp.Expr) -> float:
    try:
        return _finite(float(exact), node)
    except OverflowError:
        return _finite(math.inf if exact > 0 else -math.inf, node)


def _down(exact: Fraction, node: exp.Expr) -> float:
    """The largest double at most ``exact``."""
    value = _nearest(exact, node)
    return value if Fraction(value) <= exact else math.nextafter(value, -math.inf)


def _up(exact: Fraction, node: exp.Expr) -> float:
    """The smallest double at least ``exact``."""
    value = _nearest(exact, node)
    return value if Fraction(value) >= exact else math.nextafter(value, math.inf)


def _bracket(exacts: Iterable[Fraction], node: exp.Expr, nullable: bool) -> _Values:
    """From the least to the greatest of ``exacts``, rounded outward to doubles."""
    ordered = sorted(exacts)
    return _Values(_down(ordered[0], node), _up(ordered[-1], node), nullable)


def _float32(x: float, up: bool, node: exp.Expr) -> float:
    """The float32 nearest ``x`` on its outer side: a value converted to FLOAT, or the result
    of FLOAT arithmetic, rounds to one of the two float32s around it."""
    try:
        (near,) = struct.unpack("<f", struct.pack("<f", x))
    except OverflowError:
        near = math.inf
    if not math.isfinite(near):
        raise Unbounded(f"{_text(node)}: the value can exceed the range of FLOAT")
    if (near >= x) if up else (near <= x):
        return float(near)
    if near == 0:
        return math.ldexp(1.0 if up else -1.0, -149)
    # One float32 further out: the next bit pattern is one step away from zero.
    (bits,) = struct.unpack("<I", struct.pack("<f", near))
    away = (near > 0) == up
    (step,) = struct.unpack("<f", struct.pack("<I", bits + 1 if away else bits - 1))
    return float(step)


def _single(v: _Values, node: exp.Expr) -> _Values:
    """``v`` as the engine may hold it in a FLOAT."""
    if v.empty:
        return v._replace(single=True)
    return _Values(_float32(v.lo, False, node), _float32(v.hi, True, node), v.nullable, True)


# --- the rules ----------------------------------------------------------------------------


def _literal(node: exp.Literal) -> _Values:
    if node.is_string:
        raise Unbounded(f"the text {_text(node)} has no numeric bound for the noise")
    try:
        exact = Fraction(node.this.replace("_", ""))
    except (ValueError, ZeroDivisionError):
        raise Unbounded(f"the literal {_text(node)} is not a number") from None
    return _Values(_down(exact, node), _up(exact, node), False)


def _column(node: exp.Column, scope: _Scope) -> _Values:
    name = column_name(node)
    if name not in scope.bounds:
        raise Unbounded(
            f"column {name} has no declared bounds (lower and upper) under this DP grant: "
            "no finite bound for the noise of a value computed from it"
        )
    lo, hi = (float(b) for b in scope.bounds[name])
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise Unbounded(f"column {name} has no finite declared bounds: [{lo}, {hi}]")
    return _Values(lo, hi, True, name in scope.singles)


def _ends(v: _Values) -> tuple[Fraction, Fraction]:
    return Fraction(v.lo), Fraction(v.hi)


def _arithmetic(node: exp.Expr, a: _Values, b: _Values) -> _Values:
    """``a`` + - * / ``b``. With a FLOAT operand DuckDB converts the other to FLOAT and
    rounds the result to FLOAT: both are bracketed as well."""
    single = a.single or b.single
    if a.empty or b.empty:
        return _null(single)  # NULL + x is NULL
    if single:
        a, b = _single(a, node), _single(b, node)
    (alo, ahi), (blo, bhi) = _ends(a), _ends(b)
    nullable = a.nullable or b.nullable
    if isinstance(node, exp.Add):
        result = _bracket((alo + blo, ahi + bhi), node, nullable)
    elif isinstance(node, exp.Sub):
        result = _bracket((alo - bhi, ahi - blo), node, nullable)
    elif isinstance(node, exp.Mul):
        result = _bracket((x * y for x in (alo, ahi) for y in (blo, bhi)), node, nullable)
    else:
        if blo <= 0 <= bhi:
            divisor = _text(node.expression)
            raise Unbounded(
                f"division by {divisor} may divide by 0 (its values lie in "
                f"[{b.lo}, {b.hi}]): no finite bound for the noise; declare bounds that "
                f"exclude 0, or divide by an expression that cannot be 0, such as "
                f"GREATEST({divisor}, 1)"
            )
        result = _bracket((x / y for x in (alo, ahi) for y in (blo, bhi)), node, nullable)
        if node.args.get("typed"):  # an integer division in some dialects: whole numbers
            result = result._replace(
                lo=float(math.floor(result.lo)), hi=float(math.ceil(result.hi))
            )
        if node.args.get("safe"):  # NULL instead of an error
            result = result._replace(nullable=True)
    return _single(result, node) if single else result


def _abs(a: _Values) -> _Values:
    if a.lo >= 0:
        return a
    if a.hi <= 0:
        return a._replace(lo=-a.hi, hi=-a.lo)
    return a._replace(lo=0.0, hi=max(-a.lo, a.hi))


def _grid(a: _Values, digits: int, node: exp.Expr) -> _Values:
    """From the multiple of 10^-digits at or below ``a.lo`` to the one at or above ``a.hi``:
    rounding to ``digits`` decimals lands there whatever the tie rule (it is monotone)."""
    step = Fraction(10) ** -digits
    lo, hi = _ends(a)
    rounded = _Values(
        _down(math.floor(lo / step) * step, node),
        _up(math.ceil(hi / step) * step, node),
        a.nullable,
    )
    return _single(rounded, node) if a.single else rounded


def _integer_literal(node: exp.Expr | None) -> int | None:
    """The value of an integer literal, possibly negated; None for anything else."""
    sign = 1
    if isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Neg):
        sign, node = -1, node.this
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
        return sign * int(node.this)
    return None


def _round(node: exp.Round, a: _Values) -> _Values:
    given = node.args.get("decimals")
    digits = 0 if given is None else _integer_literal(given)
    if digits is None or abs(digits) > _MAX_DIGITS:
        raise Unbounded(
            f"{_text(node)}: ROUND's number of decimals must be a whole number between "
            f"-{_MAX_DIGITS} and {_MAX_DIGITS} for its bound"
        )
    return _grid(a, digits, node)


def _cast(node: exp.Cast, a: _Values) -> _Values:
    to: exp.DataType = node.args["to"]
    if any(node.args.get(arg) is not None for arg in ("format", "default", "action")):
        raise _refused(node)
    if isinstance(node, exp.TryCast):
        a = a._replace(nullable=True)  # a failed conversion is NULL
    if a.empty and to.this in _NUMERIC:
        return _null(to.this is _Type.FLOAT)
    if to.this is _Type.DOUBLE:
        return a._replace(single=False)  # a float32 converts to a double exactly
    if to.this is _Type.FLOAT:
        return _single(a, node)
    if to.this in _INTEGERS:
        return _Values(float(math.floor(a.lo)), float(math.ceil(a.hi)), a.nullable)
    if to.this is _Type.DECIMAL:
        params = to.expressions
        scale = _DECIMAL_SCALE if not params else 0
        if len(params) > 1:
            given = _integer_literal(params[1].this)
            if given is None or not 0 <= given <= _MAX_DIGITS:
                raise Unbounded(f"{_text(node)}: the DECIMAL's scale is not a whole number")
            scale = given
        return _grid(a._replace(single=False), scale, node)
    raise Unbounded(f"{_text(node)}: a CAST to {to.sql(dialect=DUCKDB)} has no numeric bound")


def _common(args: list[_Values], node: exp.Expr) -> list[_Values]:
    """The arguments of a function taking one of them (COALESCE, LEAST, CASE...): with a
    FLOAT among them, DuckDB converts all to FLOAT."""
    if any(a.single for a in args):
        return [_single(a, node) for a in args]
    return args


def _hull(parts: list[_Values], nullable: bool, node: exp.Expr) -> _Values:
    """The smallest range holding every part's values, in their common type."""
    parts = _common(parts, node)
    return _Values(
        min(p.lo for p in parts),
        max(p.hi for p in parts),
        nullable or any(p.nullable for p in parts),
        parts[0].single,
    )


def _coalesce(args: list[_Values], node: exp.Expr) -> _Values:
    """The first non-NULL argument: an argument after one that is never NULL is never used
    (but all of them decide the common type)."""
    used: list[_Values] = []
    for arg in args:
        used.append(arg)
        if not arg.nullable:
            break
    hull = _hull(used, used[-1].nullable, node)
    return _single(hull, node) if any(a.single for a in args) else hull


def _extreme(args: list[_Values], least: bool, skips_nulls: bool, node: exp.Expr) -> _Values:
    """LEAST/GREATEST. DuckDB's skip NULL arguments (sqlglot marks them ``ignore_nulls``)
    and are NULL only if all are; without the mark, any NULL argument makes them NULL.

    Skipping NULLs, LEAST's smallest value is every argument's lowest; its largest comes
    from the arguments that are never NULL (any other one can only lower it) or, if every
    one may be NULL, from the single largest one (it may be the only one present).
    GREATEST mirrors it."""
    args = _common(args, node)
    single = args[0].single
    present = [a for a in args if not a.empty]
    if not present or (not skips_nulls and len(present) < len(args)):
        return _null(single)
    sure = [a for a in present if not a.nullable] if skips_nulls else present
    if least:
        lo = min(a.lo for a in present)
        hi = min(a.hi for a in sure) if sure else max(a.hi for a in present)
    else:
        hi = max(a.hi for a in present)
        lo = max(a.lo for a in sure) if sure else min(a.lo for a in present)
    nullable = not sure if skips_nulls else any(a.nullable for a in present)
    return _Values(lo, hi, nullable, single)


def _case(node: exp.Case, of: Callable[[exp.Expr], _Values]) -> _Values:
    """Any branch may be taken: the hull of every THEN and the ELSE, NULL without an ELSE.
    The conditions (and a simple CASE's operand) only choose a branch: not bounded."""
    results = [of(branch.args["true"]) for branch in node.args.get("ifs") or []]
    default = node.args.get("default")
    otherwise = of(default) if default is not None else _null()
    return _hull([*results, otherwise], otherwise.nullable, node)


def _refused(node: exp.Expr) -> Unbounded:
    if isinstance(node, exp.Anonymous):
        what = f"the function {node.name.upper()}"
    elif isinstance(node, exp.Func):
        what = f"the function {node.sql_name()}"
    elif type(node) in _OPERATORS:
        what = f"the operator {_OPERATORS[type(node)]}"
    elif isinstance(node, exp.Predicate | exp.Connector | exp.Not | exp.Boolean):
        return Unbounded(
            f"{_text(node)}: a condition is not a number; under DP it may only choose a "
            "branch, as in CASE WHEN condition THEN value ELSE value END"
        )
    else:
        what = f"a {type(node).__name__.lower()}"
    return Unbounded(
        f"{_text(node)}: {what} has no bound rule for DP noise; inside an aggregate under "
        f"DP only {_RULES} over bounded columns and numbers can be bounded"
    )


_UNARY = (exp.Neg, exp.Abs, exp.Round)
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div)
_ONE_OF = (exp.Coalesce, exp.Least, exp.Greatest)


def _values(node: exp.Expr, scope: _Scope) -> _Values:
    """The values of ``node`` (empty if it is always NULL)."""

    def of(child: exp.Expr) -> _Values:
        return _values(child, scope)

    if isinstance(node, exp.Paren):
        return of(node.this)
    if isinstance(node, exp.Null):
        return _null()
    if isinstance(node, exp.Literal):
        return _literal(node)
    if isinstance(node, exp.Column):
        return _column(node, scope)
    if isinstance(node, _ARITHMETIC):
        return _arithmetic(node, of(node.this), of(node.expression))
    if isinstance(node, exp.Cast):
        return _cast(node, of(node.this))
    if isinstance(node, _UNARY):
        inner = of(node.this)
        if inner.empty:
            return inner
        if isinstance(node, exp.Neg):
            return inner._replace(lo=-inner.hi, hi=-inner.lo)
        if isinstance(node, exp.Abs):
            return _abs(inner)
        assert isinstance(node, exp.Round)
        return _round(node, inner)
    if isinstance(node, _ONE_OF):
        args = [of(a) for a in (node.this, *node.expressions)]
        if isinstance(node, exp.Coalesce):
            return _coalesce(args, node)
        skips = bool(node.args.get("ignore_nulls"))
        return _extreme(args, isinstance(node, exp.Least), skips, node)
    if isinstance(node, exp.Case):
        return _case(node, of)
    raise _refused(node)


# --- the interface ------------------------------------------------------------------------


def interval_of(
    tree: exp.Expr,
    bounds: Mapping[str, tuple[float, float]],
    *,
    singles: Collection[str] = (),
) -> Interval:
    """The range of ``tree``'s non-NULL values when each column ``c`` lies in ``bounds[c]``.

    ``singles`` names the columns the engine holds as FLOAT (float32); a column clamped with
    ``clamp_tree`` is a DOUBLE whatever its type. Raises ``Unbounded``, with a message for the
    user, for a column without bounds, a division whose divisor may be 0, a form without a
    rule, or a range beyond the doubles. An expression that is always NULL contributes
    nothing: its interval is [0, 0]."""
    values = _values(tree, _Scope(bounds, singles))
    if values.empty:
        return Interval(0.0, 0.0)
    return Interval(values.lo, values.hi)


def _double(value: float) -> exp.Expr:
    """A DOUBLE literal of exactly ``value``: written with an exponent, which DuckDB reads as
    a DOUBLE (``0.1`` alone would be a DECIMAL, and turn a FLOAT operand into a FLOAT)."""
    if not math.isfinite(value):
        raise ValueError(f"clamping bound {value!r} is not a finite number")
    text = repr(abs(value))
    if "e" not in text:
        text += "e0"
    literal = exp.Literal(this=text, is_string=False)
    return exp.Neg(this=literal) if value < 0 else literal


def clamp_tree(tree: exp.Expr, interval: Interval) -> exp.Expr:
    """``tree``'s per-row value clamped into ``interval``, as a DOUBLE; NULL stays NULL.

    ``CASE WHEN (e) IS NULL THEN NULL ELSE LEAST(GREATEST(e, lo), hi) END``: DuckDB's
    GREATEST and LEAST skip NULLs, so without the CASE a NULL would become ``lo`` (summed,
    not counted). A NaN or an infinity (a division by 0 on unclamped values, say) becomes
    ``lo`` or ``hi``: the result is always NULL or a double in the interval, compared with
    bounds written as exact DOUBLE literals. ``tree`` itself is not changed (it appears
    twice in the result, as two new copies)."""
    low = exp.Greatest(
        this=exp.Paren(this=rebuilt(tree)),
        expressions=[_double(interval.lo)],
        ignore_nulls=True,
    )
    clamped = exp.Least(this=low, expressions=[_double(interval.hi)], ignore_nulls=True)
    missing = exp.Is(this=exp.Paren(this=rebuilt(tree)), expression=exp.Null())
    return exp.Case(ifs=[exp.If(this=missing, true=exp.Null())], default=clamped)


def _over_clamped(node: exp.Expr, bounds: Mapping[str, tuple[float, float]]) -> exp.Expr:
    """A new ``node`` whose columns in value positions are clamped to their bounds; the
    columns of a CASE's conditions (and a simple CASE's operand) are left as they are, as
    in a WHERE: they only choose a branch and need no bounds."""
    if isinstance(node, exp.Column):
        lo, hi = bounds[column_name(node)]
        return clamp_tree(node, Interval(float(lo), float(hi)))
    if isinstance(node, exp.Case):
        operand = node.args.get("this")
        default = node.args.get("default")
        return exp.Case(
            this=rebuilt(operand) if operand is not None else None,
            ifs=[
                exp.If(this=rebuilt(b.this), true=_over_clamped(b.args["true"], bounds))
                for b in node.args.get("ifs") or []
            ],
            default=_over_clamped(default, bounds) if default is not None else None,
        )
    args: dict[str, object] = {}
    for key, value in node.args.items():
        if isinstance(value, exp.Expr):
            args[key] = _over_clamped(value, bounds)
        elif type(value) is list:
            args[key] = [_over_clamped(v, bounds) if isinstance(v, exp.Expr) else v for v in value]
        else:
            args[key] = value
    return type(node)(**args)


def clamped_value(
    tree: exp.Expr, bounds: Mapping[str, tuple[float, float]]
) -> tuple[exp.Expr, Interval]:
    """What the owner sums under DP for the value ``tree``, and the interval it lies in.

    Each column in a value position is clamped to its declared bounds (a DOUBLE then, so
    no overflow, and a divisor whose bounds exclude 0 is never 0); the expression over
    them is clamped once more to its derived interval, so one row's value lies in it
    whatever the engine's rounding. Raises ``Unbounded`` as ``interval_of`` does."""
    interval = interval_of(tree, bounds)
    return clamp_tree(_over_clamped(tree, bounds), interval), interval


StateKind = Literal["count", "sum", "squares"]


def sensitivity(kind: StateKind, interval: Interval | None = None) -> float:
    """How much adding or removing one row can change a state whose per-row values lie in
    ``interval``, as gateway/privacy.py ``_sensitivity`` but per value instead of per
    column: 1 for a count (no interval needed), the largest magnitude m for a sum, m * m
    for a sum of squares."""
    if kind == "count":
        return 1.0
    if interval is None:
        raise ValueError(f"the sensitivity of a {kind} needs the values' interval")
    m = interval.magnitude
    if kind == "sum":
        return m
    if kind == "squares":
        square = m * m
        if not math.isfinite(square):
            raise Unbounded(f"the square of {m} overflows: no finite bound for the noise")
        return square
    raise ValueError(f"no sensitivity for the state {kind!r}")
