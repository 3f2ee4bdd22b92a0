"""Benchmark federated aggregate SQL through real node processes on loopback (mTLS).

Usage: python scripts/bench_query.py [--queries 2000] [--rows 5000000] [--threads 8]

(a) a home node and 5 owner nodes, a small aggregate: p50 / p99 latency of sequential
    queries, and queries per second with concurrent clients.
(b) --rows rows split evenly over the 5 owners: federated time / pooled DuckDB time on
    the same rows (one DuckDB, all rows in memory) for a group-by aggregate and a
    filtered sum. Median of --repeat runs each.
Goals (issue 3, 2-core machine): p50 <= 10 ms, p99 <= 30 ms, >= 200 queries/s,
ratio <= 1.3.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from federation.sql import parse, partial_query  # noqa: E402
from gateway import descriptor  # noqa: E402
from gateway.client import Client, Profile  # noqa: E402
from gateway.demo.launcher import running, sigterm_as_interrupt  # noqa: E402
from gateway.demo.provision import provision  # noqa: E402
from gateway.policy.model import Grant  # noqa: E402

OWNERS = ("owner1", "owner2", "owner3", "owner4", "owner5")
HOME = "home"
SMALL = "SELECT industry, COUNT(*) AS n, SUM(employees) AS e FROM firms GROUP BY industry"
# {} is a constant that changes with every repeat (see bench_large).
GROUP_BY = (
    "SELECT industry, city, COUNT(*) AS n, AVG(revenue) AS r, STDDEV_SAMP(employees) AS s "
    "FROM firms WHERE employees > {} GROUP BY industry, city"
)
FILTERED = "SELECT SUM(revenue) AS r FROM firms WHERE employees > {} AND founded >= 2000"


def write_regions(
    root: Path, home: str = HOME, owners: tuple[str, ...] = OWNERS, analyst: str = "bench@home"
) -> Path:
    """A federation of top-level members, ``home`` first, and one analyst at ``home``."""
    regions = root / "regions"
    regions.mkdir()
    members = [home, *owners]
    lines = ['federation = "bench"']
    for m in members:
        lines += ["", "[[members]]", f'id = "{m}"', f'name = "{m}"', 'level = "province"']
    lines += ["", "[[analysts]]", f'id = "{analyst}"', f'home = "{home}"']
    (regions / "federation.toml").write_text("\n".join(lines) + "\n")
    for m in members:
        (regions / f"{m}.toml").write_text(
            f'[node]\nid = "{m}"\norg = "{m} bureau"\nlisten = "127.0.0.1:0"\n'
            f'data_dir = "x"\nengine_threads = 1\n[metrics]\nlisten = ""\n'
        )
    return regions


def make_firms(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "industry": pa.array(rng.choice(list("ABCDEFGHIJKLMNOPQRST"), rows)),
            "city": pa.array(rng.choice([f"city{i:02d}" for i in range(40)], rows)),
            "employees": pa.array(rng.integers(1, 5000, rows), pa.int64()),
            "revenue": pa.array(rng.lognormal(8, 1.5, rows)),
            "founded": pa.array(rng.integers(1980, 2025, rows), pa.int64()),
        }
    )


DESC_COLUMNS = (
    descriptor.ColumnSpec("industry", "string"),
    descriptor.ColumnSpec("city", "string"),
    descriptor.ColumnSpec("employees", "int64"),
    descriptor.ColumnSpec("revenue", "float64"),
    descriptor.ColumnSpec("founded", "int64"),
)


def publish(fed, owner: str, table: pa.Table, name: str) -> None:  # type: ignore[no-untyped-def]
    root = fed.data_dir(owner)
    pq.write_table(table, root / f"{name}.parquet")
    desc = descriptor.DatasetDescriptor(
        name=name,
        title="Firms",
        description="synthetic",
        department="bench",
        level="L1",
        update_frequency="static",
        path=f"{name}.parquet",
        format="parquet",
        columns=DESC_COLUMNS,
    )
    (root / f"{name}.toml").write_text(descriptor.dumps(desc))
    with Client(Profile.load(fed.operator_profile(owner)), timeout=600) as ops:
        ops.register(root / f"{name}.toml")
        ops.add_grant(
            Grant(
                id="",
                dataset=name,
                grantee_kind="node",
                grantee=HOME,
                operations=("query",),
                min_group_size=1,
                columns={c.name: ("group_by", "aggregate", "filter") for c in DESC_COLUMNS},
            )
        )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_small(client: Client, queries: int, threads: int, profile: Profile, procs) -> None:  # type: ignore[no-untyped-def]
    for _ in range(50):
        client.query(SMALL)
    lat = []
    before = {p.node_id: cpu_seconds(p.pid) for p in procs}
    for _ in range(queries):
        t = time.perf_counter()
        client.query(SMALL)
        lat.append((time.perf_counter() - t) * 1000)
    print(
        f"(a) small aggregate, 5 owners, sequential: p50 {pct(lat, 0.5):.1f} ms, "
        f"p99 {pct(lat, 0.99):.1f} ms over {queries} queries (goal p50 <= 10, p99 <= 30)"
    )
    cpu = {p.node_id: (cpu_seconds(p.pid) - before[p.node_id]) * 1000 / queries for p in procs}
    print(
        "    CPU per query: "
        + ", ".join(f"{node} {ms:.1f} ms" for node, ms in cpu.items())
        + f"; {sum(cpu.values()):.1f} ms in all"
    )
    per_thread = max(1, queries // threads)
    errors: list[str] = []

    def worker() -> None:
        with Client(profile) as c:
            for _ in range(per_thread):
                try:
                    c.query(SMALL)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    errors.append(str(exc))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    done = per_thread * threads - len(errors)
    print(
        f"(a) throughput with {threads} concurrent clients: {done / wall:.0f} queries/s "
        f"({done} queries in {wall:.1f} s, {len(errors)} errors; goal >= 200)"
    )


def _bare_owner(path: str, statements: list[str], start, done) -> None:  # type: ignore[no-untyped-def]
    """One owner's partition in a bare DuckDB (one thread, no fedgate): runs each
    statement when all are ready, and reports when it finished."""
    con = duckdb.connect(config={"threads": 1})
    con.execute(f"CREATE TABLE ds_big AS SELECT * FROM read_parquet('{path}')")
    for sql in statements:
        start.wait(timeout=600)
        con.sql(sql).to_arrow_table()
        done.put(time.perf_counter())


def bare_owners(paths: list[Path], statements: list[str]) -> list[float]:
    """Seconds until the last of five bare DuckDB processes finished each statement, all
    started at once: the floor that five owners sharing the cores cannot go under."""
    ctx = multiprocessing.get_context("spawn")  # no fork of this process's gRPC threads
    start, done = ctx.Barrier(len(paths) + 1), ctx.Queue()
    procs = [ctx.Process(target=_bare_owner, args=(str(p), statements, start, done)) for p in paths]
    for p in procs:
        p.start()
    walls = []
    try:
        for _ in statements:
            start.wait(timeout=600)
            t0 = time.perf_counter()
            ends = [done.get(timeout=600) for _ in paths]
            walls.append(max(ends) - t0)
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    return walls


def bench_large(client: Client, tables: list[pa.Table], repeat: int, paths: list[Path]) -> None:
    """Each repeat asks with a different constant, so no owner answers from its result
    cache: both sides really scan the rows every time."""
    con = duckdb.connect(config={"threads": 2})
    pooled = pa.concat_tables(tables)
    con.register("staging", pooled)
    con.execute("CREATE TABLE firms AS SELECT * FROM staging")
    con.unregister("staging")
    for name, sql in (("group-by aggregate", GROUP_BY), ("filtered sum", FILTERED)):
        client.query(sql.format(1).replace("FROM firms", "FROM big"), timeout=600)  # load once
        con.sql(sql.format(1)).fetchall()
        fed_t, pool_t = [], []
        for i in range(repeat):
            fed_sql = sql.format(2 + i).replace("FROM firms", "FROM big")
            t = time.perf_counter()
            res = client.query(fed_sql, timeout=600)
            fed_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            ref = con.sql(sql.format(2 + i)).fetchall()
            pool_t.append(time.perf_counter() - t)
        assert res.table.num_rows == len(ref)
        f, p = statistics.median(fed_t), statistics.median(pool_t)
        print(
            f"(b) {name} over {pooled.num_rows:,} rows: federated {f * 1000:.0f} ms, "
            f"pooled DuckDB {p * 1000:.0f} ms, ratio {f / p:.2f} (goal <= 1.3)"
        )
        ints = [c.name for c in DESC_COLUMNS if c.type == "int64"]
        generated = [  # constant 1 warms up, as the federated side did
            partial_query(parse(sql.format(1 + i)), "ds_big", integer_columns=ints, clamp=None)
            for i in range(repeat + 1)
        ]
        bare = statistics.median(bare_owners(paths, generated)[1:])
        print(
            f"    floor: the owners' generated statements alone, five bare DuckDB processes "
            f"at once: {bare * 1000:.0f} ms, ratio {bare / p:.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)  # a killed bench stops its nodes
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="fedgate-bench-q-") as tmp:
        root = Path(tmp)
        fed = provision(root / "fed", write_regions(root), free_ports=True)
        with running(fed) as procs:
            per_owner = args.rows // len(OWNERS)
            tables = [make_firms(per_owner, seed) for seed in range(len(OWNERS))]
            t0 = time.perf_counter()
            for owner, table in zip(OWNERS, tables, strict=True):
                publish(fed, owner, table.slice(0, 2000), "firms")
                publish(fed, owner, table, "big")
            print(f"setup: {args.rows:,} rows over 5 owners in {time.perf_counter() - t0:.1f} s")
            profile = Profile.load(fed.profile_path("bench@home"))
            with Client(profile, timeout=600) as client:
                bench_small(client, args.queries, args.threads, profile, procs)
                paths = [fed.data_dir(owner) / "big.parquet" for owner in OWNERS]
                bench_large(client, tables, args.repeat, paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
