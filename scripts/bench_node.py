"""Benchmark a gateway node: start-up time to SERVING, idle RSS, Catalog RPC latency, and
a fresh owner's first DP query.

Usage: python scripts/bench_node.py [--calls 2000] [--starts 5] [--scale 0.2]

Goals (issue 2, 2-core machine): one node SERVING in <= 2 s, idle RSS <= 150 MB per node,
all seven demo nodes SERVING in <= 15 s, and the Catalog RPC's p50/p99 printed. Printed
too: the first DP query at an owner that has answered none (its DuckDB and OpenDP are
loaded on first use), with a second, new query after it as the reference.
Everything runs for real: node processes on loopback, mutual TLS, sample data registered.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.client import Client, Profile  # noqa: E402
from gateway.demo import sample_data  # noqa: E402
from gateway.demo.launcher import (  # noqa: E402
    NodeProcess,
    StopSignal,
    start_node,
    stop_nodes,
    wait_serving,
    wait_training_ready,
)
from gateway.demo.provision import REGION_DIR, provision  # noqa: E402
from gateway.demo.run import register_sample_data  # noqa: E402
from gateway.demo.showcase import write_sample_grants  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="Catalog RPCs to time")
    parser.add_argument("--starts", type=int, default=5, help="single-node starts to time")
    parser.add_argument("--scale", type=float, default=0.2, help="sample data scale")
    args = parser.parse_args()
    StopSignal().install()  # a killed bench stops its nodes
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="fedgate-bench-") as tmp:
        fed = provision(Path(tmp), REGION_DIR, free_ports=True)
        written = sample_data.generate(Path(tmp) / "data", scale=args.scale)
        profile = Profile.load(fed.operator_profile("anhui"))
        addresses = {n.id: n.listen for n in fed.nodes}

        # 1. one node, started again and again: time from spawn to SERVING
        single = []
        for i in range(args.starts):
            proc = start_node("anhui", fed.config_path("anhui"), Path(tmp) / f"start{i}.log")
            try:
                single.append(wait_serving([proc], addresses, profile, timeout=30)["anhui"])
            finally:
                stop_nodes([proc])
        print(
            f"single node start -> SERVING: median {statistics.median(single):.2f} s, "
            f"max {max(single):.2f} s over {len(single)} starts (goal <= 2 s)"
        )

        # 2. all seven nodes at once
        t0 = time.monotonic()
        procs: list[NodeProcess] = []
        try:
            for n in fed.nodes:
                procs.append(
                    start_node(n.id, fed.config_path(n.id), fed.node_dir(n.id) / "stdout.log")
                )
            ready = wait_serving(procs, addresses, profile, timeout=60)
            all_up = time.monotonic() - t0
            print(
                f"all {len(procs)} nodes SERVING in {all_up:.2f} s "
                f"(slowest node {max(ready.values()):.2f} s; goal <= 15 s)"
            )
            time.sleep(2.0)  # let start-up allocations settle
            idle = {p.node_id: rss_mb(p.pid) for p in procs}
            print(
                f"idle RSS per node (no datasets): max {max(idle.values()):.0f} MB, "
                f"mean {statistics.mean(idle.values()):.0f} MB (goal <= 150 MB)"
            )
            register_sample_data(fed, written, lambda _m: None)
            time.sleep(1.0)
            loaded = {p.node_id: rss_mb(p.pid) for p in procs}
            print(
                f"RSS per node after registering sample data (scale {args.scale:g}): "
                f"max {max(loaded.values()):.0f} MB"
            )

            # 3. Catalog RPC latency from an analyst, one channel, sequential calls
            with Client(Profile.load(fed.profile_path("li.wei@shanghai"))) as c:
                for _ in range(50):
                    c.catalog()
                lat = []
                t_start = time.perf_counter()
                for _ in range(args.calls):
                    t = time.perf_counter()
                    resp = c.catalog()
                    lat.append((time.perf_counter() - t) * 1000)
                total = time.perf_counter() - t_start
                assert len(resp.datasets) == 3
                print(
                    f"Catalog RPC ({len(resp.datasets)} datasets, mTLS): "
                    f"p50 {percentile(lat, 0.5):.2f} ms, p99 {percentile(lat, 0.99):.2f} ms, "
                    f"{args.calls / total:.0f} calls/s over {args.calls} calls"
                )
                lat = []
                for _ in range(max(50, args.calls // 20)):
                    t = time.perf_counter()
                    c.federated_catalog()
                    lat.append((time.perf_counter() - t) * 1000)
                print(
                    f"FederatedCatalog RPC (7 members): p50 {percentile(lat, 0.5):.2f} ms, "
                    f"p99 {percentile(lat, 0.99):.2f} ms over {len(lat)} calls"
                )

                # 4. the ministry's DP dataset (epsilon 1 a query): its first query, then a new one
                write_sample_grants(fed)
                # Each node given a train grant now loads Flower in the background (~0.4 s
                # of CPU): wait for them, so the DP query below measures only itself.
                training = [
                    n
                    for n, paths in written.items()
                    if any(p.stem == "enterprise_registry" for p in paths)
                ]
                waited = wait_training_ready([fed.node_dir(n) / "node.log" for n in training])
                print(
                    f"training readied at {len(training)} nodes given a train grant "
                    f"{waited:.2f} s after the grants were written"
                )
                took = []
                for sql in (
                    "SELECT industry_section, SUM(patents) FROM industry_enterprises "
                    "GROUP BY industry_section",
                    "SELECT industry_section, AVG(rnd_expense) FROM industry_enterprises "
                    "GROUP BY industry_section",
                ):
                    t = time.perf_counter()
                    answer = c.query(sql)
                    took.append(time.perf_counter() - t)
                    assert answer.epsilon_spent > 0
                print(
                    f"first DP query at an owner that had answered none: {took[0]:.2f} s "
                    f"(a new DP query after it: {took[1] * 1000:.0f} ms)"
                )
        finally:
            stop_nodes(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
