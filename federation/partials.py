"""Mergeable partial aggregates: what an owner computes, and how partials combine exactly.

An owner never returns an aggregate's final value, only a *state* that merges without
loss: counts and sums add, MIN/MAX take the extreme, and variance travels as
(count, sum, M2) and combines with the parallel formula of Chan, Golub and LeVeque,
which stays numerically stable where the textbook sum-of-squares formula does not.

Sums are exact where the owners' are: an integer sum travels as int64, a decimal sum as
decimal128(38, s) (DuckDB's SUM of a DECIMAL(p, s)), and both add exactly, refused
rather than wrapped where the total could overflow. A float sum (DOUBLE, or any sum
noised under DP) travels as float64; where owners disagree, every owner's sum of that
column is merged as float64. AVG of a decimal is the exact merged sum divided by the
count, rounded once to a DOUBLE, as DuckDB's AVG of a DECIMAL on the pooled rows.
MIN and MAX keep the column's own type (a timestamp, a date, a decimal, an int8...).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, localcontext

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from federation import dp_hist, sketches
from federation.ipc_guard import IpcRefused, check_stream
from federation.sql import (
    COUNT_KINDS,
    MERGED_TABLE,
    ROWS,
    AggCall,
    Kind,
    Projection,
    QueryPlan,
    agg_column,
    state_columns,
)
from federation.sql.states import StateColumn, state_name

# Runs generated SQL over one in-memory table: (sql, table name, table) -> result.
RunSql = Callable[[str, str, pa.Table], pa.Table]


class PartialError(ValueError):
    """A partial that does not have the shape the plan implies: refused, never merged."""


def expected_columns(plan: QueryPlan) -> list[str]:
    """The only column names a partial for ``plan`` may carry, in order."""
    if plan.is_raw:
        return list(plan.raw_columns)
    return [*plan.group_by, *(s.name for s in state_columns(plan, dp=False))]


SUM_PRECISION = 38  # a decimal sum travels as decimal128(38, s): DuckDB's SUM of DECIMAL(p, s)


def _exact_decimal_sum(t: pa.DataType) -> bool:
    return pa.types.is_decimal128(t) and t.precision == SUM_PRECISION


def check_partial(plan: QueryPlan, table: pa.Table, source: str) -> pa.Table:
    """Refuse a partial whose columns are not exactly the plan's (names come from peers and
    end up in generated SQL), or whose state columns are not numeric: int64 or float64,
    and for a sum also decimal128(38, s)."""
    if table.column_names != expected_columns(plan):
        raise PartialError(f"the partial from {source} does not have the columns the query implies")
    # Rows that cost no bytes (a null column, run-end encoding, views of few buffers) would
    # become real ones when merged: 288 bytes made 10^9 rows (review, 2026-12-04). No
    # owner's partial has such a column (the home's own answer may: a NULL in SELECT).
    odd = next((f for f in table.schema if _hollow(f.type)), None)
    if odd is not None:
        raise PartialError(f"the partial from {source} has a column of type {odd.type}")
    # MIN and MAX keep the column's own type; every other state is a number.
    states = {s.name: s.kind for s in state_columns(plan, dp=False) if s.kind not in _EXTREMES}
    for name in value_columns(plan):
        if value_class(table.schema.field(name).type) is None:
            what = f"{_role(plan, name)} {name}"
            raise PartialError(
                f"the partial from {source} has {what} of type {table.schema.field(name).type}"
            )
    for field in table.schema:
        kind = states.get(field.name)
        if kind in COUNT_KINDS:
            _check_counts(table.column(field.name), f"{source}'s {field.name}")
            continue
        if kind in _SKETCHES:
            _check_sketches(table.column(field.name), kind, f"{source}'s {field.name}")
            continue
        numeric = pa.types.is_int64(field.type) or pa.types.is_float64(field.type)
        if kind is Kind.SUM and _exact_decimal_sum(field.type):
            numeric = True
        if kind is not None and not numeric:
            raise PartialError(f"the partial from {source} has a non-numeric {field.name}")
        if pa.types.is_nested(field.type) or pa.types.is_dictionary(field.type):
            raise PartialError(f"the partial from {source} has a nested {field.name}")
    return table


_SKETCHES = (Kind.HLL, Kind.KLL)  # binary states: one serialised sketch per group


def _check_counts(column: pa.ChunkedArray, what: str) -> None:
    """A count is a whole number of rows (or NULL, withheld), also once noised (a float
    +inf count had made the home's exact decimal average raise)."""
    if not pa.types.is_int64(column.type):
        raise PartialError(f"the partial from {what} is not a whole count")
    for chunk in column.chunks:  # NULL: withheld under the L2 noise (a value's own count)
        values = (chunk.drop_null() if chunk.null_count else chunk).to_numpy()
        if values.size and values.min() < 0:
            raise PartialError(f"the partial from {what} is not a count of rows")


def value_columns(plan: QueryPlan) -> list[str]:
    """The columns of a partial that carry the data's own values (group keys, MIN and MAX,
    raw columns), not states: owners' partials merge only where their kinds agree."""
    if plan.is_raw:
        return list(plan.raw_columns)
    extremes = [s.name for s in state_columns(plan, dp=False) if s.kind in _EXTREMES]
    return [*plan.group_by, *extremes]


def value_class(kind: pa.DataType) -> str | None:
    """What kind of value a value column holds, as far as merging goes; None for a type
    no owner's engine sends (a float16 or decimal256 key, a duration, a zone other than
    UTC: every owner's engine runs in UTC)."""
    if pa.types.is_integer(kind) or pa.types.is_float32(kind) or pa.types.is_float64(kind):
        return "number"
    if pa.types.is_decimal128(kind):
        return "number"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_date32(kind):
        return "date"
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            return "timestamp"
        return "timestamp with time zone" if kind.tz in ("UTC", "+00:00") else None
    return None


def _role(plan: QueryPlan, name: str) -> str:
    if plan.is_raw:
        return "the column"
    return "the group key" if name in plan.group_by else "the extreme"


def disagreeing(plan: QueryPlan, tables: list[pa.Table], weights: list[int]) -> list[str]:
    """Why each partial cannot be merged with the others ("" for those that can): the kinds
    of its value columns differ from those of the partials of most owners (``weights``:
    the owners behind each partial). Where no kind has most, every partial that differs
    from another is refused: the home cannot tell whose declaration is wrong."""
    names = value_columns(plan)
    kinds = [tuple(value_class(t.schema.field(n).type) for n in names) for t in tables]
    votes: dict[tuple, int] = {}
    for kind, weight in zip(kinds, weights, strict=True):
        votes[kind] = votes.get(kind, 0) + weight
    if len(votes) < 2:
        return [""] * len(tables)
    best = max(votes.values())
    leaders = [k for k, v in votes.items() if v == best]
    major = leaders[0] if len(leaders) == 1 else None
    out = []
    for kind in kinds:
        if kind == major:
            out.append("")
            continue
        other = major or next(k for k in votes if k != kind)
        i = next(i for i, (a, b) in enumerate(zip(kind, other, strict=True)) if a != b)
        owners = votes[other]
        out.append(
            f"{_role(plan, names[i])} {names[i]} holds a {kind[i]} where the partials of "
            f"{owners} other owner{'s' if owners != 1 else ''} hold a {other[i]}"
        )
    return out


def _check_sketches(column: pa.ChunkedArray, kind: Kind, what: str) -> None:
    """Every sketch a peer sent, checked before any library reads it (a malformed one
    could crash the process): a distinct-count sketch, or a quantile sketch (a KLL
    sketch, or a DP owner's noisy histogram)."""
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        raise PartialError(f"the partial from {what} is not a sketch")
    check = sketches.check_hll if kind is Kind.HLL else dp_hist.check_quantile_state
    try:
        for value in column.to_pylist():
            if value is not None:
                check(value)
    except ValueError as exc:
        raise PartialError(f"the partial from {what} is malformed: {exc}") from None


def _stack(partials: list[pa.Table]) -> pa.Table:
    # Owners under DP send float sums where exact owners send integers: promote.
    try:
        return pa.concat_tables(_agreeing(partials), promote_options="permissive")
    except pa.ArrowTypeError as exc:  # names the types
        raise PartialError(f"owners' partials do not agree on column types: {exc}") from None
    except pa.ArrowInvalid:  # a cast's message may hold a value
        raise PartialError("owners' partials do not agree on column types") from None


# The states that add up (a sum, a sum of squares, M2): as DuckDB's SUM beside a DOUBLE.
_ADDED = tuple(state_name(kind, "") for kind in (Kind.SUM, Kind.SQUARES, Kind.M2))
_EXTREME_NAMES = tuple(state_name(kind, "") for kind in (Kind.MIN, Kind.MAX))


def _agreeing(partials: list[pa.Table]) -> list[pa.Table]:
    """Partials whose decimal columns agree with the others' (Arrow's own promotion makes
    a decimal256 of two scales, and fails on a decimal beside a float): beside a float,
    float64; beside integers or another scale, decimal128(38, the largest scale), exactly
    (a value that no longer fits is refused, never rounded)."""
    if len(partials) < 2:
        return partials
    targets: dict[str, pa.DataType] = {}
    for name in partials[0].column_names:
        types = {p.schema.field(name).type for p in partials if name in p.column_names}
        if len(types) < 2:
            continue
        if not any(pa.types.is_decimal(t) for t in types):
            if any(pa.types.is_floating(t) for t in types) and any(
                pa.types.is_integer(t) for t in types
            ):  # an exact owner's integer sum past 2^53 beside a DP owner's float sum; a key
                # or an extreme as float64 only where exact (_as_float)
                targets[name] = pa.float64()
            continue
        if any(pa.types.is_floating(t) for t in types):
            targets[name] = pa.float64()
        elif all(pa.types.is_decimal(t) or pa.types.is_integer(t) for t in types):
            scale = max(t.scale for t in types if pa.types.is_decimal(t))
            targets[name] = pa.decimal128(SUM_PRECISION, scale)
    if not targets:
        return partials
    out = []
    for p in partials:
        for name, target in targets.items():
            if name in p.column_names and p.schema.field(name).type != target:
                i = p.column_names.index(name)
                # Only a sum may round to a DOUBLE; a key or an extreme that would (2^53 + 1
                # beside floats: two groups as one) is refused, as a decimal that no longer fits
                column = p.column(name)
                if pa.types.is_floating(target) and name.startswith(_ADDED + _EXTREME_NAMES):
                    column = column.cast(target, safe=False)  # rounding merges no groups
                elif pa.types.is_floating(target):
                    column = _as_float(column, name)
                else:
                    column = column.cast(target, safe=True)
                p = p.set_column(i, name, column)
        out.append(p)
    return out


def _as_float(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """A key of integers or decimals as float64 beside another owner's floats, only where
    no two of its values become one float: Arrow's cast of a decimal to a float does not
    check (0.1 and 0.1000000000000000001 as decimal(38,20), or 2^53 and 2^53 + 1, became
    one float and their groups one group); the message names no value."""
    as_float = column.cast(pa.float64(), safe=False)
    same = pc.count_distinct(as_float).as_py() == pc.count_distinct(column).as_py()
    if not same:
        raise PartialError(
            f"owners' partials do not agree on column types: {name} holds floats at one "
            "owner and integers or decimals at another that a float cannot hold exactly (two "
            "groups would become one): the owners must declare the column with one type"
        )
    return as_float


def _group_ids(table: pa.Table, keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A dense group number per row, and the first row of each group. NULL keys form a
    group of their own, as in SQL's GROUP BY."""
    if not keys:
        return np.zeros(table.num_rows, np.int64), np.zeros(1, np.int64)
    codes = []
    for key in keys:
        column = table.column(key).combine_chunks()
        if pa.types.is_floating(column.type):
            column = pc.add(column, pa.scalar(0.0, column.type))  # -0.0 and 0.0: one group
            nan = pa.scalar(float("nan"), column.type)
            column = pc.if_else(pc.is_nan(column), nan, column)  # every NaN: one group
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        codes.append(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64))
    # One int64 per row, in the lexicographic order of the key tuple: each next key is
    # appended to the dense rank of the keys before it (ranks and codes are < rows, so no
    # overflow). A 1-D unique is far faster than np.unique(axis=0) on rows.
    combined = codes[0]
    for code in codes[1:]:
        _, rank = np.unique(combined, return_inverse=True)
        width = int(code.max()) + 1 if code.size else 1
        combined = rank.reshape(-1).astype(np.int64) * width + code
    _, first, gid = np.unique(combined, return_index=True, return_inverse=True)
    return gid.reshape(-1), first


def floats(column: pa.ChunkedArray) -> np.ndarray:
    """As float64, NULL as 0 (SQL's SUM skips NULLs); NaN and infinities stay."""
    filled = pc.fill_null(column.cast(pa.float64(), safe=False), pa.scalar(0.0))
    return filled.to_numpy(zero_copy_only=False)


def _check_int_sum(column: pa.ChunkedArray, gid: np.ndarray, groups: int, name: str) -> None:
    """Arrow's integer sums wrap on overflow, which leaves a total that fits exact (the
    arithmetic is modulo 2**64): refuse a group whose true total does not fit. Where the
    magnitudes add up to under 2**62 (nearly always) no total can leave 64 bits; else the
    totals are summed exactly (5e18 + 1, or 5e18 - 5e18, was refused by that bound alone)."""
    magnitudes = np.bincount(gid, weights=np.abs(floats(column)), minlength=groups)
    if not magnitudes.size or magnitudes.max() < 2.0**62:
        return
    exact = pa.table({"g": pa.array(gid, pa.int64()), "v": column.cast(pa.decimal128(38, 0))})
    totals = exact.group_by("g", use_threads=False).aggregate([("v", "sum")]).column("v_sum")
    if any(t is not None and not -(2**63) <= int(t) < 2**63 for t in totals.to_pylist()):
        raise PartialError(f"the merged {name} would overflow a 64-bit integer")


def _check_decimal_sum(column: pa.ChunkedArray, gid: np.ndarray, groups: int, name: str) -> None:
    """Arrow's decimal sums wrap too: refuse a group whose sum could leave its 38 digits
    (half the limit: the float sum of magnitudes is far closer than that)."""
    scale = column.type.scale
    totals = np.bincount(gid, weights=np.abs(floats(column)), minlength=groups)
    if totals.size and totals.max() >= 0.5 * 10.0 ** (SUM_PRECISION - scale):
        raise PartialError(f"the merged {name} would overflow a DECIMAL({SUM_PRECISION},{scale})")


def merge(plan: QueryPlan, partials: list[pa.Table]) -> pa.Table:
    """Combine partials into one partial with the same columns, exactly (relays use it too).

    Counts and sums add, MIN/MAX take the extreme, and M2 combines as
    M2 = sum(M2_i) + sum(c_i * (mean_i - mean)^2), the parallel variance formula.
    """
    partials = [p for p in partials if p is not None]
    if not partials:
        raise ValueError("nothing to merge")
    stacked = _stack(partials)
    if plan.is_raw or (not plan.group_by and stacked.num_rows == 0):
        return stacked
    try:
        return _merge_states(plan, stacked)
    except PartialError:
        raise
    except (pa.ArrowException, ValueError, TypeError) as exc:  # whatever a peer's bytes cause
        raise PartialError(f"the partials could not be merged: {exc}") from None


_EXTREMES = {Kind.MIN: "min", Kind.MAX: "max"}  # the states that merge by an extreme


def _merge_states(plan: QueryPlan, stacked: pa.Table) -> pa.Table:
    keys = plan.group_by
    states = state_columns(plan, dp=False)
    gid, first = _group_ids(stacked, keys)
    groups = len(first)
    work = stacked.append_column("__gid", pa.array(gid, pa.int64()))
    aggs: list[tuple[str, str]] = []
    for state in states:
        if state.kind in _SKETCHES:
            continue
        if state.kind in _EXTREMES:
            aggs.append((state.name, _EXTREMES[state.kind]))
        elif state.kind is not Kind.M2:
            kind = stacked.schema.field(state.name).type
            if pa.types.is_integer(kind):
                _check_int_sum(stacked.column(state.name), gid, groups, state.name)
            elif pa.types.is_decimal(kind):
                _check_decimal_sum(stacked.column(state.name), gid, groups, state.name)
            aggs.append((state.name, "sum"))
    summed = work.group_by("__gid", use_threads=False).aggregate(aggs)
    summed = summed.take(pc.sort_indices(summed.column("__gid")))
    out: dict[str, pa.ChunkedArray | pa.Array] = {k: stacked.column(k).take(first) for k in keys}
    for state in states:
        name = state.name
        if state.kind is Kind.HLL:
            out[name] = sketches.merge_groups("hll", gid, stacked.column(name), groups)
            continue
        if state.kind is Kind.KLL:
            out[name] = dp_hist.merge_quantile_groups(gid, stacked.column(name), groups)
            continue
        if state.kind is not Kind.M2 or state.column is None:
            func = _EXTREMES.get(state.kind, "sum")
            out[name] = summed.column(f"{name}_{func}").cast(stacked.schema.field(name).type)
            continue
        c = floats(stacked.column(state_name(Kind.COUNT, state.column)))
        s = floats(stacked.column(state_name(Kind.SUM, state.column)))
        m2 = floats(stacked.column(name))
        tc = np.bincount(gid, weights=c, minlength=groups)
        ts = np.bincount(gid, weights=s, minlength=groups)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(tc > 0, ts / tc, 0.0)
            spread = np.where(c > 0, c * (s / c - mean[gid]) ** 2, 0.0)
        total = np.bincount(gid, weights=m2 + spread, minlength=groups)
        out[name] = pa.array(total, pa.float64())
    _unknown_sums(states, stacked, gid, groups, out)
    _nan_maxima(states, stacked, gid, groups, out)
    return pa.table(out)


def _in_groups(rows: pa.ChunkedArray, gid: np.ndarray, groups: int) -> pa.Array:
    """Per group, whether any of its rows is true."""
    flags = np.asarray(pc.fill_null(rows, False).to_numpy(zero_copy_only=False), dtype=np.float64)
    return pa.array(np.bincount(gid, weights=flags, minlength=groups) > 0)


def _unknown_sums(
    states: tuple[StateColumn, ...], stacked: pa.Table, gid: np.ndarray, groups: int, out: dict
) -> None:
    """An owner's sum that is NULL beside a count of rows is one it could not give (an
    integer total past 64 bits: ``generate._state``): the group's total is unknown, so
    its sum is NULL, never the other owners' sum alone (and ``_final_value`` makes its
    spread NULL, as for a single unmerged partial)."""
    for state in states:
        if state.kind is not Kind.SUM or state.column is None:
            continue
        count = state_name(Kind.COUNT, state.column)
        if count not in stacked.column_names:
            continue
        lost = pc.and_(
            pc.is_null(stacked.column(state.name)),
            pc.greater(pc.fill_null(stacked.column(count), 0), 0),
        )
        if not pc.any(lost).as_py():
            continue
        unknown = _in_groups(lost, gid, groups)
        out[state.name] = pc.if_else(
            unknown, pa.scalar(None, out[state.name].type), out[state.name]
        )


def _nan_maxima(
    states: tuple[StateColumn, ...], stacked: pa.Table, gid: np.ndarray, groups: int, out: dict
) -> None:
    """DuckDB ranks NaN above every number, so a group's MAX over rows with a NaN is NaN;
    Arrow's skips it (its MIN agrees with DuckDB: NaN only when nothing else is there)."""
    for state in states:
        if state.kind is not Kind.MAX or not pa.types.is_floating(out[state.name].type):
            continue
        nan = pc.is_nan(stacked.column(state.name))
        if pc.any(nan).as_py():
            some = _in_groups(nan, gid, groups)
            out[state.name] = pc.if_else(
                some, pa.scalar(float("nan"), out[state.name].type), out[state.name]
            )


def _final_value(call: AggCall, merged: pa.Table) -> pa.Array | pa.ChunkedArray:
    """One aggregate's value from its merged state (as SQL defines it on no rows)."""
    if call.column is None:
        return merged.column(ROWS)
    if call.func in ("min", "max"):
        return merged.column(state_name(Kind(call.func), call.column))
    if call.func == "approx_count_distinct":
        return sketches.hll_estimates(merged.column(state_name(Kind.HLL, call.column)))
    if call.func == "approx_quantile":
        kll = merged.column(state_name(Kind.KLL, call.column))
        return dp_hist.state_quantiles(kll, call.param if call.param is not None else 0.5)
    c = merged.column(state_name(Kind.COUNT, call.column))
    if call.func == "count":
        return pc.coalesce(c, pa.scalar(0, c.type))
    s = merged.column(state_name(Kind.SUM, call.column))
    if call.func == "sum":
        return pc.if_else(pc.greater(c, 0), s, pa.scalar(None, s.type))
    cf = c.cast(pa.float64(), safe=False)
    nothing = pa.scalar(None, pa.float64())
    if call.func == "avg":
        if pa.types.is_decimal(s.type):
            return decimal_means(s, c)
        mean = pc.divide(s.cast(pa.float64(), safe=False), cf)
        return pc.if_else(pc.greater(c, 0), mean, nothing)
    m2 = merged.column(state_name(Kind.M2, call.column)).cast(pa.float64(), safe=False)
    # a sum an owner could not give (``_unknown_sums``): the spread is unknown too, also
    # when that owner's partial is the only one (never merged)
    m2 = pc.if_else(pc.and_(pc.is_null(s), pc.greater(c, 0)), nothing, m2)
    if call.func.endswith("_samp"):
        var = pc.if_else(pc.greater(c, 1), pc.divide(m2, pc.subtract(cf, 1.0)), nothing)
    else:
        var = pc.if_else(pc.greater(c, 0), pc.divide(m2, cf), nothing)
    return pc.sqrt(var) if call.func.startswith("stddev") else var


def decimal_means(sums: pa.ChunkedArray, counts: pa.ChunkedArray) -> pa.Array:
    """AVG of a decimal as DuckDB gives it on the pooled rows: a DOUBLE, the exact sum
    divided by the count and rounded once (NULL where the count is 0). Where the
    unscaled sum and count x 10^scale are exact doubles (below 2^53), one float division
    is that rounding; elsewhere the quotient is taken in decimal arithmetic first."""
    total = sums.combine_chunks()
    n = np.asarray(pc.fill_null(counts, 0).to_numpy(zero_copy_only=False), dtype=np.float64)
    scale = total.type.scale
    unscaled, small = _unscaled(total)
    divisor = n * 10.0**scale
    exact = small & (unscaled > -(2**53)) & (unscaled < 2**53) & (divisor < 2.0**53)
    fast = exact & (n > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = np.where(fast, unscaled.astype(np.float64) / divisor, np.nan)
    slow = np.flatnonzero(~fast & (n > 0) & np.asarray(total.is_valid()))
    if slow.size:
        values = total.take(pa.array(slow)).to_pylist()
        with localcontext() as ctx:
            ctx.prec = 80
            for i, value in zip(slow, values, strict=True):
                means[i] = float(value / Decimal(int(n[i])))
    present = (n > 0) & np.asarray(total.is_valid())
    return pa.array(means, pa.float64(), mask=~present)


def _unscaled(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The unscaled 128-bit integers of a decimal128 array as int64, and where that is
    all of them (the high word is the low word's sign)."""
    data = values.buffers()[1]
    if not pa.types.is_decimal128(values.type) or data is None or len(values) == 0:
        nothing = np.zeros(len(values), np.int64)
        return nothing, np.zeros(len(values), bool)
    words = np.frombuffer(data, dtype=np.int64)
    words = words[2 * values.offset : 2 * (values.offset + len(values))].reshape(-1, 2)
    low, high = words[:, 0], words[:, 1]
    return low, high == (low >> 63)


def squares_to_m2(plan: QueryPlan, noisy: pa.Table) -> pa.Table:
    """An owner's DP partial after noise (``state_columns(plan, dp=True)``), with each
    noisy sum of squares turned into M2 in its place: M2 = q - s^2 / c from the noisy
    count, sum and sum of squares, at least 0. The result has ``expected_columns(plan)``;
    the noisy sums of squares themselves stay at the owner."""
    out: dict[str, pa.ChunkedArray | pa.Array] = {g: noisy.column(g) for g in plan.group_by}
    for state in state_columns(plan, dp=True):
        if state.kind is Kind.QHIST and state.column is not None:  # travels as a quantile state
            out[state_name(Kind.KLL, state.column)] = noisy.column(state.name)
            continue
        if state.kind is not Kind.SQUARES or state.column is None:
            out[state.name] = noisy.column(state.name)
            continue
        c = noisy.column(state_name(Kind.COUNT, state.column)).to_pylist()
        s = noisy.column(state_name(Kind.SUM, state.column)).to_pylist()
        q = noisy.column(state.name).to_pylist()
        out[state_name(Kind.M2, state.column)] = pa.array(
            [
                max(0.0, qi - si * si / ci) if ci else 0.0
                for qi, si, ci in zip(q, s, c, strict=True)
            ],
            pa.float64(),
        )
    return pa.table(out)


def finals(plan: QueryPlan, merged: pa.Table) -> pa.Table:
    """Group keys plus ``__a<i>`` per aggregate: the table the post-merge step reads."""
    columns = {g: merged.column(g) for g in plan.group_by}
    for i, call in enumerate(plan.aggregates):
        columns[agg_column(i)] = _final_value(call, merged)
    return pa.table(columns)


def project(shape: Projection, table: pa.Table) -> pa.Table:
    """A post-merge step that only picks, sorts and limits columns, done in Arrow."""
    if shape.order:
        keys = [
            (c, "descending" if desc else "ascending", "at_start" if first else "at_end")
            for c, desc, first in shape.order
        ]
        table = table.take(pc.sort_indices(table, sort_keys=keys))
    if shape.limit is not None:
        table = table.slice(0, shape.limit)
    return pa.Table.from_arrays(
        [table.column(source) for source, _ in shape.columns],
        names=[name for _, name in shape.columns],
    )


def answer(plan: QueryPlan, partials: list[pa.Table], run_sql: RunSql) -> pa.Table:
    """The user's answer from the owners' partials: merge, final values, then HAVING,
    ORDER BY and LIMIT, all after the merge. A plain pick-sort-limit step runs in Arrow;
    anything with expressions runs as the generated post-merge query."""
    if plan.is_raw:
        table = _stack(partials)
    else:
        stacked = partials[0] if len(partials) == 1 else merge(plan, partials)
        table = finals(plan, stacked)
    if plan.projection is not None and not _nan_in(table, plan.projection.order):
        return project(plan.projection, table)
    return run_sql(plan.final_sql, MERGED_TABLE, table)


def _nan_in(table: pa.Table, order: tuple[tuple[str, bool, bool], ...]) -> bool:
    """NaN sorts above every number in DuckDB and at the end in Arrow: the engine decides."""
    for column, _desc, _first in order:
        values = table.column(column)
        if pa.types.is_floating(values.type) and pc.any(pc.is_nan(values)).as_py():
            return True
    return False


_IPC_OPTIONS = pa.ipc.IpcWriteOptions()  # explicit: the default is looked up in os.environ


def to_ipc(table: pa.Table) -> bytes:
    """Arrow IPC stream bytes: how every table moves between nodes."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    """A peer's stream, decoded only if uncompressed (``ipc_guard``) and then validated in
    full: its buffers are the bytes received, and nothing reads past them."""
    buf = pa.py_buffer(data)
    try:
        check_stream(buf)
    except IpcRefused as exc:
        raise PartialError(str(exc)) from None
    try:
        with pa.ipc.open_stream(buf) as reader:
            table = reader.read_all()
        table.validate(full=True)
    except (pa.ArrowException, OSError, ValueError) as exc:  # what flipped bytes raise
        raise PartialError(f"a partial that does not decode ({type(exc).__name__})") from None
    # Every row of a table we send costs at least a bit of some column (``check_partial``
    # refuses the types whose rows cost nothing in a peer's partial).
    if table.num_rows > 8 * len(data) + 1024:
        raise PartialError(f"a partial of {table.num_rows:,} rows in {len(data):,} bytes")
    return table


def _hollow(kind: pa.DataType) -> bool:
    """A type whose rows need not take bytes of the stream."""
    return (
        pa.types.is_null(kind)
        or pa.types.is_run_end_encoded(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_binary_view(kind)
        or pa.types.is_list_view(kind)
        or pa.types.is_large_list_view(kind)
        or (pa.types.is_fixed_size_binary(kind) and kind.byte_width == 0)
        or (pa.types.is_struct(kind) and kind.num_fields == 0)
        or (pa.types.is_fixed_size_list(kind) and kind.list_size == 0)
        or (pa.types.is_dictionary(kind) and _hollow(kind.value_type))
    )
