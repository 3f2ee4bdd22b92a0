"""Paillier with the DJN randomiser: round trips, the homomorphism, CRT encryption giving
the very same ciphertexts, and the checks on a peer's key and ciphertexts."""

from __future__ import annotations

import os
import random
import secrets

import gmpy2  # type: ignore[import-untyped]
import pytest

from federation.outcome import Code
from federation.psi.errors import PsiError
from federation.psi.paillier import (
    KEY_BITS,
    PROOF_ROUNDS,
    Encryptor,
    PrivateKey,
    PublicKey,
    add,
    add_plain,
    ciphertexts_from_bytes,
    encrypt_classic,
    proof_challenges,
    rerandomise,
    sum_ciphertexts,
)


@pytest.fixture(scope="module")
def enc(pk: PublicKey) -> Encryptor:
    return Encryptor(pk)


@pytest.fixture(scope="module")
def enc_crt(sk: PrivateKey) -> Encryptor:
    return Encryptor(sk.public, private=sk)


def refused(code: Code = Code.INVALID_ARGUMENT) -> pytest.RaisesExc[PsiError]:
    return pytest.raises(PsiError, check=lambda e: e.code is code)


def test_key_shape(sk: PrivateKey, pk: PublicKey) -> None:
    assert pk.n.bit_length() == KEY_BITS
    assert pk.ciphertext_bytes == 512
    assert pk.nsquare == pk.n**2
    p, q = int(sk._p), int(sk._q)
    assert p * q == pk.n and p != q
    assert p % 4 == 3 and q % 4 == 3  # DJN's admissible modulus
    # hs is an n-th residue: it encrypts 0, so it can stand for randomness
    assert sk.decrypt(pk.hs) == 0
    assert str(p) not in repr(sk) and str(q) not in repr(sk)


def test_table_is_cheap(enc: Encryptor, enc_crt: Encryptor) -> None:
    assert enc.precompute_seconds < 1.0
    assert enc_crt.precompute_seconds < 1.0


@pytest.mark.parametrize("crt", [False, True])
def test_round_trips_at_the_boundaries(
    sk: PrivateKey, pk: PublicKey, enc: Encryptor, enc_crt: Encryptor, crt: bool
) -> None:
    e = enc_crt if crt else enc
    n = pk.n
    half = n // 2
    for m in [0, 1, 2, n - 1, n - 2, half, half + 1, -1, -half, 10**30, -(10**30)]:
        c = e.encrypt(m)
        assert 0 < c < pk.nsquare
        assert sk.decrypt(c) == m % n
    for m in [0, 1, -1, half, -half, 123456789, -987654321]:
        assert sk.decrypt_signed(e.encrypt(m)) == m
    # (-n/2, n/2]: half + 1 is the first value read as negative
    assert sk.decrypt_signed(e.encrypt(half + 1)) == half + 1 - n


def test_crt_encryption_is_the_same_function(enc: Encryptor, enc_crt: Encryptor) -> None:
    for m in [0, 5, -5, secrets.randbits(2000)]:
        x = os.urandom(enc.exponent_bytes)
        assert enc._encrypt_with(m, x) == enc_crt._encrypt_with(m, x)


def test_encryption_is_randomised(sk: PrivateKey, enc: Encryptor) -> None:
    cs = {enc.encrypt(7) for _ in range(20)}
    assert len(cs) == 20
    assert {sk.decrypt(c) for c in cs} == {7}
    c = next(iter(cs))
    fresh = rerandomise(enc, c)
    assert fresh != c and sk.decrypt(fresh) == 7


def test_longer_exponent(sk: PrivateKey, pk: PublicKey) -> None:
    e = Encryptor(pk, exponent_bits=1024)
    assert e.exponent_bytes == 128
    assert sk.decrypt_signed(e.encrypt(-42)) == -42
    with refused():
        Encryptor(pk, exponent_bits=128)  # shorter than the argued minimum
    with refused():
        Encryptor(pk, exponent_bits=260)  # not whole windows


def test_homomorphic_sum_of_1000(
    sk: PrivateKey, pk: PublicKey, enc: Encryptor, enc_crt: Encryptor
) -> None:
    rng = random.Random(12)
    values = [rng.randint(-(2**60), 2**60) for _ in range(1000)]
    cs = enc.encrypt_many(values[:500]) + enc_crt.encrypt_many(values[500:])
    assert len(cs) == 1000
    assert sk.decrypt_signed(sum_ciphertexts(pk, cs)) == sum(values)
    assert sk.decrypt_signed(add(pk, cs[0], cs[1])) == values[0] + values[1]
    assert sk.decrypt_signed(add_plain(pk, cs[2], -(10**20))) == values[2] - 10**20
    assert sk.decrypt(sum_ciphertexts(pk, [])) == 0


def test_classic_encryption(sk: PrivateKey, pk: PublicKey) -> None:
    assert sk.decrypt_signed(encrypt_classic(pk, -31)) == -31
    assert encrypt_classic(pk, 3) != encrypt_classic(pk, 3)


def test_wire_form_round_trips(sk: PrivateKey, pk: PublicKey, enc: Encryptor) -> None:
    values = list(range(-50, 50))
    buf = enc.encrypt_to_bytes(values)
    assert len(buf) == 100 * pk.ciphertext_bytes
    cs = ciphertexts_from_bytes(pk, buf)
    assert [sk.decrypt_signed(c) for c in cs[:5]] == values[:5]
    assert sk.decrypt_signed(sum_ciphertexts(pk, cs)) == sum(values)
    assert all(type(c) is int for c in cs)
    assert ciphertexts_from_bytes(pk, b"") == []


def _wire(pk: PublicKey, *cs: int) -> bytes:
    return b"".join(c.to_bytes(pk.ciphertext_bytes, "big") for c in cs)


def test_ciphertext_checks(sk: PrivateKey, pk: PublicKey, enc: Encryptor) -> None:
    good = enc.encrypt(1)
    width = pk.ciphertext_bytes
    p = int(sk._p)
    bad = {
        "zero": 0,
        "n^2": pk.nsquare,
        "all ones": 256**width - 1,
        "multiple of p": p * (good % (pk.n // p)),
        "multiple of n": pk.n * 12345,
    }
    for name, c in bad.items():
        with pytest.raises(PsiError) as info:
            ciphertexts_from_bytes(pk, _wire(pk, good, good, c, good))
        assert info.value.code is Code.INVALID_ARGUMENT, name
        assert "ciphertext 3 " in info.value.reason, name
        assert str(c) not in info.value.reason
    with refused():
        ciphertexts_from_bytes(pk, _wire(pk, good)[:-1])
    with refused():
        ciphertexts_from_bytes(pk, _wire(pk, good) + b"\x00")


def test_decrypt_refuses_non_ciphertexts(sk: PrivateKey, pk: PublicKey) -> None:
    p = int(sk._p)
    for c in [0, -1, pk.nsquare, pk.nsquare + 1, p, p * 7, pk.n]:
        with refused():
            sk.decrypt(c)


def test_public_key_bytes(pk: PublicKey) -> None:
    raw = pk.to_bytes()
    assert len(raw) == 3 + (3 + PROOF_ROUNDS) * 256
    assert PublicKey.from_bytes(raw) == pk
    with refused():
        PublicKey.from_bytes(raw[:-1])
    with refused():
        PublicKey.from_bytes(b"\x01" + raw[1:])  # the format without the modulus's proof
    with refused():
        PublicKey.from_bytes(b"")
    with refused():
        PublicKey.from_bytes(raw, max_bits=2047)


def _key_bytes(
    n: int, hs: int, width: int | None = None, proof: tuple[int, ...] | None = None
) -> bytes:
    """A key as a peer may send it; its proof the honest one's form (sigma_i = rho_i: a
    modulus whose owner cannot take n-th roots has nothing better)."""
    width = width or (n.bit_length() + 7) // 8
    if proof is None:
        proof = tuple(rho % (1 << (8 * width)) for rho in proof_challenges(n))
    return (
        b"\x02"
        + width.to_bytes(2, "big")
        + n.to_bytes(width, "big")
        + hs.to_bytes(2 * width, "big")
        + b"".join(sigma.to_bytes(width, "big") for sigma in proof)
    )


def _tagging_modulus() -> int:
    """``n = r * s`` with a prime ``r`` dividing ``s - 1``: gcd(n, phi(n)) = r, so a
    ciphertext keeps an r-th power class mod s through any masking (review, 2026-12-05:
    such a key passed every check and let its owner read which of its rows matched)."""
    r = int(gmpy2.next_prime(secrets.randbits(64) | (1 << 63)))
    while True:
        s = ((secrets.randbits(1990) | (1 << 1989)) & ~1) * r + 1  # an even k: s odd
        if gmpy2.is_prime(s):
            return r * s


def test_public_key_checks(sk: PrivateKey, pk: PublicKey) -> None:
    n, hs, p = pk.n, pk.hs, int(sk._p)
    small = PrivateKey.generate(1024).public
    cases = {
        "short modulus": (_key_bytes(small.n, small.hs), "bits"),
        "non-minimal width": (_key_bytes(n, hs, width=257), "bits"),
        "even modulus": (_key_bytes(n + 1, hs), "two large primes"),
        "small factor": (_key_bytes(3 * ((n // 3) | 1), hs), "two large primes"),
        "prime modulus": (_key_bytes(_prime_of_bits(2048), 4), "two large primes"),
        "square modulus": (_key_bytes(p * p, 4), "two large primes"),
        "hs zero": (_key_bytes(n, 0), "randomiser base"),
        "hs one": (_key_bytes(n, 1), "randomiser base"),
        "hs n^2 - 1": (_key_bytes(n, n * n - 1), "randomiser base"),
        "hs not a unit": (_key_bytes(n, p * 3), "randomiser base"),
        "hs out of range": (_key_bytes(n, n * n + 5), "randomiser base"),
        "factor below 2^16": (_key_bytes(65521 * ((n // 65521) | 1), hs), "two large primes"),
        "gcd(n, phi(n)) = r": (_key_bytes(_tagging_modulus(), 4), "proof does not hold"),
        "another key's proof": (_key_bytes(n, hs, proof=small.proof), "proof does not hold"),
        "a proof of ones": (_key_bytes(n, hs, proof=(1,) * PROOF_ROUNDS), "proof does not hold"),
    }
    for name, (raw, why) in cases.items():
        with pytest.raises(PsiError) as info:
            PublicKey.from_bytes(raw)
        assert info.value.code is Code.INVALID_ARGUMENT, name
        assert why in info.value.reason, name


def _prime_of_bits(bits: int) -> int:
    return int(gmpy2.next_prime(secrets.randbits(bits) | (1 << (bits - 1))))


def test_private_key_checks(sk: PrivateKey, pk: PublicKey) -> None:
    p = int(sk._p)
    with refused():
        PrivateKey.generate(1023)
    with refused():
        PrivateKey.generate(256)
    with refused():
        PrivateKey(p, p)
    with refused():
        PrivateKey(p, p + 1)
    other = PrivateKey(int(sk._p), int(sk._q))  # same n, fresh hs
    assert other.public.n == pk.n and other.public.hs != pk.hs
    with refused():
        Encryptor(pk, private=other)
