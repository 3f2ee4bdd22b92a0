"""PSI under attack, through real nodes (issue 12's negative tests; docs/psi.md).

A misbehaving matcher is played by the test itself: it opens ``Peer/PsiExchange`` to
Jiangsu with Shanghai's node certificate and an envelope Shanghai really signed, then
sends crafted batches. Forged envelopes, the wrong caller, a peer that goes away, an
analyst of another organisation, the differencing attack, an expired or used-up grant:
each must end with a clear status, a refusal in the refusing owner's audit, and nothing
released anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import queue
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import pytest

from federation.envelope import Envelope, Requester
from federation.outcome import Code
from federation.psi import frames as f
from federation.psi import group
from federation.psi.sodium import rbcl
from federation.psi.stream import Limits
from federation.sql.join import parse_join
from gateway import identity, serde
from gateway.client import ClientError
from gateway.clock import utc
from gateway.identity import load_key
from gateway.receipts import Signer
from gateway.roles.psi_home import PsiSideAsk, psi_sql
from gateway.rpc.v1 import peer_pb2, peer_pb2_grpc
from tests.conftest import RunningFederation
from tests.integration.test_psi import (
    ANALYST,
    ID_COLUMNS,
    ID_CONTROLS,
    LEFT,
    RIGHT,
    K,
    codes,
    id_table,
    psi,
    register,
)

pytestmark = pytest.mark.integration

OTHER_ANALYST = "zhang.min@anhui"  # home anhui: another organisation than Li Wei's
QUERY_ONLY = {"credit_code": "filter", "part": "filter"}  # a grant that permits no PSI
CALL_SECONDS = 15.0
MAX_FRAMES = 1000  # frames one crafted exchange may receive
PSI_EXCHANGE = "/fedgate.v1.Peer/PsiExchange"
SILENT_SECONDS = 6.0  # the deadline of a session whose other owner goes silent


# --- datasets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One dataset at Shanghai (the matcher) and one at Jiangsu, identifiers and parts."""

    left: str
    right: str
    left_codes: tuple[str, ...]
    right_codes: tuple[str, ...]
    left_parts: tuple[int, ...]
    right_parts: tuple[int, ...]

    def truth(self, drop_left: int | None = None, drop_right: int | None = None) -> int:
        """The exact intersection, without the rows whose part is ``drop_*``."""
        left = {c for c, p in zip(self.left_codes, self.left_parts, strict=True) if p != drop_left}
        right = {
            c for c, p in zip(self.right_codes, self.right_parts, strict=True) if p != drop_right
        }
        return len(left & right)


def parts_for(n: int, special: dict[int, int]) -> list[int]:
    """``n`` parts, 0 but for ``special`` {part: how many rows}, those first."""
    out = [p for p, count in special.items() for _ in range(count)]
    return out + [0] * (n - len(out))


def make_pair(
    fed: RunningFederation,
    tag: str,
    *,
    n_left: int = 30,
    n_right: int = 30,
    overlap: int = 20,
    left_special: dict[int, int] | None = None,
    right_special: dict[int, int] | None = None,
    psi_grants: bool = True,
) -> Pair:
    """A fresh pair of datasets, granted to Li Wei's organisation for PSI (``psi_grants``)
    or for queries only (the test then writes the PSI grants it needs)."""
    rng = random.Random(f"attack-{tag}")
    pool = codes(rng, n_left + n_right - overlap)
    left = pool[:n_left]
    right = pool[:overlap] + pool[n_left:]
    lp = parts_for(n_left, left_special or {})
    rp = parts_for(n_right, right_special or {})
    ops = ("psi",) if psi_grants else ("query",)
    controls = ID_CONTROLS if psi_grants else QUERY_ONLY
    p = Pair(f"atk_{tag}_l", f"atk_{tag}_r", tuple(left), tuple(right), tuple(lp), tuple(rp))
    register(fed, LEFT, p.left, id_table(left, lp), ID_COLUMNS, controls, operations=ops)
    register(fed, RIGHT, p.right, id_table(right, rp), ID_COLUMNS, controls, operations=ops)
    return p


def grant_psi(fed: RunningFederation, node: str, dataset: str, **fields: object) -> str:
    """A PSI grant to Li Wei's organisation (unless ``grantee`` says otherwise); its id."""
    base: dict[str, object] = {
        "grantee_kind": "org",
        "grantee": fed.fed.node(LEFT).org,
        "operations": ("psi",),
        "min_group_size": K,
        "columns": dict(ID_CONTROLS),
    }
    written = fed.grant(node, dataset=dataset, **{**base, **fields})
    return str(written.id)


# --- the envelope a home signs, and forgeries of it ----------------------------------------


def sign_as(fed: RunningFederation, node: str, env: Envelope) -> Envelope:
    """``env`` signed with ``node``'s key, as ``Vouching.sign`` signs at a home."""
    tls = fed.fed.node_dir(node) / "tls"
    signer = Signer(load_key(tls / "node.key"), (tls / "node.pem").read_bytes())
    env = dataclasses.replace(env, issued_at=env.issued_at or utc())
    signed = signer.sign(env.vouched())
    return env.signed(signed.signature, signed.cert_pem)


def session_sql(p: Pair, right_where: str = "") -> str:
    left = PsiSideAsk(LEFT, p.left, "credit_code")
    right = PsiSideAsk(RIGHT, p.right, "credit_code", right_where)
    return parse_join(psi_sql(left, right)).sql


def session_env(
    fed: RunningFederation, p: Pair, *, signer: str = LEFT, org: str | None = None
) -> Envelope:
    """The envelope of a PSI session between ``p``'s datasets, Shanghai home and matcher."""
    env = Envelope(
        request_id=uuid.uuid4().hex,
        requester=Requester("analyst", ANALYST, org or fed.fed.node(LEFT).org),
        home_node=LEFT,
        operation="psi",
        body=session_sql(p),
    )
    return sign_as(fed, signer, env)


# --- a matcher the test plays by hand -------------------------------------------------------


class Exchange:
    """``Peer/PsiExchange`` opened with ``as_node``'s certificate: the test writes the
    caller's frames one by one and reads the answers."""

    def __init__(self, fed: RunningFederation, as_node: str, to_node: str) -> None:
        self._stack = contextlib.ExitStack()
        channel = self._stack.enter_context(fed.peer_channel(as_node, to_node))
        self._out: queue.Queue[peer_pb2.PsiFrame | None] = queue.Queue()
        self._until = time.monotonic() + CALL_SECONDS
        stub = peer_pb2_grpc.PeerStub(channel)
        self.call: Any = stub.PsiExchange(self._requests(), timeout=CALL_SECONDS)

    def _requests(self) -> Iterator[peer_pb2.PsiFrame]:
        while time.monotonic() < self._until:
            try:
                msg = self._out.get(timeout=0.2)
            except queue.Empty:
                continue
            if msg is None:
                return
            yield msg

    def send(self, *frames: f.Frame) -> None:
        for frame in frames:
            self._out.put(serde.psi_frame_to_proto(frame))

    def end(self) -> None:
        """No more frames from the caller (the request stream ends)."""
        self._out.put(None)

    def receive(self) -> f.Frame:
        return serde.psi_frame_from_proto(next(self.call), time.monotonic() + CALL_SECONDS)

    def rest(self) -> list[f.Frame]:
        """Every frame up to the end of the call (raises the call's error status)."""
        out: list[f.Frame] = []
        for msg in self.call:
            out.append(serde.psi_frame_from_proto(msg, time.monotonic() + CALL_SECONDS))
            assert len(out) <= MAX_FRAMES, "the other owner does not stop sending"
        return out

    def __enter__(self) -> Exchange:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end()
        self.call.cancel()
        self._stack.close()


def points(n: int, tag: str) -> bytes:
    """``n`` distinct valid blinded points (as a matcher sends its set)."""
    items = [i.to_bytes(4, "big") for i in range(n)]
    return bytes(group.blind(group.hash_to_points(tag.encode(), items), group.new_scalar()))


def pt(buf: bytes, i: int) -> bytes:
    return buf[i * group.POINT_BYTES : (i + 1) * group.POINT_BYTES]


def undecodable() -> bytes:
    """32 bytes, high bit clear and not zero, that are no ristretto255 encoding."""
    rng = random.Random("undecodable")
    for _ in range(1000):
        raw = bytearray(rng.randbytes(32))
        raw[-1] &= 0x7F
        if any(raw) and not rbcl.crypto_core_ristretto255_is_valid_point(bytes(raw)):
            return bytes(raw)
    raise AssertionError("no undecodable encoding in 1000 draws")


def own(seq: int, buf: bytes) -> f.Points:
    return f.Points(f.OWN, seq, buf)


# Each attack: the set size the matcher declares, and the frames it sends after the hello
# exchange (given the other owner's max_batch); the refusal's code and words.
Attack = tuple[int, Callable[[int], list[f.Frame]], Code, str]


def _with_point(buf: bytes, i: int, bad: bytes) -> bytes:
    return buf[: i * 32] + bad + buf[(i + 1) * 32 :]


def _high_bit(buf: bytes) -> bytes:
    raw = bytearray(pt(buf, 1))
    raw[-1] |= 0x80
    return _with_point(buf, 1, bytes(raw))


P6 = points(6, "p6")
BATCH = Limits().max_batch_points
ATTACKS: dict[str, Attack] = {
    "replayed batch": (
        6,
        lambda _mb: [own(0, P6[:96]), own(0, P6[:96])],
        Code.INVALID_ARGUMENT,
        "batch 0 arrived where batch 1 was expected (replayed or reordered)",
    ),
    "reordered batches": (
        6,
        lambda _mb: [own(1, P6[96:]), own(0, P6[:96])],
        Code.INVALID_ARGUMENT,
        "batch 1 arrived where batch 0 was expected (replayed or reordered)",
    ),
    "high bit set": (
        6,
        lambda _mb: [own(0, _high_bit(P6))],
        Code.INVALID_ARGUMENT,
        "point 2 of the batch is not a canonical ristretto255 point: it has the high bit set",
    ),
    "identity": (
        6,
        lambda _mb: [own(0, _with_point(P6, 2, bytes(32)))],
        Code.INVALID_ARGUMENT,
        "point 3 of the batch is not a canonical ristretto255 point: it is the identity",
    ),
    "undecodable": (
        6,
        lambda _mb: [own(0, _with_point(P6, 4, undecodable()))],
        Code.INVALID_ARGUMENT,
        "point 5 of the batch is not a canonical ristretto255 point: it does not decode",
    ),
    "duplicate points": (
        6,
        lambda _mb: [own(0, P6[:96]), own(1, pt(P6, 2) + P6[96:160]), f.Done(f.OWN)],
        Code.INVALID_ARGUMENT,
        "holds duplicate points",
    ),
    "oversized batch": (
        3 * BATCH,
        lambda mb: [own(0, points(mb + 1, "big"))],
        Code.RESOURCE_EXHAUSTED,
        f"batch 0 holds {BATCH + 1:,} points, more than the {BATCH:,} a batch may hold",
    ),
    "more than declared": (
        4,
        lambda _mb: [own(0, P6[:96]), own(1, P6[96:])],
        Code.INVALID_ARGUMENT,
        "a batch brings more points than were declared",
    ),
    "fewer than declared": (
        6,
        lambda _mb: [own(0, P6[:96]), f.Done(f.OWN)],
        Code.INVALID_ARGUMENT,
        "fewer points arrived than were declared",
    ),
}


# --- what every refusal must leave behind ---------------------------------------------------


def refusals(fed: RunningFederation, node: str, request_id: str) -> list[dict]:
    return [e for e in fed.audit(node, "psi.refused") if e.get("request_id") == request_id]


def released(fed: RunningFederation, request_id: str) -> list[dict]:
    return [
        e
        for n in fed.fed.nodes
        for e in fed.audit(n.id, "release")
        if e.get("request_id") == request_id
    ]


def eventually(probe: Callable[[], list[dict]], seconds: float = 10.0) -> list[dict]:
    """``probe()`` once it finds something, or its last (empty) answer after ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    return probe()


def rpc_refusals(fed: RunningFederation, node: str) -> list[dict]:
    return [e for e in fed.audit(node, "rpc.refused") if e.get("method") == PSI_EXCHANGE]


# --- 1. a misbehaving matcher ---------------------------------------------------------------


@pytest.mark.parametrize("case", list(ATTACKS))
def test_crafted_batches_are_refused_by_the_other_owner(
    federation: RunningFederation, case: str
) -> None:
    declared, frames_for, code, words = ATTACKS[case]
    tag = case.replace(" ", "_")
    p = make_pair(federation, tag)
    env = session_env(federation, p)
    before = federation.releases()
    with Exchange(federation, LEFT, RIGHT) as ex:
        ex.send(f.Hello(declared, K, BATCH, envelope=env))
        hello = ex.receive()
        assert isinstance(hello, f.Hello) and hello.set_size == len(p.right_codes)
        ex.send(*frames_for(hello.max_batch))
        ex.end()
        got = ex.rest()
        status = ex.call.code()
    # The other owner streams its own set meanwhile; the session ends with its refusal,
    # in band (a Release carrying the error, so the matcher relays the reason), and the
    # call itself ends OK.
    assert status == grpc.StatusCode.OK
    assert isinstance(got[-1], f.Release)
    assert not [g for g in got[:-1] if isinstance(g, f.Release)]
    error = got[-1].report.error
    assert error is not None and error.code == code, error
    assert words in error.reason and "the matching owner's blinded set" in error.reason
    (entry,) = refusals(federation, RIGHT, env.request_id)
    assert entry["code"] == code.name and words in entry["reason"]
    assert entry["dataset"] == p.right and entry["peer"] == LEFT
    assert entry["role"] == "responder"
    # A reason reaches the peer, the home and the analyst: it names no set size or count
    # (review, 2026-12-04: "3 of the 6 declared points arrived").
    if case in ("more than declared", "fewer than declared"):
        assert not any(ch.isdigit() for ch in error.reason), error.reason
    assert not released(federation, env.request_id)
    assert federation.releases() == before


# --- 2. forged envelopes and the wrong caller -----------------------------------------------


def _forged(fed: RunningFederation, p: Pair, how: str) -> tuple[str, Envelope, str]:
    """(caller node, envelope, the refusal's words) for one forgery."""
    if how == "signed by another node":
        return LEFT, session_env(fed, p, signer="zhejiang"), "not vouched for by home node"
    if how == "body changed after signing":
        env = session_env(fed, p)
        changed = dataclasses.replace(env, body=session_sql(p, right_where="part <> 7"))
        return LEFT, changed, "not vouched for by home node"
    if how == "requester of another org":
        org = fed.fed.node("anhui").org
        return LEFT, session_env(fed, p, org=org), "may only vouch for users of"
    assert how == "caller is not the matcher"
    return "zhejiang", session_env(fed, p), "is not the matching owner of this session"


@pytest.mark.parametrize(
    "how",
    [
        "signed by another node",
        "body changed after signing",
        "requester of another org",
        "caller is not the matcher",
    ],
)
def test_forged_session_is_permission_denied(federation: RunningFederation, how: str) -> None:
    p = make_pair(federation, f"forged_{how.split()[0]}_{how.split()[-1]}")
    caller, env, words = _forged(federation, p, how)
    before = federation.releases()
    seen = len(rpc_refusals(federation, RIGHT))
    with Exchange(federation, caller, RIGHT) as ex:
        ex.send(f.Hello(6, K, BATCH, envelope=env), own(0, P6))
        ex.end()
        with pytest.raises(grpc.RpcError) as info:
            ex.rest()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert words in (info.value.details() or "")
    # Refused before any dataset is touched: an rpc.refused entry at the edge (as a
    # forged Peer/Execute is), and a psi.refused one naming the calling node.
    new = rpc_refusals(federation, RIGHT)[seen:]
    assert len(new) == 1 and new[0]["code"] == "PERMISSION_DENIED"
    assert words in new[0]["reason"] and new[0]["caller"].endswith(caller)
    psi_refused = [e for e in federation.audit(RIGHT, "psi.refused") if e.get("caller") == caller]
    assert psi_refused and psi_refused[-1]["code"] == "PERMISSION_DENIED"
    assert not released(federation, env.request_id)
    assert federation.releases() == before


# --- 3. a peer that stops mid-session -------------------------------------------------------


def test_peer_that_stops_mid_session_leaves_no_release(federation: RunningFederation) -> None:
    p = make_pair(federation, "stops")
    env = session_env(federation, p)
    before = federation.releases()
    with Exchange(federation, LEFT, RIGHT) as ex:
        ex.send(f.Hello(6, K, BATCH, envelope=env))
        assert isinstance(ex.receive(), f.Hello)
        ex.send(own(0, P6[:96]))
        ex.call.cancel()
    (entry,) = eventually(lambda: refusals(federation, RIGHT, env.request_id))
    assert entry["code"] == "UNAVAILABLE" and entry["dataset"] == p.right
    assert "the other owner" in entry["reason"]
    assert not released(federation, env.request_id)
    assert federation.releases() == before
    with federation.client(f"ops@{RIGHT}") as ops:  # nothing spent on the grant
        assert [g.uses for g in ops.list_grants(p.right)] == [0]
    # A later session works: no half-written state at either owner.
    fresh = make_pair(federation, "after_stop")
    answer = psi(federation, fresh.left, fresh.right)
    assert not answer.suppressed and answer.intersection == fresh.truth()
    assert federation.releases() == before + 2


def test_a_peer_that_goes_silent_times_out_on_both_sides(federation: RunningFederation) -> None:
    """The other owner freezes (SIGSTOP) once the session is under way: the matcher
    gives up at the session's deadline with a clear status and an audited refusal; the
    frozen owner, woken after that deadline, ends its side the same way. Neither
    releases anything or spends its grant, and the next session works."""
    n = 20_000  # blinding 20 000 points takes each owner about a second: time to freeze
    p = make_pair(federation, "silent", n_left=n, n_right=n, overlap=n // 2)
    frozen = federation.procs[RIGHT].pid
    before = federation.releases()
    stopped = threading.Event()

    def freeze(event: f.Progress) -> None:
        # ``received`` starts once the matcher has the other owner's hello: that owner
        # has admitted the session and is at work on its side.
        if event.stage == "received" and not stopped.is_set():
            stopped.set()
            os.kill(frozen, signal.SIGSTOP)

    t0 = time.monotonic()
    try:
        with pytest.raises(ClientError) as info:
            psi(federation, p.left, p.right, on_progress=freeze, timeout=SILENT_SECONDS)
        waited = time.monotonic() - t0
    finally:
        os.kill(frozen, signal.SIGCONT)
    assert stopped.is_set()
    assert info.value.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
    assert waited < SILENT_SECONDS + 10  # the deadline ends it, nothing hangs

    def refused_at(node: str, dataset: str) -> list[dict]:
        return [e for e in federation.audit(node, "psi.refused") if e.get("dataset") == dataset]

    (mine,) = eventually(lambda: refused_at(LEFT, p.left), seconds=SILENT_SECONDS + 10)
    assert mine["code"] in ("DEADLINE_EXCEEDED", "UNAVAILABLE", "CANCELLED"), mine
    if mine["code"] == "DEADLINE_EXCEEDED":
        assert f"{RIGHT} did not finish before the request's deadline" in mine["reason"], mine
    (theirs,) = eventually(lambda: refused_at(RIGHT, p.right), seconds=SILENT_SECONDS + 10)
    assert theirs["code"] in ("DEADLINE_EXCEEDED", "UNAVAILABLE", "CANCELLED"), theirs
    assert theirs["request_id"] == mine["request_id"]
    assert not released(federation, mine["request_id"])
    assert federation.releases() == before
    for node, dataset in ((LEFT, p.left), (RIGHT, p.right)):
        with federation.client(f"ops@{node}") as ops:  # nothing spent at either owner
            assert [g.uses for g in ops.list_grants(dataset)] == [0]
    fresh = make_pair(federation, "after_silent")
    answer = psi(federation, fresh.left, fresh.right)
    assert not answer.suppressed and answer.intersection == fresh.truth()


def test_a_cancelled_session_stops_at_the_matcher_at_its_next_frame(
    federation: RunningFederation,
) -> None:
    """The analyst goes away (Ctrl-C in the CLI) once the exchange is under way: the
    matcher stops at its next frame, not after matching the whole sets (review,
    2026-12-04: the exchange never looked at ``stop``, so a cancelled session kept its rows,
    points and ciphertexts to its end). The same session run through, in the same test, is
    the yardstick: the refusal comes in well under what the rest of the session takes."""
    n = 40_000
    p = make_pair(federation, "cancelled", n_left=n, n_right=n, overlap=n // 2)
    t0 = time.monotonic()
    answer = psi(federation, p.left, p.right, timeout=120)
    whole = time.monotonic() - t0
    assert answer.intersection == p.truth()
    before = federation.releases()

    class Gone(Exception):
        pass

    left_at: list[float] = []

    def leave(event: f.Progress) -> None:
        if event.stage == "received":
            left_at.append(time.monotonic())
            raise Gone  # as KeyboardInterrupt out of the CLI's progress display

    def refused_at() -> list[dict]:
        return [e for e in federation.audit(LEFT, "psi.refused") if e.get("dataset") == p.left]

    with pytest.raises(Gone):
        psi(federation, p.left, p.right, on_progress=leave, timeout=120)
    (mine,) = eventually(refused_at, seconds=60)
    took = time.monotonic() - left_at[0]
    assert mine["code"] == "CANCELLED", mine
    assert took < 0.5 * whole, (took, whole)
    assert not released(federation, mine["request_id"])
    assert federation.releases() == before


# --- 4. an analyst of another organisation --------------------------------------------------


@pytest.mark.parametrize("refuser", [LEFT, RIGHT])
def test_analyst_of_another_org_is_refused(federation: RunningFederation, refuser: str) -> None:
    """Both grants are for Li Wei's organisation (``refuser`` = the matcher), or the
    matcher also grants Anhui's and only the other owner's grant stops Zhang Min."""
    p = make_pair(federation, f"other_org_{refuser}")
    if refuser == RIGHT:
        grant_psi(federation, LEFT, p.left, grantee=federation.fed.node("anhui").org)
    before = federation.releases()
    assert dict(federation.fed.analysts)[OTHER_ANALYST] == "anhui"
    with federation.client(OTHER_ANALYST) as c, pytest.raises(ClientError) as err:
        c.psi(f"{LEFT}:{p.left}.credit_code", f"{RIGHT}:{p.right}.credit_code")
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    dataset = p.left if refuser == LEFT else p.right
    entries = [e for e in federation.audit(refuser, "psi.refused") if e.get("dataset") == dataset]
    assert len(entries) == 1
    assert entries[0]["code"] == "PERMISSION_DENIED"
    assert entries[0]["requester"] == f"analyst:{OTHER_ANALYST}"
    assert entries[0]["reason"] == f"no grant lets analyst:{OTHER_ANALYST} run PSI on {dataset}"
    assert dataset in str(err.value)
    assert not released(federation, entries[0]["request_id"])
    assert federation.releases() == before
    # Li Wei, whose organisation the grants name, still may.
    assert psi(federation, p.left, p.right).intersection == p.truth()


# --- 5. the differencing defence -------------------------------------------------------------


def test_differencing_attack_is_refused(federation: RunningFederation) -> None:
    """One identifier less on either side is refused; the very same session again, or a
    change of at least k identifiers, is not."""
    p = make_pair(
        federation,
        "diff",
        n_left=40,
        n_right=40,
        overlap=30,
        left_special={7: 1, 1: K + 1},
        right_special={7: 1},
    )
    assert p.truth(drop_left=7) == p.truth() - 1  # the removed identifier is a match
    first = psi(federation, p.left, p.right)
    assert first.intersection == p.truth()
    for side, where in ((LEFT, {"left_where": "part <> 7"}), (RIGHT, {"right_where": "part <> 7"})):
        before = federation.releases()
        with pytest.raises(ClientError) as err:
            psi(federation, p.left, p.right, **where)
        assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION, err.value
        assert "refused as a differencing attack" in str(err.value)
        # The matcher (Shanghai) sees both: its own set changed, or the other's size.
        entries = [
            e
            for e in federation.audit(LEFT, "psi.refused")
            if e.get("dataset") == p.left and e["code"] == "FAILED_PRECONDITION"
        ]
        assert entries and "differencing attack" in entries[-1]["reason"], side
        assert not released(federation, entries[-1]["request_id"])
        assert federation.releases() == before
    again = psi(federation, p.left, p.right)
    assert again.intersection == first.intersection
    coarse = psi(federation, p.left, p.right, left_where="part <> 1")  # K + 1 fewer
    assert coarse.intersection == p.truth(drop_left=1)


def test_other_owner_refuses_a_differencing_matcher(federation: RunningFederation) -> None:
    """The other owner keeps its own memory: after a session with Shanghai's set of m,
    a matcher declaring m - 1 under the same grant is refused by Jiangsu itself, before
    Jiangsu sends any point."""
    p = make_pair(federation, "diff_other", n_left=30, n_right=30, overlap=25)
    assert psi(federation, p.left, p.right).intersection == p.truth()
    env = session_env(federation, p)
    with Exchange(federation, LEFT, RIGHT) as ex:
        ex.send(f.Hello(len(p.left_codes) - 1, K, BATCH, envelope=env))
        first = ex.receive()
        assert isinstance(first, f.Release), f"{type(first).__name__}: the session went on"
        assert first.report.error is not None
        assert first.report.error.code == Code.FAILED_PRECONDITION
    (entry,) = refusals(federation, RIGHT, env.request_id)
    assert "differencing attack" in entry["reason"]


# --- 6. and 7. a grant's time limit and use count -------------------------------------------


def test_expired_grant_is_permission_denied(federation: RunningFederation) -> None:
    p = make_pair(federation, "expired", psi_grants=False)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    grant_id = grant_psi(federation, LEFT, p.left, expires=expires.isoformat())
    grant_psi(federation, RIGHT, p.right)
    deadline = time.monotonic() + 10
    while utc() < utc(expires) and time.monotonic() < deadline:
        time.sleep(0.1)
    before = federation.releases()
    with pytest.raises(ClientError) as err:
        psi(federation, p.left, p.right)
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert f"grant {grant_id} is expired" in str(err.value)
    (entry,) = [e for e in federation.audit(LEFT, "psi.refused") if e.get("dataset") == p.left]
    assert entry["code"] == "PERMISSION_DENIED" and "expired" in entry["reason"]
    assert not released(federation, entry["request_id"])
    assert federation.releases() == before


def test_grant_used_up_after_max_uses(federation: RunningFederation) -> None:
    """The other owner's grant allows one session: the second (the very same, which the
    differencing defence would allow) is refused by it, in band, and by the matcher."""
    p = make_pair(federation, "max_uses", psi_grants=False)
    grant_psi(federation, LEFT, p.left)
    grant_id = grant_psi(federation, RIGHT, p.right, max_uses=1)
    assert psi(federation, p.left, p.right).intersection == p.truth()
    before = federation.releases()
    with pytest.raises(ClientError) as err:
        psi(federation, p.left, p.right)
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert f"grant {grant_id} is used up" in str(err.value)
    (entry,) = [e for e in federation.audit(RIGHT, "psi.refused") if e.get("dataset") == p.right]
    assert entry["code"] == "PERMISSION_DENIED" and "used up" in entry["reason"]
    assert refusals(federation, LEFT, entry["request_id"])  # the matcher logs it too
    assert not released(federation, entry["request_id"])
    assert federation.releases() == before
    with federation.client(f"ops@{RIGHT}") as ops:
        assert [g.uses for g in ops.list_grants(p.right) if g.id == grant_id] == [1]


def test_a_replayed_session_is_refused_by_the_other_owner(
    federation: RunningFederation,
) -> None:
    """The same signed envelope twice: the other owner ran that request already."""
    p = make_pair(federation, "replay", n_left=20, n_right=20, overlap=10)
    env = session_env(federation, p)
    for attempt in range(2):
        with Exchange(federation, LEFT, RIGHT) as ex:
            ex.send(f.Hello(len(p.left_codes), K, BATCH, envelope=env))
            first = ex.receive()
            if attempt == 0:
                assert isinstance(first, f.Hello)  # the first time, the session starts
            else:
                assert isinstance(first, f.Release) and first.report.error is not None
                assert first.report.error.code == Code.FAILED_PRECONDITION
                assert "replayed" in first.report.error.reason
    assert any("replayed" in e["reason"] for e in refusals(federation, RIGHT, env.request_id))
    assert not released(federation, env.request_id)


def test_the_other_owner_audits_the_matchers_own_refusal(
    federation: RunningFederation,
) -> None:
    """A matcher that refuses once the exchange is open says why: the other owner's
    refusal entry carries the matcher's reason, not a lost connection. (One identifier
    swapped for another on the matcher's side: the other owner sees the same set size and
    goes on; only the matcher knows its set changed.)"""
    p = make_pair(federation, "swap", n_left=40, n_right=40, overlap=30, left_special={1: 1, 2: 1})
    assert psi(federation, p.left, p.right, left_where="part <> 1").intersection > 0
    with pytest.raises(ClientError) as err:
        psi(federation, p.left, p.right, left_where="part <> 2")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    entries = eventually(
        lambda: [
            e
            for e in federation.audit(RIGHT, "psi.refused")
            if e.get("dataset") == p.right and "owner shanghai refused" in e["reason"]
        ]
    )
    assert entries[-1]["code"] == "FAILED_PRECONDITION"
    assert "differencing attack" in entries[-1]["reason"]


def test_a_dp_matcher_refuses_a_swap_in_its_own_set_when_the_other_owner_has_no_dp(
    federation: RunningFederation,
) -> None:
    """Review (2026-12-04): only the owner whose set changed sees a same-size swap; under
    its own DP grant (epsilon 1 000, a noise of nothing) the matcher skipped the check,
    and the other owner, without DP, saw the same size and went on: the two counts told
    whether the swapped identifiers are on its list. The matcher keeps its own-set rule
    when the other owner's hello declares no DP."""
    p = make_pair(
        federation, "dp_swap", n_left=40, n_right=40, overlap=30, left_special={1: 1, 2: 1},
        psi_grants=False,
    )  # fmt: skip
    grant_psi(federation, LEFT, p.left, dp_epsilon=1000.0, dp_budget=100000.0)
    grant_psi(federation, RIGHT, p.right)
    assert psi(federation, p.left, p.right, left_where="part <> 1").intersection > 0
    before = federation.releases()
    with pytest.raises(ClientError) as err:
        psi(federation, p.left, p.right, left_where="part <> 2")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "this owner's set differs" in str(err.value)
    (entry,) = [
        e
        for e in federation.audit(LEFT, "psi.refused")
        if e.get("dataset") == p.left and "differencing attack" in e["reason"]
    ]
    assert not released(federation, entry["request_id"])
    assert federation.releases() == before


# --- 8. the receipts the home keeps ----------------------------------------------------------


def test_a_release_signed_with_a_revoked_certificate_is_not_given_to_the_analyst(
    federation: RunningFederation, tmp_path: Path
) -> None:
    """Review (2026-12-04): the home kept a PSI answer's receipts as evidence only, never
    checking that their signers are in force now, as it does for a query's partials: the
    release of an owner whose certificate the CA revoked reached the analyst. Now the
    answer is refused, naming the owner; both receipts stay with the home's psi.failed."""
    p = make_pair(federation, "revoked_receipt")
    tls = federation.fed.node_dir(RIGHT) / "tls"
    kept = {name: (tls / name).read_bytes() for name in ("node.pem", "node.key")}
    cert, key = federation.issue(tmp_path, "node", RIGHT, federation.fed.node(RIGHT).org)
    serial = format(identity.load_cert(cert).serial_number, "x")
    with federation.stopped(RIGHT):  # Jiangsu comes back with a second certificate
        (tls / "node.key").unlink()
        identity.write_private(tls / "node.key", key.read_bytes())
        (tls / "node.pem").write_bytes(cert.read_bytes())
    try:
        assert psi(federation, p.left, p.right).intersection == p.truth()
        identity.revoke(federation.fed.ca_dir, int(serial, 16))
        with pytest.raises(ClientError) as err:
            psi(federation, p.left, p.right)
    finally:
        with federation.stopped(RIGHT):
            (tls / "node.key").unlink()
            identity.write_private(tls / "node.key", kept["node.key"])
            (tls / "node.pem").write_bytes(kept["node.pem"])
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    words = f"owner {RIGHT} released without a valid receipt: signer certificate {serial}"
    assert words in str(err.value) and "has been revoked" in str(err.value)
    failed = federation.audit(LEFT, "psi.failed")[-1]
    assert failed["code"] == "FAILED_PRECONDITION" and words in failed["reason"]
    answered = federation.audit(LEFT, "psi.answered")
    assert not [e for e in answered if e["request_id"] == failed["request_id"]]
    assert len(released(federation, failed["request_id"])) == 2  # the owners did release
    assert psi(federation, p.left, p.right).intersection == p.truth()  # its own certificate
