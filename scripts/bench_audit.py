"""Benchmark the audit trail: durable append rate and offline verify rate.

Usage: python scripts/bench_audit.py [--entries 200000] [--batch 500]

Appends go to a real node state database (SQLite, WAL, synchronous=FULL: each commit is
fsynced): in transactions of --batch entries; one at a time, as a single quiet release
is; and one per call from --threads concurrent threads, as concurrent releases are, which
the node's group commit (State.group) batches into shared fsyncs. Verification reads an export
file and checks every link and signed head with the CA certificate alone.
Goals (issue 4, 2-core machine): >= 20 000 entries/s append, >= 200 000 entries/s verify.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway import identity  # noqa: E402
from gateway.audit import AuditLog  # noqa: E402
from gateway.policy.model import Grant, public_fields  # noqa: E402
from gateway.state import State  # noqa: E402
from gateway.verifier import verify  # noqa: E402


def body(i: int) -> dict:
    return {
        "kind": "release",
        "time": "2026-11-25T12:00:00Z",
        "request_id": f"{i:032x}",
        "requester": "analyst:li.wei@shanghai",
        "requester_org": "Shanghai Big Data Center",
        "home_node": "shanghai",
        "owner": "bench",
        "operation": "query",
        "purpose": "monthly report",
        "dataset": "enterprise_registry",
        "grant_id": "g-1234abcd",
        "plan_digest": "a" * 64,
        "result_digest": "b" * 64,
        "groups_released": 12,
        "l2_noise": True,
        "epsilon": 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--single", type=int, default=2_000, help="one-entry transactions")
    parser.add_argument("--threads", type=int, default=32, help="concurrent appenders")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="fedgate-bench-audit-") as tmp:
        root = Path(tmp)
        identity.init_ca(root / "ca")
        key_pem, csr = identity.make_csr("node", "bench", "Bench Bureau", ["127.0.0.1"])
        (root / "node.pem").write_bytes(identity.sign_csr(root / "ca", csr))
        identity.write_private(root / "node.key", key_pem)
        state = State(root / "state.sqlite3")
        log = AuditLog(
            state, "bench", identity.load_key(root / "node.key"), (root / "node.pem").read_bytes()
        )
        # the grant the releases name (audit verify replays every release against it)
        grant = Grant(
            id="g-1234abcd",
            dataset="enterprise_registry",
            grantee_kind="org",
            grantee="Shanghai Big Data Center",
            operations=("query",),
            columns={"city": ("group_by",)},
            min_group_size=5,
            valid_from="2026-11-25T11:00:00Z",  # every grant an operator writes has one
        )
        log.append(
            {"kind": "grant.written", "time": "2026-11-25T11:00:00Z", **public_fields(grant)}
        )

        t0 = time.perf_counter()
        for start in range(0, args.entries, args.batch):
            log.append_many([body(i) for i in range(start, min(args.entries, start + args.batch))])
            if start % (args.batch * 20) == 0:
                log.checkpoint("2026-11-25T12:00:00Z")
        batched = time.perf_counter() - t0
        print(
            f"append, {args.batch}-entry transactions (fsync each): "
            f"{args.entries / batched:,.0f} entries/s ({args.entries:,} in {batched:.2f} s; "
            "goal >= 20,000)"
        )
        t0 = time.perf_counter()
        for i in range(args.single):
            log.append(body(i))
        single = time.perf_counter() - t0
        print(
            f"append, one entry per transaction (fsync each): "
            f"{args.single / single:,.0f} entries/s ({single / args.single * 1e6:.0f} us each)"
        )

        per_thread = args.single
        threads = [
            threading.Thread(target=lambda: [log.append(body(i)) for i in range(per_thread)])
            for _ in range(args.threads)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        grouped = time.perf_counter() - t0
        n = per_thread * args.threads
        print(
            f"append, one entry per release from {args.threads} concurrent threads "
            f"(group commit, fsync each batch): {n / grouped:,.0f} entries/s "
            f"({n:,} in {grouped:.2f} s; goal >= 20,000)"
        )

        export = root / "export.log"
        t0 = time.perf_counter()
        with export.open("w") as fh:
            fh.writelines(log.export_lines([], "now", "bench"))
        print(f"export: {time.perf_counter() - t0:.2f} s, {export.stat().st_size / 1e6:.0f} MB")
        bundle = identity.load_bundle(root / "ca" / "ca.pem")
        total = 1 + args.entries + args.single + n + 1  # and the grant, and the export's
        t0 = time.perf_counter()
        with export.open() as fh:
            report = verify(fh, bundle)
        took = time.perf_counter() - t0
        assert report.entries == total
        print(
            f"verify: {total / took:,.0f} entries/s ({total:,} entries, {report.heads} signed "
            f"heads, in {took:.2f} s; goal >= 200,000)"
        )
        state.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
