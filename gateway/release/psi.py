"""A PSI session or join aggregate as one owner's release (``release.pipeline``).

Each owner of the two runs its side through the same pipeline as a query: decide under
its own grants (``policy.psi.decide_join_side``), compute (its part of the exchange,
``roles.psi_owner``), then spend, audit and sign. The protocol interleaves protection
with the exchange (the matcher suppresses small groups before it asks for any sum to be
opened; the value owner adds its noise before it opens one), so ``compute`` returns the
protected release and ``protect`` hands it on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from federation.envelope import Envelope
from federation.reports import Explanation
from federation.sql.join import JoinPlan
from gateway.catalog import CatalogEntry
from gateway.clock import utc
from gateway.policy.model import Decision
from gateway.policy.psi import decide_join_side
from gateway.policy.store import GrantStore
from gateway.release.pipeline import Protected


def side_roles(plan: JoinPlan, side: int) -> dict[str, tuple[str, ...]]:
    """How the session uses each column of one side."""
    s = plan.sides[side]
    roles: dict[str, set[str]] = {s.key: {"join_key"}}
    for c in s.filter_columns:
        roles.setdefault(c, set()).add("filter")
    for c in s.group_columns:
        roles.setdefault(c, set()).add("group_by")
    for c in s.value_columns:
        roles.setdefault(c, set()).add("aggregate")
    return {c: tuple(sorted(r)) for c, r in sorted(roles.items())}


class PsiRelease:
    name = "psi"
    once_per_request = False  # replays are refused at admission (psi_sessions)
    noises_in_compute = True  # the matcher's counts are noised as it matches

    def __init__(
        self,
        plan: JoinPlan,
        side: int,
        entry: CatalogEntry,
        grants: GrantStore,
        run: Callable[[Decision, float], Protected],
    ) -> None:
        self.plan = plan
        self.side = side
        self.entry = entry
        self.grants = grants
        self._run = run
        self.roles = side_roles(plan, side)

    @property
    def subject(self) -> Mapping[str, str]:
        me, peer = self.plan.sides[self.side], self.plan.sides[1 - self.side]
        return {
            "dataset": me.dataset,
            "peer": peer.node,
            "peer_dataset": peer.dataset,
            "role": "matcher" if self.side == self.plan.matcher else "responder",
        }

    def decide(self, env: Envelope) -> Decision:
        desc = self.entry.descriptor
        return decide_join_side(
            self.grants.list(desc.name),
            desc,
            self.roles,
            env.requester,
            env.home_node,
            env.purpose,
            utc(),
        )

    def explain(self, decision: Decision) -> Explanation:
        g = decision.grant
        return Explanation(
            grant_id=g.id,
            level=decision.level,
            min_group_size=decision.min_group_size,
            epsilon=decision.epsilon,
            columns=self.roles,
            budget_left=g.dp_budget - g.epsilon_spent if g.uses_dp else None,
        )

    def compute(self, decision: Decision, deadline: float) -> Protected:
        return self._run(decision, deadline)

    def protect(self, computed: Protected, decision: Decision) -> Protected:
        return computed
