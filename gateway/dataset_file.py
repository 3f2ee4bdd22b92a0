"""A dataset's file, opened once: its checks, its hash and its read all go through one
descriptor. Opened by name at each step, a file replaced between the steps (or a folder
on its path replaced by a symlink) was judged as one file and served as another, and a
FIFO put in its place held the engine's lock for ever (review, 2026-12-05)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import FedgateError

_CHUNK = 1 << 20


def stamp_of(st: os.stat_result) -> tuple[int, ...]:
    """What tells a file's bytes changed without reading them (an ``os.stat_result``
    compares whole seconds and its access time: reading the file changed it)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class OpenFile:
    fd: int
    real: Path  # where the opened file is, whatever path led to it
    stamp: tuple[int, ...]  # of the file when opened
    error: type[FedgateError]  # what a failure to read it raises
    what: str  # how that failure names it

    @property
    def path(self) -> str:
        """A name that reaches this very file, for readers that take a name."""
        return f"/proc/self/fd/{self.fd}"

    @property
    def size(self) -> int:
        return self.stamp[2]

    def sha256(self) -> str:
        digest, at = hashlib.sha256(), 0
        try:
            while chunk := os.pread(self.fd, _CHUNK, at):
                digest.update(chunk)
                at += len(chunk)
        except OSError as exc:  # an I/O error of its disk: the file's, not ours
            raise self.error(f"{self.what} cannot be read ({_why(exc)})") from None
        return digest.hexdigest()

    def unchanged(self) -> bool:
        """Whether the file is as it was when opened: not rewritten, nor replaced or
        relinked (its change time), meanwhile."""
        return stamp_of(os.fstat(self.fd)) == self.stamp


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


@contextlib.contextmanager
def opened(path: Path, error: type[FedgateError], what: str) -> Iterator[OpenFile]:
    """``path`` opened for reading if it is a regular file (not followed if it is itself
    a symlink; a FIFO or device is refused without blocking). Refusals are ``error``s
    whose message starts with ``what``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise error(f"{what} cannot be opened ({_why(exc)})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} is not a regular file")
        try:
            real = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError as exc:  # no /proc (a sandbox without it): its place is unknown
            raise error(
                f"{what}: its place cannot be checked without /proc ({_why(exc)})"
            ) from None
        yield OpenFile(fd, real, stamp_of(st), error, what)
    finally:
        os.close(fd)
