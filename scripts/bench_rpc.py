"""The floor under every federated query: what its mandated parts cost by themselves.

Usage: python scripts/bench_rpc.py [--calls 2000]

A federated query costs one call from the client to its home node and one call from the
home node to each of the five owners; each owner checks its grant, runs DuckDB, protects,
spends durably, logs and signs; the home merges. This prints each part alone on this
machine, and what they add up to, so that the per-query figures of bench_query.py (and
its goals) can be read against them:

- one mutual-TLS gRPC unary call, and one message on an already open bidirectional
  stream, with no fedgate logic (server CPU, client CPU);
- one DuckDB statement through its Python API;
- one owner's whole release of the bench's small aggregate (``Owner.execute``, result
  cache warm), in-process and through its real gRPC server;
- the home's merge and final step for five such partials.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc  # noqa: E402

from gateway.clock import utc  # noqa: E402
from gateway.demo.launcher import StopSignal  # noqa: E402
from gateway.demo.provision import provision  # noqa: E402
from gateway.engine import arrow_result  # noqa: E402
from gateway.rpc.v1 import peer_pb2, peer_pb2_grpc  # noqa: E402

PAYLOAD = b"x" * 1500  # about the size of a small partial in Arrow IPC
STREAM = "/fedgate.bench.Echo/Stream"


class Echo(peer_pb2_grpc.PeerServicer):
    def Execute(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        context.auth_context()  # what our edge reads to know the caller
        return peer_pb2.PartialResponse(node_id="server", arrow_ipc=PAYLOAD)


def echo_stream(requests: Iterator[bytes], context) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    context.auth_context()
    for _ in requests:
        yield PAYLOAD


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


# One client process per measurement; it prints its wall ms and CPU ms per call.
CLIENT = """
import queue, sys, time, uuid
sys.path.insert(0, {root!r})
from pathlib import Path
from gateway.clock import utc
from gateway.rpc.v1 import peer_pb2, peer_pb2_grpc
from gateway.tls import secure_channel
ch = secure_channel(
    {address!r}, {server_id!r}, ca=Path({ca!r}), cert=Path({cert!r}), key=Path({key!r})
)
mode = {mode!r}
if mode == "stream":
    inbox = queue.Queue()
    def requests():
        while (m := inbox.get()) is not None:
            yield m
    replies = ch.stream_stream({stream!r})(requests(), timeout=600)
    def one():
        inbox.put(b"x" * 200)
        next(replies)
else:
    stub = peer_pb2_grpc.PeerStub(ch)
    template = peer_pb2.PartialRequest(sql={sql!r}, home_node="home")
    template.requester.role, template.requester.id = "analyst", "bench@home"
    template.requester.org = "home bureau"
    def one():
        req = peer_pb2.PartialRequest()
        req.CopyFrom(template)
        req.request_id = uuid.uuid4().hex
        req.issued_at = utc()
        resp = stub.Execute(req, timeout=5)
        assert mode == "echo" or resp.owners[0].ok, resp
for _ in range(100):
    one()
t, c = time.perf_counter(), time.process_time()
for _ in range({calls}):
    one()
print((time.perf_counter() - t) / {calls} * 1e3, (time.process_time() - c) / {calls} * 1e3)
if mode == "stream":
    inbox.put(None)
"""


def run_client(
    mode: str, address: str, server_id: str, tls: Path, ca: Path, calls: int, sql: str = ""
) -> tuple[float, float, float]:
    """Wall ms per call, server CPU ms per call (this process), client CPU ms per call."""
    code = CLIENT.format(
        root=str(Path(__file__).resolve().parents[1]),
        address=address,
        server_id=server_id,
        ca=str(ca),
        cert=str(tls / "node.pem"),
        key=str(tls / "node.key"),
        mode=mode,
        stream=STREAM,
        sql=sql,
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
    server_ms = (time.process_time() - before) / (calls + 100) * 1e3
    wall, client_ms = (float(v) for v in out.stdout.split())
    return wall, server_ms, client_ms


def bench_rpc(calls: int) -> tuple[float, float]:
    """Returns (server, client) CPU ms of one unary call."""
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
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "fedgate.bench.Echo",
                    {"Stream": grpc.stream_stream_rpc_method_handler(echo_stream)},
                )
            ]
        )
        port = server.add_secure_port("127.0.0.1:0", creds)
        server.start()
        address = f"127.0.0.1:{port}"
        try:
            wall, server_ms, client_ms = run_client(
                "echo", address, "server", tls_c, fed.ca_cert, calls
            )
            print(
                f"mTLS gRPC unary call, sequential: {wall:.3f} ms each; CPU per call: "
                f"server {server_ms:.3f} ms, client {client_ms:.3f} ms"
            )
            swall, sserver, sclient = run_client(
                "stream", address, "server", tls_c, fed.ca_cert, calls
            )
            print(
                f"mTLS gRPC message on an open bidirectional stream: {swall:.3f} ms each; "
                f"CPU per message: server {sserver:.3f} ms, client {sclient:.3f} ms"
            )
        finally:
            server.stop(grace=1).wait()
    return server_ms, client_ms


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
        arrow_result(con.cursor(), sql)
        c = time.process_time()
        for _ in range(calls):
            arrow_result(con.cursor(), sql)
        ms = (time.process_time() - c) / calls * 1e3
        print(f"DuckDB {duckdb.__version__} {label}: {ms:.3f} ms CPU per statement")


def bench_release(calls: int) -> tuple[float, float]:
    """One owner of bench_query's federation, built in this process after its processes
    have registered the data and the grant. Returns (release, merge) CPU ms."""
    import bench_query as bq

    from federation.partials import answer, from_ipc
    from federation.sql import parse
    from gateway import serde
    from gateway.config import load
    from gateway.demo.launcher import running
    from gateway.node import Node

    with tempfile.TemporaryDirectory(prefix="fedgate-bench-rel-") as tmp:
        root = Path(tmp)
        fed = provision(root / "fed", bq.write_regions(root), free_ports=True)
        with running(fed):
            bq.publish(fed, "owner1", bq.make_firms(2000, 0), "firms")
        node = Node(load(fed.config_path("owner1")))
        try:
            template = peer_pb2.PartialRequest(sql=bq.SMALL, home_node="home")
            template.requester.role, template.requester.id = "analyst", "bench@home"
            template.requester.org = "home bureau"

            def release() -> peer_pb2.PartialResponse:
                req = peer_pb2.PartialRequest()
                req.CopyFrom(template)
                req.request_id = uuid.uuid4().hex
                req.issued_at = utc()
                # What the Peer/Execute servicer does, without the network.
                env = serde.envelope_from_proto(req, time.monotonic() + 10)
                node.vouching.check("home", env)
                resp = serde.partial_answer_to_proto(node.owner.execute(env))
                assert resp.owners[0].ok, resp
                return resp

            for _ in range(50):
                resp = release()
            c = time.process_time()
            for _ in range(calls):
                release()
            release_ms = (time.process_time() - c) / calls * 1e3
            print(
                f"owner release of the small aggregate, in-process: {release_ms:.3f} ms CPU "
                "(grant check, the cached result and its suppressed form, durable spend and "
                "audit entry, receipt)"
            )
            plan = parse(bq.SMALL)
            partials = [from_ipc(resp.arrow_ipc)] * 5
            for _ in range(20):
                answer(plan, partials, node.engine.run_on_table)
            c = time.process_time()
            for _ in range(calls):
                answer(plan, partials, node.engine.run_on_table)
            merge_ms = (time.process_time() - c) / calls * 1e3
            print(
                f"home merge and final step of 5 partials, in-process: {merge_ms:.3f} ms CPU "
                "(only when the partials differ from a kept answer's)"
            )
            node.start()
            address = node.membership().get("owner1").address
            tls_home = fed.node_dir("home") / "tls"
            wall, server_ms, client_ms = run_client(
                "execute", address, "owner1", tls_home, fed.ca_cert, calls, bq.SMALL
            )
            print(
                f"the same release through the owner's gRPC server: {wall:.3f} ms each; CPU "
                f"per call: owner {server_ms:.3f} ms, caller {client_ms:.3f} ms"
            )
        finally:
            node.stop()
    return release_ms, merge_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    StopSignal().install()  # a killed bench stops the nodes of its release part
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    server_ms, client_ms = bench_rpc(args.calls)
    bench_duckdb(max(10, args.calls // 4))
    release_ms, merge_ms = bench_release(max(10, args.calls // 2))
    # A repeated question: six calls (client -> home, home -> five owners) and five
    # releases; the home's merge is kept. A new question adds the merge and DuckDB.
    floor = 6 * (server_ms + client_ms) + 5 * release_ms
    cores = os.cpu_count() or 1
    print(
        f"floor of one repeated federated query (5 owners): {floor:.1f} ms CPU with no glue "
        f"at all, so at most {cores * 1000 / floor:.0f} queries/s on {cores} cores "
        f"({floor + merge_ms:.1f} ms with the merge; bench_query.py's goal of 200 queries/s "
        "on 2 cores needs <= 10 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
