"""One training message as one owner's release (``release.pipeline``).

Every Flower message a run's home sends is decided again under the owner's own grants
(the grant may have been revoked, used up or expired since the last round), computed by
the built-in ClientApp on exactly the granted columns, and released through the same
spend → audit → sign steps as a query: one audit entry and one receipt per round joined.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from federation.envelope import Envelope
from federation.reports import Explanation
from gateway.catalog import CatalogEntry
from gateway.clock import utc
from gateway.policy.model import Decision
from gateway.policy.store import GrantStore
from gateway.policy.train import decide_train, train_roles
from gateway.release.pipeline import Protected
from gateway.training.spec import TrainSpec


@dataclass(frozen=True)
class Step:
    """What the home asked in this message."""

    kind: str  # train | evaluate | query.stats
    round: int  # Flower's group id (the server round); 0 for the statistics


class TrainRelease:
    name = "train"
    once_per_request = False  # one release per message of a run (check_order)
    noises_in_compute = True  # an update is clipped and noised as it is trained

    def __init__(
        self,
        spec: TrainSpec,
        step: Step,
        entry: CatalogEntry,
        grants: GrantStore,
        run: Callable[[Decision, float], Protected],
    ) -> None:
        self.spec = spec
        self.step = step
        self.entry = entry
        self.grants = grants
        self._run = run

    @property
    def subject(self) -> Mapping[str, str]:
        return {
            "dataset": self.spec.dataset,
            "task": self.spec.task,
            "step": self.step.kind,
            "round": str(self.step.round),
        }

    def decide(self, env: Envelope) -> Decision:
        desc = self.entry.descriptor
        return decide_train(
            self.grants.list(desc.name),
            desc,
            self.spec.features,
            self.spec.label,
            env.requester,
            env.home_node,
            env.purpose,
            utc(),
            task=self.spec.task,
            rounds=self.spec.rounds,
            dp=self.spec.dp_clip > 0,
            charges=not self.step.kind.startswith("secagg."),  # its keys, shares: no noise
        )

    def explain(self, decision: Decision) -> Explanation:
        g = decision.grant
        return Explanation(
            grant_id=g.id,
            level=decision.level,
            min_group_size=decision.min_group_size,
            epsilon=decision.epsilon,
            columns=train_roles(self.entry.descriptor, (*self.spec.features, self.spec.label)),
            budget_left=g.dp_budget - g.epsilon_spent if g.uses_dp else None,
        )

    def compute(self, decision: Decision, deadline: float) -> Protected:
        return self._run(decision, deadline)

    def protect(self, computed: Protected, decision: Decision) -> Protected:
        return computed
