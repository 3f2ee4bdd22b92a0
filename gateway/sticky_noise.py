"""L2 noise: sticky, layered noise on every released count and sum (no budget to spend).

Exact answers over internal (L2) data let an analyst subtract two allowed questions and
read one entity's value (all rows minus all-but-one; ``>= v`` minus ``> v``). Here each
released state gets Gaussian noise made of layers, each drawn from a keyed hash (the
owner's secret) rather than from a random source:

* a *row-set layer*, seeded by which rows the state summarises (``FINGERPRINT``). The
  same rows get the same noise however the question is written or how often it is
  asked, so averaging repeats or rewrites of a question gains nothing;
* one *leaf layer* per single test in the WHERE condition (``conditions.leaves``),
  seeded by the rows that test alone matches in the whole dataset. It is the same in
  both halves of a difference built around the same isolating test, so a difference
  keeps it however many different backgrounds the attacker pairs it with;
* with a WHERE or a CASE key, a *meaning layer* seeded by their logic over their
  leaves' rows (``meaning``): equal rows reached by different logic draw apart, so equal
  answers say nothing;
* for a sum, a *top layer* seeded by which row contributes the most to it: every
  question in which the same entity dominates a sum carries the same draw, so
  averaging over many backgrounds cannot take away the noise that hides it.

A layer's standard deviation is ``COUNT_SCALE`` for a count and ``SUM_SCALE`` times the
largest magnitude in the group for a sum (what the row that matters most could
contribute), so one entity is hidden in its group while a sum over many rows stays
accurate. The design
follows Diffix (sticky, layered, data-seeded noise) and is described, with its threat
model and its limits, in docs/security.md.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from decimal import Decimal, localcontext

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlglot import exp

from federation.partials import floats
from federation.sql import (
    COUNT_KINDS,
    FINGERPRINT,
    ROWS,
    Kind,
    QueryPlan,
    StateColumn,
    conditions,
    hidden_columns,
    hidden_name,
    state_name,
)
from gateway.errors import InvalidArgument

THRESHOLD_SPREAD = 30  # a group is released from k + a draw uniform over 0..this rows
SUM_SCALE = 0.25  # a sum's layer SD, per unit of the group's largest magnitude
COUNT_SCALE = 0.7  # a count's layer SD

_COUNT = "count"  # the label of every count's layers
_NOISED = (Kind.ROWS, Kind.COUNT, Kind.SUM, Kind.M2)  # MIN and MAX are L1 only: as they are


def noise_key(signing_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The owner's noise secret, derived from its signing key: nothing new to keep, and
    unknown to anyone without that key."""
    secret = signing_key.private_numbers().private_value.to_bytes(66, "big")
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"fedgate L2 noise v1")
    return kdf.derive(secret)


def gaussian(key: bytes, *parts: str) -> float:
    """A standard normal draw fixed by ``parts`` (Box-Muller over a keyed BLAKE2b)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), key=key, digest_size=16).digest()
    u1 = (int.from_bytes(digest[:8], "big") + 1) / 2.0**64  # in (0, 1]
    u2 = int.from_bytes(digest[8:], "big") / 2.0**64
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def _fp(value: object) -> str:
    return "none" if value is None else str(value)


def _label(state: StateColumn, plan: QueryPlan) -> str:
    """What a layer is drawn for: every count of the same rows gets the same noise, and
    every sum of values read from the same columns (``SUM(x)``, ``SUM(x * 1)``,
    ``SUM(x + 0)``): rewriting an expression draws nothing new to average away. A value
    that reads no column (``SUM(1)``, ``SUM(2)``) counts rows: it draws ``COUNT(*)``'s
    layers (review, 2026-12-05: its own draws were a second sample of every count)."""
    if state.kind in COUNT_KINDS:
        return _COUNT
    step = plan.aggregate
    columns = step.columns_of(state.column or "") if step is not None else ()
    return f"{state.kind.value}:{','.join(columns)}" if columns else _COUNT


def add_sticky_noise(
    table: pa.Table,
    plan: QueryPlan,
    *,
    key: bytes,
    version: str,
    leaf_fingerprints: Sequence[object],
    integer_sums: frozenset[str] = frozenset(),
) -> pa.Table:
    """The owner's partial (states, then ``hidden_columns``) with every count, sum and M2
    noised and the hidden columns dropped. ``integer_sums`` names the values whose sums
    arrive as DuckDB's HUGEINT (Arrow decimal128(38, 0)) and leave as int64. Seeds name
    the data by ``version`` (its sha256), not by the dataset's name: two names for the
    same file draw the same noise.
    Counts stay whole and >= 0, integer sums whole, decimal sums decimal128(38, s) (the
    noise rounded to the scale s); a column with no value in a group keeps its exact 0
    count and NULL sum (nothing to hide, as without noise). MIN and MAX pass as they are,
    in their own type."""
    states = plan.aggregate.states if plan.aggregate is not None else ()
    hidden = {h.name for h in hidden_columns(states)}
    by_leaf = leaf_map(plan, leaf_fingerprints)
    means = meaning(plan, by_leaf)
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for name in table.column_names:
        if name in hidden:
            continue
        state = next((s for s in states if s.name == name), None)
        if state is None or state.kind not in _NOISED:  # a group key; MIN/MAX (L1 only)
            columns[name] = table.column(name)
            continue
        label = _label(state, plan)
        # The leaf layers depend on the conditions only: drawn once for every group. A
        # state carries the WHERE's leaves and its own value's (CASE, FILTER), never
        # another value's: a test isolating one entity stays in one state's noise and
        # cannot cancel between two states of one answer.
        leaves = state_leaves(plan, state.column, by_leaf)
        shared = sum(gaussian(key, version, label, "leaf", leaf) for leaf in leaves)
        own = value_meaning(plan, state.column, by_leaf)
        if means or own:  # one layer for what the conditions mean: fresh for another logic
            shared += gaussian(key, version, label, "meaning", f"{means}|{own}" if own else means)
        fps = table.column(hidden_name("fingerprint", state.column)).to_pylist()
        layers = [gaussian(key, version, label, "rows", _fp(fp)) + shared for fp in fps]
        if state.kind is not Kind.ROWS and state.kind is not Kind.COUNT:
            tops = table.column(hidden_name("top", state.column)).to_pylist()
            layers = [
                z + gaussian(key, version, label, "top", _fp(t))
                for z, t in zip(layers, tops, strict=True)
            ]
        per_unit = COUNT_SCALE if label == _COUNT else SUM_SCALE  # a constant's sum counts
        noise = np.array(layers, dtype=np.float64)
        whole = state.column in integer_sums
        columns[name] = _noised(table, state, noise, per_unit, whole_sum=whole)
    return pa.table(columns)


def _threshold(k: int, key: bytes, version: str, rows: str, seeds: str) -> int:
    """k plus a draw uniform over 0..THRESHOLD_SPREAD, fixed by the rows and the leaves."""
    digest = hashlib.blake2b(
        "\x1f".join((version, "threshold", rows, seeds)).encode(), key=key, digest_size=8
    ).digest()
    return k + int.from_bytes(digest, "big") % (THRESHOLD_SPREAD + 1)


def leaf_map(plan: QueryPlan, fingerprints: Sequence[object]) -> dict[str, str]:
    """Each leaf of the plan's conditions (by its text) with the fingerprint of the rows it
    matches in the whole dataset (``leaf_query`` reads them in this order)."""
    found = conditions.leaves(*plan.conditions)
    return {leaf.sql(): _fp(fp) for leaf, fp in zip(found, fingerprints, strict=False)}


def meaning(plan: QueryPlan, by_leaf: dict[str, str]) -> str:
    """The logic that chooses the rows, over its leaves' rows (``conditions.canonical``):
    the WHERE's, and each CASE key's conditions in order (a key's groups are chosen as a
    WHERE chooses rows: ``CASE WHEN X OR (v AND t)`` and ``CASE WHEN X AND NOT (v AND
    t)`` made the same groups, and equal answers, exactly when t failed; review,
    2026-12-04, night). The same for spellings of one WHERE (a CASE key enters with its
    text, so its spellings draw apart in this one layer), different for two conditions
    that select the same rows by different logic. Empty without a WHERE or a CASE key."""
    parts = []
    where = plan.scan.where
    if where is not None:
        parts.append(conditions.canonical(where, by_leaf))
    keys = plan.aggregate.keys if plan.aggregate is not None else ()
    # each key's conditions with the key as written: its THEN labels choose the groups
    # too (the same conditions mapped to other labels made equal answers; review,
    # 2026-12-04, night)
    cases = [f"{_logic(k.conditions, by_leaf)}~{k.text}" for k in keys if k.conditions]
    parts += sorted(cases)  # the order of GROUP BY is not a new question
    return "|".join(parts)


def _logic(tests: Sequence[exp.Expr], by_leaf: dict[str, str]) -> str:
    return "case(" + ",".join(conditions.canonical(c, by_leaf) for c in tests) + ")"


def value_meaning(plan: QueryPlan, value: str | None, by_leaf: dict[str, str]) -> str:
    """A value's own conditions (``SUM(CASE WHEN ... THEN x END)``, ``FILTER (WHERE
    ...)``) choose its rows as a WHERE does: their logic, with the value as written, is
    part of that state's meaning layer ("" for a value without conditions)."""
    step = plan.aggregate
    held = step.value_of.get(value or "") if step is not None else None
    if held is None or not held.conditions:
        return ""
    return f"{_logic(held.conditions, by_leaf)}~{held.text}"


def state_leaves(plan: QueryPlan, value: str | None, by_leaf: dict[str, str]) -> list[str]:
    """The leaf fingerprints behind one state: the WHERE's and its value's conditions'."""
    step = plan.aggregate
    held = step.value_of.get(value or "") if step is not None else None
    own = held.conditions if step is not None and held in step.values else ()
    # The keys' conditions (a CASE key) choose a group's rows as the WHERE does: in every
    # state's noise, and in the group's threshold (value None).
    keys = [c for k in step.keys for c in k.conditions] if step is not None else []
    found = conditions.leaves(plan.scan.where, *keys, *own)
    return sorted({by_leaf.get(leaf.sql(), "none") for leaf in found})


def withhold_small_values(
    noisy: pa.Table,
    exact: pa.Table,
    plan: QueryPlan,
    *,
    k: int,
    key: bytes,
    version: str,
    leaf_fingerprints: Sequence[object],
) -> pa.Table:
    """A value is shown only where its own rows (those its condition keeps, those where
    it is not NULL: ``COUNT(*) FILTER (WHERE ...)``, ``SUM(CASE WHEN ... THEN x END)``,
    ``SUM(x)`` of a column with NULLs) reach its group's sticky noisy threshold (the
    group's own draw: k or more); else all its states are withheld (NULL; a count reads
    0), so a filter isolating one entity says nothing, not even whether it exists. One
    draw for all of a group's values: a draw each would give a query of many values as
    many tries of the k oracle at once (the group itself is never withheld for a value's
    few rows: that would be the exact k again). ``exact`` is the partial before noise,
    row for row the same groups as ``noisy``."""
    step = plan.aggregate
    if step is None or noisy.num_rows == 0:
        return noisy
    seeds = "|".join(state_leaves(plan, None, leaf_map(plan, leaf_fingerprints)))
    groups = exact.column(FINGERPRINT).to_pylist()
    needed = np.array([_threshold(k, key, version, _fp(fp), seeds) for fp in groups])
    out = noisy
    for counted in [s for s in step.states if s.kind is Kind.COUNT]:
        counts = exact.column(counted.name).to_numpy(zero_copy_only=False)
        small = pa.array(np.nan_to_num(counts.astype(np.float64)) < needed)
        for state in step.states:
            if state.column != counted.column or state.name not in out.column_names:
                continue
            index = out.column_names.index(state.name)
            column = out.column(state.name)
            out = out.set_column(
                index, state.name, pc.if_else(small, pa.nulls(len(small), column.type), column)
            )
    return out


def _noised(
    table: pa.Table,
    state: StateColumn,
    layers: np.ndarray,
    per_unit: float = SUM_SCALE,
    *,
    whole_sum: bool = False,
) -> pa.Array:
    """One state, noised: ``per_unit`` is a sum's layer SD per unit of the group's
    largest magnitude (COUNT_SCALE for a sum of a constant, which is a count)."""
    column = table.column(state.name)
    values = _floats(table, state.name)
    if state.kind in COUNT_KINDS:
        noisy = np.maximum(0, np.rint(values + COUNT_SCALE * layers))
        if state.kind is Kind.COUNT:
            noisy = np.where(values == 0, 0, noisy)
        return pa.array(noisy.astype(np.int64), pa.int64())
    column_name = state.column or ""
    low = _floats(table, hidden_name("low", column_name))
    high = _floats(table, hidden_name("high", column_name))
    # A sum that overflowed to inf (or NaN) would say, by whether it did, what the exact
    # value is: withheld.
    present = np.array(column.is_valid()) & np.isfinite(values)
    if state.kind is Kind.SUM:
        scale = per_unit * np.maximum(np.abs(low), np.abs(high))
        if whole_sum and pa.types.is_decimal(column.type):
            return _whole_noised(column, scale * layers, present, column_name)
        if pa.types.is_decimal(column.type):
            return _decimal_noised(column, scale * layers, present, column_name)
        noisy = values + scale * layers
        if pa.types.is_integer(column.type):
            whole = np.rint(noisy)
            if np.any(np.abs(whole[present]) >= 2.0**63):
                raise InvalidArgument(f"the sum of {column_name!r} does not fit a 64-bit integer")
            return pa.array(whole.astype(np.int64), pa.int64(), mask=~present)
        return pa.array(noisy, pa.float64(), mask=~present)
    if state.kind is not Kind.M2:
        raise ValueError(f"no L2 noise for the state {state.kind}")
    # M2: one row moves it by about its squared distance from the mean
    count = _floats(table, state_name(Kind.COUNT, column_name))
    mean = _floats(table, state_name(Kind.SUM, column_name)) / np.maximum(count, 1.0)
    spread = np.maximum(high - mean, mean - low) ** 2
    noisy = np.maximum(0.0, values + per_unit * spread * layers)
    return pa.array(noisy, pa.float64(), mask=~present)


def _decimal_noised(
    column: pa.ChunkedArray, noise: np.ndarray, present: np.ndarray, name: str
) -> pa.Array:
    """A decimal sum stays a decimal128(38, s): the exact sum plus the noise rounded to
    the scale s, added in decimal arithmetic (no digit of the sum lost to a float)."""
    scale = column.type.scale
    units = np.rint(noise * 10.0**scale)  # the noise in units of the last digit
    if not np.all(np.isfinite(units[present])):
        raise InvalidArgument(f"the noise on the sum of {name!r} is not a finite number")
    noisy: list[Decimal | None] = []
    with localcontext() as ctx:
        ctx.prec = 80  # above 38 digits: the addition itself never rounds
        for value, unit, ok in zip(column.to_pylist(), units, present, strict=True):
            noisy.append(value + Decimal(int(unit)).scaleb(-scale) if ok else None)
    try:
        return pa.array(noisy, pa.decimal128(38, scale))
    except (pa.ArrowInvalid, OverflowError):
        raise InvalidArgument(f"the sum of {name!r} does not fit a DECIMAL(38,{scale})") from None


def _whole_noised(
    column: pa.ChunkedArray, noise: np.ndarray, present: np.ndarray, name: str
) -> pa.Array:
    """An integer sum, exact in a HUGEINT (decimal128(38, 0)), noised as a decimal sum of
    scale 0 is, then an int64, or refused when the *noisy* total does not fit one (a
    refusal, or a NULL, decided on the exact total would tell it: ``SUM(x * c)`` for a
    search over c)."""
    noisy = _decimal_noised(column, noise, present, name)
    try:
        return noisy.cast(pa.int64())
    except pa.ArrowInvalid:
        raise InvalidArgument(f"the sum of {name!r} does not fit a 64-bit integer") from None


def _floats(table: pa.Table, name: str) -> np.ndarray:
    return floats(table.column(name))


def over_threshold(
    table: pa.Table, *, k: int, key: bytes, version: str, leaves: Sequence[object]
) -> pa.Table:
    """The groups (already at least ``k`` rows) whose row count also reaches a sticky noisy
    threshold ``k + u``, u uniform over 0..THRESHOLD_SPREAD and seeded by the group's rows
    and the condition's leaves (Diffix's low-count filter). With an exact k, an analyst who
    knows k - 1 entities matching a condition reads a test on a victim from whether the
    group is released (a binary search: ~17 queries for a value to 100 000). Here a group
    of exactly k is released at a try 1 time in 31, and a withheld group says nothing
    sure, so each step of such a search takes dozens of padded retries. Uniform: what such
    an attacker learns per query is bounded by the largest step of the threshold's
    distribution (docs/security.md), and for the same steps a uniform one is the
    narrowest: every group of k + THRESHOLD_SPREAD rows or more is released."""
    if table.num_rows == 0 or ROWS not in table.column_names:
        return table
    seeds = "|".join(sorted(_fp(f) for f in leaves))
    rows = table.column(ROWS).to_numpy()
    fps = table.column(FINGERPRINT).to_pylist()
    needed = np.array([_threshold(k, key, version, _fp(fp), seeds) for fp in fps])
    return table.filter(pa.array(rows >= needed))
