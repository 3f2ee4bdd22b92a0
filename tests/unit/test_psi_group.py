"""The ristretto255 group of PSI, on the real libsodium that rbcl bundles."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from federation.outcome import Code
from federation.psi.errors import PsiError
from federation.psi.group import (
    POINT_BYTES,
    SCALAR_BYTES,
    blind,
    check_points,
    floor_rates,
    hash_to_points,
    new_scalar,
)
from federation.psi.sodium import rbcl

LABEL = b"session-1|enterprise_registry|tax_records"


def _items(n: int) -> list[bytes]:
    return [f"91310000MA1FL{i:05d}".encode() for i in range(n)]


def _points(buf: bytes | bytearray) -> list[bytes]:
    return [bytes(buf[i : i + POINT_BYTES]) for i in range(0, len(buf), POINT_BYTES)]


def _high_bit(point: bytes) -> bytes:
    return point[:-1] + bytes([point[-1] | 0x80])


def _non_decoding() -> bytes:
    """A 32-byte string with the high bit clear that libsodium does not decode."""
    for _ in range(1000):  # about 7 in 8 random strings fail to decode
        candidate = bytearray(secrets.token_bytes(POINT_BYTES))
        candidate[-1] &= 0x7F
        if not rbcl.crypto_core_ristretto255_is_valid_point(bytes(candidate)):
            return bytes(candidate)
    raise AssertionError("1000 random strings all decoded")


def _refusal(buf: bytes) -> PsiError:
    with pytest.raises(PsiError) as caught:
        check_points(buf)
    assert caught.value.code is Code.INVALID_ARGUMENT
    return caught.value


def test_psi_error_carries_code_and_reason() -> None:
    err = PsiError(Code.INVALID_ARGUMENT, "the 3rd batch holds a point off the group")
    assert err.code is Code.INVALID_ARGUMENT
    assert err.reason == str(err) == "the 3rd batch holds a point off the group"


def test_new_scalars_are_fresh_and_non_zero() -> None:
    scalars = {new_scalar() for _ in range(50)}
    assert len(scalars) == 50
    assert all(len(s) == SCALAR_BYTES and any(s) for s in scalars)


def test_blinding_commutes() -> None:
    points = hash_to_points(LABEL, _items(200))
    a, b = new_scalar(), new_scalar()
    ab = blind(blind(points, a), b)
    ba = blind(blind(points, b), a)
    assert ab == ba
    assert len(ab) == len(points) == 200 * POINT_BYTES
    assert not set(_points(ab)) & set(_points(points))
    check_points(ab)


def test_blinding_is_undone_by_the_inverse_scalar() -> None:
    points = hash_to_points(LABEL, _items(20))
    a = new_scalar()
    inverse = rbcl.crypto_core_ristretto255_scalar_invert(a)
    assert blind(blind(points, a), inverse) == points


def test_blind_accepts_every_buffer_type_and_keeps_order() -> None:
    points = hash_to_points(LABEL, _items(10))
    a = new_scalar()
    expected = blind(bytes(points), a)
    assert blind(points, a) == expected
    assert blind(memoryview(points), a) == expected
    one_by_one = b"".join(bytes(blind(p, a)) for p in _points(points))
    assert expected == one_by_one
    assert blind(b"", a) == bytearray()


def test_hashing_is_deterministic_and_bound_to_the_label() -> None:
    items = _items(100)
    first = hash_to_points(LABEL, items)
    assert hash_to_points(LABEL, items) == first
    assert len(set(_points(first))) == 100
    check_points(first)
    other = hash_to_points(LABEL + b"x", items)
    assert not set(_points(first)) & set(_points(other))
    assert hash_to_points(b"", [b""]) != hash_to_points(b"x", [b""])


def test_label_and_item_cannot_trade_bytes() -> None:
    # With label || item hashed as one string, these two would be the same input.
    assert hash_to_points(b"ab", [b"c"]) != hash_to_points(b"a", [b"bc"])
    assert hash_to_points(b"a" * 100, [b"x"]) != hash_to_points(b"a" * 101, [b"x"])


def test_libsodium_alone_accepts_a_high_bit_and_the_identity_but_we_do_not() -> None:
    point = bytes(hash_to_points(LABEL, [b"one"]))
    assert point[-1] & 0x80 == 0
    high = _high_bit(point)
    # libsodium 1.0.18 ignores the top bit: two encodings of one point both pass its check,
    # and it multiplies either to the same product.
    assert rbcl.crypto_core_ristretto255_is_valid_point(high)
    scalar = new_scalar()
    assert rbcl.crypto_scalarmult_ristretto255(scalar, high) == bytes(blind(point, scalar))
    assert rbcl.crypto_core_ristretto255_is_valid_point(bytes(POINT_BYTES))
    assert "has the high bit set" in _refusal(high).reason
    assert "is the identity" in _refusal(bytes(POINT_BYTES)).reason


def test_check_refuses_a_string_that_does_not_decode() -> None:
    reason = _refusal(_non_decoding()).reason
    assert (
        reason == "point 1 of the batch is not a canonical ristretto255 point: it does not decode"
    )


def test_check_names_the_first_bad_point_whichever_check_caught_it() -> None:
    good = _points(hash_to_points(LABEL, _items(3)))
    high = _high_bit(good[0])
    bad = _non_decoding()
    zero = bytes(POINT_BYTES)
    assert "point 3 " in _refusal(b"".join([*good[:2], bad, high])).reason
    assert "does not decode" in _refusal(b"".join([*good[:2], bad, high])).reason
    assert "point 2 of the batch" in _refusal(b"".join([good[0], high, bad])).reason
    assert "high bit" in _refusal(b"".join([good[0], high, bad])).reason
    assert "point 4 of the batch" in _refusal(b"".join([*good, zero, high])).reason
    assert "identity" in _refusal(b"".join([*good, zero, high])).reason


@pytest.mark.parametrize("size", [1, 31, 33, 63])
def test_check_refuses_a_ragged_batch(size: int) -> None:
    assert "not a whole number" in _refusal(bytes(size)).reason


def test_check_accepts_an_empty_batch() -> None:
    check_points(b"")


def test_blind_refuses_bad_points_and_scalars() -> None:
    good = bytes(hash_to_points(LABEL, [b"one", b"two"]))
    scalar = new_scalar()
    for bad, position in ((good + _non_decoding(), 3), (bytes(POINT_BYTES) + good, 1)):
        with pytest.raises(PsiError) as caught:
            blind(bad, scalar)
        assert caught.value.code is Code.INVALID_ARGUMENT
        assert caught.value.reason.startswith(f"point {position} of the batch")
    with pytest.raises(PsiError, match="not a whole number"):
        blind(good[:-1], scalar)
    with pytest.raises(PsiError, match="32 bytes"):
        blind(good, scalar[:-1])


def test_floor_rates_measures_every_step_briefly() -> None:
    rates = floor_rates(0.06)
    assert set(rates) == {"hash_to_points", "blind", "check_points"}
    # C costs per point: blind ~36 µs, hash ~12 µs, check ~4 µs; a step is never free.
    assert all(0 < rate < 10_000_000 for rate in rates.values())
    assert rates["blind"] < rates["check_points"]


def _temporary_files_left(tmp_path: Path, code: str) -> list[str]:
    """The files ``code`` leaves in a temporary folder of its own (a fresh interpreter,
    ``TMPDIR`` pointed at an empty folder)."""
    folder = tmp_path / "tmp"
    folder.mkdir(parents=True)
    env = {**os.environ, "TMPDIR": str(folder)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    return sorted(p.name for p in folder.iterdir())


def test_loading_libsodium_leaves_no_file_behind(tmp_path: Path) -> None:
    """rbcl writes its libsodium to a temporary file and keeps it (2.8 MB a process);
    our binding removes it once loaded, and the library keeps working."""
    bare = _temporary_files_left(tmp_path / "bare", "import rbcl")
    assert len(bare) == 1 and bare[0].endswith(".so"), bare  # what the fix is for
    ours = _temporary_files_left(
        tmp_path / "ours",
        "from federation.psi.group import blind, hash_to_points, new_scalar\n"
        "assert len(blind(hash_to_points(b'label', [b'id']), new_scalar())) == 32\n",
    )
    assert ours == []
