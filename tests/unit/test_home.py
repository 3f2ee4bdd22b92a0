"""The home's kept answers: keyed by the plan and every partial's bytes, in order."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pyarrow as pa
import pytest

from federation.outcome import Code, Error
from federation.partials import to_ipc
from federation.sql import parse
from gateway.engine import Engine
from gateway.roles.home import Home


def _partial(keys: list[str], sums: list[int]) -> pa.Table:
    n = pa.array([1] * len(keys), pa.int64())
    c = pa.array([1] * len(keys), pa.int64())
    return pa.table({"g": keys, "__n": n, "__c_x": c, "__s_x": pa.array(sums, pa.int64())})


def test_an_answer_is_kept_per_plan_and_partial_bytes_and_never_when_noisy() -> None:
    engine = Engine(1)
    # Only the engine's empty scratch database is used by the merge (HAVING and the like).
    home = Home("home", None, None, None, None, None, engine.run_on_table, 1 << 22)  # type: ignore[arg-type]
    plan = parse("SELECT g, SUM(x) AS s FROM t GROUP BY g ORDER BY g")
    a, b = _partial(["p", "q"], [1, 2]), _partial(["p"], [10])
    pa_, pb_ = to_ipc(a), to_ipc(b)
    try:
        first, first_ipc = home._answer(plan, [a, b], [pa_, pb_], noisy=False)
        assert first.to_pylist() == [{"g": "p", "s": 11}, {"g": "q", "s": 2}]
        again, again_ipc = home._answer(plan, [a, b], [pa_, pb_], noisy=False)
        assert again is first and again_ipc == first_ipc  # kept
        swapped, _ = home._answer(plan, [b, a], [pb_, pa_], noisy=False)
        assert swapped is not first and swapped.equals(first)  # another key, same content
        c = _partial(["p"], [20])
        other, _ = home._answer(plan, [a, c], [pa_, to_ipc(c)], noisy=False)
        assert other.to_pylist()[0]["s"] == 21
        other_plan = parse("SELECT g, SUM(x) AS s FROM t GROUP BY g ORDER BY g DESC")
        desc, _ = home._answer(other_plan, [a, b], [pa_, pb_], noisy=False)
        assert [r["g"] for r in desc.to_pylist()] == ["q", "p"]
        noisy1, _ = home._answer(plan, [a, b], [pa_, pb_], noisy=True)
        noisy2, _ = home._answer(plan, [a, b], [pa_, pb_], noisy=True)
        assert noisy1 is not noisy2 and noisy1 is not first  # computed, never kept
    finally:
        engine.close()


class _Vouching:
    def sign(self, env):  # type: ignore[no-untyped-def]
        return env

    def check_own_user(self, caller) -> None:  # type: ignore[no-untyped-def]
        pass  # the caller's organisation is the home's (tested with real nodes)


class _Receipts:
    def __init__(self) -> None:
        self.kept: list[tuple[list, dict]] = []

    def keep(self, request_id, kept, entry) -> None:  # type: ignore[no-untyped-def]
        self.kept.append((kept, entry))

    def problem(
        self,
        receipt: str,
        owner: str,
        request_id: str,
        covering: object = None,
        asked: object = None,
    ) -> str:
        return ""  # the receipts' own checks: tests/unit/test_receipt_store.py


@contextlib.contextmanager
def _home(membership: object, ask: object, limit: int = 1 << 22) -> Iterator[Home]:
    """A home over fakes of its vouching and receipts, asking owners through ``ask``."""
    from concurrent.futures import ThreadPoolExecutor

    engine = Engine(1)
    pool = ThreadPoolExecutor(4)
    fakes = (_Vouching(), ask, pool, _Receipts())
    try:
        yield Home("home", lambda: membership, *fakes, engine.run_on_table, limit)  # type: ignore[arg-type]
    finally:
        pool.shutdown()
        engine.close()


def test_a_new_question_skips_the_check_round_only_where_every_owner_said_nothing_spends() -> None:
    """The check round (decide everywhere, release nowhere) guards budgets; it costs a
    round trip per question. Where every owner said in its last answer that no grant the
    requester could use on the dataset spends budget or uses, a new question on that
    dataset goes straight to the release; where one owner did not say so, every question
    is checked first."""

    from federation.envelope import Requester
    from federation.membership import Member, Membership
    from federation.reports import OwnerReport, PartialAnswer
    from gateway.roles.home import QueryAsk

    members = (
        Member("home", "H", "127.0.0.1:1", "province"),
        Member("a", "A", "127.0.0.1:2", "province"),
        Member("b", "B", "127.0.0.1:3", "province"),
    )
    membership = Membership("f", 1, "2026-01-01T00:00:00Z", members)
    payload = to_ipc(pa.table({"__n": pa.array([7], pa.int64())}))
    says_free = {"home": True, "a": True, "b": True}
    checks: list[str] = []

    def ask(member, env):  # type: ignore[no-untyped-def]
        if env.check:
            checks.append(member.id)
            return PartialAnswer(member.id, True, owners=(OwnerReport(member.id),))
        report = OwnerReport(member.id, receipt="r", no_spend=says_free[member.id])
        return PartialAnswer(member.id, True, payload=payload, owners=(report,))

    analyst = Requester("analyst", "li", "H")
    with _home(membership, ask) as home:
        deadline = time.monotonic() + 60
        home.query(QueryAsk("SELECT COUNT(*) FROM t"), analyst, deadline)
        assert sorted(checks) == ["a", "b", "home"]  # never seen: checked first
        checks.clear()
        home.query(QueryAsk("SELECT COUNT(*) FROM t WHERE x > 1"), analyst, deadline)
        assert checks == []  # a new text on the same dataset: straight to the release
        home.query(QueryAsk("SELECT COUNT(*) FROM u"), analyst, deadline)
        assert sorted(checks) == ["a", "b", "home"]  # another dataset: checked
        checks.clear()
        says_free["b"] = False  # b could spend (a DP grant, or one with uses)
        home.query(QueryAsk("SELECT COUNT(*) FROM t WHERE x > 2"), analyst, deadline)
        assert checks == []  # still known free until b's answer said otherwise
        home.query(QueryAsk("SELECT COUNT(*) FROM t WHERE x > 3"), analyst, deadline)
        assert sorted(checks) == ["a", "b", "home"]


def test_an_owner_out_of_time_is_deadline_exceeded_not_unavailable() -> None:
    """Review (2026-12-04): an owner's own DEADLINE_EXCEEDED (it keeps a reserve of the
    time, so it arrives before the home's deadline) was told as the owner being down."""

    from federation.envelope import Requester
    from federation.membership import Member, Membership
    from federation.reports import OwnerReport, PartialAnswer
    from gateway.errors import DeadlineExceeded, Unavailable
    from gateway.roles.home import QueryAsk

    members = (
        Member("home", "H", "127.0.0.1:1", "province"),
        Member("slow", "S", "127.0.0.1:2", "province"),
        Member("down", "D", "127.0.0.1:3", "province"),
    )
    membership = Membership("f", 1, "2026-01-01T00:00:00Z", members)
    failing = {"slow": Code.DEADLINE_EXCEEDED}

    def ask(member, env):  # type: ignore[no-untyped-def]
        if member.id in failing:
            error = Error(failing[member.id], "the local engine ran out of time")
            return PartialAnswer(member.id, True, owners=(OwnerReport(member.id, error=error),))
        return PartialAnswer(member.id, True, owners=(OwnerReport(member.id),))

    analyst = Requester("analyst", "li", "H")
    with _home(membership, ask) as home:
        deadline = time.monotonic() + 60
        with pytest.raises(DeadlineExceeded, match="owner slow did not answer in time"):
            home.query(QueryAsk("SELECT COUNT(*) FROM t"), analyst, deadline)
        failing.clear()
        failing["down"] = Code.UNAVAILABLE
        with pytest.raises(Unavailable, match="owner down is unavailable"):
            home.query(QueryAsk("SELECT COUNT(*) FROM t"), analyst, deadline)


def test_an_answer_over_the_message_limit_is_refused_and_the_releases_kept() -> None:
    """Review (2026-12-05): each owner's partial fits its message, but the union of their
    groups need not; the answer failed at gRPC's send after being recorded as given. Now
    it is RESOURCE_EXHAUSTED, recorded as failed with every owner's receipt."""
    from federation.envelope import Requester
    from federation.membership import Member, Membership
    from federation.reports import OwnerReport, PartialAnswer
    from gateway.errors import ResourceExhausted
    from gateway.roles.home import QueryAsk

    members = tuple(Member(n, n, f"127.0.0.{i + 1}:1", "province") for i, n in enumerate("ab"))
    limit = 64 * 1024

    def ask(member, env):  # type: ignore[no-untyped-def]
        keys = [f"{member.id}-{i:05d}" for i in range(2500)]  # each its own groups
        payload = to_ipc(pa.table({"g": keys, "__n": pa.array([9] * len(keys), pa.int64())}))
        assert len(payload) < limit
        report = OwnerReport(member.id, receipt=f"receipt of {member.id}", no_spend=True)
        return PartialAnswer(member.id, True, payload=payload, owners=(report,))

    analyst = Requester("analyst", "li", "a")
    with _home(Membership("f", 1, "2026-01-01T00:00:00Z", members), ask, limit) as home:
        with pytest.raises(ResourceExhausted, match="the answer is .* bytes, over the 65,536"):
            home.query(
                QueryAsk("SELECT g, COUNT(*) AS n FROM t GROUP BY g", allow_partial=True),
                analyst,
                time.monotonic() + 60,
            )
        kept, entry = home.receipts.kept[-1]  # type: ignore[attr-defined]
    assert entry["kind"] == "query.failed" and entry["code"] == "RESOURCE_EXHAUSTED"
    assert sorted(kept) == [("a", "receipt of a"), ("b", "receipt of b")]


def test_no_owner_contributing_is_recorded_with_the_receipts_kept() -> None:
    """Review (2026-12-05): "no owner contributed to the result" was raised before any
    record: no query.failed entry, and the receipts of owners that did release (and
    spend) were dropped."""
    from federation.envelope import Requester
    from federation.membership import Member, Membership
    from federation.reports import OwnerReport, PartialAnswer
    from gateway.errors import Unavailable
    from gateway.roles.home import QueryAsk

    members = tuple(Member(n, n, f"127.0.0.{i + 1}:1", "province") for i, n in enumerate("ab"))

    def ask(member, env):  # type: ignore[no-untyped-def]
        report = OwnerReport(member.id, receipt=f"receipt of {member.id}", no_spend=True)
        return PartialAnswer(member.id, True, owners=(report,))  # no partial behind it

    analyst = Requester("analyst", "li", "a")
    with _home(Membership("f", 1, "2026-01-01T00:00:00Z", members), ask) as home:
        with pytest.raises(Unavailable, match="no owner contributed"):
            home.query(QueryAsk("SELECT COUNT(*) FROM t"), analyst, time.monotonic() + 60)
        kept, entry = home.receipts.kept[-1]  # type: ignore[attr-defined]
    assert entry["kind"] == "query.failed" and entry["code"] == "UNAVAILABLE"
    assert sorted(kept) == [("a", "receipt of a"), ("b", "receipt of b")]
