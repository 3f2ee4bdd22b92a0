"""The names this module used to define: grants and their decisions now live in
gateway.policy, time helpers in gateway.clock. Import from there."""

# transitional: removed once the lead's modules import gateway.policy / gateway.clock

from __future__ import annotations

from gateway.clock import parse_time, utc
from gateway.policy import (
    CONTROLS,
    DP_AGGREGATES,
    FLOORS,
    GRANTEE_KINDS,
    OPERATIONS,
    Decision,
    Floor,
    Grant,
    GrantStore,
    add_epsilon,
    effective_level,
    public_fields,
    validate,
    within_budget,
)
from gateway.policy import decide_query as decide

__all__ = [
    "CONTROLS",
    "DP_AGGREGATES",
    "FLOORS",
    "GRANTEE_KINDS",
    "OPERATIONS",
    "Decision",
    "Floor",
    "Grant",
    "GrantStore",
    "add_epsilon",
    "decide",
    "effective_level",
    "parse_time",
    "public_fields",
    "utc",
    "validate",
    "within_budget",
]
