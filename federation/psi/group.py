"""The ristretto255 group of ECDH-PSI, through libsodium (the ``rbcl`` binding).

Each side hashes its items to points, ``H(x)``, and raises them to its own secret scalar;
``blind(blind(H(x), a), b) == blind(blind(H(x), b), a)``, so two doubly blinded sets can be
compared while neither side learns the other's items or scalar.

Speed: a scalar multiplication costs ~36 µs in C, a hash to the group ~12 µs; the Python
around each call is kept to a few hundred nanoseconds (functions bound to locals, outputs
joined once). ``ctypes`` releases the GIL during each libsodium call, so callers can run
batches on several threads.

libsodium 1.0.18 (the one ``rbcl`` bundles) is lenient in two ways a peer could exploit:
``crypto_core_ristretto255_is_valid_point`` accepts an encoding with the top bit of its
last byte set (it ignores that bit, so two byte strings name one point and a duplicate
check on bytes could be dodged) and accepts the identity (32 zero bytes, which every
scalar maps to itself). ``check_points`` refuses both before any other check.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from federation.outcome import Code
from federation.psi.errors import PsiError

POINT_BYTES = 32
SCALAR_BYTES = 32

# BLAKE2b personalisation (at most 16 bytes): the item hash and the label key are two
# domains, and a later version of the hashing gets a new name.
_ITEM_PERSON = b"fedgate-psi-v1"
_LABEL_PERSON = b"fedgate-psi-key"
_DIGEST_BYTES = 64  # crypto_core_ristretto255_HASHBYTES

# floor_rates measures on batches of this many items, for at most this many rounds each.
_RATE_BATCH = 64
_RATE_MAX_ROUNDS = 10_000


def _sodium() -> ModuleType:
    """libsodium's binding, imported on the first PSI: ``rbcl`` also imports ``doctest``
    and ``unittest``, ~5 MB that a node which never runs a PSI should not hold."""
    from federation.psi.sodium import rbcl

    return rbcl


def new_scalar() -> bytes:
    """A fresh secret scalar, uniform in [1, L): libsodium never returns zero."""
    scalar: bytes = _sodium().crypto_core_ristretto255_scalar_random()
    if len(scalar) != SCALAR_BYTES or not any(scalar):
        raise PsiError(Code.INTERNAL, "libsodium returned an unusable blinding scalar")
    return scalar


def _label_key(label: bytes) -> bytes:
    """The 64-byte BLAKE2b key standing for ``label``, whatever the label's length."""
    return hashlib.blake2b(label, digest_size=_DIGEST_BYTES, person=_LABEL_PERSON).digest()


def hash_to_points(label: bytes, items: Sequence[bytes]) -> bytearray:
    """Each item's point ``H_label(item)``, concatenated (32 bytes each, in item order).

    The digest fed to ``crypto_core_ristretto255_from_hash`` is keyed BLAKE2b-512 with
    ``person=b"fedgate-psi-v1"`` and, as key, a 64-byte digest of ``label``:

    - the label names the session and the datasets, so the same identifier hashes to
      unrelated points in two sessions and points from one session are worthless in
      another;
    - the label sits in BLAKE2b's key block and the item is the whole message, so no two
      (label, item) pairs hash the same input: there is no concatenation whose boundary
      could shift, hence no length prefix is needed;
    - the personalisation keeps these digests apart from every other BLAKE2b use.
    """
    from_hash = _sodium().crypto_core_ristretto255_from_hash
    base = hashlib.blake2b(digest_size=_DIGEST_BYTES, key=_label_key(label), person=_ITEM_PERSON)
    copy = base.copy
    points: list[bytes] = []
    append = points.append
    for item in items:
        h = copy()
        h.update(item)
        append(from_hash(h.digest()))
    return bytearray().join(points)


def _whole_points(buf: bytes | bytearray | memoryview) -> int:
    """How many points ``buf`` holds; refuses a length that is not a multiple of 32."""
    count, rest = divmod(len(buf), POINT_BYTES)
    if rest:
        raise PsiError(
            Code.INVALID_ARGUMENT,
            f"the batch is {len(buf):,} bytes, not a whole number of {POINT_BYTES}-byte points",
        )
    return count


def blind(points: bytes | bytearray | memoryview, scalar: bytes) -> bytearray:
    """Every point multiplied by ``scalar``, concatenated in the same order."""
    if not isinstance(scalar, bytes) or len(scalar) != SCALAR_BYTES:
        raise PsiError(Code.INVALID_ARGUMENT, f"a blinding scalar is {SCALAR_BYTES} bytes")
    count = _whole_points(points)
    data = points if isinstance(points, bytes) else bytes(points)
    mult = _sodium().crypto_scalarmult_ristretto255
    out: list[bytes] = []
    append = out.append
    end = count * POINT_BYTES
    try:
        for i in range(0, end, POINT_BYTES):
            append(mult(scalar, data[i : i + POINT_BYTES]))
    except RuntimeError:
        # libsodium returns -1 for an encoding that does not decode, or a product that is
        # the identity (only the identity itself, as the scalar is not zero).
        raise PsiError(
            Code.INVALID_ARGUMENT,
            f"point {len(out) + 1:,} of the batch is not a valid ristretto255 point",
        ) from None
    return bytearray().join(out)


def check_points(buf: bytes | bytearray | memoryview, *, decode: bool = True) -> None:
    """Refuse a batch unless every point is a canonical, non-identity ristretto255 point.

    ``decode=False`` runs the byte checks only, for a caller that multiplies every point
    next: ``blind`` decodes each point anyway and refuses one that does not decode.

    Points are numbered from 1 in the reason. The byte checks run on the whole batch at
    once (numpy); libsodium's decode runs only on the points before the first byte failure,
    so the reason names the first bad point whichever check caught it.
    """
    count = _whole_points(buf)
    if count == 0:
        return
    rows = np.frombuffer(buf, dtype=np.uint8).reshape(count, POINT_BYTES)
    high = np.flatnonzero(rows[:, -1] & 0x80)
    identity = np.flatnonzero(~rows.any(axis=1))
    first_high = int(high[0]) if high.size else count
    first_identity = int(identity[0]) if identity.size else count
    limit = min(first_high, first_identity)
    decoded = limit if decode else 0
    data = buf if isinstance(buf, bytes) else bytes(memoryview(buf)[: limit * POINT_BYTES])
    valid = _sodium().crypto_core_ristretto255_is_valid_point
    for i in range(0, decoded * POINT_BYTES, POINT_BYTES):
        if not valid(data[i : i + POINT_BYTES]):
            _refuse_point(i // POINT_BYTES, "it does not decode")
    if limit < count:
        _refuse_point(
            limit, "it has the high bit set" if limit == first_high else "it is the identity"
        )


def _refuse_point(index: int, why: str) -> None:
    raise PsiError(
        Code.INVALID_ARGUMENT,
        f"point {index + 1:,} of the batch is not a canonical ristretto255 point: {why}",
    )


def floor_rates(seconds: float = 1.0) -> dict[str, float]:
    """Items per second of one core for each step, measured here on random data.

    The benchmark prints the lower bound of a PSI run from these (one hash, two blinds and
    one check per item and side). Each step gets a third of ``seconds`` and at most
    ``_RATE_MAX_ROUNDS`` batches.
    """
    budget = max(seconds, 0.0) / 3
    items = [secrets.token_bytes(18) for _ in range(_RATE_BATCH)]
    label = b"fedgate-psi-floor-rates"
    points = bytes(hash_to_points(label, items))
    scalar = new_scalar()
    steps = {
        "hash_to_points": lambda: hash_to_points(label, items),
        "blind": lambda: blind(points, scalar),
        "check_points": lambda: check_points(points),
    }
    rates: dict[str, float] = {}
    for name, step in steps.items():
        rounds = 0
        start = time.perf_counter()
        deadline = start + budget
        while True:
            step()
            rounds += 1
            now = time.perf_counter()
            if now >= deadline or rounds >= _RATE_MAX_ROUNDS:
                break
        rates[name] = rounds * _RATE_BATCH / (now - start)
    return rates
