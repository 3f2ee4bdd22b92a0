"""The messages of one PSI exchange between two owners, as typed records.

The matcher (the owner the analyst's home asks) opens the exchange; the other owner
answers. Each side first says hello (its set size, its k, for a join its Paillier key),
then streams its own blinded set (``OWN``); the other owner streams the matcher's set
back, reblinded and shuffled (``REBLINDED``). The matcher then says what it found
(``Tally``); for a join it sends the masked per-group sums (``Sums``) and gets them back
decrypted (``Opened``); the other owner ends with its own release (``Release``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from federation.envelope import Envelope
from federation.reports import OwnerReport

VERSION = 1
OWN = 1  # the sender's own set, blinded under its key
REBLINDED = 2  # the peer's set under both keys, shuffled as a whole


@dataclass(frozen=True)
class Hello:
    set_size: int
    min_group_size: int
    max_batch: int
    version: int = VERSION
    envelope: Envelope | None = None  # matcher -> other only
    paillier_key: bytes = b""  # value owner -> matcher (join aggregates)
    value_kinds: tuple[str, ...] = ()  # per value column: int | float | decimal(p,s)
    epsilon: float = 0.0  # this owner's DP epsilon for the session (0: none)


@dataclass(frozen=True)
class Points:
    kind: int
    seq: int
    points: bytes
    tags: bytes = b""
    values: bytes = b""


@dataclass(frozen=True)
class Done:
    kind: int


@dataclass(frozen=True)
class Tally:
    intersection: int
    min_group_size: int
    group_sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Sums:
    ciphertexts: tuple[bytes, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class Opened:
    values: tuple[int, ...]


@dataclass(frozen=True)
class Release:
    report: OwnerReport = field(default_factory=lambda: OwnerReport(node_id=""))


Frame = Hello | Points | Done | Tally | Sums | Opened | Release


# --- what the matcher tells the home, and the home the analyst --------------------------


STAGES = frozenset({"blinded", "received", "reblinded", "matched"})  # a session's progress


@dataclass(frozen=True)
class Progress:
    node_id: str
    stage: str  # one of STAGES
    done: int
    total: int


@dataclass(frozen=True)
class PsiAnswer:
    request_id: str
    intersection: int  # -1 when suppressed
    suppressed: bool
    min_group_size: int
    owners: tuple[OwnerReport, ...]
    learns: tuple[tuple[str, str], ...] = ()  # (party, what it learns)
    payload: bytes = b""  # a join aggregate's table (Arrow IPC)
    epsilon_spent: float = 0.0


Event = Progress | PsiAnswer
