"""The federated catalog: every reachable member's published datasets, through the home.

Each member answers for itself within one deadline; a member that does not answer, or
answers under another name, is listed as unreachable with the reason. The answer is one
message within the node's own limit: members whose datasets no longer fit are listed
without them, with the reason (``fit``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from federation.fanout import fan_out
from federation.membership import Member
from gateway import serde
from gateway.errors import InvalidArgument, error_of
from gateway.limits import cut
from gateway.transport import Transport

# Room kept in the answer for what ``fit`` does not count: the home's own entry and the
# message's framing. Each other member's own fields are counted (``_named``).
ANSWER_MARGIN = 16 * 1024
LEFT_OUT = "catalog too large to list: filter with --name ({size:,} bytes of datasets)"


@dataclass(frozen=True)
class Listing:
    """One member's part of the federated catalog."""

    member: Member
    reachable: bool
    error: str = ""
    latency_ms: float = 0.0
    datasets: Sequence[Any] = ()  # DatasetInfo messages, passed through as received


class FederatedCatalog:
    def __init__(self, transport: Transport, executor: Executor, max_message_bytes: int) -> None:
        self._transport = transport
        self._executor = executor
        self._max_message_bytes = max_message_bytes

    def answer(self, name_contains: str, timeout: float, own_bytes: int) -> list[Listing]:
        """The peers' listings as one FederatedCatalog answer holds them beside the home's
        own datasets (``own_bytes``), within this node's message limit."""
        room = self._max_message_bytes - ANSWER_MARGIN - own_bytes
        return fit(self.peers(name_contains, timeout), room)

    def peers(self, name_contains: str, timeout: float) -> list[Listing]:
        request = serde.catalog_request(name_contains)

        def ask(member: Member) -> Any:
            return self._transport.call(member, "PeerCatalog", request, timeout=timeout)

        listings = []
        outcomes = fan_out(
            self._executor,
            self._transport.members(),
            ask,
            timeout=timeout + 0.1,
            to_error=error_of,
        )
        for out in outcomes:
            member, ms, value = out.target, out.seconds * 1000, out.value
            if value is None:  # a peer's status text: cut, as its answer's name
                listings.append(Listing(member, False, cut(str(out.error)), ms))
            elif value.node_id != member.id:
                listings.append(Listing(member, False, cut(f"answered as {value.node_id!r}"), ms))
            else:
                listings.append(Listing(member, True, "", ms, tuple(value.datasets)))
        return listings


def _named(x: Listing) -> int:
    """The bytes a member's entry takes without its datasets, ``LEFT_OUT`` included (an
    upper bound)."""
    m = x.member
    texts = (m.id, m.org, m.level, m.parent, m.address, x.error, LEFT_OUT)
    return 64 + sum(len(t.encode()) for t in texts)


def _datasets_size(x: Listing) -> int:
    """The bytes a member's datasets take in the answer: each message, its tag and length."""
    return sum(d.ByteSize() + 6 for d in x.datasets)


def fit(listings: Sequence[Listing], room: int) -> list[Listing]:
    """The listings as one answer of at most ``room`` bytes holds them, in member order: a
    member whose datasets no longer fit is listed without them, with ``LEFT_OUT`` as its
    error. Each peer's answer was within the message limit but nothing bounded their sum,
    so a few large catalogs (or one member's 4 MB) failed every FederatedCatalog call
    with RESOURCE_EXHAUSTED (review, 2026-12-05)."""
    room -= sum(_named(x) for x in listings)  # every member is named, listed or not
    out = []
    for x in listings:
        size = _datasets_size(x)
        if size <= room:
            room -= size
            out.append(x)
        else:
            out.append(dataclasses.replace(x, datasets=(), error=LEFT_OUT.format(size=size)))
    return out


MAX_MEMBER_TIMEOUT = 600.0  # as node.peer_timeout_seconds


def clamp_timeout(requested: float, default: float, remaining: Callable[[], float | None]) -> float:
    """The per-member timeout: what was asked (or the default), within the caller's time.

    ``requested`` comes off the wire: anything but a number of seconds in
    [0, MAX_MEMBER_TIMEOUT] (0: the default) is INVALID_ARGUMENT, never arithmetic on
    infinity or NaN."""
    if not math.isfinite(requested) or not 0 <= requested <= MAX_MEMBER_TIMEOUT:
        raise InvalidArgument(
            f"timeout_seconds must be a number of seconds from 0 to {MAX_MEMBER_TIMEOUT:g} "
            "(0: the node's default)"
        )
    timeout = requested or default
    left = remaining()
    if left is not None:
        timeout = max(0.05, min(timeout, left - 0.05))
    return timeout
