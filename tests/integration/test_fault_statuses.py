"""Clear statuses under faults and odd input (issue 13, item 5), against real nodes.

An owner that restarts, is killed or stops answering is UNAVAILABLE or DEADLINE_EXCEEDED
naming it, at the caller's deadline, never INTERNAL, CANCELLED or a certificate problem;
malformed messages and out-of-range fields are INVALID_ARGUMENT; ``Health/Check`` answers
every service (``List`` is UNIMPLEMENTED); a node that cannot write its state answers
UNAVAILABLE "cannot record; nothing released" and says NOT_SERVING until it can; an empty
select list is refused at the home; the demo's audit summary reads an export whose entries
hold line separators.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.client import ClientError, Profile, QueryResult
from gateway.demo.launcher import health_status
from gateway.demo.run import audit_summary
from gateway.tls import secure_channel
from tests.conftest import RunningFederation

pytestmark = pytest.mark.integration

COUNT_BY_CITY = "SELECT city, COUNT(*) AS n FROM enterprise_registry GROUP BY city"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LATE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def channel_as(federation: RunningFederation, profile: str, node: str) -> grpc.Channel:
    p = Profile.load(federation.fed.profile_path(profile))
    n = federation.fed.node(node)
    return secure_channel(n.listen, node, ca=p.ca, cert=p.cert, key=p.key)


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# --- owners that restart, die or stop answering ---------------------------------------------


def test_an_owner_killed_and_restarted_under_load_is_only_ever_unavailable(
    federation: RunningFederation,
) -> None:
    """Queries run without pause while jiangsu is killed (SIGKILL) and restarted, then
    stopped gracefully and restarted: every failure is UNAVAILABLE or DEADLINE_EXCEEDED
    naming jiangsu (no INTERNAL "closed channel", no CANCELLED "Channel closed!", no
    certificate story), and every --allow-partial query is answered."""
    stop = threading.Event()
    failures: list[ClientError] = []
    partial_failures: list[ClientError] = []
    answered: list[QueryResult] = []

    def load(allow_partial: bool) -> None:
        with federation.client("li.wei@shanghai") as c:
            while not stop.is_set():
                try:
                    answered.append(c.query(COUNT_BY_CITY, allow_partial=allow_partial, timeout=10))
                except ClientError as exc:
                    (partial_failures if allow_partial else failures).append(exc)

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(load, partial) for partial in (False, False, True, True)]
        try:
            for _ in range(2):
                time.sleep(0.5)
                proc = federation.procs["jiangsu"].process
                proc.kill()
                proc.wait(timeout=10)
                time.sleep(0.5)
                federation.start("jiangsu")
            time.sleep(0.5)
            with federation.stopped("jiangsu"):
                time.sleep(1.0)
            time.sleep(0.5)
        finally:
            stop.set()
        for f in running:
            f.result(timeout=30)

    assert failures, "no query ran while jiangsu was down"
    for exc in failures:
        assert exc.code in LATE, exc
        assert "jiangsu" in str(exc), exc
        # gRPC's own transport text may say "Handshake read failed (... reset by peer)"
        # when the port dies mid-connect; what must never appear is a certificate story.
        text = str(exc).lower()
        assert "certificate" not in text and "tls handshake failed" not in text, exc
    assert not partial_failures, partial_failures[:3]
    assert any(r.missing == ("jiangsu",) for r in answered)
    with federation.client("li.wei@shanghai") as c:  # and back, in full
        assert c.query(COUNT_BY_CITY).missing == ()


def test_a_stopped_owner_ends_the_query_at_its_deadline_naming_it(
    federation: RunningFederation,
) -> None:
    """zhejiang is frozen (SIGSTOP): its connections stay open and nothing answers. The
    home's health probe (every 15 s) fails meanwhile and resets the channel; the query
    still runs to its own 17 s deadline and ends DEADLINE_EXCEEDED naming zhejiang (it
    was cut at the probe as CANCELLED before), and --allow-partial answers without it."""
    proc = federation.procs["zhejiang"].process
    timeout = 17.0

    def timed(allow_partial: bool) -> tuple[float, QueryResult | ClientError]:
        """The query alone is timed (its client is made before; the first call's TLS
        handshake with the home is in it, a few ms)."""
        with federation.client("li.wei@shanghai") as c:
            t0 = time.monotonic()
            try:
                out: QueryResult | ClientError = c.query(
                    COUNT_BY_CITY, allow_partial=allow_partial, timeout=timeout
                )
            except ClientError as exc:
                out = exc
            took = time.monotonic() - t0
        return took, out

    os.kill(proc.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(2) as pool:
            full, partial = pool.map(timed, (False, True))
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    seconds, error = full
    assert isinstance(error, ClientError), error
    assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED, error
    assert "owner zhejiang" in str(error) and error.details.get("owner") == "zhejiang"
    # Its own deadline: not the probe's (15 s, and CANCELLED), nor the client's default
    # of 20 s; the margin above is for a loaded 2-core machine.
    assert timeout - 2 <= seconds <= timeout + 2, seconds
    seconds, answer = partial
    assert isinstance(answer, QueryResult), answer
    assert answer.missing == ("zhejiang",) and seconds <= timeout + 2
    with federation.client("li.wei@shanghai") as c:
        assert "zhejiang" in c.query(COUNT_BY_CITY, timeout=30).contributors


# --- malformed messages, health, out-of-range fields -----------------------------------


def test_malformed_messages_are_invalid_argument_after_authentication(
    federation: RunningFederation,
) -> None:
    garbage = b"\xff\xff\xff\xff"
    with channel_as(federation, "li.wei@shanghai", "shanghai") as ch:
        query = ch.unary_unary("/fedgate.v1.Gateway/Query")
        err = rpc_error(lambda: query(garbage, timeout=5))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == "the request is not a valid QueryRequest message"
        # bad UTF-8 in a string field is malformed too
        err = rpc_error(lambda: query(b"\x0a\x02\xff\xfe", timeout=5))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        # streaming methods: server streaming (health Watch), bidirectional (reflection)
        watch = ch.unary_stream("/grpc.health.v1.Health/Watch")
        err = rpc_error(lambda: list(watch(garbage, timeout=5)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid HealthCheckRequest message" in err.details()
        reflect = ch.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        err = rpc_error(lambda: list(reflect(iter([garbage]), timeout=5)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid ServerReflectionRequest message" in err.details()
        # the caller's role is checked before its bytes are read
        execute = ch.unary_unary("/fedgate.v1.Peer/Execute")
        err = rpc_error(lambda: execute(garbage, timeout=5))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    with channel_as(federation, "li.wei@shanghai", "shanghai") as ch:  # still serving
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert status.status == SERVING
    assert "Exception deserializing" not in federation.stdout_log("shanghai")
    assert "Exception deserializing" not in federation.node_log("shanghai")


def test_repeated_refusals_of_a_method_without_a_rate_are_one_entry_a_minute(
    federation: RunningFederation,
) -> None:
    """Review (2026-12-04, night): bytes that are not the method's message, and a handler's
    refusals of a method no rate bounds (Health/Check, AccessRequestStatus, ...), were an
    audit entry each: any certificate grew a node's append-only log ~3 MB/s. Now the first
    of a minute per caller, method and code is the entry, the rest are counted."""
    garbage = b"\xff\xff\xff\xff"
    before = len(federation.audit("jiangsu", "rpc.refused"))
    with channel_as(federation, "li.wei@shanghai", "jiangsu") as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check")
        for _ in range(40):
            assert rpc_error(lambda: check(garbage, timeout=5)).code() == (
                grpc.StatusCode.INVALID_ARGUMENT
            )
    with federation.client("li.wei@shanghai", node="jiangsu") as c:
        for _ in range(40):
            with pytest.raises(ClientError) as info:
                c.access_request_status("jiangsu", "ar-00000000")
            assert info.value.code == grpc.StatusCode.NOT_FOUND
    new = federation.audit("jiangsu", "rpc.refused")[before:]
    by_method = [e["method"] for e in new if "li.wei@shanghai" in e["caller"]]
    assert by_method.count("/grpc.health.v1.Health/Check") == 1, new
    assert by_method.count("/fedgate.v1.Gateway/AccessRequestStatus") == 1, new
    log = federation.node_log("jiangsu")
    assert log.count("method=/grpc.health.v1.Health/Check") >= 1  # node.log has them too


def test_health_answers_every_service_and_list_is_unimplemented(
    federation: RunningFederation,
) -> None:
    """``Check`` answers each service; ``List`` (absent from grpcio-health-checking 1.81,
    the newest that accepts the protobuf Flower needs) is a clean UNIMPLEMENTED, with no
    traceback at the node."""
    with channel_as(federation, "li.wei@shanghai", "jiangsu") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        statuses = {
            name: stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            for name in ("", "fedgate.v1.Gateway", "fedgate.v1.Peer", "grpc.health.v1.Health")
        }
        listing = ch.unary_unary("/grpc.health.v1.Health/List")
        err = rpc_error(lambda: listing(b"", timeout=5))
    assert set(statuses.values()) == {SERVING}
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Traceback" not in federation.stdout_log("jiangsu")


@pytest.mark.parametrize("seconds", [math.inf, -math.inf, math.nan, -1.0, 1e9])
def test_out_of_range_catalog_timeout_is_invalid_argument(
    federation: RunningFederation, seconds: float
) -> None:
    with federation.client("li.wei@shanghai") as c, pytest.raises(ClientError) as info:
        c.federated_catalog(member_timeout=seconds)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "timeout_seconds must be a number of seconds from 0 to 600" in str(info.value)


def test_an_empty_select_list_is_refused_at_the_home(federation: RunningFederation) -> None:
    before = federation.releases()
    with federation.client("li.wei@shanghai") as c:
        for sql, reason in (
            ("SELECT FROM enterprise_registry", "the SELECT list is empty"),
            ("SELECT FROM enterprise_registry WHERE city = 'Nanjing'", "the SELECT list is empty"),
            ("SELECT 1 FROM enterprise_registry GROUP BY city", "names no column or aggregate"),
        ):
            with pytest.raises(ClientError) as info:
                c.query(sql)
            assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert reason in str(info.value) and "owner" not in str(info.value)
    assert federation.releases() == before  # no owner was asked, none signed


# --- a node that cannot record ---------------------------------------------------------------


@contextlib.contextmanager
def cannot_write_files(federation: RunningFederation, node_id: str) -> Iterator[None]:
    """The node's process may not write a byte to any file for the block.

    A file-size limit of 0 (RLIMIT_FSIZE, set on the running process with prlimit(2))
    fails every write with EFBIG, as a full disk fails them with ENOSPC: SQLite answers
    "disk I/O error" / "database or disk is full". It needs no privilege, no loop device
    and no tmpfs, leaves the data directory as it is, and works as root (where chmod and
    a read-only directory would not). CPython ignores SIGXFSZ, so the process lives on."""
    pid = federation.procs[node_id].pid
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
    try:
        yield
    finally:
        resource.prlimit(
            pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )


def wait_health(address: str, node_id: str, profile: Profile, want: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    status = health_status(address, node_id, profile)
    while status != want and time.monotonic() < deadline:
        time.sleep(0.1)
        status = health_status(address, node_id, profile)
    return status


def test_an_owner_that_cannot_record_releases_nothing_and_says_so(
    federation: RunningFederation,
) -> None:
    node = federation.fed.node("zhejiang")
    ops = Profile.load(federation.fed.operator_profile("zhejiang"))
    assert health_status(node.listen, node.id, ops) == SERVING
    with cannot_write_files(federation, "zhejiang"):
        with federation.client("li.wei@shanghai") as c:
            with pytest.raises(ClientError) as info:
                c.query(COUNT_BY_CITY)
            partial = c.query(COUNT_BY_CITY, allow_partial=True)
        error = info.value
        assert error.code == grpc.StatusCode.UNAVAILABLE
        assert "owner zhejiang is unavailable (cannot record; nothing released)" in str(error)
        assert partial.missing == ("zhejiang",)
        # the node says so in its health status, to its peers' probes and to operators
        assert wait_health(node.listen, node.id, ops, NOT_SERVING, 5) == NOT_SERVING
        with channel_as(federation, "li.wei@shanghai", "zhejiang") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            shown = {
                stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
                for name in ("", "fedgate.v1.Gateway", "fedgate.v1.Peer")
            }
        assert shown == {NOT_SERVING}
        # its own callers get the same status (here through a streaming method)
        with federation.client("ops@zhejiang") as o, pytest.raises(ClientError) as info:
            o.audit_export()
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        assert str(info.value) == "UNAVAILABLE: cannot record; nothing released"
    # storage back: the node notices by itself (a small write every few seconds)
    assert wait_health(node.listen, node.id, ops, SERVING, 15) == SERVING
    with federation.client("li.wei@shanghai") as c:
        assert "zhejiang" in c.query(COUNT_BY_CITY).contributors
    released = {e.get("request_id") for e in federation.audit("zhejiang", "release")}
    assert error.details["request_id"] not in released


# --- the demo reads an export whose text holds line separators --------------------------------


def test_the_demo_audit_summary_reads_entries_holding_line_separators(
    federation: RunningFederation,
) -> None:
    with federation.client("li.wei@shanghai") as c, pytest.raises(ClientError):
        # the refusal's reason quotes the expression: the separators land in the audit
        c.query("SELECT COUNT(*) FROM enterprise_registry WHERE city = 'x' || '\u2029\u2028\x85'")
    assert any("\u2029" in e["reason"] for e in federation.audit("shanghai", "rpc.refused"))
    summary = audit_summary(federation.fed)
    assert "FAILED" not in summary
    (row,) = [line for line in summary.split("\n") if line.split()[:1] == ["shanghai"]]
    assert row.rstrip().endswith("verified")


def test_a_refusal_inside_a_stream_is_its_own_status(federation: RunningFederation) -> None:
    """A typed error raised while a streaming handler runs (the audit export of an operator
    of another node) is its status, as for a unary call, and audited."""
    with federation.client("ops@hefei", node="anhui") as c, pytest.raises(ClientError) as info:
        c.audit_export()
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "is not an operator of this node" in str(info.value)
    refused = federation.audit("anhui", "rpc.refused")
    assert any(e["method"] == "/fedgate.v1.Gateway/AuditExport" for e in refused)
