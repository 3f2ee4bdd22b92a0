"""Paillier encryption with the Damgård–Jurik–Nielsen speed-up, on gmpy2.

The join aggregates (Private-Join-and-Compute style) need the value owner to encrypt
every value it holds (a million rows is the design size) and the matcher to multiply
the matched ciphertexts per group. Plain Paillier draws ``r`` in Z_n* and computes
``r^n mod n^2``: a 2048-bit exponentiation modulo a 4096-bit number, ~8 ms here, so
~130 encryptions/s (python-paillier, ``phe``, does the same at the same speed with
gmpy2 installed, slower without). This module does the same job ~60x faster:

- ``g = n + 1``, so ``g^m = 1 + m*n mod n^2``: the message costs one multiplication.
- DJN randomness (Damgård, Jurik, Nielsen, "A generalization of Paillier's public-key
  system with applications to electronic voting", IJIS 9(6), 2010; the same
  construction as Intel's pailliercryptolib ``PublicKey::enableDJN`` and SecretFlow
  HEU's ``paillier_zahlen``): the key carries ``hs = (-y^2)^n mod n^2`` for a random
  ``y``, and the randomiser of an encryption is ``hs^x`` for a random exponent ``x``
  instead of ``r^n``. ``hs`` is an n-th residue, so decryption is unchanged.
- ``hs`` is a fixed base, so ``hs^x`` comes from a table: ``T[i][b] = hs^(b * 2^(8i))``
  for 8-bit windows ``b`` of ``x``. With a 256-bit ``x`` that is 32 tables of 256
  residues (4 MiB at 2048-bit ``n``, built in ~35 ms), and one encryption is 32 modular
  multiplications, ~130 µs (~7 500/s on one core of this machine).
- When the encryptor holds the private key (the value owner encrypts under its own
  key), it multiplies modulo ``p^2`` and ``q^2`` (half-size numbers) and joins the two
  halves by CRT once: same ciphertext, ~1.4x faster.
- Decryption uses CRT over ``p`` and ``q``, as Paillier's paper (EUROCRYPT 1999) suggests.

The security assumption, stated plainly. DJN draw ``x`` uniformly from ``[0, 2^(k/2))``
for a ``k``-bit ``n``; Intel's library (``m_randbits = m_bits >> 1``) and HEU do the
same: 1024 bits at 2048-bit ``n``. That ``hs^x`` for such a short ``x`` looks like a
uniform element of ``<hs>`` is already an assumption beyond the DCR assumption (a
short-exponent one: ``<hs>`` has about 2^2047 elements). We shorten ``x`` further, to
``RANDOM_EXPONENT_BITS = 256 = 2 * 128`` bits, on the same kind of assumption: the
best known way to tell ``hs^x`` with a ``t``-bit ``x`` from a uniform element, or to
recover ``x``, is a generic one (Pollard's lambda / baby-step giant-step: ~2^(t/2)
steps, van Oorschot and Wiener, EUROCRYPT 1996; the decisional and computational
short-exponent problems are related by Koshiba and Kurosawa, PKC 2004), and Pohlig-
Hellman does not apply because the order of ``<hs>`` is secret (it needs ``p`` and
``q``). 2^128 steps is above the ~2^112 cost of factoring a 2048-bit ``n``, which caps
the key's strength anyway. Whoever wants DJN's own choice passes ``exponent_bits=1024``
to ``Encryptor`` (4x slower). Keys use an admissible modulus as DJN require
(``p = q = 3 mod 4``, ``gcd(p-1, q-1) = 2``): the group of elements of Jacobi symbol 1 is
then cyclic, and ``-y^2`` a random element of it.

Nor must the key owner's modulus be: masking hides which ciphertexts a sum holds only
when ``x -> x^n`` is a bijection on Z_n*, that is when gcd(n, phi(n)) = 1. A modulus
``n = r * s`` with a prime ``r`` dividing ``s - 1`` (or ``p^3``) passes every check a public
key allows, and lets its owner tag one honest ciphertext with a class no masking removes
and read, after the sums come back, whether that row matched (review, 2026-12-05). So a
public key carries a proof that gcd(n, phi(n)) = 1, checked before any of its
ciphertexts is used: Goldberg, Reyzin, Sagga and Baldimtsi, "Efficient noninteractive
certification of RSA moduli and beyond" (ASIACRYPT 2019), the gcd protocol made
non-interactive: ``n`` has no prime factor below ``PROOF_ALPHA``, and for
``PROOF_ROUNDS`` values ``rho_i`` hashed from ``n`` the owner gives ``sigma_i`` with
``sigma_i^n = rho_i mod n``. Were a prime ``r >= PROOF_ALPHA`` to divide gcd(n, phi(n)),
at most one unit in ``r`` would be an n-th power, so each round passes with chance at
most 1/``PROOF_ALPHA``: 2^-128 over the rounds.

Where the key owner's ``hs`` must not be trusted: the matcher masks the sums it returns
to the key owner. A dishonest key owner could publish an ``hs`` of small order, making
``hs^x`` guessable, and then strip the randomiser of a masked sum to learn which of its
own ciphertexts were multiplied in (which rows matched). So ``encrypt_classic`` -
randomiser ``r^n`` with ``r`` uniform in Z_n*, independent of ``hs`` and of any
short-exponent assumption - is what the matcher uses for masks (a few per session,
~8 ms each).
"""

from __future__ import annotations

import hashlib
import math
import operator
import os
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import gmpy2  # no stubs, no py.typed
from gmpy2 import mpz

from federation.outcome import Code
from federation.psi.errors import PsiError, invalid

KEY_BITS = 2048
MIN_KEY_BITS = 2040  # a peer's public key below this is refused
RANDOM_EXPONENT_BITS = 256  # 2 x 128: the short-exponent choice argued above
WINDOW_BITS = 8  # one table per byte of the exponent

_KEY_FORMAT = 2  # first byte of PublicKey.to_bytes (2: with the modulus's proof)
PROOF_ALPHA = 1 << 16  # the modulus has no prime factor below this
PROOF_ROUNDS = 8  # ceil(128 / log2(PROOF_ALPHA)): soundness 2^-128
_PROOF_LABEL = b"fedgate paillier gcd(n, phi(n)) = 1 proof v1"
_BATCH = 4096  # encrypt_many draws the random exponents of this many values at once
_PRIME_TRIES = 10_000  # bound on next_prime draws for one key (about 10 are needed)
# Product of the odd primes below PROOF_ALPHA: a peer's modulus sharing one is refused.
_SMALL_PRIMES = math.prod(p for p in range(3, PROOF_ALPHA, 2) if gmpy2.is_prime(p))


def proof_challenges(n: int) -> list[int]:
    """The values ``rho_i`` whose n-th roots prove gcd(n, phi(n)) = 1, hashed from ``n``
    (128 bits past its width: close to uniform modulo ``n``)."""
    width = (n.bit_length() + 7) // 8
    body = _PROOF_LABEL + n.to_bytes(width, "big")
    return [
        int.from_bytes(hashlib.shake_256(body + i.to_bytes(4, "big")).digest(width + 16), "big") % n
        for i in range(PROOF_ROUNDS)
    ]


@dataclass(frozen=True)
class PublicKey:
    """``n`` and the DJN base ``hs``; the generator is fixed at ``n + 1``."""

    n: int
    hs: int
    # sigma_i with sigma_i^n = rho_i mod n for each of ``proof_challenges(n)``
    proof: tuple[int, ...] = field(default=(), compare=False, repr=False)

    @cached_property
    def nsquare(self) -> int:
        return self.n * self.n

    @cached_property
    def ciphertext_bytes(self) -> int:
        """Width of one ciphertext on the wire (512 at 2048-bit ``n``)."""
        return (self.nsquare.bit_length() + 7) // 8

    @cached_property
    def _mpz(self) -> tuple[mpz, mpz]:
        return mpz(self.n), mpz(self.nsquare)

    def to_bytes(self) -> bytes:
        """``[format 2][len(n) as 2 bytes][n][hs in 2*len(n) bytes][PROOF_ROUNDS sigma_i
        in len(n) bytes each]``, big-endian."""
        width = (self.n.bit_length() + 7) // 8
        if len(self.proof) != PROOF_ROUNDS:
            raise PsiError(Code.INTERNAL, "a Paillier public key is sent with its proof")
        return (
            bytes([_KEY_FORMAT])
            + width.to_bytes(2, "big")
            + self.n.to_bytes(width, "big")
            + self.hs.to_bytes(2 * width, "big")
            + b"".join(sigma.to_bytes(width, "big") for sigma in self.proof)
        )

    @staticmethod
    def from_bytes(b: bytes, max_bits: int = 4096) -> PublicKey:
        """A peer's key, checked as far as a public key can be without its factors."""
        if len(b) < 3 or b[0] != _KEY_FORMAT:
            raise invalid("the Paillier public key is not in a format this node reads")
        width = int.from_bytes(b[1:3], "big")
        if len(b) != 3 + (3 + PROOF_ROUNDS) * width:
            raise invalid("the Paillier public key has the wrong length")
        n = int.from_bytes(b[3 : 3 + width], "big")
        hs = int.from_bytes(b[3 + width : 3 + 3 * width], "big")
        at = 3 + 3 * width
        proof = tuple(
            int.from_bytes(b[at + i * width : at + (i + 1) * width], "big")
            for i in range(PROOF_ROUNDS)
        )
        if not MIN_KEY_BITS <= n.bit_length() <= max_bits or (n.bit_length() + 7) // 8 != width:
            raise invalid(
                f"the Paillier modulus must have {MIN_KEY_BITS} to {max_bits} bits, "
                "written in the fewest bytes"
            )
        nz = mpz(n)
        if (
            n % 2 == 0
            or gmpy2.gcd(nz, _SMALL_PRIMES) != 1
            or gmpy2.is_square(nz)
            or gmpy2.is_prime(nz)
        ):
            raise invalid("the Paillier modulus is not a product of two large primes")
        if not 1 < hs < n * n - 1 or gmpy2.gcd(mpz(hs), nz) != 1:
            raise invalid("the Paillier key's randomiser base is out of range")
        for rho, sigma in zip(proof_challenges(n), proof, strict=True):
            if gmpy2.gcd(mpz(rho), nz) != 1 or gmpy2.powmod(mpz(sigma), nz, nz) != rho:
                raise invalid(
                    "the Paillier modulus's proof does not hold: gcd(n, phi(n)) = 1 is not "
                    "shown, so masking would not hide which rows a sum holds"
                )
        return PublicKey(n, hs, proof)


def _random_prime(bits: int) -> mpz:
    """A random ``bits``-bit prime ``= 3 mod 4`` with its top two bits set."""
    top = mpz(3) << (bits - 2)
    for _ in range(_PRIME_TRIES):
        p = gmpy2.next_prime(mpz(secrets.randbits(bits)) | top | 1)
        if p.bit_length() == bits and p % 4 == 3:
            return mpz(p)
    raise PsiError(Code.INTERNAL, "could not draw a prime for a Paillier key")


def _random_unit(n: mpz) -> mpz:
    """Uniform in Z_n* (a draw that shares a factor with ``n`` would factor it)."""
    for _ in range(_PRIME_TRIES):
        r = mpz(secrets.randbelow(int(n) - 1) + 1)
        if gmpy2.gcd(r, n) == 1:
            return r
    raise PsiError(Code.INTERNAL, "could not draw a unit modulo the Paillier modulus")


class PrivateKey:
    """``p`` and ``q`` with what CRT decryption (and CRT encryption) precomputes."""

    def __init__(self, p: int, q: int, hs: int | None = None) -> None:
        pz, qz = mpz(p), mpz(q)
        if pz == qz or pz.bit_length() != qz.bit_length() or pz < 3:
            raise invalid("a Paillier key needs two distinct primes of one length")
        if not (gmpy2.is_prime(pz) and gmpy2.is_prime(qz)):
            raise invalid("a Paillier key needs two primes")
        n = pz * qz
        if gmpy2.gcd(n, (pz - 1) * (qz - 1)) != 1:
            raise invalid("these primes do not make a Paillier modulus")
        self._p, self._q = pz, qz
        self._p2, self._q2 = pz * pz, qz * qz
        self._n, self._n2 = n, n * n
        g = n + 1
        # h_p = L_p(g^(p-1) mod p^2)^-1 mod p, and the same for q (Paillier, sec. 7).
        self._hp = gmpy2.invert((gmpy2.powmod(g, pz - 1, self._p2) - 1) // pz, pz)
        self._hq = gmpy2.invert((gmpy2.powmod(g, qz - 1, self._q2) - 1) // qz, qz)
        self._q_inv_p = gmpy2.invert(qz, pz)  # joins plaintext halves
        self._q2_inv_p2 = gmpy2.invert(self._q2, self._p2)  # joins ciphertext halves
        if hs is None:
            y = _random_unit(n)
            h = n - y * y % n  # -y^2 mod n
            hs = int(self._crt_join(gmpy2.powmod(h, n, self._p2), gmpy2.powmod(h, n, self._q2)))
        root = gmpy2.invert(n, (pz - 1) * (qz - 1))  # x -> x^root undoes x -> x^n on Z_n*
        proof = tuple(int(gmpy2.powmod(mpz(rho), root, n)) for rho in proof_challenges(int(n)))
        self.public = PublicKey(int(n), int(hs), proof)

    @staticmethod
    def generate(bits: int = KEY_BITS) -> PrivateKey:
        """A fresh key with an admissible ``bits``-bit modulus (about 0.5 s at 2048)."""
        if bits < 512 or bits % 2:
            raise invalid("a Paillier key needs an even number of bits, at least 512")
        half = bits // 2
        p = _random_prime(half)
        for _ in range(_PRIME_TRIES):
            q = _random_prime(half)
            # DJN's admissible modulus; |p - q| far above n^(1/4) keeps Fermat away.
            if gmpy2.gcd(p - 1, q - 1) == 2 and abs(p - q).bit_length() > half - 64:
                return PrivateKey(int(p), int(q))
        raise PsiError(Code.INTERNAL, "could not draw a second prime for a Paillier key")

    def __repr__(self) -> str:
        return f"PrivateKey(<{self._n.bit_length()}-bit modulus>)"

    def _crt_join(self, cp: mpz, cq: mpz) -> mpz:
        """The residue modulo n^2 that is ``cp`` mod p^2 and ``cq`` mod q^2."""
        return cq + self._q2 * ((cp - cq) * self._q2_inv_p2 % self._p2)

    def decrypt(self, c: int) -> int:
        """The plaintext of ``c`` in ``[0, n)``; refuses what is not a ciphertext.

        The range and unit checks matter: decrypting a non-unit chosen by a peer (a
        multiple of ``p``) and showing the result would leak the factors.
        """
        cz = mpz(c)
        if not 0 < cz < self._n2 or gmpy2.gcd(cz, self._n) != 1:
            raise invalid("a value to decrypt is not a Paillier ciphertext of this key")
        p, q = self._p, self._q
        mp = (gmpy2.powmod(cz, p - 1, self._p2) - 1) // p * self._hp % p
        mq = (gmpy2.powmod(cz, q - 1, self._q2) - 1) // q * self._hq % q
        return int(mq + (mp - mq) * self._q_inv_p % p * q)

    def decrypt_signed(self, c: int) -> int:
        """The plaintext of ``c`` in ``(-n/2, n/2]``: negative values round-trip."""
        m = self.decrypt(c)
        return m - int(self._n) if m > self._n // 2 else m


def _window_tables(base: mpz, modulus: mpz, windows: int) -> list[list[mpz]]:
    """``T[i][b] = base^(b * 2^(8i)) mod modulus`` for ``windows`` bytes of exponent."""
    tables = []
    step = base
    for _ in range(windows):
        row = [mpz(1), step]
        last = step
        for _ in range(2, 1 << WINDOW_BITS):
            last = last * step % modulus
            row.append(last)
        tables.append(row)
        step = last * step % modulus  # base^(2^(8(i+1)))
    return tables


class Encryptor:
    """Encrypts under one public key with a precomputed table of the DJN base.

    Built once per session (``precompute_seconds`` says what the table cost). Given the
    matching ``private`` key, it works modulo ``p^2`` and ``q^2`` (the ciphertexts are the
    same; only the speed differs).
    """

    def __init__(
        self,
        pk: PublicKey,
        *,
        private: PrivateKey | None = None,
        exponent_bits: int = RANDOM_EXPONENT_BITS,
    ) -> None:
        if exponent_bits < RANDOM_EXPONENT_BITS or exponent_bits % WINDOW_BITS:
            raise invalid(
                f"the random exponent needs a multiple of {WINDOW_BITS} bits, "
                f"at least {RANDOM_EXPONENT_BITS}"
            )
        if private is not None and private.public != pk:
            raise invalid("the private key does not match the public key")
        started = time.perf_counter()
        self.public = pk
        self.exponent_bytes = exponent_bits // WINDOW_BITS
        self._n, self._n2 = pk._mpz
        self._private = private
        if private is None:
            self._tables = _window_tables(mpz(pk.hs), self._n2, self.exponent_bytes)
        else:
            hs = mpz(pk.hs)
            p2, q2 = private._p2, private._q2
            self._tables_p = _window_tables(hs % p2, p2, self.exponent_bytes)
            self._tables_q = _window_tables(hs % q2, q2, self.exponent_bytes)
        self.precompute_seconds = time.perf_counter() - started

    def _encrypt_with(self, m: int, exponent: bytes) -> mpz:
        """``(1 + m n) * hs^x mod n^2`` for ``x`` given as big-endian ``exponent`` bytes."""
        n = self._n
        gm = (operator.index(m) % n) * n + 1  # index(): ints only, a float is refused
        # byte i (from the end) is window i: the tables run from the least significant
        digits = reversed(exponent)
        private = self._private
        if private is None:
            n2 = self._n2
            acc = gm
            for row, b in zip(self._tables, digits, strict=True):
                acc = acc * row[b] % n2
            return acc
        p2, q2 = private._p2, private._q2
        cp, cq = gm % p2, gm % q2
        for row_p, row_q, b in zip(self._tables_p, self._tables_q, digits, strict=True):
            cp = cp * row_p[b] % p2
            cq = cq * row_q[b] % q2
        return private._crt_join(cp, cq)

    def encrypt(self, m: int) -> int:
        """A fresh encryption of ``m`` (negative ``m`` is taken modulo ``n``)."""
        return int(self._encrypt_with(m, os.urandom(self.exponent_bytes)))

    def _encrypt_iter(self, ms: Sequence[int]) -> Iterable[mpz]:
        width = self.exponent_bytes
        encrypt_with = self._encrypt_with
        for start in range(0, len(ms), _BATCH):
            chunk = ms[start : start + _BATCH]
            randomness = os.urandom(width * len(chunk))
            for i, m in enumerate(chunk):
                yield encrypt_with(m, randomness[i * width : (i + 1) * width])

    def encrypt_many(self, ms: Sequence[int]) -> list[int]:
        """Fresh encryptions of ``ms``, in order."""
        return [int(c) for c in self._encrypt_iter(ms)]

    def encrypt_to_bytes(self, ms: Sequence[int]) -> bytes:
        """The wire form: fixed-width (``ciphertext_bytes``) big-endian, concatenated."""
        width = self.public.ciphertext_bytes
        return b"".join(c.to_bytes(width, "big") for c in self._encrypt_iter(ms))


def encrypt_classic(pk: PublicKey, m: int) -> int:
    """Textbook Paillier, ``(1 + m n) r^n mod n^2`` with ``r`` uniform in Z_n* (~8 ms).

    Independent of ``hs`` and of the short-exponent assumption: for masks a party puts
    on ciphertexts it sends back to the key owner (see the module docstring).
    """
    n, n2 = pk._mpz
    return int(((m % n) * n + 1) * gmpy2.powmod(_random_unit(n), n, n2) % n2)


def add(pk: PublicKey, a: int, b: int) -> int:
    """A ciphertext of the sum of the plaintexts of ``a`` and ``b``."""
    return int(mpz(a) * b % pk._mpz[1])


def add_plain(pk: PublicKey, c: int, m: int) -> int:
    """A ciphertext of (plaintext of ``c``) + ``m``; not rerandomised."""
    n, n2 = pk._mpz
    return int(mpz(c) * ((m % n) * n + 1) % n2)


def sum_ciphertexts(pk: PublicKey, cs: Iterable[int]) -> int:
    """A ciphertext of the sum of the plaintexts of ``cs`` (of 0 when ``cs`` is empty)."""
    n2 = pk._mpz[1]
    acc = mpz(1)
    for c in cs:
        acc = acc * c % n2
    return int(acc)


def rerandomise(enc: Encryptor, c: int) -> int:
    """The same plaintext under fresh randomness: ``c * Enc(0)``."""
    return add(enc.public, c, enc.encrypt(0))


def ciphertexts_from_bytes(pk: PublicKey, buf: bytes) -> list[int]:
    """A peer's ciphertexts (``encrypt_to_bytes`` form), each checked to be one.

    Each must lie in ``(0, n^2)`` and be a unit modulo ``n``. The unit check is done on
    the product modulo ``n`` of the whole batch (a product of residues is a unit iff
    every factor is, ``n`` having two prime factors): ~1.5 µs a ciphertext against ~7 µs
    for a ``gcd`` each (parsing adds ~2.5 µs); the ``gcd``s run only to name the culprit
    of a refused batch.
    """
    width = pk.ciphertext_bytes
    if len(buf) % width:
        raise invalid(f"a batch of ciphertexts must be a multiple of {width} bytes long")
    n, n2 = pk._mpz
    view = memoryview(buf)
    from_bytes = int.from_bytes
    out: list[int] = []
    append = out.append
    units = mpz(1)
    for start in range(0, len(buf), width):
        c = from_bytes(view[start : start + width], "big")
        if not 0 < c < n2:
            raise invalid(f"ciphertext {start // width + 1} of the batch is out of range")
        units = units * (c % n) % n
        append(c)
    if gmpy2.gcd(units, n) != 1:
        for i, c in enumerate(out):
            if gmpy2.gcd(c, n) != 1:
                raise invalid(f"ciphertext {i + 1} of the batch is not a unit")
    return out
