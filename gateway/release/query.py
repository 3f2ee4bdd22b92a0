"""A federated query's release at one owner: the steps that are particular to SQL.

Decide under the owner's own query grants (and check the query's types against the
owner's declared columns), run the SQL generated from the validated plan on the owner's
engine, and protect the result: small groups suppressed; under a DP grant values
clamped (in the SQL) and noised (fresh every time, never kept); on L2 data without DP,
sticky noise seeded by the rows behind each value (``gateway.sticky_noise``). An engine
error says what went wrong and over which columns, never a value (``gateway.engine_errors``).
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
from sqlglot import exp

from federation import sketches
from federation.envelope import Envelope
from federation.outcome import Code, Error
from federation.partials import to_ipc
from federation.reports import Explanation
from federation.sql import (
    Kind,
    QueryPlan,
    TooManyLeaves,
    conditions,
    leaf_query,
    partial_query,
)
from federation.sql.plan import noise_safe
from gateway import privacy, sticky_noise, typecheck
from gateway.catalog import CatalogEntry
from gateway.clock import utc
from gateway.column_types import exact_kind
from gateway.descriptor import DatasetDescriptor
from gateway.engine import Engine, data_version
from gateway.engine_errors import EngineError
from gateway.errors import FedgateError, InvalidArgument, PermissionDenied, ResourceExhausted
from gateway.policy.model import Decision, Grant
from gateway.policy.query import decide_query
from gateway.policy.store import GrantStore
from gateway.release.pipeline import Protected

SQL_CACHE_ENTRIES = 1024
# The characters of generated SQL kept: one question's SQL can be 140 KB (an expression
# repeated under the L2 noise's hidden columns), so 1 024 entries could hold ~140 MB
# (review, 2026-12-05).
SQL_CACHE_CHARS = 16 * 1024 * 1024


_UNCHECKED = Error(Code.UNKNOWN, "not checked yet")  # a marker, never raised


class PlanCache:
    """What an owner derives from a plan alone, kept: its generated SQL by (plan, table,
    data version, clamp), its type check by (plan, declaration) and its condition's leaf
    count. The same question against the same data is asked often, and none is free."""

    def __init__(self, limit: int = SQL_CACHE_ENTRIES) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._sql: dict[tuple[object, ...], str] = {}
        self._sql_chars = 0
        self._checked: dict[tuple[str, object], Error | None] = {}

    def check_types(self, plan: QueryPlan, desc: DatasetDescriptor) -> None:
        """``typecheck.check``, once per plan and declaration."""
        self._check((plan.sql, desc), lambda: typecheck.check(plan, desc))

    def check_shape(self, plan: QueryPlan, desc: DatasetDescriptor, decision: Decision) -> None:
        """What the decision's protection needs of the query's shape, once per plan: under
        DP a finite interval for every value; no GROUP BY alias that is a column; on L2
        under the sticky noise only values it protects, and few enough condition tests
        (refused here, before any owner of the query spends)."""
        if decision.clamp is not None:
            clamp = decision.clamp
            bounds = tuple(sorted(clamp.items()))
            self._check((plan.sql, ("bounded", bounds)), lambda: bounded(plan, clamp))
        self._check((plan.sql, ("aliases", desc)), lambda: aliases_are_not_columns(plan, desc))
        if decision.sticky_noise:
            self._check((plan.sql, "noised"), lambda: noised_values(plan))
            controls = tuple(sorted(decision.grant.columns.items()))
            self._check(
                (plan.sql, ("tested in values", controls)),
                lambda: tested_in_values(plan, decision.grant),
            )
            self.check_leaves(plan)

    def check_leaves(self, plan: QueryPlan) -> None:
        """At most ``MAX_LEAVES`` single tests in the condition (the L2 noise draws one
        layer per test), once per plan."""
        self._check((plan.sql, "leaves"), lambda: _few_leaves(plan))

    def _check(self, key: tuple[str, object], check: Callable[[], object]) -> None:
        """``check()`` once per key; a refusal is kept as its error and raised afresh."""
        outcome = self._checked.get(key, _UNCHECKED)  # one lookup: another thread may clear
        if outcome is _UNCHECKED:
            try:
                check()
                outcome = None
            except FedgateError as exc:
                outcome = exc.error
            with self._lock:
                if len(self._checked) >= self._limit:
                    self._checked.clear()
                self._checked[key] = outcome
        if outcome is not None:
            raise FedgateError.of(outcome)

    def get(
        self,
        plan: QueryPlan,
        table: str,
        entry: CatalogEntry,
        clamp: dict | None,
        hidden: bool = False,
    ) -> str:
        bounds = tuple(sorted(clamp.items())) if clamp is not None else None
        # the declared types choose exact sums and wide keys: a file registered again
        # with other types (the same bytes) is other SQL
        key = (plan.sql, table, entry.quality.sha256, entry.descriptor.columns, bounds, hidden)
        sql = self._sql.get(key)
        if sql is None:
            ints, decimals = exact_values(plan, entry.descriptor)
            whole = [c.name for c in entry.descriptor.columns if exact_kind(c.type) == "int"]
            sql = partial_query(
                plan,
                table,
                integer_columns=ints,
                decimals=decimals,
                clamp=clamp,
                hidden=hidden,
                whole=whole,
                floats=float_values(plan, entry.descriptor) if hidden and clamp is None else (),
                types=typecheck.column_families(entry.descriptor),
            )
            self._keep(key, sql)
        return sql

    def leaves(self, plan: QueryPlan, table: str, entry: CatalogEntry) -> str | None:
        """The SQL of the WHERE condition's leaf fingerprints (``leaf_query``)."""
        key = (plan.sql, table, "leaves", entry.descriptor.columns)
        sql = self._sql.get(key)
        if sql is None:
            sql = leaf_query(plan, table, typecheck.column_families(entry.descriptor)) or ""
            self._keep(key, sql)
        return sql or None

    def _keep(self, key: tuple[object, ...], sql: str) -> None:
        with self._lock:
            if len(self._sql) >= self._limit or self._sql_chars + len(sql) > SQL_CACHE_CHARS:
                self._sql.clear()
                self._sql_chars = 0
            old = self._sql.get(key)
            self._sql_chars += len(sql) - (len(old) if old is not None else 0)
            self._sql[key] = sql


def exact_values(plan: QueryPlan, desc: DatasetDescriptor) -> tuple[list[str], list[str]]:
    """The values whose sums stay exact: (integers, decimals), by value name."""
    declared = {c.name: c.type for c in desc.columns}
    ints: list[str] = []
    decimals: list[str] = []
    step = plan.aggregate
    for call in plan.aggregates:
        name = call.column
        if name is None or call.func != "sum" and call.func != "avg":
            continue
        value = step.value_of.get(name) if step is not None else None
        if value is None:
            kind = exact_kind(declared[name]) if name in declared else None
        else:
            kind = typecheck.exact_kind_of(value.tree, desc)
        target = ints if kind == "int" else decimals if kind == "decimal" else None
        if target is not None and name not in target:
            target.append(name)
    return ints, decimals


def float_values(plan: QueryPlan, desc: DatasetDescriptor) -> list[str]:
    """The values (columns or expressions, by value name) any state reads that are
    floating point: under the L2 noise a NaN or infinite one is no value at all
    (``generate.partial_query``'s ``floats``), whatever the aggregate."""
    step = plan.aggregate
    if step is None:
        return []
    out: list[str] = []
    for name in dict.fromkeys(s.column for s in step.states if s.column is not None):
        value = step.value_of.get(name)
        tree = value.tree if value is not None else exp.column(name, quoted=True)
        try:
            kind = typecheck.value_kind(tree, desc)
        except FedgateError:  # refused elsewhere with its reason
            continue
        if kind.number == typecheck.FLOAT:
            out.append(name)
    return out


def ranges(entry: CatalogEntry) -> dict[str, tuple[float, float]]:
    """Each numeric column's range, for the bucket check. On an L1 column: the hull of the
    declared bounds and the registration's measured minimum and maximum (declared bounds
    are clamping bounds for DP, which nothing checks against the data: ``employees``
    declared [0, 1000] and holding values to 5118 made ``floor(employees / 2)`` look like
    500 buckets where it makes 2 560), both public there. Beyond L1 the declared bounds
    alone: the measured minimum and maximum are never shown to analysts there, and a
    bucket's refusal ("about 5115001 groups" for ``floor(staff / 0.001)``) told the
    measured span to the bucket's width, through --explain and under DP, for nothing
    (review, 2026-12-05); a column without declared bounds has no range there."""
    desc = entry.descriptor
    public = {c.name for c in desc.columns if desc.column_level(c.name) == "L1"}
    out: dict[str, tuple[float, float]] = {}
    for q in entry.quality.columns:
        if q.min is None or q.max is None or q.name not in public:
            continue
        out[q.name] = (float(q.min), float(q.max))
    for c in desc.columns:
        if c.lower is not None and c.upper is not None:
            low, high = out.get(c.name, (c.lower, c.upper))
            out[c.name] = (min(low, c.lower), max(high, c.upper))
    return out


def aliases_are_not_columns(plan: QueryPlan, desc: DatasetDescriptor) -> None:
    """A GROUP BY name the home read as a SELECT alias must not be a column here: DuckDB
    would group by the column, and the home cannot see the owner's columns."""
    step = plan.aggregate
    declared = {c.name for c in desc.columns}
    shadowed = [a for a in (step.key_aliases if step else ()) if a in declared]
    if shadowed:
        raise InvalidArgument(
            f"GROUP BY {shadowed[0]}: {shadowed[0]!r} is an alias in SELECT and a column of "
            f"{desc.name}; rename the alias"
        )


def noised_values(plan: QueryPlan) -> None:
    """On L2 data under sticky noise, every summed value must be one the noise protects
    (``federation.sql.plan.noise_safe``); other arithmetic needs an exact or DP grant."""
    step = plan.aggregate
    if step is None:
        return
    exact_kinds = ("min", "max", "approx_count_distinct", "approx_quantile")
    for call in plan.aggregates:
        value = step.value_of.get(call.column or "")
        if value is None or call.func in exact_kinds or noise_safe(value):
            continue
        raise PermissionDenied(
            f"{call.label}: on L2 data the owner's noise protects a column, a column times "
            "positive numbers (multiplying to between 1e-12 and 1e6), or CASE WHEN ... THEN "
            "that value END (FILTER); other arithmetic needs a grant with DP or the exact option"
        )


def tested_in_values(plan: QueryPlan, grant: Grant) -> None:
    """On L2 data under sticky noise a value's own condition (FILTER, CASE WHEN) may
    test only columns the grant gives ``group_by``: each such value is shown or withheld
    by its own rows, so tests of a filter-only column there would be many tries of the
    k oracle in one query (``employees <= T`` for 25 values of T). Such tests go in the
    WHERE, one a query."""
    for column in sorted(plan.value_condition_columns):
        if "group_by" not in grant.columns.get(column, ()):
            raise PermissionDenied(
                f"column {column!r} may not be tested inside an aggregate (FILTER, CASE "
                f"WHEN) on L2 data under grant {grant.id}: that needs the group_by control "
                "(test it in the WHERE), or a grant with DP or the exact option"
            )


def bounded(plan: QueryPlan, clamp: dict[str, tuple[float, float]]) -> None:
    """Under DP every aggregated expression needs a finite interval (its noise is scaled
    from it): refuse the query where its columns' bounds imply none."""
    from federation.sql.intervals import Unbounded  # noqa: PLC0415

    for call in plan.aggregates:
        if call.column is None or call.func == "count":
            continue
        try:
            bounds = plan.bounds_of(call.column, clamp)
        except Unbounded as exc:
            raise InvalidArgument(f"{call.label} under DP: {exc}") from None
        if bounds is not None and not math.isfinite(bounds[1] - bounds[0]):
            raise InvalidArgument(  # review, 2026-12-05: a quantile's bins overflowed
                f"{call.label} under DP: its values range from {bounds[0]:g} to "
                f"{bounds[1]:g}, wider apart than a double holds; declare narrower bounds"
            )


def _few_leaves(plan: QueryPlan) -> None:
    try:
        conditions.leaves(*plan.conditions)
    except TooManyLeaves as exc:
        raise InvalidArgument(f"{exc} on L2 data") from None


def query_subject(plan: QueryPlan) -> dict[str, str]:
    """What a query's audit entries and log lines name (log lines read
    "... plan_digest=<digest> dataset=<name> ...")."""
    return {"plan_digest": plan.digest, "dataset": plan.dataset}


@dataclass(frozen=True)
class Computed:
    sql: str
    table: pa.Table  # the exact, unprotected result: never leaves this process
    leaves: tuple[object, ...] = ()  # L2 noise: the WHERE leaves' fingerprints


def sketched(plan: QueryPlan, table: pa.Table) -> pa.Table:
    """The owner's result with each list of values (``approx_count_distinct``,
    ``approx_quantile``) turned into its mergeable sketch: the values never leave."""
    step = plan.aggregate
    if step is None:
        return table
    for state in step.states:
        if state.kind not in (Kind.HLL, Kind.KLL):
            continue
        build = sketches.hll_sketches if state.kind is Kind.HLL else sketches.kll_sketches
        index = table.column_names.index(state.name)
        try:
            table = table.set_column(index, state.name, build(table.column(state.name)))
        except sketches.SketchError as exc:
            raise InvalidArgument(f"{state.column}: {exc}") from None
    return table


def suppressed(raw: pa.Table, k: int, plan: QueryPlan) -> tuple[privacy.Released, bytes]:
    """Without DP: groups under ``k`` withheld (a raw read has no groups: as is)."""
    released = privacy.suppress(sketched(plan, raw), k)
    return released, to_ipc(released.table)


def sticky_released(
    raw: pa.Table,
    plan: QueryPlan,
    k: int,
    key: bytes,
    version: str,
    leaves: tuple[object, ...],
    integer_sums: frozenset[str] = frozenset(),
) -> tuple[privacy.Released, bytes]:
    """L2 without DP: groups under ``k`` withheld (a total too, when it has no rows), then
    those under their noisy threshold, then every state noised by ``sticky_noise`` (the
    same rows, the same noise)."""
    # Every value's own row count (its condition's, its NULLs') is left to the value's
    # check (``withhold_small_values``): a group withheld for a value's few rows, and
    # kept from k on, would answer the k oracle exactly.
    step = plan.aggregate
    counted = [s.name for s in step.states if s.kind is Kind.COUNT] if step else []
    kept = privacy.suppress(sketched(plan, raw), k, keep_empty=False, per_value=counted).table
    # A group's rows are chosen by the WHERE alone: its threshold is seeded by those
    # leaves only (a value's own condition could otherwise redraw it at will).
    where = sticky_noise.state_leaves(plan, None, sticky_noise.leaf_map(plan, leaves))
    kept = sticky_noise.over_threshold(kept, k=k, key=key, version=version, leaves=where)
    noisy = sticky_noise.add_sticky_noise(
        kept, plan, key=key, version=version, leaf_fingerprints=leaves, integer_sums=integer_sums
    )
    noisy = sticky_noise.withhold_small_values(
        noisy, kept, plan, k=k, key=key, version=version, leaf_fingerprints=leaves
    )
    return privacy.Released(noisy, raw.num_rows - kept.num_rows, 0.0), to_ipc(noisy)


class QueryRelease:
    """One query's steps at one owner (see ``gateway.release.pipeline.Operation``)."""

    name = "query"
    once_per_request = True  # one release per request: a replayed envelope is refused
    noises_in_compute = False  # the noise is drawn in protect

    def __init__(
        self,
        plan: QueryPlan,
        entry: CatalogEntry,
        grants: GrantStore,
        engine: Engine,
        sql_cache: PlanCache,
        noise_key: bytes,
        max_bytes: int | None = None,
    ) -> None:
        self.plan = plan
        self.max_bytes = max_bytes  # what one partial may carry (its noised quantiles)
        self.noise_key = noise_key
        self.entry = entry
        self.grants = grants
        self.engine = engine
        self.sql_cache = sql_cache
        self.subject = query_subject(plan)
        self.request_id = ""  # the envelope's, once decided: engine errors are logged with it

    def decide(self, env: Envelope) -> Decision:
        """The grant that permits the query, then its types: a query the engine could
        only fail (quoting a value) is refused before anything runs."""
        self.request_id = env.request_id
        desc = self.entry.descriptor
        decision = decide_query(
            self.grants.list(desc.name),
            self.plan,
            desc,
            env.requester,
            env.home_node,
            env.purpose,
            utc(),
            ranges(self.entry),
        )
        self.sql_cache.check_types(self.plan, desc)
        self.sql_cache.check_shape(self.plan, desc, decision)
        return decision

    def explain(self, decision: Decision) -> Explanation:
        g = decision.grant
        return Explanation(
            grant_id=g.id,
            level=decision.level,
            min_group_size=decision.min_group_size,
            epsilon=decision.epsilon,
            columns={c: tuple(sorted(r)) for c, r in sorted(self.plan.column_roles.items())},
            budget_left=g.dp_budget - g.epsilon_spent if g.uses_dp else None,
            l2_noise=decision.sticky_noise,
        )

    def compute(self, decision: Decision, deadline: float) -> Computed:
        table_name = self.engine.ensure_loaded(self.entry)
        if decision.epsilon > 0 or decision.sticky_noise:
            self._check_value_lists(decision.epsilon > 0, table_name, deadline)
        sticky = decision.sticky_noise
        sql = self.sql_cache.get(self.plan, table_name, self.entry, decision.clamp, sticky)
        leaves: tuple[object, ...] = ()
        if sticky:
            leaf_sql = self.sql_cache.leaves(self.plan, table_name, self.entry)
            if leaf_sql is not None:
                leaves = tuple(self._run(leaf_sql, deadline).to_pylist()[0].values())
        return Computed(sql, self._run(sql, deadline), leaves)

    def _check_value_lists(self, dp: bool, table: str, deadline: float) -> None:
        """A DP quantile, and a sketch (``approx_count_distinct``, a quantile) under the L2
        noise, reads every matched value before the owner protects it: past what the
        engine reads at once the statement would be refused, and whether it is would
        tell how many rows matched, exactly, for free (review, 2026-12-05: a row's value
        read in four questions; again under the L2 noise, by ``WHERE id < T OR (id =
        150000 AND salary < 5000)``). Refused before anything runs, by the dataset's
        public row count, the plan, and for strings the bytes of the whole column: never
        by the rows a query matches. Where nothing is protected (L1, an exact grant) the
        matched count is in the answer anyway, and the engine's own cap stands."""
        step = self.plan.aggregate
        if step is None:
            return
        listed = (Kind.QHIST,) if dp else (Kind.HLL, Kind.KLL)
        lists = [s for s in (step.dp_states if dp else step.states) if s.kind in listed]
        if not lists:
            return
        desc, rows = self.entry.descriptor, self.entry.quality.rows
        wide = any(c.type.startswith("decimal") for c in desc.columns)
        # a value's bytes in the engine's reckoning, with its validity bit, offsets and
        # the count beside it (8 bytes alone left a 1.6 % band where it told, review)
        each = 24 if wide else 16
        need = sum(rows * each + self._string_bytes(s.column, table, deadline) for s in lists)
        if need > self.engine.result_bytes:
            most = self.engine.result_bytes // (each * len(lists))  # values at once
            what = "DP quantile(s)" if dp else "distinct count(s) or quantile(s)"
            noun = "quantiles" if dp else "of them"
            fewer = f"ask fewer {noun} in one query, or " if len(lists) > 1 else ""
            raise ResourceExhausted(
                f"{len(lists)} {what} over the {rows:,} rows of {desc.name}: each reads "
                f"every matched value, and this owner reads at most {most:,} of them at "
                f"once: {fewer}ask it of a smaller dataset"
            )

    def _string_bytes(self, value: str | None, table: str, deadline: float) -> int:
        """The bytes of a string value over the whole table (0 for any other value): the
        most a list of its matched values can hold beyond the per-value overhead. A
        string computed by an expression has no such bound here: refused."""
        step = self.plan.aggregate
        if value is None or step is None:
            return 0
        computed = step.value_of.get(value)
        tree = computed.tree if computed is not None else exp.column(value, quoted=True)
        try:
            kind = typecheck.value_kind(tree, self.entry.descriptor)
        except FedgateError:  # refused elsewhere with its reason
            return 0
        if kind.kind != typecheck.STRING:
            return 0
        if computed is not None:
            raise ResourceExhausted(
                f"{computed.text}: a sketch of a computed string cannot be bounded before "
                "it runs; sketch a string column"
            )
        length = exp.func("strlen", exp.column(value, quoted=True))
        total = exp.func("coalesce", exp.Sum(this=length), exp.Literal.number(0))
        select = exp.Select(
            expressions=[exp.alias_(total, "b", quoted=True)],
            from_=exp.From(this=exp.table_(table, quoted=True)),
        )
        result = self._run(select.sql(dialect="duckdb"), deadline)
        return int(result.column(0)[0].as_py())

    def _run(self, sql: str, deadline: float) -> pa.Table:
        try:
            return self.engine.run(
                sql,
                timeout=deadline - time.monotonic(),
                version=data_version(self.entry),
                request_id=self.request_id,
            )
        except EngineError as exc:  # a fixed message: say where, by the plan's columns
            raise exc.placed(typecheck.place(self.plan, exc.failure)) from None

    def protect(self, computed: Computed, decision: Decision) -> Protected:
        if decision.epsilon > 0 and not self.plan.is_raw:  # fresh noise every time
            released = privacy.add_noise(
                computed.table,
                self.plan,
                epsilon=decision.epsilon,
                k=decision.min_group_size,
                clamp=decision.clamp or {},
                max_bytes=self.max_bytes,
            )
            payload = to_ipc(released.table)
        else:  # deterministic: computed once per cached exact result
            k = decision.min_group_size
            if decision.sticky_noise:
                version, key, leaves = self.entry.quality.sha256, self.noise_key, computed.leaves
                tag: tuple[object, ...] = ("sticky", k, leaves)
                ints, _ = exact_values(self.plan, self.entry.descriptor)
                protect = functools.partial(
                    sticky_released,
                    plan=self.plan,
                    k=k,
                    key=key,
                    version=version,
                    leaves=leaves,
                    integer_sums=frozenset(ints),
                )
            else:
                tag = ("protected", k)
                protect = functools.partial(suppressed, k=k, plan=self.plan)
            released, payload = self.engine.derive(
                computed.sql,
                data_version(self.entry),
                computed.table,
                tag,
                protect,
                lambda v: v[0].table.nbytes + len(v[1]),
            )
        # How many groups were withheld stays here: beside the answer it would tell
        # whether the one entity a condition describes exists.
        return Protected(
            payload=payload,
            epsilon=released.epsilon,
            facts={"groups_released": released.table.num_rows, "l2_noise": decision.sticky_noise},
            value=released.table,
        )
