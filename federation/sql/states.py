"""The columns of an owner's partial: typed, named here and nowhere else.

An owner never returns an aggregate's final value, only a *state* that merges without
loss. Which states a plan needs, in which order, and what each column is called is
decided here; the owner's SQL, the merge and the privacy layer read these records rather
than taking column names apart.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class StateColumn:
    kind: Kind
    column: str | None  # the dataset column it summarises (None for ROWS)
    name: str  # its name in the partial


def state_name(kind: Kind, column: str) -> str:
    return f"__{kind.value}_{column}"


# The states each aggregate needs (beyond ROWS, always there).
_NEEDS: dict[str, frozenset[Kind]] = {
    "count": frozenset({Kind.COUNT}),
    "sum": frozenset({Kind.COUNT, Kind.SUM}),
    "avg": frozenset({Kind.COUNT, Kind.SUM}),
    "var_samp": frozenset({Kind.COUNT, Kind.SUM, Kind.M2}),
    "var_pop": frozenset({Kind.COUNT, Kind.SUM, Kind.M2}),
    "stddev_samp": frozenset({Kind.COUNT, Kind.SUM, Kind.M2}),
    "stddev_pop": frozenset({Kind.COUNT, Kind.SUM, Kind.M2}),
    "min": frozenset({Kind.MIN}),
    "max": frozenset({Kind.MAX}),
}
_ORDER = (Kind.COUNT, Kind.SUM, Kind.M2, Kind.MIN, Kind.MAX)  # per column, in the partial


def needed(aggregates: Iterable[AggCall], *, dp: bool) -> tuple[StateColumn, ...]:
    """ROWS, then per aggregated column (sorted by name) its states in ``_ORDER``. Under
    DP the M2 state is computed as a sum of squares instead: it can be clamped and noised
    as a sum, and becomes M2 once noised (``federation.partials.squares_to_m2``)."""
    kinds: dict[str, set[Kind]] = {}
    for call in aggregates:
        if call.column is not None:
            kinds.setdefault(call.column, set()).update(_NEEDS[call.func])
    out = [StateColumn(Kind.ROWS, None, ROWS)]
    for column in sorted(kinds):
        for kind in _ORDER:
            if kind in kinds[column]:
                if kind is Kind.M2 and dp:
                    kind = Kind.SQUARES
                out.append(StateColumn(kind, column, state_name(kind, column)))
    return tuple(out)


def state_columns(plan: QueryPlan, dp: bool) -> tuple[StateColumn, ...]:
    """The state columns of an owner's partial for ``plan`` (after the group keys), as its
    SQL computes them: with ``dp``, as the owner's SQL writes them before noise. A raw
    read has none."""
    if plan.is_raw:
        return ()
    return needed(plan.aggregates, dp=dp)


def row_counts(names: Iterable[str]) -> list[str]:
    """Among a partial's column names, the per-column row counts (COUNT(column) states):
    for code that holds a released table but not its plan."""
    prefix = f"__{Kind.COUNT.value}_"
    return [name for name in names if name.startswith(prefix)]
