"""Benchmark Paillier for the join aggregates: our DJN encryption against the references.

Usage: python scripts/bench_paillier.py [--quick] [--bits 2048] [--exponent-bits 256]

Prints, from one run on one core: key generation and table precompute times; encryptions
per second with the fixed-base DJN table (public key only, and with the private key's
CRT halves), against textbook ``r^n mod n^2`` on gmpy2 and against python-paillier
(``phe``, if importable; it is not a project dependency); homomorphic additions,
the matcher's parse-and-check of wire ciphertexts, decryptions per second; and the
projected time for 1 M encryptions on one core.
Goal (issue 12, 2-core machine): >= 5 000 encryptions/s per core at 2048-bit keys, so a
1 M-row join SUM fits in 10 minutes with the ECDH matching.
Default run under 60 s, --quick under 10 s.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from federation.psi import paillier  # noqa: E402
from federation.psi.paillier import (  # noqa: E402
    Encryptor,
    PrivateKey,
    PublicKey,
    ciphertexts_from_bytes,
    encrypt_classic,
    sum_ciphertexts,
)

ROWS = 1_000_000


def rate(fn: Callable[[], object], seconds: float, max_calls: int = 1_000_000) -> float:
    """Calls of ``fn`` per second, measured for about ``seconds`` (at least 2 calls)."""
    calls = 0
    started = time.perf_counter()
    elapsed = 0.0
    while calls < max_calls and (calls < 2 or elapsed < seconds):
        fn()
        calls += 1
        elapsed = time.perf_counter() - started
    return calls / elapsed


def batch_rate(fn: Callable[[int], object], seconds: float, batch: int) -> float:
    """Items per second of ``fn(batch)``, measured for about ``seconds``."""
    return batch * rate(lambda: fn(batch), seconds, max_calls=10_000)


def phe_rate(n: int, seconds: float) -> str:
    try:
        from phe import paillier as phe  # type: ignore[import-not-found]
    except ImportError:
        return "phe not installed"
    public = phe.PaillierPublicKey(n)
    value = secrets.randbits(40)
    return f"{rate(lambda: public.encrypt(value), seconds):10.0f} /s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (< 10 s)")
    parser.add_argument("--bits", type=int, default=paillier.KEY_BITS)
    parser.add_argument("--exponent-bits", type=int, default=paillier.RANDOM_EXPONENT_BITS)
    args = parser.parse_args()
    span = 0.5 if args.quick else 4.0  # seconds per measured rate
    slow_span = 0.3 if args.quick else 2.0  # for the ~8 ms operations

    started = time.perf_counter()
    sk = PrivateKey.generate(args.bits)
    keygen = time.perf_counter() - started
    pk: PublicKey = sk.public
    enc = Encryptor(pk, exponent_bits=args.exponent_bits)
    enc_crt = Encryptor(pk, private=sk, exponent_bits=args.exponent_bits)

    value = secrets.randbits(40)
    ours = batch_rate(lambda k: enc.encrypt_many([value] * k), span, 256)
    ours_crt = batch_rate(lambda k: enc_crt.encrypt_many([value] * k), span, 256)
    classic = rate(lambda: encrypt_classic(pk, value), slow_span)
    wire_rate = batch_rate(lambda k: enc_crt.encrypt_to_bytes([value] * k), span, 256)

    cs = enc_crt.encrypt_many([secrets.randbits(40) for _ in range(2000)])
    wire = b"".join(c.to_bytes(pk.ciphertext_bytes, "big") for c in cs)
    additions = batch_rate(lambda k: sum_ciphertexts(pk, cs[:k]), span, len(cs))
    parsing = batch_rate(lambda k: ciphertexts_from_bytes(pk, wire), span, len(cs))
    c0 = cs[0]
    decryptions = rate(lambda: sk.decrypt(c0), slow_span)
    phe = phe_rate(pk.n, slow_span)

    print(f"Paillier, {pk.n.bit_length()}-bit n, {args.exponent_bits}-bit DJN exponent")
    print(f"  key generation                     {keygen:10.2f} s")
    print(f"  table precompute (public key)      {enc.precompute_seconds * 1e3:10.1f} ms")
    print(f"  table precompute (with p, q: CRT)  {enc_crt.precompute_seconds * 1e3:10.1f} ms")
    print("encryptions, one core")
    print(f"  ours, public key only              {ours:10.0f} /s")
    print(f"  ours, key owner (CRT)              {ours_crt:10.0f} /s")
    print(f"  ours, key owner, to wire bytes     {wire_rate:10.0f} /s")
    print(f"  textbook r^n mod n^2 (gmpy2)       {classic:10.0f} /s")
    print(f"  python-paillier (phe)              {phe}")
    print(f"  speed-up over textbook             {ours / classic:10.1f} x")
    print(f"  speed-up over textbook, CRT        {ours_crt / classic:10.1f} x")
    print("other operations, one core")
    print(f"  homomorphic additions              {additions:10.0f} /s")
    print(f"  parse + check wire ciphertexts     {parsing:10.0f} /s")
    print(f"  decryptions (CRT)                  {decryptions:10.0f} /s")
    print(f"projected for {ROWS:,} values on one core")
    print(f"  encryption, public key only        {ROWS / ours:10.0f} s")
    print(f"  encryption, key owner (CRT)        {ROWS / ours_crt:10.0f} s")
    print(f"  textbook encryption                {ROWS / classic:10.0f} s")
    print(f"  matcher: parse + multiply          {ROWS / parsing + ROWS / additions:10.0f} s")
    print(f"(run took {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
