"""Policy: grants, classification floors, privacy budgets, and deciding each operation.

The owner's only source of permission. ``model`` is the grant, ``floors`` what a level
allows, ``budget`` the epsilon arithmetic, ``validate`` a grant as written, ``store`` the
grants table, ``decide`` what every operation shares, and ``query``, ``psi``, ``train``
one decision each over the same grant. A new operation adds a module like ``psi`` that
builds on ``decide`` (import its helpers from ``gateway.policy.decide``).
"""

from __future__ import annotations

from gateway.policy.budget import add_epsilon, within_budget
from gateway.policy.floors import FLOORS, Floor, effective_level
from gateway.policy.model import (
    CONTROLS,
    GRANTEE_KINDS,
    OPERATIONS,
    Decision,
    Grant,
    public_fields,
)
from gateway.policy.query import DP_AGGREGATES, AggregateUse, QueryUse, decide_query
from gateway.policy.store import GrantStore
from gateway.policy.train import decide_train
from gateway.policy.validate import check_controls, validate

__all__ = [
    "CONTROLS",
    "DP_AGGREGATES",
    "FLOORS",
    "GRANTEE_KINDS",
    "OPERATIONS",
    "AggregateUse",
    "Decision",
    "Floor",
    "Grant",
    "GrantStore",
    "QueryUse",
    "add_epsilon",
    "check_controls",
    "decide_query",
    "decide_train",
    "effective_level",
    "public_fields",
    "validate",
    "within_budget",
]
