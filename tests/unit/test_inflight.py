"""Releases in flight hold their share of a grant's uses and budget from the decision to
the spend (review, 2026-12-04: five PSI sessions decided at once under a grant of one use
all exchanged their points; four were refused only at the spend)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import ResourceExhausted
from gateway.policy import Decision, GrantStore
from gateway.release.inflight import InFlight
from gateway.state import State
from tests.unit.test_policy_decide import NOW, dp, make_grant


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GrantStore]:
    state = State(tmp_path / "state.db")
    yield GrantStore(state)
    state.close()


def _spend(store: GrantStore, grant_id: str, epsilon: float) -> None:
    grant = store.get(grant_id)
    decision = Decision(grant, 5, epsilon, None, "L2")
    store.spend(decision, lambda: NOW, lambda g, at: {"kind": "release", "grant_id": g.id})


def test_uses_held_in_flight_refuse_a_release_that_would_not_fit(store: GrantStore) -> None:
    grant = store.add(make_grant(id="", created_at=NOW, max_uses=2))
    inflight = InFlight(store)
    full = pytest.raises(ResourceExhausted, match="2 release\\(s\\) in progress")
    with inflight.hold(grant, 0.0):
        with inflight.hold(grant, 0.0), full, inflight.hold(grant, 0.0):  # two uses, two held
            pass
        _spend(store, grant.id, 0.0)  # one of them spent: one use left, one in flight
        with pytest.raises(ResourceExhausted, match="1 use\\(s\\) left"), inflight.hold(grant, 0.0):
            pass
    with inflight.hold(grant, 0.0):  # the one in flight ended unspent: its use is free
        pass
    assert inflight.held() == 0


def test_budget_held_in_flight_refuses_a_release_that_would_not_fit(store: GrantStore) -> None:
    grant = store.add(dp(id="", created_at=NOW, dp_epsilon=0.5, dp_budget=1.0))
    inflight = InFlight(store)
    spent = pytest.raises(ResourceExhausted, match="privacy budget of grant")
    with inflight.hold(grant, 0.5), inflight.hold(grant, 0.5), spent, inflight.hold(grant, 0.5):
        pass
    with inflight.hold(grant, 0.5), inflight.hold(grant, 0.5):  # all ended: all free
        pass
    unlimited = store.add(dataclasses.replace(make_grant(id="", created_at=NOW)))
    for _ in range(3):  # a grant of no limits holds nothing
        with inflight.hold(unlimited, 0.0), inflight.hold(unlimited, 0.0):
            assert inflight.held() == 0


def test_a_spent_release_is_not_counted_twice(store: GrantStore) -> None:
    """Review (2026-12-04): between the spend's commit and the end of its hold, a use was
    counted as spent and as held, and a release that fitted was refused."""
    grant = store.add(make_grant(id="", created_at=NOW, max_uses=2))
    inflight = InFlight(store)
    with inflight.hold(grant, 0.0) as let_go:
        decision = Decision(store.get(grant.id), 5, 0.0, None, "L2")

        def record(g: object, at: str) -> dict:
            let_go()  # as the pipeline does, in the spend's transaction
            return {"kind": "release", "grant_id": grant.id}

        store.spend(decision, lambda: NOW, record)
        with inflight.hold(grant, 0.0):  # one use spent, none held: the last one fits
            assert store.get(grant.id).uses == 1
    assert inflight.held() == 0
