"""Training messages larger than one gRPC message, carried in pieces of unary calls.

A model of 50 MB does not fit the node's ``max_message_bytes`` (4 MiB by default), and
raising that limit for every method would let any caller send that much to any of them.
So a training message travels as ``Peer/TrainStep`` calls of at most ``PIECE_BYTES``
each: the home sends the pieces in order (each call signed like the whole message), the
owner answers the last one, and a reply that is larger comes back the same way, fetched
piece by piece. What the owner holds between calls lives here: bounded per message
(``MAX_MESSAGE_BYTES``), in all (``MAX_HELD_BYTES``), and in time (``TTL_SECONDS``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from federation.reports import OwnerReport
from gateway.errors import FailedPrecondition, InvalidArgument, ResourceExhausted

PIECE_BYTES = 2 * 1024 * 1024  # under the default 4 MiB gRPC message, with the envelope
MIN_PIECE_BYTES = 64 * 1024  # a reply's pieces are at least this (but its last)
MAX_MESSAGE_BYTES = 128 * 1024 * 1024  # one training message, whole
MAX_HELD_BYTES = 256 * 1024 * 1024  # every message this owner holds in pieces
TTL_SECONDS = 300.0  # a transfer left unfinished this long is dropped
MAX_TRANSFERS = 64
MAX_PER_CALLER = 8  # messages in pieces one calling node may have held here at once
CALLER_BYTES = MAX_HELD_BYTES // 2  # what one calling node may have held here at once

Key = tuple[str, str, str]  # (calling node, run's request id, transfer id)


@dataclass(frozen=True)
class Piece:
    """One ``Peer/TrainStep`` call: a whole message (``total`` 0), a piece of one, or a
    fetch of a reply's next piece."""

    data: bytes
    transfer: str = ""
    total: int = 0
    offset: int = 0
    fetch: int = 0


@dataclass(frozen=True)
class Answer:
    """What the call returns: the reply (or a piece of it at ``offset`` of ``total``), and
    the release it came from (None while a message's pieces still come)."""

    data: bytes
    report: OwnerReport | None
    total: int = 0
    offset: int = 0


def piece_bytes(max_message_bytes: int) -> int:
    """The piece a node sends: ``PIECE_BYTES``, or half its gRPC message limit if that
    is smaller (the rest is room for the envelope)."""
    return max(MIN_PIECE_BYTES, min(PIECE_BYTES, max_message_bytes // 2))


def pieces(data: bytes, size: int = PIECE_BYTES) -> list[tuple[int, bytes]]:
    """A message as (offset, piece) in order."""
    return [(o, data[o : o + size]) for o in range(0, len(data), size)]


@dataclass
class _Held:
    data: bytearray
    total: int
    report: OwnerReport | None = None  # set once it is a reply waiting to be fetched
    touched: float = field(default_factory=time.monotonic)


class Transfers:
    """What an owner holds between the calls of messages in pieces."""

    def __init__(self) -> None:
        self._held: OrderedDict[Key, _Held] = OrderedDict()
        self._lock = threading.Lock()

    def _bytes(self) -> int:
        return sum(len(h.data) for h in self._held.values())

    def _of(self, caller: str) -> list[Key]:
        return [k for k in self._held if k[0] == caller]

    def _bytes_of(self, caller: str) -> int:
        return sum(len(self._held[k].data) for k in self._of(caller))

    def _sweep(self, now: float) -> None:
        for key in [k for k, h in self._held.items() if now - h.touched > TTL_SECONDS]:
            del self._held[key]

    def sweep(self, now: float | None = None) -> None:
        """Drop what was left longer than ``TTL_SECONDS`` (an upload its home gave up on,
        a reply never fetched). The node's housekeeping calls it: put, hold_reply and fetch
        sweep too, but without a training call up to ``MAX_HELD_BYTES`` stayed held
        indefinitely (review, 2026-12-05)."""
        with self._lock:
            self._sweep(time.monotonic() if now is None else now)

    def put(self, key: Key, total: int, offset: int, piece: bytes) -> bytes | None:
        """Add the piece at ``offset`` of a message of ``total`` bytes; the message once
        whole (and then forgotten), else None."""
        if not 0 < total <= MAX_MESSAGE_BYTES:
            raise ResourceExhausted(
                f"a training message holds at most {MAX_MESSAGE_BYTES // 2**20} MiB"
            )
        if not piece or len(piece) > PIECE_BYTES:
            raise InvalidArgument(f"a piece holds 1 byte to {PIECE_BYTES // 2**20} MiB")
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            held = self._held.get(key)
            if held is None:
                if offset != 0:
                    raise FailedPrecondition("a message's pieces start at offset 0")
                if len(self._of(key[0])) >= MAX_PER_CALLER or len(self._held) >= MAX_TRANSFERS:
                    raise ResourceExhausted("too many training messages in pieces; try later")
                held = self._held[key] = _Held(bytearray(), total)
            if held.report is not None or held.total != total or offset != len(held.data):
                del self._held[key]
                raise InvalidArgument("the message's pieces are not in order: start again")
            if offset + len(piece) > total:
                del self._held[key]
                raise InvalidArgument("the pieces hold more than the message's size")
            if (
                self._bytes() + len(piece) > MAX_HELD_BYTES
                or self._bytes_of(key[0]) + len(piece) > CALLER_BYTES
            ):
                del self._held[key]  # the home starts the message again: nothing is kept
                raise ResourceExhausted("this owner holds too much in pieces; try later")
            held.data += piece
            held.touched = now
            if len(held.data) < total:
                return None
            del self._held[key]
            return bytes(held.data)

    def hold_reply(self, key: Key, reply: bytes, report: OwnerReport) -> None:
        """Keep a reply larger than one piece for the caller to fetch. It never fails
        (the release is already made): it pushes out the caller's own oldest transfers
        while it would hold more than ``MAX_PER_CALLER`` or ``CALLER_BYTES``, then, while
        the owner's own bounds (``MAX_TRANSFERS``, ``MAX_HELD_BYTES``) would be passed,
        other callers' unfinished uploads (that message's next piece is then refused, and
        its step fails at its home) before, last, the oldest of all. Another caller's
        released reply goes only in that last case, which a caller's share (half the
        store) leaves to two or more callers at their limit."""
        caller = key[0]

        def over(extra: int) -> bool:
            return len(self._held) >= MAX_TRANSFERS or self._bytes() + extra > MAX_HELD_BYTES

        with self._lock:
            self._sweep(time.monotonic())
            mine = self._of(caller)
            while mine and (
                len(mine) >= MAX_PER_CALLER or self._bytes_of(caller) + len(reply) > CALLER_BYTES
            ):
                del self._held[mine.pop(0)]
            uploads = [k for k, h in self._held.items() if h.report is None]
            while uploads and over(len(reply)):
                del self._held[uploads.pop(0)]
            while self._held and over(len(reply)):
                self._held.popitem(last=False)
            self._held[key] = _Held(bytearray(reply), len(reply), report)

    def fetch(
        self, key: Key, offset: int, size: int = PIECE_BYTES
    ) -> tuple[bytes, int, OwnerReport]:
        """The reply's piece at ``offset``, its size and the release it came from; the
        reply is forgotten once its last piece was fetched."""
        with self._lock:
            self._sweep(time.monotonic())
            held = self._held.get(key)
            if held is None or held.report is None:
                raise FailedPrecondition("no reply waits under that transfer id")
            if not 0 < offset < held.total:
                raise InvalidArgument("fetch a reply from inside it")
            piece = bytes(held.data[offset : offset + size])
            held.touched = time.monotonic()
            if offset + len(piece) >= held.total:
                del self._held[key]
            return piece, held.total, held.report
