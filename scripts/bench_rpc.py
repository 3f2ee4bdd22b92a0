"""The floor under every federated query: CPU of one mutual-TLS gRPC call and of one DuckDB
statement, measured without any fedgate logic.

Usage: python scripts/bench_rpc.py [--calls 2000]

A federated query costs one call from the client to its home node and one call from the
home node to each owner, and each owner runs at least one DuckDB statement; this prints
what those cost by themselves on this machine, so that the per-query figures of
bench_query.py can be read against them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc  # noqa: E402

from gateway.provision import provision  # noqa: E402
from gateway.rpc.v1 import peer_pb2, peer_pb2_grpc  # noqa: E402

PAYLOAD = b"x" * 1500  # about the size of a small partial in Arrow IPC


class Echo(peer_pb2_grpc.PeerServicer):
    def Execute(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        context.auth_context()  # what our edge reads to know the caller
        return peer_pb2.PartialResponse(node_id="server", arrow_ipc=PAYLOAD)


def write_regions(root: Path) -> Path:
    regions = root / "regions"
    regions.mkdir()
    lines = ['federation = "rpc"']
    for m in ("server", "client"):
        lines += ["", "[[members]]", f'id = "{m}"', f'name = "{m}"', 'level = "province"']
        (regions / f"{m}.toml").write_text(
            f'[node]\nid = "{m}"\nlisten = "127.0.0.1:0"\ndata_dir = "x"\n'
        )
    (regions / "federation.toml").write_text("\n".join(lines) + "\n")
    return regions


CLIENT = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from gateway.rpc.v1 import peer_pb2, peer_pb2_grpc
from gateway.tls import secure_channel
ch = secure_channel({address!r}, "server", ca=Path({ca!r}), cert=Path({cert!r}), key=Path({key!r}))
stub = peer_pb2_grpc.PeerStub(ch)
req = peer_pb2.PartialRequest(sql="x" * 200)
for _ in range(200):
    stub.Execute(req, timeout=5)
t, c = time.perf_counter(), time.process_time()
for _ in range({calls}):
    stub.Execute(req, timeout=5)
print((time.perf_counter() - t) / {calls} * 1e3, (time.process_time() - c) / {calls} * 1e3)
"""


def bench_rpc(calls: int) -> None:
    with tempfile.TemporaryDirectory(prefix="fedgate-bench-rpc-") as tmp:
        root = Path(tmp)
        fed = provision(root / "fed", write_regions(root), free_ports=True)
        tls_s, tls_c = fed.node_dir("server") / "tls", fed.node_dir("client") / "tls"
        creds = grpc.ssl_server_credentials(
            [((tls_s / "node.key").read_bytes(), (tls_s / "node.pem").read_bytes())],
            root_certificates=fed.ca_cert.read_bytes(),
            require_client_auth=True,
        )
        server = grpc.server(ThreadPoolExecutor(max_workers=16))
        peer_pb2_grpc.add_PeerServicer_to_server(Echo(), server)
        port = server.add_secure_port("127.0.0.1:0", creds)
        server.start()
        try:
            code = CLIENT.format(
                root=str(Path(__file__).resolve().parents[1]),
                address=f"127.0.0.1:{port}",
                ca=str(fed.ca_cert),
                cert=str(tls_c / "node.pem"),
                key=str(tls_c / "node.key"),
                calls=calls,
            )
            before = time.process_time()
            out = subprocess.run(
                [sys.executable, "-c", textwrap.dedent(code)],
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            server_ms = (time.process_time() - before) / (calls + 200) * 1e3
        finally:
            server.stop(grace=1).wait()
        wall, client_ms = (float(v) for v in out.stdout.split())
        print(
            f"mTLS gRPC unary call, sequential: {wall:.3f} ms each; CPU per call: "
            f"server {server_ms:.3f} ms, client {client_ms:.3f} ms"
        )


def bench_duckdb(calls: int) -> None:
    import duckdb
    import numpy as np
    import pyarrow as pa

    con = duckdb.connect(":memory:", config={"threads": 1})
    rng = np.random.default_rng(0)
    con.register(
        "staging",
        pa.table(
            {
                "industry": rng.choice(list("ABCDEFGHIJKLMNOPQRST"), 2000),
                "employees": rng.integers(1, 5000, 2000),
            }
        ),
    )
    con.execute("CREATE TABLE firms AS SELECT * FROM staging")
    for label, sql in (
        ("SELECT 1", "SELECT 1"),
        (
            "small group-by (2 000 rows)",
            "SELECT industry, COUNT(*), SUM(employees) FROM firms GROUP BY industry",
        ),
    ):
        con.cursor().sql(sql).to_arrow_table()
        c = time.process_time()
        for _ in range(calls):
            con.cursor().sql(sql).to_arrow_table()
        ms = (time.process_time() - c) / calls * 1e3
        print(f"DuckDB {duckdb.__version__} {label}: {ms:.3f} ms CPU per statement")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    bench_rpc(args.calls)
    bench_duckdb(max(10, args.calls // 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
