"""Attack a small federation as an analyst and as a misbehaving peer, and print what held.

Usage: python scripts/bench_abuse.py [--rows 2500] [--pairs 50] [--targets 10]
       [--oracle-cap 600] [--messages 100000]
       [--load-seconds 300] [--clients 32] [--kills 50] [--settle 30] [--only PART ...]

Real node processes on loopback with mutual TLS: a home node and two owners, each with
``--rows`` synthetic enterprises (city, industry, founding year, employees, revenue) at
L2 under an organisation grant with k = 5. The same rows are also published under a
second name whose grant the owner opted out of L2 noise (``exact``): every attack is
run against both, so each figure stands beside what the same attack achieves without
the defence. Parts (issue 13, goals in docs/security.md):

- attacks: the differencing attacks of issue 13 and the textbook kinds (complement,
  range edge, tracker, averaging repeats and rewrites, splitting into ranges, a HAVING
  oracle, existence by counts), each with the error it achieves and the queries it took;
- oracle: the exact k as an oracle (k - 1 known firms and the victim), by an attacker who
  knows the noisy threshold and retries each step as often as it needs;
- benign: accuracy of ordinary aggregates over groups of at least 100 rows;
- resources: RSS, threads and fds of every node before, during and ``--settle`` seconds
  after ``--messages`` malformed messages and a ``--load-seconds`` load of
  ``--clients`` clients; log bytes per refused request;
- kills: the status codes a client sees while an owner is killed ``--kills`` times.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from abuse_setup import ANALYST, HOME, OWNERS, Bench, make_firms, publish  # noqa: E402
from bench_query import write_regions  # noqa: E402

from gateway.client import Profile  # noqa: E402
from gateway.demo.launcher import StopSignal, running  # noqa: E402
from gateway.demo.provision import provision  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2500, help="enterprises per owner")
    parser.add_argument("--pairs", type=int, default=50, help="query pairs per attack")
    parser.add_argument("--targets", type=int, default=10, help="victims per attack")
    parser.add_argument(
        "--oracle-cap", type=int, default=600, help="queries the k oracle spends on a victim"
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--load-seconds", type=float, default=300.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument(
        "--only", nargs="*", default=["attacks", "oracle", "benign", "resources", "kills"]
    )
    args = parser.parse_args()
    StopSignal().install()  # a killed bench stops its nodes
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="fedgate-bench-abuse-") as tmp:
        root = Path(tmp)
        fed = provision(root / "fed", write_regions(root, HOME, OWNERS, ANALYST), free_ports=True)
        with running(fed) as procs:
            t0 = time.perf_counter()
            data = {o: make_firms(args.rows, seed) for seed, o in enumerate(OWNERS)}
            for owner, table in data.items():
                publish(fed, owner, table)
            print(
                f"setup: {args.rows:,} enterprises at each of {len(OWNERS)} owners, L2, k = 5 "
                f"({time.perf_counter() - t0:.1f} s)"
            )
            bench = Bench(fed, procs, Profile.load(fed.profile_path(ANALYST)), data)
            if {"attacks", "oracle", "benign"} & set(args.only):
                import abuse_attacks

                if "attacks" in args.only:
                    abuse_attacks.attacks(bench, pairs=args.pairs, targets=args.targets)
                if "oracle" in args.only:
                    abuse_attacks.k_oracle(bench, targets=args.targets, cap=args.oracle_cap)
                if "benign" in args.only:
                    abuse_attacks.benign(bench)
            if "resources" in args.only or "kills" in args.only:
                import abuse_resources

                if "resources" in args.only:
                    abuse_resources.resources(
                        bench,
                        messages=args.messages,
                        load_seconds=args.load_seconds,
                        clients=args.clients,
                        settle=args.settle,
                    )
                if "kills" in args.only:
                    abuse_resources.kills(bench, kills=args.kills)
    return 0


if __name__ == "__main__":
    sys.exit(main())
