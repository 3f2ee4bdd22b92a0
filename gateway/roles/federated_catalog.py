"""The federated catalog: every reachable member's published datasets, through the home.

Each member answers for itself within one deadline; a member that does not answer, or
answers under another name, is listed as unreachable with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from federation.fanout import fan_out
from federation.membership import Member
from gateway import serde
from gateway.errors import InvalidArgument, error_of
from gateway.transport import Transport


@dataclass(frozen=True)
class Listing:
    """One member's part of the federated catalog."""

    member: Member
    reachable: bool
    error: str = ""
    latency_ms: float = 0.0
    datasets: Sequence[Any] = ()  # DatasetInfo messages, passed through as received


class FederatedCatalog:
    def __init__(self, transport: Transport, executor: Executor) -> None:
        self._transport = transport
        self._executor = executor

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
            if value is None:
                listings.append(Listing(member, False, str(out.error), ms))
            elif value.node_id != member.id:
                listings.append(Listing(member, False, f"answered as {value.node_id!r}", ms))
            else:
                listings.append(Listing(member, True, "", ms, tuple(value.datasets)))
        return listings


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
