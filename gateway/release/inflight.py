"""Releases decided and not yet spent, per grant: what a grant's uses and budget must
still hold while their computations run.

A release is decided, computed, then spent; the spend re-checks the grant, so a grant
never goes over its uses or budget. But the computation runs between the two: five PSI
sessions decided at once under a grant of one use all exchanged their points, and four
were refused only at the spend (review, 2026-12-04). So a release that counts against a
limit holds its share from the decision to the spend, and one that would not fit beside
those already held is refused before anything is computed. The memory is the node's
process (a restart ends every release in flight) and has one entry per grant in use.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator

from gateway.errors import ResourceExhausted
from gateway.policy.budget import add_epsilon, within_budget
from gateway.policy.model import Grant
from gateway.policy.store import GrantStore


class InFlight:
    def __init__(self, grants: GrantStore) -> None:
        self._grants = grants
        self._lock = threading.Lock()
        self._held: dict[str, list[float]] = {}  # grant id -> each release's epsilon

    @contextlib.contextmanager
    def hold(self, grant: Grant, epsilon: float) -> Iterator[Callable[[], None]]:
        """Hold one use and ``epsilon`` of ``grant`` for the block (a release's compute
        and spend), or refuse if that and the releases in flight would not fit. The block
        gets a function that lets the hold go early: the pipeline calls it as soon as the
        spend is committed, so that a committed use is counted twice (spent and held) for
        no longer than that, and an uncommitted one never goes uncounted."""
        if not grant.max_uses and not grant.uses_dp:
            yield lambda: None
            return
        with self._lock:
            current = self._grants.get(grant.id)  # what is spent now, not at the decision
            held = self._held.get(grant.id, [])
            if current.max_uses and current.uses + len(held) + 1 > current.max_uses:
                raise ResourceExhausted(
                    f"grant {grant.id} has {current.max_uses - current.uses} use(s) left and "
                    f"{len(held)} release(s) in progress hold them: try again when they end"
                )
            spent = functools.reduce(add_epsilon, held, current.epsilon_spent)
            if current.uses_dp and not within_budget(spent, epsilon, current.dp_budget):
                raise ResourceExhausted(
                    f"the privacy budget of grant {grant.id} left beside the {len(held)} "
                    "release(s) in progress does not hold this one: try again when they end"
                )
            self._held[grant.id] = [*held, epsilon]
        gone = False

        def let_go() -> None:
            nonlocal gone
            with self._lock:
                if gone:
                    return
                gone = True
                rest = self._held.pop(grant.id)
                rest.remove(epsilon)
                if rest:
                    self._held[grant.id] = rest

        try:
            yield let_go
        finally:
            let_go()

    def held(self) -> int:
        """Grants with a release in flight (the memory's size)."""
        with self._lock:
            return len(self._held)
