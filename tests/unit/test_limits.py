"""The edge's limits (gateway/limits.py): streams, calls in progress, rates; all bounded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse
from gateway.errors import ConfigError, ResourceExhausted
from gateway.limits import (
    DEFAULT_RATES,
    RATED,
    Limiter,
    LimitExceeded,
    LimitSettings,
    Rate,
    RefusalReports,
    TokenBuckets,
)
from gateway.status import details_metadata

QUERY = RATED["Query"]
WATCH = "/grpc.health.v1.Health/Watch"
EXCHANGE = RATED["PsiExchange"]
CATALOG = "/fedgate.v1.Gateway/Catalog"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock | None = None, **settings: Any) -> Limiter:
    return Limiter(LimitSettings(**settings), clock or Clock())


def refused(call: Callable[[], object], limit: str) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as info:
        call()
    assert info.value.limit == limit and info.value.details["limit"] == limit
    assert isinstance(info.value, ResourceExhausted)
    return info.value


def test_defaults_scale_with_the_workers() -> None:
    s = LimitSettings.for_workers(16)
    assert (s.streams_per_caller, s.streams, s.calls_per_caller, s.calls) == (2, 4, 8, 64)
    assert s.calls_per_node == 12 and s.streams_per_node == 3
    assert s.stream_max_seconds == 600 and s.callers == 10_000
    assert dict(s.rates) == dict(DEFAULT_RATES)
    tiny = LimitSettings.for_workers(2)
    assert (tiny.streams_per_caller, tiny.streams, tiny.calls_per_caller) == (1, 1, 1)
    assert tiny.calls_per_node == tiny.streams_per_node == 1
    # a caller at its most, and every stream slot taken, leave a quarter of the threads
    assert s.calls_per_caller + s.streams <= 16 - 16 // 4


def test_streams_per_caller_then_per_node_and_slots_come_back() -> None:
    lim = limiter(streams_per_caller=2, streams=3)
    a1, a2 = lim.open_stream("analyst:a", EXCHANGE), lim.open_stream("analyst:a", EXCHANGE)
    err = refused(lambda: lim.open_stream("analyst:a", EXCHANGE), "streams_per_caller")
    assert str(err) == "too many open streams from analyst:a; close one (at most 2 per caller)"
    b1 = lim.open_stream("analyst:b", EXCHANGE)
    err = refused(lambda: lim.open_stream("analyst:c", EXCHANGE), "streams")
    assert "too many open streams on this node (at most 3)" in str(err)
    assert lim.open_streams() == 3 and lim.open_streams("analyst:a") == 2
    a1.release()
    a1.release()  # once only
    assert lim.open_streams() == 2 and lim.open_streams("analyst:a") == 1
    c1 = lim.open_stream("analyst:c", EXCHANGE)
    for t in (a2, b1, c1):
        t.release()
    assert lim.open_streams() == 0 and lim.open_streams("analyst:a") == 0


def test_idle_monitoring_streams_take_at_most_half_the_nodes_slots() -> None:
    """Review (2026-12-04, night): two users' idle health watches filled the node's four
    slots, and PSI between nodes, training and exports were refused."""
    lim = limiter(streams_per_caller=2, streams=4)
    watches = [lim.open_stream("analyst:a", WATCH), lim.open_stream("analyst:b", WATCH)]
    err = refused(lambda: lim.open_stream("analyst:c", WATCH), "streams")
    assert "too many open health and reflection streams on this node (at most 2)" in str(err)
    reflect = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    refused(lambda: lim.open_stream("analyst:c", reflect), "streams")
    work = [lim.open_stream("node:jiangsu", EXCHANGE), lim.open_stream("node:anhui", EXCHANGE)]
    assert lim.open_streams() == 4
    watches[0].release()
    again = lim.open_stream("analyst:c", WATCH)  # its slot came back
    for t in (watches[1], again, *work):
        t.release()
    assert lim.open_streams() == 0
    single = limiter(streams_per_caller=1, streams=1)
    single.open_stream("analyst:a", WATCH).release()  # a node of one slot still watches


def test_a_member_node_may_hold_more_streams_than_one_user() -> None:
    """Review (2026-12-05): an owner counted a home's PsiRun streams (and a matcher's
    PsiExchange streams) against one caller, ``node:H``, at the user's 2: one analyst's
    two PSI sessions (or joins) took all of its home's slots at the owner for up to 590 s,
    and every other analyst of H was refused. A member node now has a share larger than
    the one its home lets each user hold."""
    lim = Limiter(LimitSettings.for_workers(16))
    run = RATED["PsiRun"]
    users = lim.settings.streams_per_caller
    held = [lim.open_stream("node:home", run, node=True) for _ in range(users)]
    held.append(lim.open_stream("node:home", run, node=True))  # another user's session
    err = refused(lambda: lim.open_stream("node:home", run, node=True), "streams_per_node")
    assert str(err) == "too many open streams from node:home; close one (at most 3 per node)"
    assert lim.open_streams("node:home") == 3 > users
    held.append(lim.open_stream("node:other", run, node=True))  # the last slot: another home
    for t in held:
        t.release()
    # a user still has the user's share
    mine = [lim.open_stream("analyst:a", run) for _ in range(users)]
    refused(lambda: lim.open_stream("analyst:a", run), "streams_per_caller")
    for t in mine:
        t.release()
    assert lim.open_streams() == 0 and lim.open_streams("analyst:a") == 0


def test_one_callers_watch_streams_do_not_refuse_anothers() -> None:
    """Review (2026-12-05): the monitoring pool (half the node's slots, 2) equalled one
    caller's stream share, so one certificate's two idle Watch streams refused every
    other caller's Watch and reflection. A caller now holds less than the pool."""
    lim = Limiter(LimitSettings.for_workers(16))
    assert lim.monitoring_per_caller < lim.monitoring_streams
    mine = lim.open_stream("analyst:a", WATCH)
    err = refused(lambda: lim.open_stream("analyst:a", WATCH), "streams_per_caller")
    assert str(err) == (
        "too many open health and reflection streams from analyst:a; close one (at most 1 "
        "per caller)"
    )
    reflect = "/grpc.reflection.v1/ServerReflection/ServerReflectionInfo"
    refused(lambda: lim.open_stream("analyst:a", reflect), "streams_per_caller")
    theirs = lim.open_stream("analyst:b", reflect)  # another caller is not refused
    work = lim.open_stream("analyst:a", EXCHANGE)  # nor the first caller's other streams
    assert lim.open_streams("analyst:a") == 2
    for t in (mine, theirs, work):
        t.release()
    again = lim.open_stream("analyst:a", WATCH)  # its slot came back
    again.release()
    assert lim.open_streams() == 0 and lim.open_streams("analyst:a") == 0


def test_calls_in_progress_per_caller() -> None:
    lim = limiter(calls_per_caller=2)
    t1, t2 = lim.admit_call("analyst:a", CATALOG), lim.admit_call("analyst:a", CATALOG)
    err = refused(lambda: lim.admit_call("analyst:a", CATALOG), "calls_per_caller")
    assert "too many calls in progress from analyst:a (at most 2 at a time)" in str(err)
    other = lim.admit_call("analyst:b", CATALOG)  # another caller is not held up
    health = [lim.admit_call("analyst:a", "/grpc.health.v1.Health/Check") for _ in range(10)]
    assert lim.calls_in_progress("analyst:a") == 2  # health checks are not counted
    t1.release()
    t3 = lim.admit_call("analyst:a", CATALOG)
    for t in (t2, t3, other, *health):
        t.release()
    assert lim.calls_in_progress("analyst:a") == 0 and lim.tracked() == 0


def test_a_member_node_may_carry_more_calls_than_a_user() -> None:
    """A home node is one caller at each owner for all of its users' queries."""
    lim = limiter(calls_per_caller=2, calls_per_node=3)
    execute = RATED["Execute"]
    held = [lim.admit_call("node:home", execute, node=True) for _ in range(3)]
    err = refused(lambda: lim.admit_call("node:home", execute, node=True), "calls_per_node")
    assert "too many calls in progress from node:home (at most 3 at a time)" in str(err)
    for t in held:
        t.release()
    assert lim.calls_in_progress("node:home") == 0


def test_rate_limit_refuses_with_a_retry_hint_and_refills() -> None:
    clock = Clock()
    lim = limiter(clock, rates={"Query": Rate(2.0, 3)})
    for _ in range(3):
        lim.admit_call("analyst:a", QUERY).release()
    err = refused(lambda: lim.admit_call("analyst:a", QUERY), "rate")
    assert err.details["retry_after_seconds"] == "0.500" and err.details["method"] == "Query"
    assert "too many Query calls from analyst:a (at most 2 per second, bursts of 3)" in str(err)
    assert "retry in 0.500 s" in str(err)
    assert lim.calls_in_progress("analyst:a") == 0  # the refused call gave its slot back
    lim.admit_call("analyst:b", QUERY).release()  # per caller
    clock.now += 0.25
    err = refused(lambda: lim.admit_call("analyst:a", QUERY), "rate")
    assert err.details["retry_after_seconds"] == "0.250"
    clock.now += 0.25
    lim.admit_call("analyst:a", QUERY).release()
    lim.admit_call("analyst:a", CATALOG).release()  # not a rated method


def test_a_rate_limited_stream_gives_its_slot_back() -> None:
    lim = limiter(rates={"AuditExport": Rate(1.0, 1)})
    lim.open_stream("operator:o", RATED["AuditExport"]).release()
    refused(lambda: lim.open_stream("operator:o", RATED["AuditExport"]), "rate")
    assert lim.open_streams() == 0


def test_retry_hint_is_sent_as_trailing_metadata() -> None:
    lim = limiter(rates={"Execute": Rate(1.0, 1)})
    lim.admit_call("node:shanghai", RATED["Execute"]).release()
    err = refused(lambda: lim.admit_call("node:shanghai", RATED["Execute"]), "rate")
    meta = dict(details_metadata(err.details))
    assert meta["fedgate-detail-retry-after-seconds"] == "1.000"
    assert meta["fedgate-detail-limit"] == "rate"
    assert meta["fedgate-detail-method"] == "Execute"


def test_buckets_are_bounded_and_full_ones_expire() -> None:
    clock = Clock()
    buckets = TokenBuckets(capacity=100, clock=clock)
    rate = Rate(10.0, 5)
    for i in range(1000):
        buckets.take((f"analyst:{i}", QUERY), rate)
    assert len(buckets) == 100  # least recently used forgotten first
    buckets.sweep(lambda key: rate)
    assert len(buckets) == 100  # each has 4 of 5 tokens: not full yet
    clock.now += 0.1
    buckets.sweep(lambda key: rate)
    assert len(buckets) == 0  # full again: the same as a new bucket
    buckets.take(("analyst:x", QUERY), rate)
    buckets.sweep(lambda key: None)  # a method no longer rated
    assert len(buckets) == 0


def test_limiter_entries_expire() -> None:
    clock = Clock()
    lim = limiter(clock, callers=100, rates={"Query": Rate(100.0, 10)})
    for i in range(500):
        lim.admit_call(f"analyst:{i}", QUERY).release()
    assert lim.tracked() == 100
    clock.now += 1.0
    lim.sweep()
    assert lim.tracked() == 0


def test_refusals_are_reported_once_per_window_with_the_count() -> None:
    clock = Clock()
    reports = RefusalReports(capacity=3, window=60.0, clock=clock)
    assert reports.note("analyst:a", "rate") == 0
    assert [reports.note("analyst:a", "rate") for _ in range(5)] == [None] * 5
    assert reports.note("analyst:a", "streams_per_caller") == 0  # another limit
    clock.now += 60.0
    assert reports.note("analyst:a", "rate") == 5  # the next report carries the count
    reports.note("analyst:a", "rate")
    clock.now += 60.0
    assert sorted(reports.sweep()) == [("analyst:a", "rate", 1)]
    assert len(reports) == 0
    for i in range(10):
        reports.note(f"analyst:{i}", "rate")
    assert len(reports) == 3


def _raw(tmp_path: Path, limits: dict | None = None, workers: int | None = None) -> dict:
    for name in ("ca.pem", "node.pem", "node.key", "membership.json"):
        (tmp_path / name).write_text("x")
    raw: dict = {
        "node": {"id": "anhui", "listen": "127.0.0.1:7000", "data_dir": "data"},
        "tls": {"ca": "ca.pem", "cert": "node.pem", "key": "node.key"},
        "federation": {"membership": "membership.json"},
    }
    if workers is not None:
        raw["node"]["workers"] = workers
    if limits is not None:
        raw["limits"] = limits
    return raw


def test_config_defaults_follow_the_workers(tmp_path: Path) -> None:
    assert parse(_raw(tmp_path), base=tmp_path).limits == LimitSettings.for_workers(16)
    cfg = parse(_raw(tmp_path, workers=32), base=tmp_path)
    assert (cfg.limits.streams, cfg.limits.calls_per_caller, cfg.limits.calls) == (8, 16, 128)
    assert cfg.limits.calls_per_node == 24 and cfg.limits.streams_per_node == 6
    assert parse(_raw(tmp_path, workers=2), base=tmp_path).limits.streams_per_caller == 1
    # one worker, or streams that could hold them all, would let one idle stream freeze it
    with pytest.raises(ConfigError, match="node.workers must be between 2 and 256"):
        parse(_raw(tmp_path, workers=1), base=tmp_path)
    with pytest.raises(ConfigError, match="limits.streams must be between 1 and 15"):
        parse(_raw(tmp_path, limits={"streams": 16}), base=tmp_path)


def test_config_sets_limits_and_rates(tmp_path: Path) -> None:
    raw = _raw(
        tmp_path,
        {
            "streams_per_caller": 1,
            "streams_per_node": 2,
            "streams": 2,
            "calls_per_caller": 3,
            "calls_per_node": 5,
            "calls": 40,
            "stream_max_seconds": 5,
            "callers": 500,
            "rates": {"Query": {"per_second": 0.5, "burst": 2}, "Execute": {"burst": 7}},
        },
    )
    lim = parse(raw, base=tmp_path).limits
    assert (lim.streams_per_caller, lim.streams, lim.calls_per_caller, lim.calls) == (1, 2, 3, 40)
    assert lim.stream_max_seconds == 5.0 and lim.callers == 500 and lim.calls_per_node == 5
    assert lim.streams_per_node == 2
    # left out, it follows the streams given: three quarters, at least a user's share
    assert parse(_raw(tmp_path, {"streams": 8}), base=tmp_path).limits.streams_per_node == 6
    assert parse(_raw(tmp_path, {"streams": 2}), base=tmp_path).limits.streams_per_node == 2
    assert lim.rates["Query"] == Rate(0.5, 2)
    assert lim.rates["Execute"] == Rate(DEFAULT_RATES["Execute"].per_second, 7)
    assert lim.rates["AuditExport"] == DEFAULT_RATES["AuditExport"]


@pytest.mark.parametrize(
    "limits, message",
    [
        ({"streams": 0}, "limits.streams must be between 1 and 15"),
        ({"streams": 2, "streams_per_caller": 3}, "limits.streams_per_caller must be between"),
        ({"streams": 2, "streams_per_node": 3}, "limits.streams_per_node must be between 1 and 2"),
        ({"calls_per_caller": 17}, "limits.calls_per_caller must be between 1 and 16"),
        ({"calls_per_node": 0}, "limits.calls_per_node must be between 1 and 16"),
        ({"calls": 8}, "limits.calls must be between 16 and"),
        ({"stream_max_seconds": 0}, "limits.stream_max_seconds must be between"),
        ({"callers": "x"}, "limits.callers must be an integer"),
        ({"rates": 3}, "limits.rates must be a table"),
        ({"rates": {"Catalog": {"burst": 1}}}, r"unknown method limits.rates.Catalog \(rated: "),
        ({"rates": {"Query": 5}}, "limits.rates.Query must be a table"),
        ({"rates": {"Query": {"burst": 0}}}, r"limits.rates.Query.burst must be between"),
        ({"rates": {"Query": {"per_second": 0}}}, r"limits.rates.Query.per_second must be in"),
        (
            {"rates": {"Query": {"per_sec": 5}}},  # was "must be a table": it is one
            r"unknown field limits.rates.Query.per_sec \(known: per_second, burst\)",
        ),
        ({"callers": True}, "limits.callers must be an integer, got true$"),  # not True
        ({"callers": 5}, "limits.callers must be between 100 and 1000000$"),  # not 1e+06
        ({"nope": 1}, "unknown field limits.nope"),
    ],
)
def test_bad_limits_name_the_field(tmp_path: Path, limits: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(_raw(tmp_path, limits), base=tmp_path)


def test_a_unary_call_held_as_a_stream_takes_a_slot_and_ends_with_the_edges_reason() -> None:
    """Review (2026-12-04, night): a join's PSI session ran up to ten minutes inside a unary
    Query, checked once when it began; now it is held as a Psi stream (its rate, a slot,
    the edge's per-second re-check)."""
    import threading

    from gateway.edge import CallContext, OpenStream
    from gateway.errors import Cancelled, Unauthenticated
    from gateway.identity import Identity

    class GrpcContext:  # gRPC's server context: only what the edge uses here
        def add_callback(self, _callback: Callable[[], None]) -> bool:
            return True

    lim = limiter(streams_per_caller=1, streams=2)
    caller = Identity("analyst", "a@b", "Org", "1f", None)  # type: ignore[arg-type]
    grpc_context: Any = GrpcContext()
    held: list[OpenStream] = []

    def hold(method: str) -> OpenStream:
        held.append(OpenStream(lim.open_stream(str(caller), method), caller, method, grpc_context))
        return held[-1]

    call = CallContext(grpc_context, caller, hold=hold, let_go=lambda s: s.ticket.release())
    psi = RATED["Psi"]
    with call.as_stream(psi):
        assert lim.open_streams(str(caller)) == 1
        refused(lambda: lim.open_stream(str(caller), psi), "streams_per_caller")
    assert lim.open_streams() == 0
    with pytest.raises(Unauthenticated, match="revoked"), call.as_stream(psi):
        stop = threading.Event()
        call.add_callback(stop.set)
        held[-1].end(Unauthenticated("certificate 1f of analyst:a@b has been revoked"))
        assert stop.is_set()  # the session sees it at its next check ...
        raise Cancelled("the session was cancelled")  # ... and stops
    assert lim.open_streams() == 0
