"""Releases in flight hold their share of a grant's uses and budget from the decision to
the spend (review, 2026-12-04: five PSI sessions decided at once under a grant of one use
all exchanged their points; four were refused only at the spend)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from federation.envelope import Envelope
from federation.training.client_app import STATS_MESSAGE
from gateway.catalog import CatalogEntry
from gateway.errors import ResourceExhausted
from gateway.policy import Decision, GrantStore
from gateway.release.inflight import InFlight
from gateway.release.pipeline import Protected
from gateway.release.train import Step, TrainRelease
from gateway.state import State
from gateway.training.spec import TrainSpec
from tests.unit.test_policy_decide import ANALYST, HOME, NOW, dp, make_desc, make_grant


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

        store.spend(decision, lambda: NOW, lambda g, at: {"kind": "release"})
        let_go()  # as the pipeline does, once the spend is committed
        with inflight.hold(grant, 0.0):  # one use spent, none held: the last one fits
            assert store.get(grant.id).uses == 1
    assert inflight.held() == 0


def test_a_use_being_committed_stays_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review (2026-12-05): the pipeline let the hold go inside the spend's transaction,
    before its commit, while decisions read only committed uses: a release of a one-use
    grant decided meanwhile was admitted (and computed, or exchanged its points) before
    the spend refused it. Now the hold is let go once the spend is committed: a decision
    made while the release entry is written (in the transaction) is refused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gateway.descriptor import ColumnSpec, DatasetDescriptor
    from gateway.release import pipeline
    from tests.unit.owner_parts import OPERATOR, org_grant, owner_parts
    from tests.unit.test_dp_withheld import ORG as org
    from tests.unit.test_dp_withheld import _env

    with owner_parts(tmp_path) as parts:
        path = parts.data / "t.parquet"
        pq.write_table(pa.table({"g": [f"g{i % 3}" for i in range(60)]}), path)
        desc = DatasetDescriptor(
            "t", "T", "groups", "test", "L1", "static", str(path), "parquet",
            (ColumnSpec("g", "string"),),
        )  # fmt: skip
        parts.catalog.register(desc, by=OPERATOR, when="2026-01-01T00:00:00Z")
        grant = parts.grants.add(org_grant("t", org, {"g": ("group_by",)}, max_uses=1))
        admitted: list[bool] = []
        real = pipeline.release_entry

        def entry_meanwhile(*args: object) -> dict:
            try:  # another release decided while this one is in its transaction
                with parts.owner.pipeline.inflight.hold(parts.grants.get(grant.id), 0.0):
                    admitted.append(True)
            except ResourceExhausted:
                admitted.append(False)
            return real(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(pipeline, "release_entry", entry_meanwhile)
        env = _env("SELECT g, COUNT(*) AS n FROM t GROUP BY g", 20)
        (report,) = parts.owner.execute(env).owners
        assert report.error is None
        assert admitted == [False]
        assert parts.owner.pipeline.inflight.held() == 0
        assert parts.grants.get(grant.id).uses == 1


def _never(decision: Decision, deadline: float) -> Protected:
    raise AssertionError("only decided")


def test_a_secagg_run_with_a_budget_of_exactly_its_charges_ends(store: GrantStore) -> None:
    """Review (DP): every SecAgg+ message is decided again, and its setup, key sharing and
    unmask, which charge nothing, still needed a whole ``dp_epsilon`` of room: a run under
    a budget of exactly (1 + R) x epsilon (the statistics and R rounds' updates) spent it
    all and was refused at its last unmask. A step is decided with what it charges."""
    rounds, epsilon = 2, 0.5
    desc = make_desc("L2", revenue="L3")
    grant = store.add(
        dp(id="", created_at=NOW, train_tasks=("logreg",), dp_budget=(1 + rounds) * epsilon)
    )
    spec = TrainSpec(
        task="logreg", dataset="firms", features=("industry", "revenue"), label="high_tech",
        n_classes=2, nodes=("anhui",), rounds=rounds, dp_clip=1.0, secagg=True,
    )  # fmt: skip
    entry = cast(CatalogEntry, SimpleNamespace(descriptor=desc))
    env = cast(Envelope, SimpleNamespace(requester=ANALYST, home_node=HOME, purpose=""))
    inflight = InFlight(store)
    steps = [Step(STATS_MESSAGE, 0)] + [
        Step(kind, r)
        for r in range(1, rounds + 1)
        for kind in ("secagg.setup", "secagg.share_keys", "train", "secagg.unmask")
    ]
    held = []
    for step in steps:
        charge = epsilon if step.kind in (STATS_MESSAGE, "train") else 0.0  # what it spends
        decision = TrainRelease(spec, step, entry, store, _never).decide(env)
        with inflight.hold(decision.grant, decision.epsilon):
            _spend(store, grant.id, charge)
        held.append((decision.epsilon, charge))
    assert all(h == c for h, c in held)  # each held in flight what it charges
    assert store.get(grant.id).epsilon_spent == pytest.approx((1 + rounds) * epsilon)
    with pytest.raises(ResourceExhausted):  # and nothing more that charges
        TrainRelease(spec, Step("train", 3), entry, store, _never).decide(env)
