"""The checks on a peer's PSI batches, and the set operations on points."""

from __future__ import annotations

import random
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.outcome import Code
from federation.psi.errors import PsiError
from federation.psi.group import POINT_BYTES, hash_to_points
from federation.psi.stream import (
    MATCH_CHUNK,
    Inbound,
    Limits,
    batches,
    intersection_size,
    permutation,
    shuffled,
)

WHAT = "the requester's blinded set"
SMALL = Limits(max_batch_points=8, max_set=100)


def _points(n: int, label: bytes = b"stream-test") -> bytes:
    return bytes(hash_to_points(label, [i.to_bytes(4, "big") for i in range(n)]))


def _records(buf: bytes | bytearray) -> list[bytes]:
    return [bytes(buf[i : i + POINT_BYTES]) for i in range(0, len(buf), POINT_BYTES)]


def _refused(call: object, *args: object) -> PsiError:
    assert callable(call)
    with pytest.raises(PsiError) as caught:
        call(*args)
    return caught.value


def _fed(points: bytes, declared: int, limits: Limits = SMALL) -> Inbound:
    inbound = Inbound(declared, limits, WHAT)
    for seq, chunk in batches(points, limits.max_batch_points):
        inbound.add(seq, chunk)
    return inbound


@pytest.mark.parametrize(("count", "max_points", "sizes"), [(20, 8, [8, 8, 4]), (16, 8, [8, 8])])
def test_batches_split_in_order(count: int, max_points: int, sizes: list[int]) -> None:
    points = _points(count)
    for buf in (points, bytearray(points)):
        out = list(batches(buf, max_points))
        assert [seq for seq, _ in out] == list(range(len(sizes)))
        assert [len(chunk) // POINT_BYTES for _, chunk in out] == sizes
        assert all(type(chunk) is bytes for _, chunk in out)
        assert b"".join(chunk for _, chunk in out) == points


def test_batches_pass_one_small_bytes_buffer_through_and_skip_an_empty_one() -> None:
    points = _points(3)
    [(seq, chunk)] = list(batches(points, 8))
    assert seq == 0 and chunk is points
    assert list(batches(b"", 8)) == []
    assert _refused(lambda: list(batches(points[:-1], 8))).code is Code.INVALID_ARGUMENT
    assert _refused(lambda: list(batches(points, 0))).code is Code.INVALID_ARGUMENT


def test_inbound_takes_the_declared_set() -> None:
    points = _points(20)
    inbound = _fed(points, 20)
    assert inbound.received == 20
    assert inbound.finish() == points
    assert _refused(inbound.finish).code is Code.FAILED_PRECONDITION


def test_inbound_takes_an_empty_set() -> None:
    assert Inbound(0, SMALL, WHAT).finish() == b""


def test_inbound_refuses_a_replayed_batch() -> None:
    points = _points(10)
    inbound = Inbound(10, SMALL, WHAT)
    inbound.add(0, points[: 4 * POINT_BYTES])
    err = _refused(inbound.add, 0, points[: 4 * POINT_BYTES])
    assert err.code is Code.INVALID_ARGUMENT
    assert err.reason == (
        f"{WHAT}: batch 0 arrived where batch 1 was expected (replayed or reordered)"
    )
    # The direction is over: even the right batch is refused now.
    assert _refused(inbound.add, 1, points[4 * POINT_BYTES :]).code is Code.FAILED_PRECONDITION
    assert _refused(inbound.finish).code is Code.FAILED_PRECONDITION


def test_inbound_refuses_a_reordered_batch() -> None:
    err = _refused(Inbound(10, SMALL, WHAT).add, 5, _points(2))
    assert "batch 5 arrived where batch 0 was expected" in err.reason


def test_inbound_refuses_an_oversized_batch() -> None:
    err = _refused(Inbound(20, SMALL, WHAT).add, 0, _points(9))
    assert err.code is Code.RESOURCE_EXHAUSTED
    assert "holds 9 points, more than the 8 a batch may hold" in err.reason


@pytest.mark.parametrize(("payload", "words"), [(b"", "is empty"), (bytes(33), "33 bytes")])
def test_inbound_refuses_an_empty_or_ragged_batch(payload: bytes, words: str) -> None:
    err = _refused(Inbound(5, SMALL, WHAT).add, 0, payload)
    assert err.code is Code.INVALID_ARGUMENT
    assert words in err.reason


def test_inbound_refuses_more_points_than_declared() -> None:
    inbound = Inbound(10, SMALL, WHAT)
    points = _points(12)
    inbound.add(0, points[: 8 * POINT_BYTES])
    err = _refused(inbound.add, 1, points[8 * POINT_BYTES :])
    assert err.code is Code.INVALID_ARGUMENT
    # Neither the declared size nor the count so far: a reason reaches the peer, the
    # home and the analyst (review, 2026-12-04: it named both).
    assert err.reason == f"{WHAT}: a batch brings more points than were declared"


def test_inbound_refuses_fewer_points_than_declared() -> None:
    inbound = _fed(_points(9), 10)
    err = _refused(inbound.finish)
    assert err.code is Code.INVALID_ARGUMENT
    assert err.reason == f"{WHAT}: fewer points arrived than were declared"


def test_inbound_refuses_duplicate_points() -> None:
    points = _points(10)
    twice = points + points[3 * POINT_BYTES : 4 * POINT_BYTES]  # one point again, in batch 1
    err = _refused(_fed(twice, 11).finish)
    assert err.code is Code.INVALID_ARGUMENT
    assert err.reason == f"{WHAT} holds duplicate points"


def test_inbound_refuses_a_point_off_the_group_naming_batch_and_point() -> None:
    points = bytearray(_points(12))
    points[10 * POINT_BYTES + 31] |= 0x80  # the 3rd point of batch 1
    inbound = Inbound(12, SMALL, WHAT)
    inbound.add(0, bytes(points[: 8 * POINT_BYTES]))
    err = _refused(inbound.add, 1, bytes(points[8 * POINT_BYTES :]))
    assert err.code is Code.INVALID_ARGUMENT
    assert err.reason == (
        f"{WHAT}, batch 1: point 3 of the batch is not a canonical ristretto255 point: "
        "it has the high bit set"
    )


@pytest.mark.parametrize(
    ("declared", "code"), [(101, Code.RESOURCE_EXHAUSTED), (-1, Code.INVALID_ARGUMENT)]
)
def test_inbound_refuses_a_declared_size_out_of_range(declared: int, code: Code) -> None:
    err = _refused(Inbound, declared, SMALL, WHAT)
    assert err.code is code
    assert err.reason.startswith(WHAT)


def test_shuffled_is_a_permutation_in_a_new_order() -> None:
    points = _points(1000)
    out = shuffled(points)
    assert isinstance(out, bytearray)
    assert sorted(_records(out)) == sorted(_records(points))
    assert out != points
    assert shuffled(points) != out
    assert shuffled(b"") == bytearray()
    assert _refused(shuffled, points[:-1]).code is Code.INVALID_ARGUMENT


def test_permutation_orders_every_record_once() -> None:
    order = permutation(1000)
    assert sorted(order.tolist()) == list(range(1000))
    assert order.tolist() != list(range(1000))
    assert permutation(0).size == 0
    assert _refused(permutation, -1).code is Code.INVALID_ARGUMENT


def _random_set(rng: random.Random, n: int) -> set[bytes]:
    return {rng.randbytes(POINT_BYTES) for _ in range(n)}


@pytest.mark.parametrize(
    ("n_a", "n_b", "shared"),
    [(0, 0, 0), (0, 50, 0), (50, 0, 0), (500, 700, 0), (600, 600, 600), (800, 300, 250)],
)
def test_intersection_size_matches_python_sets(n_a: int, n_b: int, shared: int) -> None:
    rng = random.Random(n_a * 1000 + n_b)
    common = _random_set(rng, shared)
    a = list(common | _random_set(rng, n_a - shared))
    b = list(common | _random_set(rng, n_b - shared))
    rng.shuffle(a)
    rng.shuffle(b)
    assert intersection_size(b"".join(a), bytearray(b"".join(b))) == len(set(a) & set(b))


# Records that share their first 8 bytes in runs of 2 and more, differing anywhere after:
# the paths that compare whole records rather than prefixes.
_record = st.builds(
    lambda head, mid, tail: head * 8 + mid * 16 + tail * 8,
    st.sampled_from([b"\x00", b"\x01", b"\xff"]),
    st.sampled_from([b"\x00", b"\x7f", b"\x80"]),
    st.sampled_from([b"\x00", b" ", b"\xfe"]),
)


@given(a=st.sets(_record), b=st.sets(_record))
def test_intersection_size_is_exact_when_prefixes_collide(a: set[bytes], b: set[bytes]) -> None:
    assert intersection_size(b"".join(a), b"".join(b)) == len(a & b)


def test_intersection_size_of_a_set_with_itself_shuffled() -> None:
    points = secrets.token_bytes(5000 * POINT_BYTES)
    assert intersection_size(points, shuffled(points)) == 5000


def test_intersection_size_over_several_chunks_with_colliding_prefixes() -> None:
    """More matches than one comparison chunk holds, plus crafted records that share a
    prefix within each side: every path of the count at once."""
    shared = secrets.token_bytes((MATCH_CHUNK + 900) * POINT_BYTES)
    only_a = secrets.token_bytes(3000 * POINT_BYTES)
    crafted = [b"\x07" * 8 + bytes([i]) * 24 for i in range(6)]
    a = shared + only_a + b"".join(crafted[:4])
    b = shuffled(shared + b"".join(crafted[2:]))
    assert intersection_size(a, b) == MATCH_CHUNK + 900 + 2
    assert intersection_size(b, a) == MATCH_CHUNK + 900 + 2
