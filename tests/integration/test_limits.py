"""Bounded resources at the edge, against real nodes: idle streams cannot starve a node,
one caller cannot take every thread, expensive methods are rate-limited with a retry hint,
and streams do not outlive their caller's certificate nor ``limits.stream_max_seconds``."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.client import Client, ClientError, Profile
from gateway.demo.launcher import NodeProcess, start_node, stop_nodes, wait_serving
from gateway.demo.provision import REGION_DIR, Federation, provision
from gateway.rpc.v1 import gateway_pb2, gateway_pb2_grpc, peer_pb2, peer_pb2_grpc
from gateway.tls import secure_channel
from tests.conftest import RunningFederation, run_fedgate

pytestmark = pytest.mark.integration

WATCH_TIMEOUT = 120.0  # every stream a test opens ends by itself at the latest then


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def channel_as(fed: Federation, node: str, cert: Path, key: Path) -> grpc.Channel:
    return secure_channel(fed.node(node).listen, node, ca=fed.ca_cert, cert=cert, key=key)


def user_channel(fed: Federation, node: str, user: str) -> grpc.Channel:
    p = Profile.load(fed.profile_path(user))
    return channel_as(fed, node, p.cert, p.key)


def watch(channel: grpc.Channel, timeout: float = WATCH_TIMEOUT) -> tuple[object, object]:
    """Open a Health/Watch stream: (the call, its first message or the RpcError)."""
    call = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=""), timeout=timeout
    )
    try:
        return call, next(call)
    except grpc.RpcError as exc:
        return call, exc


def admitted(first: object) -> bool:
    return isinstance(first, health_pb2.HealthCheckResponse)


def refused_for(first: object, limit: str) -> grpc.RpcError:
    assert isinstance(first, grpc.RpcError), first
    call: object = first
    assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, call  # type: ignore[attr-defined]
    meta = dict(call.trailing_metadata() or ())  # type: ignore[attr-defined]
    assert meta.get("fedgate-detail-limit") == limit, meta
    return first


def eventually_admitted(channel: grpc.Channel, seconds: float = 5.0) -> object:
    """A slot given back is back once the node has seen the stream end (asynchronous)."""
    deadline = time.monotonic() + seconds
    while True:
        call, first = watch(channel)
        if admitted(first):
            return call
        refused_for(first, "streams_per_caller")
        assert time.monotonic() < deadline, "the slot did not come back"
        time.sleep(0.1)


def next_status(call: object, seconds: float) -> tuple[grpc.RpcError, float]:
    """Wait (bounded by the call's own timeout) for a stream to end; its error and when."""
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        for _ in range(100):  # Watch sends only on change
            next(call)  # type: ignore[call-overload]
    took = time.monotonic() - t0
    assert took <= seconds, took
    return info.value, took


@contextlib.contextmanager
def cancelled_at_exit(calls: list[object]) -> Iterator[list[object]]:
    try:
        yield calls
    finally:
        for call in calls:
            call.cancel()  # type: ignore[attr-defined]


def catalog_latencies(client: Client, n: int = 200) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        client.catalog()
        out.append(time.perf_counter() - t)
    return out


# --- the session federation (default limits: 2 streams per caller, 4 per node) -----------


def test_64_idle_watch_streams_of_one_caller_leave_another_callers_p99_unchanged(
    federation: RunningFederation,
) -> None:
    """The finding: 16 idle Health/Watch streams from one analyst of another organisation
    froze a node. Now 1 is admitted (and held open: a caller holds less than the node's
    monitoring slots), 63 are refused at once, and another caller's Catalog calls are as
    fast as before."""
    fed = federation.fed
    with (
        federation.client("ops@jiangsu") as other,
        user_channel(fed, "jiangsu", "li.wei@shanghai") as attacker,
    ):
        catalog_latencies(other, 20)  # warm
        before = catalog_latencies(other)
        stub = health_pb2_grpc.HealthStub(attacker)
        request = health_pb2.HealthCheckRequest(service="")
        with cancelled_at_exit([]) as calls:
            # all 64 in flight at once, then read
            calls.extend(stub.Watch(request, timeout=WATCH_TIMEOUT) for _ in range(64))
            firsts = []
            for call in calls:
                try:
                    firsts.append(next(call))  # type: ignore[call-overload]
                except grpc.RpcError as exc:
                    firsts.append(exc)
            held = [c for c, f in zip(calls, firsts, strict=True) if admitted(f)]
            refused = [f for f in firsts if not admitted(f)]
            assert len(held) == 1 and len(refused) == 63
            for err in refused:
                refused_for(err, "streams_per_caller")
                assert (
                    "too many open health and reflection streams from "
                    "analyst:li.wei@shanghai; close one (at most 1 per caller)"
                ) in err.details()  # type: ignore[attr-defined]
            # A noisy 2-core machine (other test runs share it): the best of up to 3
            # rounds of 200 calls, each against the streams still held. A starved node
            # times every round out (20 s a call) or stalls it; a ratio with slack, or
            # some milliseconds either way (the p99 of 200 calls is the third slowest).
            for _ in range(3):
                during = catalog_latencies(other)
                assert all(c.is_active() for c in held)  # type: ignore[attr-defined]
                p99_before, p99_during = pct(before, 0.99) * 1000, pct(during, 0.99) * 1000
                p50_before, p50_during = pct(before, 0.5) * 1000, pct(during, 0.5) * 1000
                print(
                    f"\nCatalog of another caller, 200 sequential calls: p50 {p50_before:.1f} "
                    f"-> {p50_during:.1f} ms, p99 {p99_before:.1f} -> {p99_during:.1f} ms "
                    f"(ratio {p99_during / p99_before:.2f}) with 64 Watch streams opened by "
                    "one analyst (1 held open, 63 refused)"
                )
                p50_ok = p50_during <= 2 * p50_before or p50_during - p50_before <= 5
                p99_ok = p99_during <= 3 * p99_before or p99_during - p99_before <= 100
                if p50_ok and p99_ok:
                    break
            else:
                pytest.fail(
                    f"another caller's Catalog was slower in each of 3 rounds: p50 "
                    f"{p50_before:.1f} -> {p50_during:.1f} ms, p99 {p99_before:.1f} -> "
                    f"{p99_during:.1f} ms"
                )
            # and nothing near a starved node's 20 s: every call of the round in seconds
            assert max(during) < 5.0, max(during)
        # the cancelled streams gave their slots back
        with cancelled_at_exit([eventually_admitted(attacker)]):
            pass


def test_the_node_caps_streams_over_all_callers(
    federation: RunningFederation, tmp_path: Path
) -> None:
    fed = federation.fed
    certs = [
        federation.issue(tmp_path, "analyst", f"s{i}@anhui", fed.node("anhui").org)
        for i in range(3)
    ]
    channels = [channel_as(fed, "wuhu", cert, key) for cert, key in certs]
    try:
        with cancelled_at_exit([]) as calls:
            # Idle health watches may hold half the node's 4 slots (review, 2026-12-04,
            # night: two users' watches locked out PSI between nodes and training); the
            # cap over all stream kinds is tests/unit/test_limits.py's.
            for ch in channels[:2]:
                call, first = watch(ch)
                calls.append(call)
                assert admitted(first), first
            call, first = watch(channels[2])
            err = refused_for(first, "streams")
            assert "too many open health and reflection streams on this node (at most 2)" in (
                err.details()  # type: ignore[attr-defined]
            )
            calls[0].cancel()  # type: ignore[attr-defined]
            deadline = time.monotonic() + 5
            while True:  # one slot back, for anybody
                call, first = watch(channels[2])
                if admitted(first):
                    calls.append(call)
                    break
                assert time.monotonic() < deadline, "the node-wide slot did not come back"
                time.sleep(0.1)
    finally:
        for ch in channels:
            ch.close()


def test_slots_come_back_after_a_deadline_an_error_and_a_reflection_stream(
    federation: RunningFederation,
) -> None:
    fed = federation.fed
    with user_channel(fed, "zhejiang", "zhang.min@anhui") as ch:
        # deadline: a stream that times out after 3 s (the handshake and the two openings
        # below come first, slower on a loaded machine); one caller holds one health or
        # reflection stream
        short = [watch(ch, timeout=3.0)]
        assert all(admitted(first) for _, first in short)
        refused_for(watch(ch)[1], "streams_per_caller")
        for call, _ in short:
            err, _took = next_status(call, 5.0)
            assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with cancelled_at_exit([eventually_admitted(ch)]):
            pass
        # reflection (a stream both ways), idle after its first answer, then cancelled
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        done = threading.Event()  # ends the request streams when the test is over

        def requests() -> Iterator[object]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")
            done.wait(WATCH_TIMEOUT)

        try:
            with cancelled_at_exit([]) as calls:
                deadline = time.monotonic() + 5
                while len(calls) < 1:  # the Watch slot above comes back asynchronously
                    call = stub.ServerReflectionInfo(requests(), timeout=WATCH_TIMEOUT)
                    try:
                        assert next(call).list_services_response.service
                        calls.append(call)
                    except grpc.RpcError as exc:
                        refused_for(exc, "streams_per_caller")
                        assert time.monotonic() < deadline, "the slot did not come back"
                        time.sleep(0.1)
                refused_for(watch(ch)[1], "streams_per_caller")
        finally:
            done.set()
        with cancelled_at_exit([eventually_admitted(ch)]):
            pass
    # error: AuditExport (a stream) refused inside its handler, three times in a row
    with federation.client("ops@anhui", node="jiangsu") as ops:
        for _ in range(3):
            with pytest.raises(ClientError) as info:
                ops.audit_export()
            assert info.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_a_stream_ends_when_its_certificate_is_revoked(
    federation: RunningFederation, tmp_path: Path
) -> None:
    cert, key = federation.issue(tmp_path, "analyst", "watcher@anhui", "Anhui Data")
    with channel_as(federation.fed, "hefei", cert, key) as ch:
        call, first = watch(ch)
        assert admitted(first)
        try:
            result = run_fedgate(
                "ca", "revoke", "--dir", str(federation.fed.ca_dir), "--cert", str(cert)
            )
            assert result.returncode == 0, result.stderr
            err, took = next_status(call, 10.0)
        finally:
            call.cancel()  # type: ignore[attr-defined]
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
    assert "has been revoked" in err.details()
    print(f"\nWatch stream ended {took:.1f} s after the revocation")


def test_a_stream_ends_when_its_certificate_expires(
    federation: RunningFederation, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    cert, key = federation.issue(
        tmp_path,
        "analyst",
        "brief@anhui",
        "Anhui Data",
        not_before=now - dt.timedelta(minutes=1),
        not_after=now + dt.timedelta(seconds=8),  # the key, the handshake and a call first
    )
    with channel_as(federation.fed, "hefei", cert, key) as ch:
        call, first = watch(ch)
        assert admitted(first), first
        try:
            err, _took = next_status(call, 15.0)
        finally:
            call.cancel()  # type: ignore[attr-defined]
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
    assert "expired at" in err.details()


# --- a small federation of its own, with tiny limits --------------------------------------

TINY_LIMITS = """
[limits]
calls_per_caller = 1
stream_max_seconds = 3

[limits.rates]
Query = { per_second = 0.5, burst = 2 }
Execute = { per_second = 0.5, burst = 2 }
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, dict]]:
    """anhui and hefei of a federation of their own, with ``TINY_LIMITS``."""
    fed = provision(tmp_path_factory.mktemp("limits"), REGION_DIR, free_ports=True)
    procs: dict[str, NodeProcess] = {}
    try:
        for node in ("anhui", "hefei"):
            config = fed.config_path(node)
            config.write_text(config.read_text() + TINY_LIMITS)
            procs[node] = start_node(node, config, fed.node_dir(node) / "stdout.log")
        wait_serving(
            list(procs.values()),
            {n: fed.node(n).listen for n in procs},
            Profile.load(fed.operator_profile("hefei")),
            timeout=60,
        )
        yield fed, procs
    finally:
        stop_nodes(list(procs.values()))


def test_over_the_rate_a_caller_gets_resource_exhausted_with_a_retry_hint(
    tiny: tuple[Federation, dict],
) -> None:
    fed, _procs = tiny
    with Client(Profile.load(fed.profile_path("zhang.min@anhui")), timeout=10) as c:
        for _ in range(2):  # the burst; the query itself fails (nothing registered)
            with pytest.raises(ClientError) as info:
                c.query("SELECT COUNT(*) FROM nothing_here", allow_partial=True)
            assert info.value.details.get("limit") != "rate", info.value
        with pytest.raises(ClientError) as info:
            c.query("SELECT COUNT(*) FROM nothing_here", allow_partial=True)
        err = info.value
        assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.details["limit"] == "rate" and err.details["method"] == "Query"
        retry = float(err.details["retry_after_seconds"])
        assert 0 < retry <= 2.0
        assert "too many Query calls from analyst:zhang.min@anhui" in str(err)
        assert f"retry in {err.details['retry_after_seconds']} s" in str(err)
        print(f"\nrefused: {err} (retry_after_seconds={retry})")
        time.sleep(retry + 0.05)  # then it is taken again
        with pytest.raises(ClientError) as info:
            c.query("SELECT COUNT(*) FROM nothing_here", allow_partial=True)
        assert info.value.details.get("limit") != "rate", info.value
    # Peer/Execute: per calling node
    tls = fed.node_dir("anhui") / "tls"
    # (the queries above may have spent some of anhui's Execute tokens at hefei already)
    refusal: grpc.RpcError | None = None
    with channel_as(fed, "hefei", tls / "node.pem", tls / "node.key") as ch:
        stub = peer_pb2_grpc.PeerStub(ch)
        for _ in range(3):
            try:
                stub.Execute(peer_pb2.PartialRequest(), timeout=10)
            except grpc.RpcError as exc:
                if dict(exc.trailing_metadata() or ()).get("fedgate-detail-limit") == "rate":
                    refusal = exc
                    break
    assert refusal is not None, "Peer/Execute was not rate-limited per calling node"
    meta = dict(refusal.trailing_metadata() or ())  # type: ignore[attr-defined]
    assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert meta["fedgate-detail-method"] == "Execute"
    assert float(meta["fedgate-detail-retry-after-seconds"]) > 0
    assert "too many Execute calls from node:anhui" in refusal.details()  # type: ignore[attr-defined]


def test_one_caller_cannot_take_every_thread(tiny: tuple[Federation, dict]) -> None:
    """With ``calls_per_caller = 1``: while an analyst's federated catalog waits for a
    frozen member, the same analyst's next call is refused at once, another caller's is
    served, and the slot is back when the first call ends."""
    fed, procs = tiny
    home = Profile.load(fed.profile_path("zhang.min@anhui"))
    hefei = fed.node("hefei")
    analyst = Profile(hefei.id, hefei.listen, home.ca, home.cert, home.key)
    result: list[object] = []
    os.kill(procs["anhui"].pid, signal.SIGSTOP)
    try:

        def slow() -> None:
            with Client(analyst, timeout=20) as c:
                result.append(c.federated_catalog(member_timeout=6))

        worker = threading.Thread(target=slow)
        worker.start()
        refused: ClientError | None = None
        deadline = time.monotonic() + 5
        while refused is None and time.monotonic() < deadline:  # once the slow call is in
            try:
                with Client(analyst, timeout=5) as c:
                    c.whoami()
            except ClientError as exc:
                refused = exc
            time.sleep(0.05)
        assert refused is not None, "the caller's second call was not refused"
        assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.details["limit"] == "calls_per_caller"
        assert "too many calls in progress from analyst:zhang.min@anhui" in str(refused)
        with Client(Profile.load(fed.operator_profile("hefei")), timeout=5) as ops:
            assert ops.whoami().node_id == "hefei"
        worker.join(timeout=20)
        assert not worker.is_alive() and result
    finally:
        os.kill(procs["anhui"].pid, signal.SIGCONT)
    with Client(analyst, timeout=5) as c:
        assert c.whoami().caller_id == "zhang.min@anhui"


def test_the_node_ends_a_stream_at_its_maximum_lifetime(tiny: tuple[Federation, dict]) -> None:
    fed, _procs = tiny
    with user_channel(fed, "hefei", "zhang.min@anhui") as ch:
        call, first = watch(ch)
        assert admitted(first)
        try:
            err, took = next_status(call, 10.0)
        finally:
            call.cancel()  # type: ignore[attr-defined]
        assert err.code() == grpc.StatusCode.UNAVAILABLE, err
        assert "open for 3 s, the longest this node keeps one" in err.details()
        print(f"\nWatch stream ended by the node after {took:.1f} s (stream_max_seconds = 3)")
        with cancelled_at_exit([eventually_admitted(ch)]):
            pass


def test_a_flood_of_refusals_is_logged_once_a_minute(tiny: tuple[Federation, dict]) -> None:
    fed, _procs = tiny
    with user_channel(fed, "anhui", "li.wei@shanghai") as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        held = [watch(ch)]  # a caller's one health or reflection stream
        try:
            for _ in range(50):
                refused_for(watch(ch)[1], "streams_per_caller")
        finally:
            for call, _ in held:
                call.cancel()  # type: ignore[attr-defined]
        stub.WhoAmI(gateway_pb2.WhoAmIRequest(), timeout=5)
    log = (fed.node_dir("anhui") / "node.log").read_text()
    lines = [
        line
        for line in log.splitlines()
        if "caller=analyst:li.wei@shanghai" in line and "streams from" in line
    ]
    assert len(lines) == 1, lines
