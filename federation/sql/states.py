"""The columns of an owner's partial: typed, named here and nowhere else.

An owner never returns an aggregate's final value, only a *state* that merges without
loss. Which states a plan needs, in which order, and what each column is called is
decided here; the owner's SQL, the merge and the privacy layer read these records rather
than taking column names apart.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:  # plan.py keeps each plan's states: it imports this module
    from federation.sql.plan import AggCall, QueryPlan

ROWS = "__n"  # COUNT(*) of the group: always present, used for the minimum group size


class Kind(enum.Enum):
    """What a state column holds (its value is the column name's prefix)."""

    ROWS = "n"  # COUNT(*)
    COUNT = "c"  # COUNT(column): rows where the column is not NULL
    SUM = "s"
    M2 = "m2"  # sum of squared deviations from the mean (variance without loss)
    SQUARES = "q"  # sum of squares: under DP only, turned into M2 after noise
    MIN = "min"
    MAX = "max"
    HLL = "hll"  # a serialised HyperLogLog sketch (approx_count_distinct)
    KLL = "kll"  # a serialised KLL quantiles sketch (approx_quantile, median)
    QHIST = "qh"  # under DP: a noisy histogram over the declared bounds (quantiles)


COUNT_KINDS = (Kind.ROWS, Kind.COUNT)  # whole numbers, at least 0, also once noised


class StateColumn(NamedTuple):
    """One column of a partial (a NamedTuple: cheap to make, several per new query)."""

    kind: Kind
    column: str | None  # the dataset column it summarises (None for ROWS)
    name: str  # its name in the partial


def state_name(kind: Kind, column: str) -> str:
    return f"__{kind.value}_{column}"


# Per aggregated column, its states in the partial's order, as bits.
_ORDER = (Kind.COUNT, Kind.SUM, Kind.M2, Kind.MIN, Kind.MAX, Kind.HLL, Kind.KLL)
_C, _S, _M2, _MIN, _MAX, _HLL, _KLL = (1 << i for i in range(len(_ORDER)))
_DP_KIND = {Kind.M2: Kind.SQUARES, Kind.KLL: Kind.QHIST}


def _step(i: int, kind: Kind) -> tuple[int, tuple[Kind, str], tuple[Kind, str]]:
    dp_kind = _DP_KIND.get(kind, kind)
    return 1 << i, (kind, state_name(kind, "")), (dp_kind, state_name(dp_kind, ""))


# Per bit in order, (kind, name prefix) without and with DP, worked out once: reading an
# Enum's value is slow.
_STEPS = tuple(_step(i, kind) for i, kind in enumerate(_ORDER))
# The states each aggregate needs (beyond ROWS, always there).
_NEEDS: dict[str, int] = {
    "count": _C,
    "sum": _C | _S,
    "avg": _C | _S,
    "var_samp": _C | _S | _M2,
    "var_pop": _C | _S | _M2,
    "stddev_samp": _C | _S | _M2,
    "stddev_pop": _C | _S | _M2,
    "min": _C | _MIN,
    "max": _C | _MAX,
    "approx_count_distinct": _C | _HLL,
    "approx_quantile": _C | _KLL,
}


def needed(aggregates: Iterable[AggCall], *, dp: bool) -> tuple[StateColumn, ...]:
    """ROWS, then per aggregated column (sorted by name) its states in ``_ORDER``. Under
    DP the M2 state is computed as a sum of squares instead: it can be clamped and noised
    as a sum, and becomes M2 once noised (``federation.partials.squares_to_m2``)."""
    bits: dict[str, int] = {}
    for call in aggregates:
        if call.column is not None:
            bits[call.column] = bits.get(call.column, 0) | _NEEDS[call.func]
    out = [StateColumn(Kind.ROWS, None, ROWS)]
    for column in sorted(bits):
        for bit, plain, private in _STEPS:
            if bits[column] & bit:
                kind, prefix = private if dp else plain
                out.append(StateColumn(kind, column, prefix + column))
    return tuple(out)


def state_columns(plan: QueryPlan, dp: bool) -> tuple[StateColumn, ...]:
    """The state columns of an owner's partial for ``plan`` (after the group keys), as its
    SQL computes them: with ``dp``, as the owner's SQL writes them before noise. A raw
    read has none."""
    step = plan.aggregate
    if step is None:
        return ()
    return step.dp_states if dp else step.states


def row_counts(names: Iterable[str]) -> list[str]:
    """Among a partial's column names, the per-column row counts (COUNT(column) states):
    for code that holds a released table but not its plan."""
    prefix = f"__{Kind.COUNT.value}_"
    return [name for name in names if name.startswith(prefix)]


# --- what an owner's SQL adds for its own disclosure control (never released) ------------

FINGERPRINT = "__fp"  # of the group's rows: which rows, not how many


# "fingerprint": which rows (where the column is not NULL; all rows for None); "low",
# "high": the column's extremes in the group; "top": which row holds its largest magnitude
HiddenKind = Literal["fingerprint", "low", "high", "top"]


class Hidden(NamedTuple):
    """A column the owner computes beside the states to protect them, then drops."""

    kind: HiddenKind
    column: str | None
    name: str


_EXTREMES: tuple[HiddenKind, ...] = ("low", "high", "top")
_HIDDEN_PREFIX = {"fingerprint": "__fp_", "low": "__lo_", "high": "__hi_", "top": "__top_"}


def hidden_name(kind: HiddenKind, column: str | None) -> str:
    """A hidden column's name: ``FINGERPRINT`` for all rows, else by kind and column."""
    if column is None:
        return FINGERPRINT
    return _HIDDEN_PREFIX[kind] + column


def hidden_columns(states: Iterable[StateColumn]) -> tuple[Hidden, ...]:
    """For L2 noise (``gateway.sticky_noise``): the fingerprint of the rows behind each
    count (all rows, and per counted column its non-NULL rows), and each summed column's
    smallest and largest value in the group (what one row can contribute) and which row
    holds the largest magnitude."""
    out = [Hidden("fingerprint", None, FINGERPRINT)]
    for state in states:
        if state.column is None:
            continue
        if state.kind is Kind.COUNT:
            name = hidden_name("fingerprint", state.column)
            out.append(Hidden("fingerprint", state.column, name))
        elif state.kind is Kind.SUM:
            for kind in _EXTREMES:
                out.append(Hidden(kind, state.column, hidden_name(kind, state.column)))
    return tuple(out)
