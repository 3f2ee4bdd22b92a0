"""Mergeable partial aggregates: what an owner computes, and how partials combine exactly.

An owner never returns an aggregate's final value, only a *state* that merges without
loss: counts and sums add, MIN/MAX take the extreme, and variance travels as
(count, sum, M2) and combines with the parallel formula of Chan, Golub and LeVeque,
which stays numerically stable where the textbook sum-of-squares formula does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pyarrow as pa
from sqlglot import exp

from federation.sqlsubset import AggCall, QueryPlan, agg_column

ROWS = "__n"  # COUNT(*) of the group: always present, used for the minimum group size

_NEEDS = {
    "count": {"c"},
    "sum": {"c", "s"},
    "avg": {"c", "s"},
    "var_samp": {"c", "s", "m2"},
    "var_pop": {"c", "s", "m2"},
    "stddev_samp": {"c", "s", "m2"},
    "stddev_pop": {"c", "s", "m2"},
    "min": {"min"},
    "max": {"max"},
}


def state_column(kind: str, column: str) -> str:
    return f"__{kind}_{column}"


def states(plan: QueryPlan) -> dict[str, set[str]]:
    """Which state kinds each aggregated column needs."""
    out: dict[str, set[str]] = {}
    for a in plan.aggregates:
        if a.column is not None:
            out.setdefault(a.column, set()).update(_NEEDS[a.func])
    return out


def _value(column: str, clamp: tuple[float, float] | None) -> exp.Expression:
    col = exp.column(column)
    if clamp is None:
        return col
    lo, hi = clamp
    return exp.func(
        "LEAST", exp.func("GREATEST", col, exp.Literal.number(lo)), exp.Literal.number(hi)
    )


def partial_query(
    plan: QueryPlan,
    table: str,
    *,
    integer_columns: Iterable[str] = (),
    clamp: dict[str, tuple[float, float]] | None = None,
) -> str:
    """The owner's SQL, generated from the validated tree.

    With ``clamp`` (differential privacy) values are clamped to the declared bounds and
    variance travels as a sum of squares (``q``) that the privacy layer turns into M2
    after adding noise.
    """
    ints = set(integer_columns)
    if plan.is_raw:
        select = exp.select(*[exp.column(c) for c in plan.raw_columns]).from_(table)
        if plan.where is not None:
            select = select.where(plan.where.copy())
        if plan.limit is not None:
            select = select.limit(plan.limit)
        return select.sql(dialect="duckdb", comments=False)
    items: list[exp.Expression] = [exp.column(g) for g in plan.group_by]
    items.append(exp.alias_(exp.Count(this=exp.Star()), ROWS))
    for column, kinds in sorted(states(plan).items()):
        bounds = clamp.get(column) if clamp is not None else None
        value = _value(column, bounds)
        if "c" in kinds:
            items.append(exp.alias_(exp.Count(this=exp.column(column)), state_column("c", column)))
        if "s" in kinds:
            total: exp.Expression = exp.Sum(this=value.copy())
            if column in ints and clamp is None:
                total = exp.cast(total, "BIGINT")
            else:
                total = exp.cast(total, "DOUBLE")
            items.append(exp.alias_(total, state_column("s", column)))
        if "m2" in kinds:
            if clamp is not None:
                square = exp.Mul(this=value.copy(), expression=value.copy())
                q = exp.cast(exp.Sum(this=square), "DOUBLE")
                items.append(exp.alias_(q, state_column("q", column)))
            else:
                m2 = exp.Mul(
                    this=exp.VariancePop(this=exp.cast(exp.column(column), "DOUBLE")),
                    expression=exp.Count(this=exp.column(column)),
                )
                items.append(exp.alias_(m2, state_column("m2", column)))
        if "min" in kinds:
            items.append(exp.alias_(exp.Min(this=exp.column(column)), state_column("min", column)))
        if "max" in kinds:
            items.append(exp.alias_(exp.Max(this=exp.column(column)), state_column("max", column)))
    select = exp.select(*items).from_(table)
    if plan.where is not None:
        select = select.where(plan.where.copy())
    if plan.group_by:
        select = select.group_by(*[exp.column(g) for g in plan.group_by])
    return select.sql(dialect="duckdb", comments=False)


def _add(a, b):  # type: ignore[no-untyped-def]
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _chan(c1: int, s1, m1, c2: int, s2, m2):  # type: ignore[no-untyped-def]
    """Combine two (count, sum, M2) variance states exactly as one pass would."""
    if not c1:
        return m2
    if not c2:
        return m1
    delta = s2 / c2 - s1 / c1
    return (m1 or 0.0) + (m2 or 0.0) + delta * delta * c1 * c2 / (c1 + c2)


def merge(plan: QueryPlan, partials: list[pa.Table]) -> pa.Table:
    """Combine partials into one partial with the same schema (exact; relays use this too)."""
    partials = [p for p in partials if p is not None]
    if not partials:
        raise ValueError("nothing to merge")
    if plan.is_raw:
        return pa.concat_tables(partials, promote_options="permissive")
    # Owners under DP send float sums where exact owners send integers: promote.
    table = pa.concat_tables(partials, promote_options="permissive")
    schema = table.schema
    names = schema.names
    keys = list(plan.group_by)
    merged: dict[tuple, dict[str, object]] = {}
    for row in table.to_pylist():
        key = tuple(row[k] for k in keys)
        cur = merged.get(key)
        if cur is None:
            merged[key] = dict(row)
            continue
        old = dict(cur)  # every state combines from the values *before* this row
        for name in names:
            if name in keys:
                continue
            kind, _, column = name[2:].partition("_")
            a, b = old[name], row[name]
            if name == ROWS or kind in ("c", "s", "q"):
                cur[name] = _add(a, b)
            elif kind == "m2":
                cur[name] = _chan(
                    old[state_column("c", column)] or 0,
                    old[state_column("s", column)],
                    a,
                    row[state_column("c", column)] or 0,
                    row[state_column("s", column)],
                    b,
                )
            elif kind in ("min", "max"):
                pick = min if kind == "min" else max
                cur[name] = b if a is None else (a if b is None else pick(a, b))
    if not merged and not keys:
        return table.slice(0, 0)
    return pa.Table.from_pylist(list(merged.values()), schema=schema)


def _final_value(call: AggCall, row: dict[str, object]):  # type: ignore[no-untyped-def]
    if call.column is None:
        return row[ROWS]
    c = row.get(state_column("c", call.column)) or 0
    s = row.get(state_column("s", call.column))
    if call.func == "count":
        return c
    if call.func in ("min", "max"):
        return row[state_column(call.func, call.column)]
    if c == 0 or s is None:
        return None
    if call.func == "sum":
        return s
    if call.func == "avg":
        return s / c
    m2 = row.get(state_column("m2", call.column)) or 0.0
    if call.func in ("var_samp", "stddev_samp"):
        if c < 2:
            return None
        var = m2 / (c - 1)
    else:
        var = m2 / c
    return math.sqrt(var) if call.func.startswith("stddev") else var


def finalize(plan: QueryPlan, merged: pa.Table) -> pa.Table:
    """Group keys plus one column ``__a<i>`` per aggregate call, ready for the final query."""
    if plan.is_raw:
        return merged
    rows = merged.to_pylist()
    columns: dict[str, pa.Array] = {}
    for g in plan.group_by:
        columns[g] = (
            merged.column(g).combine_chunks()
            if merged.num_rows
            else pa.array([], merged.schema.field(g).type)
        )
    for i, call in enumerate(plan.aggregates):
        values = [_final_value(call, r) for r in rows]
        if call.func == "count":
            typ = pa.int64()
        elif call.func in ("min", "max", "sum"):
            name = state_column("s" if call.func == "sum" else call.func, call.column or "")
            typ = merged.schema.field(name).type
        else:
            typ = pa.float64()
        columns[agg_column(i)] = pa.array(values, typ)
    return pa.table(columns) if columns else pa.table({"__empty": pa.array([], pa.int8())})


def to_ipc(table: pa.Table) -> bytes:
    """Arrow IPC stream bytes: how every table moves between nodes."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_all()
