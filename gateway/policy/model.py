"""The grant: the only source of permission, written and enforced by the data owner.

A grant names a grantee (a user, a whole organisation, or a node), a dataset, the
operations allowed, and for each column how it may be used. A column not named may not
be used at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.policy.budget import within_budget

CONTROLS = ("raw", "group_by", "aggregate", "filter", "extremes", "join_key")
OPERATIONS = ("query", "psi", "train")
GRANTEE_KINDS = ("user", "org", "node")


@dataclass(frozen=True)
class Grant:
    id: str
    dataset: str
    grantee_kind: str
    grantee: str
    operations: tuple[str, ...]
    columns: dict[str, tuple[str, ...]]
    min_group_size: int
    dp_epsilon: float = 0.0  # per release; 0 means no differential privacy
    dp_budget: float = 0.0  # total epsilon over the grant's life
    purpose: str = ""
    valid_from: str = ""
    expires: str = ""
    max_uses: int = 0  # 0: unlimited
    uses: int = 0
    epsilon_spent: float = 0.0
    revoked_at: str = ""
    created_by: str = ""
    created_at: str = ""
    grantee_org: str = ""  # user grants: the user's organisation, matched as well
    # The owner's opt-out of L2 noise (gateway.sticky_noise): exact answers, k only.
    # Shown as such in the disclosure report.
    exact: bool = False
    # Training (operation "train"): the built-in tasks allowed (federation.training.tasks),
    # the most rounds a run may have and the most examples one round may train on (0: no
    # limit beyond the data).
    train_tasks: tuple[str, ...] = ()
    max_rounds: int = 0
    max_examples: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_dp(self) -> bool:
        return self.dp_epsilon > 0

    def status(self, now: str, charge: float | None = None) -> str:
        """The grant's state at ``now`` (RFC 3339): "active", or why it permits nothing.
        ``charge``: the epsilon the release asks room for (the grant's ``dp_epsilon``
        unless told: a SecAgg+ stage that charges nothing needs no room)."""
        if self.revoked_at:
            return "revoked"
        if self.valid_from and now < self.valid_from:
            return "not yet valid"
        if self.expires and now >= self.expires:
            return "expired"
        if self.max_uses and self.uses >= self.max_uses:
            return "used up"
        room = self.dp_epsilon if charge is None else charge
        if self.uses_dp and not within_budget(self.epsilon_spent, room, self.dp_budget):
            return "budget spent"
        return "active"


@dataclass(frozen=True)
class Decision:
    """What the owner will do for one request under one grant, whatever the operation."""

    grant: Grant
    min_group_size: int
    epsilon: float
    clamp: dict[str, tuple[float, float]] | None
    level: str
    sticky_noise: bool = False  # L2 without DP: gateway.sticky_noise on every state
    # No grant this requester could use on the dataset spends budget or counts uses: a
    # home told so by every owner may skip its check round (gateway.roles.home.NoSpend).
    no_spend: bool = False


def public_fields(grant: Grant) -> dict[str, Any]:
    """What the audit log says about a grant."""
    return {
        "grant_id": grant.id,
        "dataset": grant.dataset,
        "grantee_kind": grant.grantee_kind,
        "grantee": grant.grantee,
        "grantee_org": grant.grantee_org,
        "operations": list(grant.operations),
        "columns": {k: list(v) for k, v in grant.columns.items()},
        "min_group_size": grant.min_group_size,
        "dp_epsilon": grant.dp_epsilon,
        "dp_budget": grant.dp_budget,
        "purpose": grant.purpose,
        "valid_from": grant.valid_from,
        "expires": grant.expires,
        "max_uses": grant.max_uses,
        "exact": grant.exact,
        "train_tasks": list(grant.train_tasks),
        "max_rounds": grant.max_rounds,
        "max_examples": grant.max_examples,
    }
