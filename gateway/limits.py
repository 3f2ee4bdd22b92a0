"""Per-caller limits at the edge: open streams, calls in progress, rates of expensive calls.

A node serves RPCs on a pool of ``node.workers`` threads, and a streaming RPC holds one
for its whole life: without limits, a handful of idle ``Health/Watch`` streams from one
certificate took every thread and froze the node. The edge (``gateway/edge.py``) asks this
module before a handler runs and says when the call or stream ended; what is over a limit
is refused with ``RESOURCE_EXHAUSTED`` (``LimitExceeded``) at once, holding a thread only
for the refusal. A caller is the certificate's ``role:id``.

- **Streams**: at most ``streams_per_caller`` open per user, ``streams_per_node`` per member
  node (which carries all of its users' PSI sessions and joins), and ``streams`` on the
  node; of them, health and reflection streams (``MONITORING``) take at most half the
  node's slots, and one caller less than all of those (``monitoring_per_caller``).
- **Calls**: at most ``calls_per_caller`` unary calls in progress per user, and
  ``calls_per_node`` per member node (which carries all of its users' queries and its own
  background calls); health checks, answered from memory, are not counted.
- **Rates**: a token bucket per caller and expensive method (``RATED``): ``burst`` calls at
  once, refilled at ``per_second``; a refusal says when to retry (``retry_after_seconds``).

Every structure here is bounded: a caller's counters exist only while it has something in
progress (so at most one per admitted call); a bucket is dropped once it is full again
(it then equals a new one) and at most ``callers`` are kept (the least recently used is
forgotten first); refusal reports likewise. Pure bookkeeping, no gRPC: unit-testable with a
fake clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gateway.errors import ResourceExhausted

# Expensive methods, rate-limited per caller (``Execute``: per calling node), by the name
# a config uses for them.
RATED: dict[str, str] = {
    "Query": "/fedgate.v1.Gateway/Query",
    "FederatedCatalog": "/fedgate.v1.Gateway/FederatedCatalog",
    "AuditExport": "/fedgate.v1.Gateway/AuditExport",
    "RegisterDataset": "/fedgate.v1.Gateway/RegisterDataset",
    "SubmitAccessRequest": "/fedgate.v1.Gateway/SubmitAccessRequest",
    "Execute": "/fedgate.v1.Peer/Execute",
    "Psi": "/fedgate.v1.Gateway/Psi",
    "PsiRun": "/fedgate.v1.Peer/PsiRun",
    "PsiExchange": "/fedgate.v1.Peer/PsiExchange",
    "Train": "/fedgate.v1.Gateway/Train",
    "TrainStep": "/fedgate.v1.Peer/TrainStep",
    "ApproveApp": "/fedgate.v1.Gateway/ApproveApp",
    "Witness": "/fedgate.v1.Peer/Witness",
    "WitnessNow": "/fedgate.v1.Gateway/WitnessNow",
    "Disclosure": "/fedgate.v1.Gateway/Disclosure",
    "PeerDisclosure": "/fedgate.v1.Peer/PeerDisclosure",
}
_RATED_NAME = {method: name for name, method in RATED.items()}


def is_rated(method: str) -> bool:
    return method in _RATED_NAME


# Streams any certificate may open and hold idle for their whole life (health Watch,
# reflection): they may take at most half the node's stream slots, so two users' idle
# watches cannot lock out the streams that work (PSI between nodes, training, an
# operator's export; review, 2026-12-04, night).
MONITORING = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def is_monitoring(method: str) -> bool:
    return method.startswith(MONITORING)


# Answered from memory in microseconds, and what peers' probes need most when a node is
# busy: not counted against a caller's calls in progress (gRPC's node-wide cap still holds).
UNCOUNTED = frozenset({"/grpc.health.v1.Health/Check"})

REFUSAL_WINDOW_SECONDS = 60.0

# What a refusal's audit entry keeps of each text the caller chose (its reason, which may
# quote the request, and the names it asked for): the log is append-only and never pruned,
# so an entry grows with the number of refusals, never with the size of a request. The
# edge's ``rpc.refused`` entries keep as much of their reason.
AUDIT_TEXT_CHARS = 500


def cut(text: str, limit: int = AUDIT_TEXT_CHARS) -> str:
    """``text`` if it is at most ``limit`` characters, else its head and a marker."""
    return text if len(text) <= limit else f"{text[:limit]}...[cut, {len(text)} chars]"


@dataclass(frozen=True)
class Rate:
    per_second: float  # refill
    burst: int  # bucket size: calls that may come at once


# Sized so that the test suite and scripts/bench_query.py (8 concurrent clients of one
# analyst, goal >= 200 queries/s; the home calling each owner at that rate) never meet
# them: Query at 2.5x that goal, Execute at 10x (a home carries all of its users). The
# others are costly per call (a fan-out to every member, the whole audit log, a dataset
# read and checked, a durable request) and are asked by people, a few at a time.
DEFAULT_RATES: Mapping[str, Rate] = {
    "Query": Rate(500.0, 1000),
    "Execute": Rate(2000.0, 4000),
    "FederatedCatalog": Rate(50.0, 100),
    "AuditExport": Rate(5.0, 20),
    "RegisterDataset": Rate(10.0, 50),
    "SubmitAccessRequest": Rate(10.0, 50),
    # A large PSI session is minutes of both owners' CPU, bounded by the calls in progress;
    # the rate bounds a loop of small ones (the suite's ~60 sessions in ~20 s stay under).
    "Psi": Rate(5.0, 50),
    "PsiRun": Rate(10.0, 100),
    "PsiExchange": Rate(10.0, 100),  # one per session, owner to owner, as PsiRun
    # A run is minutes of every owner's CPU; its messages are two per owner and round.
    "Train": Rate(1.0, 20),
    "TrainStep": Rate(200.0, 1000),
    # An approval writes up to 2 MiB of files durably; people approve a few apps a day.
    "ApproveApp": Rate(2.0, 20),
    # A round is one call per peer (a peer catching up on a long log: a few more); each
    # refused head is an entry in the witness's append-only log.
    "Witness": Rate(20.0, 200),
    "WitnessNow": Rate(1.0, 10),  # a round to every peer, asked by an operator
    # A report reads the whole audit log.
    "Disclosure": Rate(1.0, 20),
    "PeerDisclosure": Rate(2.0, 20),
}


@dataclass(frozen=True)
class LimitSettings:
    """What ``[limits]`` of a node's config says; ``for_workers`` gives the defaults."""

    streams_per_caller: int = 2
    streams_per_node: int = 3
    streams: int = 4
    calls_per_caller: int = 8
    calls_per_node: int = 12
    calls: int = 64  # node-wide, running or waiting for a thread (gRPC's backstop)
    stream_max_seconds: float = 600.0
    callers: int = 10_000
    rates: Mapping[str, Rate] = field(default_factory=lambda: dict(DEFAULT_RATES))

    @staticmethod
    def for_workers(workers: int) -> LimitSettings:
        """Defaults for a pool of ``workers`` threads (16: streams 4, streams per user 2, per
        node 3, calls per user 8, per node 12, calls 64). Streams take at most a quarter of
        the threads and one user half, so that even then a quarter is left for everybody
        else; a member node, which carries all of its users' queries, PSI sessions and
        joins, may take three quarters of them (and more than one user may hold)."""
        streams = max(1, workers // 4)
        return LimitSettings(
            streams_per_caller=min(2, streams),
            streams_per_node=streams_per_node(streams, min(2, streams)),
            streams=streams,
            calls_per_caller=max(1, workers // 2),
            calls_per_node=max(1, workers * 3 // 4),
            calls=workers * 4,
        )


def streams_per_node(streams: int, streams_per_caller: int) -> int:
    """A member node's default share of ``streams``: three quarters of them (as for calls),
    and never less than one user's. A home node is one caller at each owner for every PSI
    session and join its users run, and the home lets each of its users hold
    ``streams_per_caller`` of them: with the user's share alone, one analyst's two
    sessions took all of its home's slots at the owner for up to 590 s (review,
    2026-12-05)."""
    return min(streams, max(streams_per_caller, streams * 3 // 4))


class LimitExceeded(ResourceExhausted):
    """A call refused by a limit of this module; ``limit`` names which one."""

    def __init__(
        self, message: str, *, limit: str, caller: str, details: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, details={"limit": limit, **(details or {})})
        self.limit = limit
        self.caller = caller


class Ticket:
    """What an admitted call or stream holds; ``release`` gives it back (once)."""

    def __init__(self, release: Callable[[], None] | None = None) -> None:
        self._release = release
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            release, self._release = self._release, None
        if release is not None:
            release()


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class TokenBuckets:
    """One token bucket per key, at most ``capacity`` kept (least recently used out)."""

    def __init__(self, capacity: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def take(self, key: tuple[str, str], rate: Rate) -> float:
        """0.0 when a token was taken; otherwise the seconds until one will be there."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(rate.burst), now)
                while len(self._buckets) > self._capacity:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                bucket.tokens = min(
                    float(rate.burst), bucket.tokens + (now - bucket.stamp) * rate.per_second
                )
                bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate.per_second

    def sweep(self, rates: Callable[[tuple[str, str]], Rate | None]) -> None:
        """Forget every bucket that is full again (or whose method is no longer rated)."""
        now = self._clock()
        with self._lock:
            for key, bucket in list(self._buckets.items()):
                rate = rates(key)
                if rate is None or bucket.tokens + (now - bucket.stamp) * rate.per_second >= (
                    rate.burst
                ):
                    del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


class RefusalReports:
    """Limit refusals are reported (logged, audited) once per caller and limit per window;
    the others are only counted, and the count goes with the next report. A flood of
    refused calls costs the node a line a minute, not a line per call."""

    def __init__(
        self,
        capacity: int,
        window: float = REFUSAL_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._capacity = capacity
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, str], list[float]] = OrderedDict()  # [since, quiet]

    def note(self, caller: str, limit: str) -> int | None:
        """None: stay quiet (counted). A number: report this one, with that many kept
        quiet since the last report."""
        now = self._clock()
        key = (caller, limit)
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.window:
                seen[1] += 1
                return None
            self._seen[key] = [now, 0.0]
            self._seen.move_to_end(key)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            return int(seen[1]) if seen is not None else 0

    def sweep(self) -> list[tuple[str, str, int]]:
        """Forget windows that have passed; (caller, limit, quiet) of those that kept
        refusals quiet, to be told once."""
        now = self._clock()
        told = []
        with self._lock:
            for key, (since, quiet) in list(self._seen.items()):
                if now - since >= self.window:
                    del self._seen[key]
                    if quiet:
                        told.append((key[0], key[1], int(quiet)))
        return told

    def __len__(self) -> int:
        return len(self._seen)


class Limiter:
    """The node's limits, asked by the edge for every call (``admit_call``) and stream
    (``open_stream``) of an authenticated, authorised caller."""

    def __init__(self, settings: LimitSettings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}  # caller -> unary calls in progress
        self._streams: dict[str, int] = {}  # caller -> open streams
        self._monitoring: dict[str, int] = {}  # caller -> of them, monitoring streams
        self._open_streams = 0
        self._open_monitoring = 0  # of them, monitoring streams (``MONITORING``)
        self._rates = {RATED[name]: rate for name, rate in settings.rates.items()}
        self._buckets = TokenBuckets(settings.callers, clock)
        self.refusals = RefusalReports(settings.callers, clock=clock)

    # --- what the edge asks ---------------------------------------------------------------

    def admit_call(self, caller: str, method: str, *, node: bool = False) -> Ticket:
        """A unary call of a user (or of a member ``node``) may run; raises
        ``LimitExceeded`` when it may not."""
        counted = method not in UNCOUNTED
        if counted:
            limit, name = (
                (self.settings.calls_per_node, "calls_per_node")
                if node
                else (self.settings.calls_per_caller, "calls_per_caller")
            )
            with self._lock:
                held = self._calls.get(caller, 0)
                if held >= limit:
                    raise LimitExceeded(
                        f"too many calls in progress from {caller} (at most {limit} at a "
                        "time); wait for one to finish",
                        limit=name,
                        caller=caller,
                    )
                self._calls[caller] = held + 1
        ticket = Ticket(lambda: self._give_back(self._calls, caller)) if counted else Ticket()
        return self._rated(ticket, caller, method)

    def open_stream(self, caller: str, method: str, *, node: bool = False) -> Ticket:
        """A streaming call of a user (or of a member ``node``) may open; raises
        ``LimitExceeded`` when it may not."""
        limit, name = (
            (self.settings.streams_per_node, "streams_per_node")
            if node
            else (self.settings.streams_per_caller, "streams_per_caller")
        )
        monitoring = is_monitoring(method)
        with self._lock:
            held = self._streams.get(caller, 0)
            if held >= limit:
                raise LimitExceeded(
                    f"too many open streams from {caller}; close one (at most "
                    f"{limit} per {'node' if node else 'caller'})",
                    limit=name,
                    caller=caller,
                )
            watching = self._monitoring.get(caller, 0)
            if monitoring and watching >= self.monitoring_per_caller:
                raise LimitExceeded(
                    f"too many open health and reflection streams from {caller}; close one "
                    f"(at most {self.monitoring_per_caller} per caller)",
                    limit="streams_per_caller",
                    caller=caller,
                )
            if self._open_streams >= self.settings.streams:
                raise LimitExceeded(
                    f"too many open streams on this node (at most {self.settings.streams}); "
                    "try again later",
                    limit="streams",
                    caller=caller,
                )
            if monitoring and self._open_monitoring >= self.monitoring_streams:
                raise LimitExceeded(
                    "too many open health and reflection streams on this node (at most "
                    f"{self.monitoring_streams}); try again later",
                    limit="streams",
                    caller=caller,
                )
            self._streams[caller] = held + 1
            if monitoring:
                self._monitoring[caller] = watching + 1
            self._open_streams += 1
            self._open_monitoring += monitoring
        ticket = Ticket(lambda: self._close_stream(caller, monitoring))
        return self._rated(ticket, caller, method)

    @property
    def monitoring_streams(self) -> int:
        """Half the node's stream slots (all of a node with only one)."""
        return max(1, self.settings.streams // 2)

    @property
    def monitoring_per_caller(self) -> int:
        """Half of ``monitoring_streams`` (one of a node with one or two): with a caller's
        whole stream share (2 of 2), one certificate's two idle ``Watch`` streams
        refused every other caller's ``Watch`` and reflection (review, 2026-12-05)."""
        return max(1, self.monitoring_streams // 2)

    def _rated(self, ticket: Ticket, caller: str, method: str) -> Ticket:
        """``ticket``, once the method's rate allows the call; given back if it does not."""
        try:
            self._take(caller, method)
        except LimitExceeded:
            ticket.release()
            raise
        return ticket

    def sweep(self) -> list[tuple[str, str, int]]:
        """Drop what has expired (full buckets, past refusal windows); see
        ``RefusalReports.sweep`` for what is returned."""
        self._buckets.sweep(lambda key: self._rates.get(key[1]))
        return self.refusals.sweep()

    # --- what it holds (tests, metrics) ---------------------------------------------------

    def calls_in_progress(self, caller: str) -> int:
        with self._lock:
            return self._calls.get(caller, 0)

    def open_streams(self, caller: str | None = None) -> int:
        with self._lock:
            return self._open_streams if caller is None else self._streams.get(caller, 0)

    def tracked(self) -> int:
        """Entries held in all: callers with something in progress, buckets, reports."""
        with self._lock:
            held = len(self._calls) + len(self._streams) + len(self._monitoring)
        return held + len(self._buckets) + len(self.refusals)

    # --- inside ---------------------------------------------------------------------------

    def _take(self, caller: str, method: str) -> None:
        rate = self._rates.get(method)
        if rate is None:
            return
        wait = self._buckets.take((caller, method), rate)
        if wait <= 0.0:
            return
        wait = max(0.001, math.ceil(wait * 1000) / 1000)
        name = _RATED_NAME[method]
        raise LimitExceeded(
            f"too many {name} calls from {caller} (at most {rate.per_second:g} per second, "
            f"bursts of {rate.burst}); retry in {wait:.3f} s",
            limit="rate",
            caller=caller,
            details={"method": name, "retry_after_seconds": f"{wait:.3f}"},
        )

    def _give_back(self, counts: dict[str, int], caller: str) -> None:
        with self._lock:
            self._drop_one(counts, caller)

    def _close_stream(self, caller: str, monitoring: bool) -> None:
        with self._lock:
            self._drop_one(self._streams, caller)
            if monitoring:
                self._drop_one(self._monitoring, caller)
            self._open_streams -= 1
            self._open_monitoring -= monitoring

    @staticmethod
    def _drop_one(counts: dict[str, int], caller: str) -> None:
        left = counts.get(caller, 0) - 1
        if left > 0:
            counts[caller] = left
        else:
            counts.pop(caller, None)


def check_size(payload: bytes, limit: int, what: str = "the partial result") -> None:
    """What one message would carry, refused over ``limit`` before gRPC's send fails
    (after the releases in it were recorded)."""
    if len(payload) > limit:
        raise ResourceExhausted(
            f"{what} is {len(payload):,} bytes, over the {limit:,}"
            "-byte message limit: filter more or group by coarser columns"
        )
