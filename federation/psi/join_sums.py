"""The arithmetic of a join aggregate: fixed-point values, per-group products, masks.

Private-Join-and-Compute style: the value owner sends ``Enc(v_i)`` under its own
Paillier key next to its blinded identifiers; the matcher multiplies, per group, the
ciphertexts of the rows that matched (``accumulate``), so ``C_g`` encrypts the group's
sum. Before the value owner decrypts ``C_g`` the matcher adds a random mask
(``mask_sums``): the owner sees ``sum_g + r_g`` only, and the matcher, told that value,
removes ``r_g`` (``unmask``). Values are summed as integers: ``Scale`` turns decimals and
floats into integers at a fixed number of decimal digits and back.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from numbers import Integral, Real

import numpy as np
from gmpy2 import mpz  # no stubs, no py.typed

from federation.outcome import Code
from federation.psi.errors import PsiError, invalid
from federation.psi.paillier import Encryptor, PublicKey, encrypt_classic

STATISTICAL_BITS = 40  # a mask hides a sum up to a statistical distance of 2^-40
MAX_DIGITS = 18  # Scale.digits: enough for DECIMAL(38, 18)
MAX_VALUE_DIGITS = 300  # one encoded value; ~1000 bits, far above any sum that fits a key

# Room for any value encode accepts, so quantize rounds once, where it is asked to.
_EXACT = Context(prec=MAX_VALUE_DIGITS + MAX_DIGITS + 10, rounding=ROUND_HALF_EVEN)
_FLOAT_EXACT = float(2**53)  # floats scaled to below this are rounded by numpy


@dataclass(frozen=True)
class Scale:
    """Fixed point at ``digits`` decimal digits: ``encode(x) = round(x * 10^digits)``.

    Ints and ``Decimal``s are scaled exactly and rounded half to even once; floats are
    scaled in floating point first (so a float such as 2.675, really 2.67499..., gives
    267 at two digits, as its exact value would).
    """

    digits: int

    def __post_init__(self) -> None:
        if not 0 <= self.digits <= MAX_DIGITS:
            raise invalid(f"a fixed-point scale needs 0 to {MAX_DIGITS} decimal digits")

    def encode(self, values: Sequence[float | int | Decimal] | np.ndarray) -> list[int]:
        """Each value as an integer count of ``10^-digits``; refuses NaN and infinities."""
        if isinstance(values, np.ndarray):
            return self._encode_array(values)
        return [self._encode_one(v) for v in values]

    def encode_nullable(self, values: Sequence[object]) -> list[int | None]:
        """As ``encode``, a NULL kept as None (``pack`` counts only rows with a value)."""
        return [None if v is None else self._encode_one(v) for v in values]

    def _encode_array(self, values: np.ndarray) -> list[int]:
        kind = values.dtype.kind
        if kind in "biu":
            factor = 10**self.digits
            return [v * factor for v in values.tolist()]
        if kind == "f":
            scaled = values.astype(np.float64) * float(10**self.digits)
            if not np.isfinite(scaled).all():
                if not np.isfinite(values).all():
                    raise invalid("a value to sum is NaN or infinite")
                return [self._encode_one(v) for v in values.tolist()]
            if scaled.size and np.abs(scaled).max() >= _FLOAT_EXACT:
                return [self._encode_one(v) for v in values.tolist()]
            out: list[int] = np.rint(scaled).astype(np.int64).tolist()
            return out
        if kind == "O":
            return [self._encode_one(v) for v in values.tolist()]
        raise invalid(f"values of type {values.dtype} cannot be summed")

    def _encode_one(self, value: object) -> int:
        digits = self.digits
        if isinstance(value, Integral):  # int, bool, numpy integers
            return int(value) * 10**digits
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise invalid("a value to sum is NaN or infinite")
            if value.adjusted() + digits > MAX_VALUE_DIGITS:
                raise invalid("a value to sum is too large")
            unit = Decimal((0, (1,), -digits))  # 10^-digits
            return int(value.quantize(unit, ROUND_HALF_EVEN, _EXACT).scaleb(digits, _EXACT))
        if isinstance(value, Real):  # float, numpy floats
            x = float(value)
            if not math.isfinite(x):
                raise invalid("a value to sum is NaN or infinite")
            scaled_f = x * 10**digits
            if not math.isfinite(scaled_f):
                raise invalid("a value to sum is too large")
            return round(scaled_f)
        if value is None:
            raise invalid("a value to sum is missing (NULL)")
        raise invalid(f"a value of type {type(value).__name__} cannot be summed")

    def decode(self, total: int) -> int | Decimal:
        """``total * 10^-digits``, exactly: an ``int`` at 0 digits, else a ``Decimal``."""
        if self.digits == 0:
            return int(total)
        sign, coefficient, _ = Decimal(int(total)).as_tuple()
        return Decimal((sign, coefficient, -self.digits))  # built, not computed: exact


def value_bits(encoded: Sequence[int]) -> int:
    """Bits of the largest magnitude among ``encoded`` (the ``value_bits`` of a mask)."""
    return max((abs(v).bit_length() for v in encoded), default=0)


def accumulate(
    pk: PublicKey,
    groups: Sequence[str | None],
    ciphertexts: Sequence[int],
    into: dict[str, int],
) -> None:
    """Multiply each ciphertext into its group's running product (``None``: no match).

    A group's product starts at 1, a ciphertext of 0 with randomness 1: the identity of
    the product, harmless because every real factor is randomised. This is the
    matcher's hot loop (~4 µs a row at 2048-bit keys): one multiplication and one
    reduction in gmpy2, the rest bound to locals; ``into`` holds plain ints between
    calls (converted once per group per call).
    """
    if len(groups) != len(ciphertexts):
        raise invalid("the rows and their ciphertexts do not pair up")
    n2 = mpz(pk.nsquare)
    one = mpz(1)
    products = {group: mpz(c) for group, c in into.items()}
    get = products.get
    for group, c in zip(groups, ciphertexts, strict=True):
        if group is not None:
            products[group] = get(group, one) * c % n2
    into.update((group, int(c)) for group, c in products.items())


def mask_sums(
    enc: Encryptor,
    sums: Mapping[str, int],
    value_bits: int,
    count: Mapping[str, int],
) -> tuple[dict[str, int], dict[str, int]]:
    """Each group's product times ``Enc(r_g)``, and the masks ``r_g``.

    ``value_bits`` bounds one encoded value (``|v| < 2^value_bits``) and ``count[g]`` is
    the number of terms in group ``g``, so ``|sum_g| < 2^b`` with
    ``b = value_bits + bit_length(count[g])``. ``r_g`` is uniform in
    ``[0, 2^(b + 40))``: ``sum_g + r_g`` (what the key owner decrypts) is within
    statistical distance 2^-40 of ``r_g`` alone, and it stays below ``n`` when
    ``b + 41 < bits(n)``, which is checked. ``Enc(r_g)`` is ``encrypt_classic``: its
    randomness does not depend on the key owner's ``hs`` (see ``paillier``).
    """
    pk = enc.public
    n2 = pk.nsquare
    masked: dict[str, int] = {}
    masks: dict[str, int] = {}
    for group, product in sums.items():
        terms = count.get(group)
        if terms is None or terms < 0:
            raise invalid("a group to mask has no row count")
        bits = max(value_bits, 0) + max(terms, 1).bit_length()
        if bits + STATISTICAL_BITS + 1 >= pk.n.bit_length():
            raise PsiError(Code.FAILED_PRECONDITION, "sums this large do not fit the key")
        r = secrets.randbits(bits + STATISTICAL_BITS)
        masked[group] = int(mpz(product) * encrypt_classic(pk, r) % n2)
        masks[group] = r
    return masked, masks


def unmask(opened: Mapping[str, int], masks: Mapping[str, int], n: int) -> dict[str, int]:
    """``(opened_g - r_g) mod n`` as a signed integer in ``(-n/2, n/2]``."""
    if opened.keys() != masks.keys():
        raise invalid("the decrypted sums do not name the groups that were sent")
    half = n // 2
    sums: dict[str, int] = {}
    for group, value in opened.items():
        if not 0 <= value < n:
            raise invalid("a decrypted sum is out of range")
        s = (value - masks[group]) % n
        sums[group] = s - n if s > half else s
    return sums


COUNT_BITS = 64  # the low bits of a packed value count the rows that have one


def pack(encoded: Sequence[int | None]) -> list[int]:
    """Each row's fixed-point value and whether it has one, in one plaintext:
    ``v * 2^64 + 1`` (NULL: 0). A sum of packed values is then the sum of the values
    and, in its low 64 bits, how many rows had one (SQL's SUM skips NULLs, AVG divides
    by those rows, and k applies to them): one ciphertext per row and column."""
    return [0 if v is None else (v << COUNT_BITS) + 1 for v in encoded]


def unpack(total: int) -> tuple[int, int]:
    """(sum of the values, rows with a value) of a packed sum. Noise may have pushed the
    count below zero: the low bits are read as a signed 64-bit number."""
    low = total & ((1 << COUNT_BITS) - 1)
    if low >= 1 << (COUNT_BITS - 1):
        low -= 1 << COUNT_BITS
    return (total - low) >> COUNT_BITS, low
