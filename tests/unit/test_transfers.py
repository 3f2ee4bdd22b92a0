"""Training messages in pieces (gateway/training/transfers.py): order, bounds, fetches."""

from __future__ import annotations

import time

import pytest

from federation.reports import OwnerReport
from gateway.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from gateway.training import transfers
from gateway.training.transfers import PIECE_BYTES, Transfers, pieces

REPORT = OwnerReport("jiangsu")


def test_pieces_in_order_make_the_message_once() -> None:
    t = Transfers()
    data = bytes(range(256)) * (PIECE_BYTES // 256 * 2 + 3)
    key = ("home", "run", "x")
    got = [t.put(key, len(data), offset, piece) for offset, piece in pieces(data)]
    assert got[:-1] == [None] * (len(got) - 1) and got[-1] == data
    with pytest.raises(FailedPrecondition):  # forgotten once whole
        t.put(key, len(data), PIECE_BYTES, data[PIECE_BYTES : 2 * PIECE_BYTES])


def test_pieces_out_of_order_or_past_the_size_are_refused() -> None:
    t = Transfers()
    key = ("home", "run", "x")
    with pytest.raises(FailedPrecondition, match="start at offset 0"):
        t.put(key, 10, 5, b"abcde")
    t.put(key, 10, 0, b"abcde")
    with pytest.raises(InvalidArgument, match="not in order"):
        t.put(key, 10, 7, b"abc")
    t.put(key, 10, 0, b"abcde")
    with pytest.raises(InvalidArgument, match="more than the message's size"):
        t.put(key, 10, 5, b"abcdefgh")
    with pytest.raises(ResourceExhausted):
        t.put(key, transfers.MAX_MESSAGE_BYTES + 1, 0, b"a")


def test_one_caller_cannot_crowd_out_another() -> None:
    t = Transfers()
    for i in range(transfers.MAX_PER_CALLER):
        t.put(("mallory", "run", str(i)), 10, 0, b"a")
    with pytest.raises(ResourceExhausted):
        t.put(("mallory", "run", "more"), 10, 0, b"a")
    assert t.put(("home", "run", "x"), 1, 0, b"a") == b"a"


def test_a_reply_is_fetched_by_its_own_key_only_and_then_forgotten() -> None:
    t = Transfers()
    reply = b"r" * (PIECE_BYTES + 10)
    t.hold_reply(("home", "run", "x"), reply, REPORT)
    with pytest.raises(FailedPrecondition):
        t.fetch(("other", "run", "x"), PIECE_BYTES)
    with pytest.raises(InvalidArgument):
        t.fetch(("home", "run", "x"), 0)
    piece, total, report = t.fetch(("home", "run", "x"), PIECE_BYTES)
    assert piece == b"r" * 10 and total == len(reply) and report == REPORT
    with pytest.raises(FailedPrecondition):
        t.fetch(("home", "run", "x"), PIECE_BYTES)


def test_holding_a_reply_never_fails_and_keeps_a_caller_bounded() -> None:
    t = Transfers()
    for i in range(transfers.MAX_PER_CALLER + 3):
        t.hold_reply(("home", "run", str(i)), b"x" * (PIECE_BYTES + 1), REPORT)
    held = [k for k in t._held if k[0] == "home"]
    assert len(held) == transfers.MAX_PER_CALLER
    assert ("home", "run", str(transfers.MAX_PER_CALLER + 2)) in held


def test_held_replies_stay_within_the_owners_bounds_in_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many calling nodes' large replies: the oldest go, the count and bytes stay bounded."""
    monkeypatch.setattr(transfers, "MAX_HELD_BYTES", 10 * (PIECE_BYTES + 1))
    t = Transfers()
    for caller in range(transfers.MAX_TRANSFERS):  # 64 callers x 2 replies each
        for i in range(2):
            t.hold_reply((f"member{caller}", "run", str(i)), b"x" * (PIECE_BYTES + 1), REPORT)
    assert len(t._held) <= min(transfers.MAX_TRANSFERS, 10)
    assert t._bytes() <= transfers.MAX_HELD_BYTES
    last = (f"member{transfers.MAX_TRANSFERS - 1}", "run", "1")
    assert t.fetch(last, PIECE_BYTES)[1] == PIECE_BYTES + 1  # the newest is still there


def test_a_callers_replies_push_out_its_own_before_anothers_released_reply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A home filling the store with replies of its own pushes out its own oldest (its
    share is half the store), never another home's released reply waiting to be fetched;
    another home's unfinished upload goes before any released reply."""
    monkeypatch.setattr(transfers, "MAX_HELD_BYTES", 8 * (PIECE_BYTES + 1))
    monkeypatch.setattr(transfers, "CALLER_BYTES", 4 * (PIECE_BYTES + 1))
    t = Transfers()
    t.hold_reply(("victim", "run", "r"), b"v" * (PIECE_BYTES + 1), REPORT)
    t.put(("other", "run", "u"), 10, 0, b"a")  # an upload under way
    for i in range(20):
        t.hold_reply(("mallory", "run", str(i)), b"x" * (PIECE_BYTES + 1), REPORT)
    assert t._bytes_of("mallory") <= transfers.CALLER_BYTES
    piece, total, _ = t.fetch(("victim", "run", "r"), PIECE_BYTES)
    assert total == PIECE_BYTES + 1 and piece == b"v"


def test_a_refused_piece_leaves_nothing_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first piece refused for want of room is not kept: it would count against its
    home's transfers until it expired, and block its uploads here meanwhile."""
    monkeypatch.setattr(transfers, "CALLER_BYTES", 100)
    t = Transfers()
    for i in range(transfers.MAX_PER_CALLER + 2):
        with pytest.raises(ResourceExhausted):
            t.put(("home", "run", str(i)), 1000, 0, b"a" * 200)
    assert not t._held
    assert t.put(("home", "run", "small"), 50, 0, b"a" * 50) == b"a" * 50


def test_the_sweep_drops_what_was_left_past_its_time() -> None:
    """Review (2026-12-05): the time limit was enforced only inside the next training
    call, so up to ``MAX_HELD_BYTES`` of unfinished uploads stayed held with no call. The
    node's housekeeping sweeps: nothing younger than ``TTL_SECONDS`` goes, then all."""
    t = Transfers()
    for i in range(transfers.MAX_PER_CALLER - 1):
        t.put((f"home{i % 2}", "run", str(i)), 3 * PIECE_BYTES, 0, b"u" * PIECE_BYTES)
    t.hold_reply(("home0", "run", "reply"), b"r" * (PIECE_BYTES + 1), REPORT)
    held = t._bytes()
    assert held >= transfers.MAX_PER_CALLER * PIECE_BYTES
    t.sweep()
    assert t._bytes() == held
    t.sweep(time.monotonic() + transfers.TTL_SECONDS + 1)
    assert t._bytes() == 0 and not t._held
