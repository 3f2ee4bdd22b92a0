"""Mergeable partial aggregates: what an owner computes, and how partials combine exactly.

An owner never returns an aggregate's final value, only a *state* that merges without
loss: counts and sums add, MIN/MAX take the extreme, and variance travels as
(count, sum, M2) and combines with the parallel formula of Chan, Golub and LeVeque,
which stays numerically stable where the textbook sum-of-squares formula does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pyarrow as pa
from sqlglot import exp

from federation.sqlsubset import MERGED_TABLE, AggCall, QueryPlan, agg_column

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
        if plan.raw_order:
            select = select.order_by(
                *[
                    exp.Ordered(this=exp.column(c), desc=desc, nulls_first=nulls_first)
                    for c, desc, nulls_first in plan.raw_order
                ]
            )
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


PARTIALS_TABLE = "__partials"

# Runs generated SQL over one in-memory table: (sql, table name, table) -> result.
RunSql = Callable[[str, str, pa.Table], pa.Table]


def _q(name: str) -> str:
    return f'"{name}"'


def merge_query(plan: QueryPlan, schema: pa.Schema) -> str:
    """SQL that combines stacked partials (table ``__partials``) into one partial.

    Counts and sums add, MIN/MAX take the extreme, and M2 combines exactly as
    M2 = sum(M2_i) + sum(c_i * (mean_i - mean)^2), the parallel variance formula.
    """
    keys = [_q(g) for g in plan.group_by]
    partition = f"PARTITION BY {', '.join(keys)}" if keys else ""
    extra, items = [], list(keys)
    for name in schema.names:
        if name in plan.group_by:
            continue
        kind, _, column = name[2:].partition("_")
        q = _q(name)
        if name == ROWS or kind in ("c", "q"):
            items.append(f"CAST(SUM({q}) AS BIGINT) AS {q}" if kind != "q" else f"SUM({q}) AS {q}")
        elif kind == "s":
            exact = pa.types.is_integer(schema.field(name).type)
            items.append(f"CAST(SUM({q}) AS BIGINT) AS {q}" if exact else f"SUM({q}) AS {q}")
        elif kind in ("min", "max"):
            items.append(f"{kind.upper()}({q}) AS {q}")
        elif kind == "m2":
            c, s_ = _q(state_column("c", column)), _q(state_column("s", column))
            ts, tc = _q(f"__ts_{column}"), _q(f"__tc_{column}")
            extra.append(f"SUM({s_}) OVER ({partition}) AS {ts}")
            extra.append(f"SUM({c}) OVER ({partition}) AS {tc}")
            spread = f"CASE WHEN {c} > 0 THEN {c} * POW({s_} / {c} - {ts} / {tc}, 2) ELSE 0 END"
            items.append(f"COALESCE(SUM({q}), 0) + COALESCE(SUM({spread}), 0) AS {q}")
    source = PARTIALS_TABLE
    if extra:
        source = f"(SELECT *, {', '.join(extra)} FROM {PARTIALS_TABLE})"
    sql = f"SELECT {', '.join(items)} FROM {source}"
    if keys:
        sql += f" GROUP BY {', '.join(keys)}"
    return sql


class PartialError(ValueError):
    """A partial that does not have the shape the plan implies: refused, never merged."""


def expected_columns(plan: QueryPlan) -> list[str]:
    """The only column names a partial for ``plan`` may carry, in order."""
    if plan.is_raw:
        return list(plan.raw_columns)
    names = [*plan.group_by, ROWS]
    for column, kinds in sorted(states(plan).items()):
        for kind in ("c", "s", "m2", "min", "max"):
            if kind in kinds:
                names.append(state_column(kind, column))
    return names


def check_partial(plan: QueryPlan, table: pa.Table, source: str) -> pa.Table:
    """Refuse a partial whose columns are not exactly the plan's (names come from peers and
    end up in generated SQL), or whose state columns are not numeric."""
    if table.column_names != expected_columns(plan):
        raise PartialError(f"the partial from {source} does not have the columns the query implies")
    for field in table.schema:
        state = field.name.startswith("__") and not field.name.startswith(("__min_", "__max_"))
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
        if state and not numeric:
            raise PartialError(f"the partial from {source} has a non-numeric {field.name}")
    return table


def merge(plan: QueryPlan, partials: list[pa.Table], run_sql: RunSql) -> pa.Table:
    """Combine partials into one partial with the same columns (exact; relays use it too)."""
    partials = [p for p in partials if p is not None]
    if not partials:
        raise ValueError("nothing to merge")
    # Owners under DP send float sums where exact owners send integers: promote.
    try:
        stacked = pa.concat_tables(partials, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise PartialError(f"owners' partials do not agree on column types: {exc}") from None
    if plan.is_raw:
        return stacked
    if not plan.group_by and stacked.num_rows == 0:
        return stacked
    return run_sql(merge_query(plan, stacked.schema), PARTIALS_TABLE, stacked)


def _final_expr(call: AggCall) -> str:
    if call.column is None:
        return _q(ROWS)
    c = _q(state_column("c", call.column))
    s = _q(state_column("s", call.column))
    m2 = _q(state_column("m2", call.column))
    if call.func == "count":
        return f"COALESCE({c}, 0)"
    if call.func in ("min", "max"):
        return _q(state_column(call.func, call.column))
    if call.func == "sum":
        return f"CASE WHEN {c} > 0 THEN {s} END"
    if call.func == "avg":
        return f"CASE WHEN {c} > 0 THEN CAST({s} AS DOUBLE) / {c} END"
    if call.func.endswith("_samp"):
        var = f"CASE WHEN {c} > 1 THEN {m2} / ({c} - 1) END"
    else:
        var = f"CASE WHEN {c} > 0 THEN {m2} / {c} END"
    return f"SQRT({var})" if call.func.startswith("stddev") else var


def finalize_query(plan: QueryPlan, source: str) -> str:
    """SQL from one merged partial to the group keys plus ``__a<i>`` per aggregate."""
    items = [_q(g) for g in plan.group_by]
    items += [f"{_final_expr(call)} AS {agg_column(i)}" for i, call in enumerate(plan.aggregates)]
    return f"SELECT {', '.join(items)} FROM {source}"


def answer(plan: QueryPlan, partials: list[pa.Table], run_sql: RunSql) -> pa.Table:
    """The user's answer from the owners' partials, in one generated query: merge, final
    values, then HAVING, ORDER BY and LIMIT, all after the merge."""
    try:
        stacked = pa.concat_tables(partials, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise PartialError(f"owners' partials do not agree on column types: {exc}") from None
    if plan.is_raw:
        inner = f"SELECT * FROM {PARTIALS_TABLE}"
    elif len(partials) == 1 or (not plan.group_by and stacked.num_rows == 0):
        # One owner's (or one relay's) partial is merged already; nothing to combine.
        inner = finalize_query(plan, PARTIALS_TABLE)
    else:
        merged = f"({merge_query(plan, stacked.schema)})"
        inner = finalize_query(plan, merged)
    return run_sql(f"WITH {MERGED_TABLE} AS ({inner}) {plan.final_sql}", PARTIALS_TABLE, stacked)


def to_ipc(table: pa.Table) -> bytes:
    """Arrow IPC stream bytes: how every table moves between nodes."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_all()
