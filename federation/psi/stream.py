"""What a peer sends in a PSI session, checked; and the set operations on points.

A set of points travels as numbered batches of concatenated 32-byte points. ``Inbound``
takes one direction of them and refuses, with a reason for the user, anything but the
declared number of valid, distinct points in order. The set operations (``shuffled``,
``intersection_size``) work on whole buffers with numpy, never on a Python set of a
million ``bytes`` objects.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from federation.outcome import Code
from federation.psi.errors import PsiError
from federation.psi.group import POINT_BYTES, check_points

_Rows = npt.NDArray[np.uint8]
_RECORD = np.dtype(f"V{POINT_BYTES}")  # raw bytes: equality and order are memcmp's
Transform = Callable[[int, bytes], bytes]  # (batch number, its points) -> as many points


@dataclass(frozen=True)
class Limits:
    """The most a peer may send: points in one batch, and points in one set."""

    max_batch_points: int = 4096
    max_set: int = 2_000_000


def _count(buf: bytes | bytearray | memoryview) -> int:
    count, rest = divmod(len(buf), POINT_BYTES)
    if rest:
        raise PsiError(
            Code.INVALID_ARGUMENT,
            f"a set of points is {len(buf):,} bytes, not a whole number of {POINT_BYTES}",
        )
    return count


def _rows(buf: bytes | bytearray | memoryview) -> _Rows:
    """The points of ``buf`` as an (n, 32) array over the same memory (no copy)."""
    return np.frombuffer(buf, dtype=np.uint8).reshape(_count(buf), POINT_BYTES)


def batches(buf: bytes | bytearray, max_points: int) -> Iterator[tuple[int, bytes]]:
    """(sequence number from 0, chunk of at most ``max_points`` points) over ``buf``.

    Each chunk is copied once, out of a memoryview; a ``bytes`` buffer that fits in one
    batch is passed on as it is. An empty buffer yields no batch.
    """
    if max_points < 1:
        raise PsiError(Code.INVALID_ARGUMENT, "a batch holds at least one point")
    count = _count(buf)
    if isinstance(buf, bytes) and 0 < count <= max_points:
        yield 0, buf
        return
    view = memoryview(buf)
    step = max_points * POINT_BYTES
    for seq, start in enumerate(range(0, count * POINT_BYTES, step)):
        yield seq, view[start : start + step].tobytes()


class Inbound:
    """One direction of received points: in-order batches, up to exactly ``declared``.

    The buffer for the declared set is allocated zeroed by numpy (``calloc``), so the
    memory a peer's declaration reserves becomes resident only as its points arrive. The
    first refusal ends the direction: every later call is refused too.

    ``transform`` (a scalar multiplication) is applied to each batch as it arrives and
    the buffer holds its result, so a set is held once, never once as received and once
    multiplied. The multiplication decodes every point and must refuse one that does not
    decode; duplicates are found among the multiplied points (a bijection keeps them).
    """

    def __init__(
        self, declared: int, limits: Limits, what: str, *, transform: Transform | None = None
    ) -> None:
        if declared < 0:
            raise PsiError(Code.INVALID_ARGUMENT, f"{what} declares a negative number of points")
        if declared > limits.max_set:
            raise PsiError(
                Code.RESOURCE_EXHAUSTED,
                f"{what} declares {declared:,} points, more than the {limits.max_set:,} "
                "a set may hold",
            )
        self._declared = declared
        self._limits = limits
        self._what = what
        self._transform = transform
        self._buf: _Rows = np.zeros(declared * POINT_BYTES, dtype=np.uint8)
        self._received = 0
        self._next = 0
        self._closed: str | None = None

    @property
    def received(self) -> int:
        return self._received

    def add(self, seq: int, points: bytes) -> None:
        """Take batch ``seq``; refuse it if it is out of order, oversized or malformed."""
        self._open()
        try:
            self._add(seq, points)
        except PsiError:
            self._closed = "was refused earlier"
            raise

    def _add(self, seq: int, points: bytes) -> None:
        what = self._what
        if seq != self._next:
            raise PsiError(
                Code.INVALID_ARGUMENT,
                f"{what}: batch {seq:,} arrived where batch {self._next:,} was expected "
                "(replayed or reordered)",
            )
        count, rest = divmod(len(points), POINT_BYTES)
        if rest:
            raise PsiError(
                Code.INVALID_ARGUMENT,
                f"{what}: batch {seq:,} is {len(points):,} bytes, not a whole number of "
                f"{POINT_BYTES}-byte points",
            )
        if count == 0:
            raise PsiError(Code.INVALID_ARGUMENT, f"{what}: batch {seq:,} is empty")
        if count > self._limits.max_batch_points:
            raise PsiError(
                Code.RESOURCE_EXHAUSTED,
                f"{what}: batch {seq:,} holds {count:,} points, more than the "
                f"{self._limits.max_batch_points:,} a batch may hold",
            )
        if self._received + count > self._declared:
            raise PsiError(
                Code.INVALID_ARGUMENT,
                f"{what}: a batch brings more points than were declared",
            )
        try:
            check_points(points, decode=self._transform is None)
            if self._transform is not None:
                points = self._transform(seq, points)
        except PsiError as exc:
            raise PsiError(exc.code, f"{what}, batch {seq:,}: {exc.reason}") from None
        if len(points) != count * POINT_BYTES:
            raise PsiError(Code.INTERNAL, f"{what}: a batch changed size when multiplied")
        start = self._received * POINT_BYTES
        self._buf[start : start + len(points)] = np.frombuffer(points, dtype=np.uint8)
        self._received += count
        self._next += 1

    def finish(self) -> memoryview:
        """The whole set, once every declared point arrived and no point came twice (a
        view of the buffer: a set is not copied to be handed on)."""
        self._open()
        what = self._what
        if self._received != self._declared:
            self._closed = "was refused earlier"
            raise PsiError(
                Code.INVALID_ARGUMENT,
                f"{what}: fewer points arrived than were declared",
            )
        rows = self._buf.reshape(self._declared, POINT_BYTES)
        if _distinct([rows]) != self._declared:
            self._closed = "was refused earlier"
            raise PsiError(Code.INVALID_ARGUMENT, f"{what} holds duplicate points")
        out = self._buf.data
        self._buf = np.zeros(0, dtype=np.uint8)
        self._closed = "is already complete"
        return out

    def _open(self) -> None:
        if self._closed is not None:
            raise PsiError(Code.FAILED_PRECONDITION, f"{self._what} {self._closed}")


def permutation(count: int) -> npt.NDArray[np.intp]:
    """A uniformly random order of ``count`` records (to shuffle points and their tags alike).

    The order is that of 64-bit keys drawn from the OS CSPRNG (``secrets``), one per record:
    unlike a numpy generator's stream, nothing observed can predict it. Two equal keys
    (probability under n²/2⁶⁵, 3·10⁻⁸ for a million records) only fix the order of that pair.
    """
    if count < 0:
        raise PsiError(Code.INVALID_ARGUMENT, "a set cannot hold a negative number of points")
    return np.argsort(np.frombuffer(secrets.token_bytes(8 * count), dtype=np.uint64))


def shuffled(buf: bytes | bytearray) -> bytearray:
    """The points of ``buf`` in a uniformly random order (see ``permutation``)."""
    rows = _rows(buf)
    out = bytearray(len(buf))
    np.take(rows, permutation(rows.shape[0]), axis=0, out=_rows(out))
    return out


MATCH_CHUNK = 1 << 16  # candidate pairs compared whole at a time (bounded temporaries)


def intersection_size(a: bytes | bytearray | memoryview, b: bytes | bytearray | memoryview) -> int:
    """How many points are in both ``a`` and ``b``; each side must be duplicate-free.

    The smaller side's 8-byte prefixes are sorted and the other side's are looked up in
    them; a prefix found once is compared whole, in chunks, so a million-point match holds
    a few 8-byte arrays, never a sorted copy of both sets. Prefixes that repeat within a
    side (a crafted set; 10^-8 by chance at a million) are counted exactly by ``_distinct``.
    """
    rows_a, rows_b = _rows(a), _rows(b)
    if rows_a.shape[0] > rows_b.shape[0]:
        rows_a, rows_b = rows_b, rows_a
    if rows_a.shape[0] == 0:
        return 0
    keys = rows_a.view(np.uint64)[:, 0]
    order = np.argsort(keys)
    sorted_keys = keys[order]
    probe = rows_b.view(np.uint64)[:, 0]
    lo = np.searchsorted(sorted_keys, probe, side="left")
    hi = np.searchsorted(sorted_keys, probe, side="right")
    del sorted_keys
    width = hi - lo
    del hi
    count = 0
    single = np.flatnonzero(width == 1)
    for start in range(0, single.size, MATCH_CHUNK):
        j = single[start : start + MATCH_CHUNK]
        same = rows_a[order[lo[j]]] == rows_b[j]
        count += int(same.all(axis=1).sum())
    several = np.flatnonzero(width > 1)
    if several.size:
        members = np.ascontiguousarray(rows_a[_run_members(order, lo, width, several)])
        probes = np.ascontiguousarray(rows_b[several])
        count += members.shape[0] + probes.shape[0] - _distinct([members, probes])
    return count


def _run_members(
    order: npt.NDArray[np.intp],
    lo: npt.NDArray[np.intp],
    width: npt.NDArray[np.intp],
    probes: npt.NDArray[np.intp],
) -> npt.NDArray[np.intp]:
    """Rows of the sorted side under the repeated prefixes that ``probes`` found, each
    run once."""
    starts, first = np.unique(lo[probes], return_index=True)
    lengths = width[probes][first]
    before = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    positions = np.repeat(starts - before, lengths) + np.arange(int(lengths.sum()))
    members: npt.NDArray[np.intp] = order[positions]
    return members


def _distinct(parts: list[_Rows]) -> int:
    """The number of distinct 32-byte records over ``parts``, exactly.

    Only the first 8 bytes of each record are sorted (a uint64 argsort). A record whose
    prefix no other shares is distinct; runs of two equal prefixes are compared whole,
    row against row; longer runs (rare for points, but a peer may craft them) are counted
    by ``np.unique`` on the raw records of those runs only.
    """
    total = sum(p.shape[0] for p in parts)
    if total < 2:
        return total
    keys = np.concatenate([p.view(np.uint64)[:, 0] for p in parts])
    order = np.argsort(keys)
    sorted_keys = keys[order]
    same = sorted_keys[1:] == sorted_keys[:-1]
    if not same.any():
        return total
    starts = np.flatnonzero(np.concatenate(([True], ~same)))
    lengths = np.diff(np.append(starts, total))
    repeated = 0
    pairs = starts[lengths == 2]
    if pairs.size:
        first = _gather(parts, order[pairs])
        second = _gather(parts, order[pairs + 1])
        repeated += int((first == second).all(axis=1).sum())
    long_runs = lengths > 2
    if long_runs.any():
        run_of = np.repeat(long_runs, lengths)
        rows = np.ascontiguousarray(_gather(parts, order[run_of]))
        repeated += rows.shape[0] - np.unique(rows.view(_RECORD).ravel()).size
    return total - repeated


def _gather(parts: list[_Rows], index: npt.NDArray[np.intp]) -> _Rows:
    """Rows ``index`` of the concatenation of ``parts``, without concatenating them."""
    out = np.empty((index.size, POINT_BYTES), dtype=np.uint8)
    offset = 0
    for part in parts:
        size = part.shape[0]
        mine = np.flatnonzero((index >= offset) & (index < offset + size))
        out[mine] = np.take(part, index[mine] - offset, axis=0)
        offset += size
    return out
