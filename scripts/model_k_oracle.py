"""Model the k oracle against a noisy threshold, without a federation (seconds).

Usage: python scripts/model_k_oracle.py [--victims 1000] [--seed 5]

The attack of ``bench_abuse.py --only oracle``: k - 1 known firms plus the victim when
``employees <= T``; the group of k is released when its sticky threshold is k, which a
padding of the question redraws; a group of k - 1 never is. A search in log scale reads
the victim's employee count within 5 % (about 8 steps), each step retried up to R times
while withheld. Victims are drawn like the benchmark's firms (lognormal(3, 1.2)); for
each threshold design the script prints the chance a group of n rows is released and
the share of victims the best attacker (the R that does best) reads within 5 % in fewer
than 100 queries. Used to choose ``sticky_noise.THRESHOLD_SPREAD`` (docs/security.md).
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

K = 5


@dataclass(frozen=True)
class Design:
    name: str
    released: Callable[[int], float]  # P(a group of n >= K rows is released)


def gaussian(scale: float) -> Design:
    return Design(
        f"k + floor({scale:g}|z|)", lambda n: math.erf((n - K + 1) / scale / math.sqrt(2))
    )


def uniform(spread: int) -> Design:
    return Design(f"k + u, u in 0..{spread}", lambda n: min(1.0, (n - K + 1) / (spread + 1)))


def _split(lo: int, hi: int) -> int | None:
    if hi - lo <= 1 or (lo >= 1 and hi - lo - 1 <= 0.1 * (lo + 1)):
        return None
    return min(max(int(math.sqrt(max(lo, 0.5) * hi)), lo + 1), hi - 1)


def attack(victim: int, p: float, retries: int, rng: random.Random) -> tuple[bool, int]:
    """(read within 5 %, queries) for one victim; ``p``: the release chance at k."""
    queries, lo, hi = 0, 0, 100_000
    while (mid := _split(lo, hi)) is not None:
        released = False
        for _ in range(retries + 1):
            queries += 1
            if victim <= mid and rng.random() < p:
                released = True
                break
        lo, hi = (lo, mid) if released else (mid, hi)
    return abs((lo + 1 + hi) / 2 - victim) / victim <= 0.05, queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victims", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    victims = [int(math.exp(rng.gauss(3.0, 1.2))) + 1 for _ in range(args.victims)]
    sizes = (5, 10, 15, 20, 25, 30, 35, 50)
    print(f"{'threshold':<24}" + "".join(f"{f'n={n}':>7}" for n in sizes), end="")
    print("   read within 5 % in < 100 queries (best retries)")
    for design in (gaussian(3), gaussian(6), gaussian(10), uniform(20), uniform(30)):
        p = design.released(K)
        best = (0.0, 0)
        for retries in range(0, 120, 2):
            hits = sum(ok and q < 100 for ok, q in (attack(v, p, retries, rng) for v in victims))
            best = max(best, (hits / len(victims), retries))
        shown = "".join(f"{design.released(n):7.0%}" for n in sizes)
        print(f"{design.name:<24}{shown}   {best[0]:.1%} ({best[1]} retries a step)")


if __name__ == "__main__":
    main()
