"""Typed errors. Code below the RPC edge raises these; the edge maps them to gRPC status.

Each error carries a ``federation.outcome.Code`` and may carry ``details`` (facts a
caller acts on, such as the size a witness last saw): the edge sends details as trailing
metadata, and ``gateway.transport`` reads them back into the same ``Error``.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Mapping

from federation.outcome import Code, Error

log = logging.getLogger("fedgate.node")

MAX_LOGGED_CHARS = 2_000  # of a library's own text in one log line


def loggable(text: str) -> str:
    """A library's own text (DuckDB's, an exception's) for one log line: bounded, and
    ``repr``'d so that a value holding a line break cannot forge another line."""
    if len(text) > MAX_LOGGED_CHARS:
        text = text[:MAX_LOGGED_CHARS] + f"... ({len(text)} characters)"
    return repr(text)


class FedgateError(Exception):
    """Base class: carries the status it becomes at the edge."""

    code: Code = Code.INTERNAL

    def __init__(self, message: str = "", *, details: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.details: Mapping[str, str] = dict(details or {})

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args and self.args[0] else self.__class__.__name__

    @property
    def error(self) -> Error:
        return Error(self.code, self.message, self.details)

    @staticmethod
    def of(error: Error) -> FedgateError:
        """The typed exception for a structured error (a peer's, or a fan-out's)."""
        exc = _BY_CODE.get(error.code, FedgateError)(error.reason, details=error.details)
        exc.code = error.code
        return exc


class InvalidArgument(FedgateError):
    code = Code.INVALID_ARGUMENT


class NotFound(FedgateError):
    code = Code.NOT_FOUND


class AlreadyExists(FedgateError):
    code = Code.ALREADY_EXISTS


class Unauthenticated(FedgateError):
    code = Code.UNAUTHENTICATED


class PermissionDenied(FedgateError):
    code = Code.PERMISSION_DENIED


class ResourceExhausted(FedgateError):
    """A limit is reached: the privacy budget, a use count, a size."""

    code = Code.RESOURCE_EXHAUSTED


class NoisedTooLarge(ResourceExhausted):
    """A release too large to send, known only once its noise was drawn: whether it fits
    is read from that noise, so its epsilon is spent all the same (the release pipeline).
    ``epsilon``: what the noise drawn charges (None: the decision's)."""

    def __init__(self, message: str = "", *, epsilon: float | None = None) -> None:
        super().__init__(message)
        self.epsilon = epsilon


class NoiseSent(FedgateError):
    """A release that ended after noise this owner drew had left it (a PSI matcher's noisy
    tally, sent to the other owner): whatever ended it (``cause``, whose status it keeps),
    that noise is out, so ``epsilon`` is spent all the same (the release pipeline withholds
    the release, as a ``NoisedTooLarge``), never a free refusal."""

    def __init__(self, cause: FedgateError, *, epsilon: float) -> None:
        super().__init__(cause.message, details=cause.details)
        self.code = cause.code
        self.cause = cause
        self.epsilon = epsilon


class DeadlineExceeded(FedgateError):
    code = Code.DEADLINE_EXCEEDED


class FailedPrecondition(FedgateError):
    code = Code.FAILED_PRECONDITION


class Aborted(FedgateError):
    """The work was stopped: e.g. a custom app failed or answered outside its bounds."""

    code = Code.ABORTED


class Cancelled(FedgateError):
    """Whoever asked is gone (Ctrl-C, a cancelled run or session): the work stops."""

    code = Code.CANCELLED


class Unavailable(FedgateError):
    code = Code.UNAVAILABLE


class CannotRecord(Unavailable):
    """The node cannot write its audit log or state (disk full, read-only, I/O error).

    Nothing is released that is not recorded first, so the request fails as a whole and
    the caller may retry later (or elsewhere); the node reports NOT_SERVING meanwhile."""

    def __init__(self, message: str = "cannot record; nothing released") -> None:
        super().__init__(message)


class ConfigError(FedgateError):
    """A node cannot start: the message names the field or path at fault."""

    code = Code.FAILED_PRECONDITION


_BY_CODE: dict[Code, type[FedgateError]] = {
    cls.code: cls
    for cls in (
        Aborted,
        InvalidArgument,
        NotFound,
        AlreadyExists,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        DeadlineExceeded,
        FailedPrecondition,
        Unavailable,
    )
}


def error_of(exc: BaseException) -> Error:
    """Any exception as a structured error (the fan-out's mapping). An exception that is
    not ours is named by its kind and a reference alone, its traceback logged: its text
    may hold a cell value (a file that no longer reads as declared: review, 2026-12-04)."""
    if isinstance(exc, FedgateError):
        return exc.error
    ref = uuid.uuid4().hex[:12]
    frames = "".join(traceback.format_tb(exc.__traceback__))  # the place, not the text
    text = loggable(str(exc))
    log.error("internal error ref=%s %s: %s\n%s", ref, type(exc).__name__, text, frames)
    return Error(Code.INTERNAL, f"internal error {type(exc).__name__} (reference {ref})")
