"""Clear statuses under faults, part by part (the real-node tests are in
tests/integration/test_fault_statuses.py): storage that refuses writes, the health flip
and ``List``, channels never closed under a call, lost connections as UNAVAILABLE, the
client's certificate explanation, request decoding, the catalog timeout, empty selects."""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from federation.membership import Member
from federation.outcome import Code, Error
from federation.sql import QueryError, parse
from gateway import peers as peers_mod
from gateway.client import _explain
from gateway.edge import request_decoder
from gateway.errors import CannotRecord, InvalidArgument, Unavailable
from gateway.health import NodeHealth
from gateway.peers import Peers
from gateway.roles.federated_catalog import clamp_timeout
from gateway.rpc.v1 import gateway_pb2
from gateway.state import State
from gateway.status import ORIGIN
from gateway.transport import peer_error
from tests.unit.failed_call import FailedCall

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# --- storage that refuses writes ------------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> State:
    return State(tmp_path / "state.sqlite3")


def _full(state: State) -> None:
    """The database may not grow by a page: the next insert finds the disk full."""
    db = state._db  # noqa: SLF001 - a test reaches in to fill the "disk"
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")


def _roomy(state: State) -> None:
    state._db.execute("PRAGMA max_page_count = 1073741823")  # noqa: SLF001


def _write(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO meta(key, value) VALUES (hex(randomblob(8)), ?)", ("x" * 20_000,))


def test_a_refused_write_is_cannot_record_and_the_node_is_told(state: State) -> None:
    told: list[bool] = []
    state.on_recording = told.append
    _full(state)
    with pytest.raises(CannotRecord) as info, state.transaction() as db:
        _write(db)
    assert info.value.code == Code.UNAVAILABLE
    assert info.value.message == "cannot record; nothing released"
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    with pytest.raises(CannotRecord):  # group commit: the same
        state.group(_write)
    assert told == [False] and state.failing  # told once, on the change
    with state.transaction() as db:  # a read succeeds, but proves nothing about writes
        db.execute("SELECT COUNT(*) FROM meta").fetchone()
    assert told == [False]
    _roomy(state)
    state.group(_write)
    assert told == [False, True] and not state.failing
    state.group(_write)
    assert told == [False, True]


def test_recheck_notices_the_storage_is_back_without_any_request(state: State) -> None:
    told: list[bool] = []
    state.on_recording = told.append
    state.recheck()  # nothing refused yet: nothing written
    assert state._db.execute(  # noqa: SLF001
        "SELECT COUNT(*) FROM meta WHERE key = 'write_checked'"
    ).fetchone() == (0,)
    db = state._db  # noqa: SLF001 - the database turns read-only under the node
    db.execute("PRAGMA query_only = ON")
    with pytest.raises(CannotRecord), state.transaction() as tx:
        _write(tx)
    state.recheck()  # still read-only: stays failing, raises nothing
    assert told == [False]
    db.execute("PRAGMA query_only = OFF")
    state.recheck()
    assert told == [False, True]


def test_other_sqlite_errors_are_not_storage_failures(state: State) -> None:
    told: list[bool] = []
    state.on_recording = told.append
    with pytest.raises(sqlite3.IntegrityError), state.transaction() as db:
        db.execute("INSERT INTO meta(key, value) VALUES ('schema_version', 'x')")
    assert told == [] and not state.failing


# --- the health service ---------------------------------------------------------------------


def test_health_of_every_service_and_the_recording_flip() -> None:
    health = NodeHealth()
    names = ("", "fedgate.v1.Gateway", "fedgate.v1.Peer")
    for name in names:
        health.set(name, SERVING)

    def listed() -> dict[str, int]:
        return {n: checked(n) for n in names}

    def checked(name: str = "") -> int:
        return health.Check(health_pb2.HealthCheckRequest(service=name), None).status

    assert set(listed().values()) == {SERVING} and len(listed()) == 3
    health.recording(False)
    assert set(listed().values()) == {NOT_SERVING} and checked() == NOT_SERVING
    health.set("fedgate.v1.Gateway", SERVING)  # set meanwhile: shown once writes succeed
    assert checked("fedgate.v1.Gateway") == NOT_SERVING
    health.recording(True)
    assert set(listed().values()) == {SERVING} and checked("fedgate.v1.Gateway") == SERVING
    health.enter_graceful_shutdown()
    health.recording(True)
    health.set("", SERVING)
    assert set(listed().values()) == {NOT_SERVING} and checked() == NOT_SERVING


# --- channels are never closed under a running call -----------------------------------------


@pytest.fixture
def peers(monkeypatch: pytest.MonkeyPatch) -> Peers:
    monkeypatch.setattr(
        peers_mod, "secure_channel", lambda address, *a, **k: grpc.insecure_channel(address)
    )
    config: Any = SimpleNamespace(ca=None, cert=None, key=None, max_message_bytes=1 << 20)
    return Peers(config, lambda: None)


MEMBER = Member(id="jiangsu", org="JS", address="127.0.0.1:1", level="province")


def _usable(channel: grpc.Channel) -> bool:
    """Whether a call can still start on the channel (a closed one refuses at once)."""
    try:
        channel.unary_unary("/x.Y/Z")(b"", timeout=0.01)
    except grpc.RpcError:
        return True
    except ValueError:  # "Cannot invoke RPC on closed channel!"
        return False
    return True


def test_a_reset_under_a_running_call_waits_for_it(peers: Peers) -> None:
    with peers.connection(MEMBER) as conn:
        peers.reset(MEMBER, conn)  # another call failed, or the probe did
        assert conn.retired and _usable(conn.channel)  # the running call goes on
        with peers.connection(MEMBER) as fresh:
            assert fresh is not conn  # the next call connects afresh
    assert not _usable(conn.channel)  # closed once its last call ended
    assert _usable(fresh.channel)


def test_a_stale_reset_keeps_the_fresh_channel(peers: Peers) -> None:
    with peers.connection(MEMBER) as old:
        pass
    peers.reset(MEMBER, old)
    with peers.connection(MEMBER) as fresh:
        pass
    peers.reset(MEMBER, old)  # a late failure on the old channel
    with peers.connection(MEMBER) as again:
        assert again is fresh
    peers.close()
    assert not _usable(fresh.channel)
    with pytest.raises(Unavailable, match="stopping"), peers.connection(MEMBER):
        pass


def test_members_that_left_or_moved_lose_their_channels(peers: Peers) -> None:
    """After a membership reload (the peer probe prunes): a member that left, or whose
    address changed, has its channel closed, once the calls on it have ended."""
    moved = Member(id="zhejiang", org="ZJ", address="127.0.0.1:2", level="province")
    left = Member(id="anhui", org="AH", address="127.0.0.1:3", level="province")
    with peers.connection(MEMBER) as kept, peers.connection(moved) as old:
        pass
    with peers.connection(left) as running:
        there = replace(moved, address="127.0.0.1:4")
        assert sorted(peers.prune([MEMBER, there])) == ["anhui", "zhejiang"]
        assert running.retired and _usable(running.channel)  # its call goes on
    assert not _usable(running.channel) and not _usable(old.channel)
    with peers.connection(MEMBER) as again:
        assert again is kept and _usable(kept.channel)
    assert peers.prune([MEMBER, there]) == []
    peers.close()


# --- lost connections, and the client's certificate explanation -----------------------------


@pytest.mark.parametrize(
    "code, reason",
    [
        (Code.CANCELLED, "Channel closed!"),
        (Code.CANCELLED, "Stream removed (Channel closed!)"),
        (Code.INTERNAL, "Received RST_STREAM with error code 2"),
        (Code.UNKNOWN, "Stream removed"),
    ],
)
def test_a_lost_connection_is_unavailable_naming_the_peer(code: Code, reason: str) -> None:
    error = peer_error(MEMBER, Error(code, reason, {"x": "1"}), answered=False)
    assert error.code == Code.UNAVAILABLE
    assert error.reason == f"the connection to jiangsu was lost ({reason})"
    assert error.details == {"x": "1"}


def test_a_deadline_grpc_ran_out_names_the_silent_peer() -> None:
    late = Error(Code.DEADLINE_EXCEEDED, "Stream removed (Deadline Exceeded)", {"x": "1"})
    error = peer_error(MEMBER, late, answered=False)
    assert error.code == Code.DEADLINE_EXCEEDED and error.details == {"x": "1"}
    assert error.reason == "jiangsu did not finish before the request's deadline"
    own = Error(Code.DEADLINE_EXCEEDED, "the local engine ran out of time")
    assert peer_error(MEMBER, own, answered=True) == own  # the peer's own words stay


def test_a_peers_own_failures_pass_unchanged() -> None:
    """A node's answer (marked by its edge) keeps its status, whatever its words; and
    gRPC's own UNAVAILABLE needs no mapping."""
    for error in (
        Error(Code.INTERNAL, "internal error (reference abc); see the node log"),
        Error(Code.CANCELLED, "Channel closed!"),
        Error(Code.PERMISSION_DENIED, "no grant"),
    ):
        assert peer_error(MEMBER, error, answered=True) == error
    # gRPC's own UNAVAILABLE names the peer it could not reach (review, 2026-12-04: its
    # handshake text, passed on as it was, read as the user's certificate refused)
    down = Error(Code.UNAVAILABLE, "failed to connect to all addresses")
    assert peer_error(MEMBER, down, answered=False) == Error(
        Code.UNAVAILABLE, "could not reach jiangsu: failed to connect to all addresses"
    )


def test_the_client_explains_only_its_own_handshake() -> None:
    own = (
        "failed to connect to all addresses; last error: UNAVAILABLE: "
        "ipv4:127.0.0.1:4700: Socket closed"
    )
    explained = _explain(FailedCall(grpc.StatusCode.UNAVAILABLE, own))
    assert "TLS handshake failed" in str(explained) and own in str(explained)
    for answered in (
        "owner jiangsu is unavailable (failed to connect to all addresses; last error: "
        "UNAVAILABLE: ipv4:127.0.0.1:4702: Socket closed); --allow-partial answers without it",
        "owner zhejiang is unavailable (the connection to zhejiang was lost (Channel closed!))",
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
        "Failed to connect to remote host: Connection refused",
    ):
        error = _explain(FailedCall(grpc.StatusCode.UNAVAILABLE, answered))
        assert str(error) == f"UNAVAILABLE: {answered}"
    # a node's answer in the words of a handshake failure is about its peer, not us
    forwarded = _explain(FailedCall(grpc.StatusCode.UNAVAILABLE, own, (ORIGIN,)))
    assert str(forwarded) == f"UNAVAILABLE: {own}"


# --- decoding, ranges, empty selects ----------------------------------------------------------


def test_requests_that_do_not_decode_are_invalid_argument() -> None:
    decode = request_decoder(gateway_pb2.QueryRequest.FromString)
    ok = gateway_pb2.QueryRequest(sql="SELECT 1").SerializeToString()
    assert decode(ok).sql == "SELECT 1"
    for raw in (b"\xff\xff\xff", b"\x0a\x02\xff\xfe", b"\x0a\x05ab"):
        with pytest.raises(InvalidArgument, match="not a valid QueryRequest message"):
            decode(raw)
    assert request_decoder(None)(b"raw") == b"raw"


@pytest.mark.parametrize("seconds", [math.inf, -math.inf, math.nan, -0.5, 601.0, 1e300])
def test_the_catalog_timeout_must_be_in_range(seconds: float) -> None:
    with pytest.raises(InvalidArgument, match="timeout_seconds"):
        clamp_timeout(seconds, 5.0, lambda: None)


def test_the_catalog_timeout_within_range() -> None:
    assert clamp_timeout(0.0, 5.0, lambda: None) == 5.0
    assert clamp_timeout(600.0, 5.0, lambda: 2.0) == pytest.approx(1.95)


@pytest.mark.parametrize(
    "sql, message",
    [
        ("SELECT FROM t", "the SELECT list is empty"),
        ("SELECT FROM t WHERE a = 1 GROUP BY a HAVING COUNT(*) > 1", "the SELECT list is empty"),
        ("SELECT 1 FROM t GROUP BY a", "names no column or aggregate"),
        ("SELECT 1 + 2 AS x, NULL FROM t GROUP BY a", "names no column or aggregate"),
    ],
)
def test_a_select_list_without_columns_or_aggregates_is_refused(sql: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse(sql)


@pytest.mark.parametrize(
    "sql", ["SELECT COUNT(*) FROM t", "SELECT a, 1 AS one FROM t GROUP BY a", "SELECT a FROM t"]
)
def test_select_lists_that_name_something_pass(sql: str) -> None:
    parse(sql)


def _gauge(metrics: Any, peer: str) -> float:
    return metrics.registry.get_sample_value("fedgate_peer_up", {"peer": peer})


def test_a_peer_that_answered_is_up_and_keeps_its_channel(peers: Peers) -> None:
    """Review (2026-12-04): a live peer's refusal set fedgate_peer_up to 0 and reset its
    channel; a status gRPC gave itself (no node answered) still does both."""
    from gateway.errors import FedgateError
    from gateway.metrics import NodeMetrics
    from gateway.transport import Transport

    metrics = NodeMetrics()
    transport = Transport(peers, metrics, 1.0)
    failures = [
        (grpc.StatusCode.PERMISSION_DENIED, "no grant", (ORIGIN,), 1.0, False),
        (grpc.StatusCode.UNAVAILABLE, "cannot record; nothing released", (ORIGIN,), 1.0, False),
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", (), 0.0, True),
    ]
    for code, details, trailing, up, reset in failures:
        with peers.connection(MEMBER) as conn:

            def execute(request: Any, timeout: float, _c=code, _d=details, _t=trailing) -> Any:
                raise FailedCall(_c, _d, _t)

            conn.peer = SimpleNamespace(Execute=execute)  # type: ignore[assignment]
        with pytest.raises(FedgateError):
            transport.call(MEMBER, "Execute", b"")
        assert _gauge(metrics, "jiangsu") == up, details
        assert conn.retired is reset, details

    class Call:  # a response stream as gRPC's: iterable and cancellable
        def __iter__(self) -> Any:
            return iter(["progress", "answer"])

        def cancel(self) -> None:
            pass

    def stream(request: Any, timeout: float) -> Any:
        return Call()

    with peers.connection(MEMBER) as conn:
        conn.peer = SimpleNamespace(Run=stream)  # type: ignore[assignment]
    responses = transport.stream(MEMBER, "Run", b"", deadline=time.monotonic() + 5)
    assert next(responses) == "progress"
    responses.close()  # the caller had what it wanted (a PSI answer before the trailer)
    assert _gauge(metrics, "jiangsu") == 1.0
