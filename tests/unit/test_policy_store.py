"""GrantStore: grants in SQLite, every change audited in the same transaction."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import FailedPrecondition, NotFound, PermissionDenied, ResourceExhausted
from gateway.policy import Decision, Grant, GrantStore
from gateway.state import State
from tests.unit.test_policy_decide import NOW, dp, make_grant


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    s = State(tmp_path / "state.db")
    yield s
    s.close()


def audit(state: State) -> list[dict[str, Any]]:
    with state.read() as db:
        return [json.loads(r[0]) for r in db.execute("SELECT body FROM audit ORDER BY seq")]


def test_add_get_list_round_trip_with_an_audit_entry(state: State) -> None:
    store = GrantStore(state)
    written = store.add(make_grant(id="", created_at=NOW, purpose="research"), actor="op")
    assert written.id.startswith("g-")
    assert store.get(written.id) == written
    assert store.list("firms") == [written] and store.list("other") == []
    (entry,) = audit(state)
    assert entry["kind"] == "grant.written" and entry["grant_id"] == written.id
    assert entry["actor"] == "op" and entry["columns"]["code"] == list(written.columns["code"])
    with pytest.raises(NotFound):
        store.get("g-nope")


def test_revoke_once(state: State) -> None:
    store = GrantStore(state)
    g = store.add(make_grant(created_at=NOW))
    assert store.revoke(g.id, NOW, actor="op").status(NOW) == "revoked"
    with pytest.raises(FailedPrecondition, match="already revoked"):
        store.revoke(g.id, NOW)
    with pytest.raises(NotFound):
        store.revoke("g-nope", NOW)
    assert [e["kind"] for e in audit(state)] == ["grant.written", "grant.revoked"]


def test_expiry_is_logged_once(state: State) -> None:
    store = GrantStore(state)
    store.add(make_grant(id="g-old", created_at=NOW, expires="2025-05-01T00:00:00Z"))
    store.add(make_grant(id="g-new", created_at=NOW, expires="2026-01-01T00:00:00Z"))
    assert store.log_expired(NOW) == 1 and store.log_expired(NOW) == 0
    assert audit(state)[-1]["grant_id"] == "g-old"


def at_now() -> str:
    return NOW


def release(g: Grant, at: str) -> dict[str, Any]:
    return {"kind": "release", "time": at, "grant_id": g.id, "uses": g.uses}


def test_spend_counts_uses_and_epsilon_with_the_release_entry(state: State) -> None:
    store = GrantStore(state)
    g = store.add(dp(created_at=NOW, max_uses=10))
    decision = Decision(g, 5, 0.5, None, "L3")
    for n in range(1, 5):
        spent, entry = store.spend(decision, at_now, release)
        assert (spent.uses, spent.epsilon_spent) == (n, 0.5 * n)
        assert entry.data == {"kind": "release", "time": NOW, "grant_id": g.id, "uses": n}
    with pytest.raises(ResourceExhausted, match=r"budget of grant g-org is spent \(2 of 2\)"):
        store.spend(decision, at_now, release)
    assert store.get(g.id).uses == 4  # a refused spend changes nothing


def test_spend_checks_the_charged_epsilon_not_the_grants(state: State) -> None:
    store = GrantStore(state)
    g = store.add(dp(created_at=NOW, epsilon_spent=0.0))
    store.spend(Decision(g, 5, 0.5, None, "L3"), at_now, release)
    store.spend(Decision(g, 5, 1.0, None, "L3"), at_now, release)  # 1.5 of 2.0
    with pytest.raises(ResourceExhausted):
        store.spend(Decision(g, 5, 0.75, None, "L3"), at_now, release)


def test_spend_rechecks_the_grant_at_release(state: State) -> None:
    store = GrantStore(state)
    g = store.add(make_grant(created_at=NOW, max_uses=1))
    decision = Decision(g, 5, 0.0, None, "L2")
    store.revoke(g.id, NOW)
    with pytest.raises(PermissionDenied, match="is revoked \\(checked again at release\\)"):
        store.spend(decision, at_now, release)
    gone = Decision(dataclasses.replace(g, id="g-gone"), 5, 0.0, None, "L2")
    with pytest.raises(PermissionDenied, match="g-gone no longer exists"):
        store.spend(gone, at_now, release)


def test_a_grant_id_drawn_twice_is_drawn_again_and_a_given_one_never_replaces(
    state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (2026-12-05): grant ids are 32 random bits and a second draw of a taken id
    failed the INSERT as INTERNAL (an access request's approval with it); an id given
    that a grant already has failed the same way."""
    from gateway.errors import AlreadyExists
    from gateway.policy import store as store_module

    store = GrantStore(state)
    draws = iter(["00000000", "00000000", "00000001"])
    monkeypatch.setattr(store_module.secrets, "token_hex", lambda n: next(draws))
    first = store.add(make_grant(id="", created_at=NOW))
    second = store.add(make_grant(id="", created_at=NOW))
    assert (first.id, second.id) == ("g-00000000", "g-00000001")
    with pytest.raises(AlreadyExists, match="grant g-00000000 exists"):
        store.add(make_grant(id="g-00000000", created_at=NOW, grantee="someone else"))
    assert store.get(first.id) == first
    assert [e["grant_id"] for e in audit(state)] == [first.id, second.id]
