"""Structured outcomes: a status code and a reason, never a status folded into a string.

Modelled on Flower's ``Error(code, reason)``: every failure that crosses a module or the
wire is an ``Error`` with a ``Code`` (the gRPC status names, so the edge maps it one to
one) and a human ``reason``. Machine-readable facts a caller acts on travel in
``details``, never inside the reason.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Code(enum.Enum):
    """Status codes; names and numbers are gRPC's, so the edge maps them one to one."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @staticmethod
    def named(name: str, default: Code) -> Code:
        """The code of a wire status name; ``default`` for an empty or unknown name."""
        return Code.__members__.get(name, default)

    @staticmethod
    def failed(name: str, default: Code) -> Code:
        """The code of a failure read from the wire (a peer's refusal, a failed call):
        ``default`` for an empty or unknown name, and for ``OK``, which no failure can
        be (a refusal saying OK reached the home as UNKNOWN with no message; review,
        2026-12-05): see ``failure``."""
        code = Code.named(name, default)
        return default if code is Code.OK else code

    @property
    def late(self) -> bool:
        """No answer in time: the peer is down, slow, or the caller's time ran out."""
        return self in (Code.DEADLINE_EXCEEDED, Code.UNAVAILABLE)


@dataclass(frozen=True)
class Error:
    code: Code
    reason: str
    details: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.reason}"


def failure(name: str, reason: str, default: Code) -> Error:
    """A failure read from the wire as a structured error (``Code.failed``); one whose
    code says OK is itself malformed, and its reason says so."""
    if Code.named(name, default) is Code.OK:
        reason = f"a malformed refusal (its status is OK, which no refusal can be): {reason}"
    return Error(Code.failed(name, default), reason)
