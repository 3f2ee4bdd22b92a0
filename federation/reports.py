"""What owners report back for one request, as typed records (never protobuf here).

A ``PartialAnswer`` is what one node returns to whoever asked it (the home, or a relay
above it): its own and its children's ``OwnerReport``s and one merged, still-protected
partial. The home turns the reports of every owner into the analyst's answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from federation.outcome import Error


@dataclass(frozen=True)
class Explanation:
    """A dry run at one owner: the grant it would use and how it would protect."""

    grant_id: str
    level: str
    min_group_size: int
    epsilon: float
    columns: Mapping[str, tuple[str, ...]]  # column -> roles the query uses it in
    budget_left: float | None = None  # DP grants only
    l2_noise: bool = False  # answers carry the owner's sticky L2 noise


@dataclass(frozen=True)
class OwnerReport:
    node_id: str
    error: Error | None = None
    groups_released: int = 0
    l2_noise: bool = False  # the owner's sticky L2 noise is in its partial
    epsilon: float = 0.0
    grant_id: str = ""
    receipt: str = ""  # signed receipt JSON
    via: str = ""  # the relay it answered through
    explanation: Explanation | None = None
    # The owner has no grant for this requester on the dataset that spends budget or
    # uses: the home may skip the check round next time (False: unknown, or it may).
    no_spend: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class PartialAnswer:
    node_id: str
    published: bool  # False: neither this node nor its children hold the dataset
    payload: bytes = b""  # Arrow IPC of the merged, still-protected partial
    owners: tuple[OwnerReport, ...] = ()


@dataclass(frozen=True)
class QueryAnswer:
    """The home's answer to the analyst."""

    request_id: str
    plan_sql: str
    plan_digest: str
    owners: tuple[OwnerReport, ...]
    payload: bytes = b""
    missing: tuple[str, ...] = ()
    epsilon_spent: float = 0.0
