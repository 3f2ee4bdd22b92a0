"""Classification floors: what a dataset's level allows, whatever a grant says.

A grant can be stricter than its floor, never looser; a query, PSI session or training
run is judged at the strictest level among the dataset and the columns it touches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.descriptor import LEVELS, DatasetDescriptor


@dataclass(frozen=True)
class Floor:
    raw: bool  # may columns be released row by row?
    min_group_size: int
    dp_required: bool
    releasable: bool = True


FLOORS = {
    "L1": Floor(raw=True, min_group_size=1, dp_required=False),
    "L2": Floor(raw=False, min_group_size=5, dp_required=False),
    "L3": Floor(raw=False, min_group_size=10, dp_required=True),
    "L4": Floor(raw=False, min_group_size=10**9, dp_required=True, releasable=False),
}


def effective_level(desc: DatasetDescriptor, columns: Iterable[str]) -> str:
    """The strictest of the dataset's level and the levels of ``columns`` (all declared)."""
    levels = [desc.level] + [desc.column_level(c) for c in columns]
    return max(levels, key=LEVELS.index)
