"""Benchmark issue 12: PSI cardinality and a join aggregate through real nodes on loopback.

Usage: python scripts/bench_psi.py [--rows 1000000] [--parts a,b,c,d] [--skip-reference]
       [--reference-rows N]

Three node processes (mTLS on loopback): ``home`` (the analyst's), and the owners ``n1``
and ``n2``, each holding ``--rows`` valid credit codes, half of them shared.

(a) ``fedgate psi`` between n1 and n2 through ``Client.psi``: wall time, items per second
    (both sides' items / wall), peak RSS of each node process (VmHWM, reset before the
    part), CPU of each node, when each stage of the matcher ended; the cardinality must
    equal the exact one.
(b) this machine's ristretto255 rates (``federation.psi.group.floor_rates``, one core)
    measured in the same run, and the lower bound they imply for (a): each owner hashes
    its n items and makes 2n scalar multiplications, the two owners at once on the two
    cores: n * (1/hash + 2/mult) seconds. Goal: (a) / (b) <= 1.15.
(c) the same sets through ``openmined-psi`` (ECDH on P-256, one thread, cardinality
    only), in a virtualenv of its own (it pins protobuf 6.30.2), made on first use under
    the system's temporary directory. ``--reference-rows`` runs it at a smaller size and
    extrapolates linearly (printed as such); ``--skip-reference`` leaves it out.
(d) a join aggregate, COUNT and SUM over the matched rows grouped by 20 keys, through
    ``Client.query``: wall time, peak RSS and CPU per node; the answer must equal DuckDB's
    on the pooled rows. Goal: <= 10 minutes at 1 M x 1 M.
The machine's load average is printed before each part: other programs' share of the two
cores shows in every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from bench_args import parts_of  # noqa: E402

from federation.psi import group  # noqa: E402
from federation.psi.frames import Progress  # noqa: E402
from gateway import credit_code as cc  # noqa: E402
from gateway import descriptor  # noqa: E402
from gateway.client import Client, ClientError, Profile  # noqa: E402
from gateway.demo.launcher import NodeProcess, StopSignal, running  # noqa: E402
from gateway.demo.provision import Federation, provision  # noqa: E402
from gateway.policy.model import Grant  # noqa: E402

HOME, LEFT, RIGHT = "home", "n1", "n2"
ANALYST = "bench@home"
LEFT_DS, RIGHT_DS = "ds_a", "ds_b"
KEY = "credit_code"  # the name makes the owners check every code's check characters
GROUPS = 20
K = 5
PARTS = ("a", "b", "c", "d")
TIMEOUT = 900.0  # the client's; the node caps a session at 590 s (gateway.node)
RATIO_GOAL = 1.15
JOIN_GOAL = 600.0  # seconds
RSS_GOAL_MB = 600  # peak resident memory of each owner in (a)
JOIN_SQL = (
    f"SELECT a.g, COUNT(*) AS n, SUM(b.v) AS s FROM {LEFT}.{LEFT_DS} a "
    f"JOIN {RIGHT}.{RIGHT_DS} b ON a.{KEY} = b.{KEY} GROUP BY a.g"
)
POOLED_SQL = (
    f"SELECT a.g, COUNT(*) AS n, SUM(b.v) AS s FROM a JOIN b ON a.{KEY} = b.{KEY} "
    f"GROUP BY a.g HAVING COUNT(*) >= {K} ORDER BY a.g"
)
REFERENCE_PACKAGE = "openmined-psi==2.0.6"
REFERENCE_VENV = Path(tempfile.gettempdir()) / "fedgate-bench-openmined-psi-2.0.6"
# Run with the reference's own interpreter: the client's and the server's sides of one
# cardinality-only session, one after the other on one thread, timed step by step.
REFERENCE_WORKER = r"""
import json, sys, time
import private_set_intersection.python as psi
n, overlap = int(sys.argv[1]), int(sys.argv[2])
client_items = ["91%016d" % i for i in range(n)]
server_items = ["91%016d" % i for i in range(n - overlap, 2 * n - overlap)]
t = {}
t0 = time.perf_counter()
client = psi.client.CreateWithNewKey(False)  # False: the size only, never the items
server = psi.server.CreateWithNewKey(False)
setup = server.CreateSetupMessage(1e-9, n, server_items, psi.DataStructure.RAW)
t["setup"] = time.perf_counter() - t0
t1 = time.perf_counter()
request = client.CreateRequest(client_items)
t["request"] = time.perf_counter() - t1
t1 = time.perf_counter()
response = server.ProcessRequest(request)
t["process"] = time.perf_counter() - t1
t1 = time.perf_counter()
size = client.GetIntersectionSize(setup, response)
t["size"] = time.perf_counter() - t1
t["total"] = time.perf_counter() - t0
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print(json.dumps({"n": n, "intersection": size, "seconds": t, "peak_kb": int(hwm)}))
"""


# --- data -------------------------------------------------------------------------------


def _charset_values(raw: npt.NDArray[np.uint8], charset: str) -> npt.NDArray[np.int64]:
    table = np.full(256, -1, dtype=np.int64)
    for i, ch in enumerate(charset):
        table[ord(ch)] = i
    return table[raw]


def credit_codes(count: int, rng: np.random.Generator) -> npt.NDArray[np.bytes_]:
    """``count`` distinct valid credit codes (``S18``), check characters computed with
    numpy: a million take well under a second, against ~10 s one by one."""
    space = len(cc.CHARSET) ** 8
    serials = np.unique(rng.integers(0, space, count + count // 100 + 16, dtype=np.int64))
    for _ in range(100):  # a collision in 31^8 is rare: a few more draws at most
        if len(serials) >= count:
            break
        more = rng.integers(0, space, count - len(serials) + 16, dtype=np.int64)
        serials = np.unique(np.concatenate([serials, more]))
    serials = rng.permutation(serials)[:count]
    charset = np.frombuffer(cc.CHARSET.encode(), dtype=np.uint8)
    out = np.empty((count, cc.LENGTH), dtype=np.uint8)
    out[:, 0], out[:, 1] = ord("9"), ord("1")  # market regulation, enterprise
    divisions = np.array([list(d.encode()) for d in ("310000", "320100", "330100", "340100")])
    out[:, 2:8] = divisions[rng.integers(0, len(divisions), count)]
    rest = serials
    for pos in range(15, 7, -1):  # the 8 serial characters, base 31, last one first
        out[:, pos] = charset[rest % len(cc.CHARSET)]
        rest = rest // len(cc.CHARSET)
    org = np.zeros(count, dtype=np.int64)
    for pos, weight in enumerate(cc.ORG_WEIGHTS, start=8):
        org += _charset_values(out[:, pos], cc.ORG_CHARSET) * weight
    org_check = np.frombuffer(b"?123456789X0", dtype=np.uint8)  # GB 11714: 10 X, 11 0
    out[:, 16] = org_check[11 - org % 11]
    total = np.zeros(count, dtype=np.int64)
    for pos, weight in enumerate(cc.USCC_WEIGHTS):
        total += _charset_values(out[:, pos], cc.CHARSET) * weight
    out[:, 17] = charset[(31 - total % 31) % 31]
    return out.view(f"S{cc.LENGTH}").reshape(count)


def string_array(codes: npt.NDArray[np.bytes_]) -> pa.Array:
    """Fixed-width ASCII codes as an Arrow string array, straight from their bytes."""
    n = len(codes)
    offsets = np.arange(0, cc.LENGTH * (n + 1), cc.LENGTH, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(codes.tobytes())]
    )


class Sets(NamedTuple):
    left: pa.Table  # credit_code, g (20 group keys)
    right: pa.Table  # credit_code, v (int64, 1 % NULL)
    exact: int  # the size of the intersection


def make_sets(rows: int, seed: int = 12) -> Sets:
    """Two sets of ``rows`` codes each, half of them shared, in unrelated orders."""
    rng = np.random.default_rng(seed)
    shared = rows // 2
    codes = credit_codes(2 * rows - shared, rng)
    left_codes = rng.permutation(codes[:rows])
    right_codes = rng.permutation(codes[rows - shared :])
    labels = pa.array([f"g{i:02d}" for i in range(GROUPS)])
    g = pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, GROUPS, rows), pa.int32()), labels)
    v = rng.integers(0, 1_000_000, rows)
    left = pa.table({KEY: string_array(left_codes), "g": g.cast(pa.string())})
    right = pa.table(
        {KEY: string_array(right_codes), "v": pa.array(v, mask=rng.random(rows) < 0.01)}
    )
    exact = int(np.intersect1d(left_codes, right_codes, assume_unique=True).size)
    return Sets(left, right, exact)


# --- the federation -----------------------------------------------------------------------


def write_regions(root: Path) -> Path:
    """Three top-level members, ``home`` first, and the analyst at ``home``."""
    regions = root / "regions"
    regions.mkdir()
    lines = ['federation = "bench-psi"']
    for m in (HOME, LEFT, RIGHT):
        lines += ["", "[[members]]", f'id = "{m}"', f'name = "{m}"', 'level = "province"']
        (regions / f"{m}.toml").write_text(
            f'[node]\nid = "{m}"\norg = "{m} bureau"\nlisten = "127.0.0.1:0"\n'
            'data_dir = "x"\nengine_threads = 1\n[metrics]\nlisten = ""\n'
        )
    lines += ["", "[[analysts]]", f'id = "{ANALYST}"', f'home = "{HOME}"']
    (regions / "federation.toml").write_text("\n".join(lines) + "\n")
    return regions


def publish(
    fed: Federation,
    node: str,
    name: str,
    table: pa.Table,
    columns: tuple[descriptor.ColumnSpec, ...],
    controls: dict[str, tuple[str, ...]],
    operations: tuple[str, ...] = ("psi",),
    **grant_fields: object,
) -> None:
    """Register an L2 dataset at ``node`` and grant the home's organisation ``operations``
    on it (no DP, k = 5; for ``psi`` exact answers: a grouped or summed join over L2 needs
    the opt-in). ``grant_fields`` go into the grant as they are."""
    root = fed.data_dir(node)
    pq.write_table(table, root / f"{name}.parquet")
    desc = descriptor.DatasetDescriptor(
        name=name,
        title=name,
        description="synthetic credit codes",
        department="bench",
        level="L2",
        update_frequency="static",
        path=f"{name}.parquet",
        format="parquet",
        columns=columns,
    )
    (root / f"{name}.toml").write_text(descriptor.dumps(desc))
    with Client(Profile.load(fed.operator_profile(node)), timeout=600) as ops:
        ops.register(root / f"{name}.toml")
        ops.add_grant(
            Grant(
                id="",
                dataset=name,
                grantee_kind="org",
                grantee=fed.node(HOME).org,
                operations=operations,
                min_group_size=K,
                columns=controls,
                # no DP: the owner's opt-in to exact answers and to training without DP
                # (docs/security.md)
                exact="psi" in operations or "train" in operations,
                **grant_fields,  # type: ignore[arg-type]
            )
        )


def publish_sets(fed: Federation, sets: Sets) -> None:
    publish(
        fed, LEFT, LEFT_DS, sets.left,
        (descriptor.ColumnSpec(KEY, "string"), descriptor.ColumnSpec("g", "string")),
        {KEY: ("join_key",), "g": ("group_by",)},
    )  # fmt: skip
    publish(
        fed, RIGHT, RIGHT_DS, sets.right,
        (descriptor.ColumnSpec(KEY, "string"),
         descriptor.ColumnSpec("v", "int64", lower=0, upper=1_000_000)),
        {KEY: ("join_key",), "v": ("aggregate",)},
    )  # fmt: skip


# --- measuring node processes --------------------------------------------------------------


def status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmHWM: peak resident set; VmRSS: now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux ``clear_refs`` 5), so each
    part's peak is its own; False when the kernel refuses (then peaks accumulate)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all programs have used so far, over every core (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Usage(NamedTuple):
    peak_mb: dict[str, float]
    cpu: dict[str, float]
    peaks_reset: bool
    others: float  # CPU seconds other programs (not the nodes, not this script) used
    wall: float


class Meter:
    """Peak RSS and CPU of each node process over one part, and the CPU every other
    program took meanwhile (the load average counts the nodes' own threads too)."""

    def __init__(self, procs: Sequence[NodeProcess]) -> None:
        self.procs = procs
        self.reset = all([reset_peak(p.pid) for p in procs])
        self.cpu0 = {p.node_id: cpu_seconds(p.pid) for p in procs}
        self.busy0, self.own0 = machine_busy(), time.process_time()
        self.t0 = time.perf_counter()

    def stop(self) -> Usage:
        cpu = {p.node_id: cpu_seconds(p.pid) - self.cpu0[p.node_id] for p in self.procs}
        own = time.process_time() - self.own0
        others = machine_busy() - self.busy0 - sum(cpu.values()) - own
        return Usage(
            {p.node_id: status_kb(p.pid, "VmHWM") / 1024 for p in self.procs},
            cpu,
            self.reset,
            max(0.0, others),
            time.perf_counter() - self.t0,
        )


def usage_line(u: Usage) -> str:
    peak = ", ".join(f"{node} {mb:,.0f} MB" for node, mb in u.peak_mb.items())
    cpu = ", ".join(f"{node} {s:.1f} s" for node, s in u.cpu.items())
    since = "this part" if u.peaks_reset else "node start (the kernel refused a reset)"
    cores = os.cpu_count() or 1
    return (
        f"peak RSS (VmHWM since {since}): {peak}; CPU: {cpu}; other programs used "
        f"{u.others:.1f} CPU s ({u.others / (cores * u.wall):.0%} of the {cores} cores)"
    )


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


# --- (a) PSI --------------------------------------------------------------------------------


class PsiRun(NamedTuple):
    wall: float
    intersection: int
    usage: Usage
    stages: dict[str, tuple[float, float]]  # stage: (first event, last event), s from start


def bench_psi(client: Client, procs: Sequence[NodeProcess], sets: Sets) -> PsiRun | None:
    rows = sets.left.num_rows
    print(f"(a) PSI {rows:,} x {rows:,} identifiers, {sets.exact:,} shared; {load_line()}")
    events: list[tuple[float, Progress]] = []
    meter = Meter(procs)
    t0 = time.perf_counter()
    try:
        answer = client.psi(
            f"{LEFT}:{LEFT_DS}.{KEY}",
            f"{RIGHT}:{RIGHT_DS}.{KEY}",
            timeout=TIMEOUT,
            on_progress=lambda e: events.append((time.perf_counter() - t0, e)),
        )
    except ClientError as exc:
        print(f"(a) fedgate psi FAILED after {time.perf_counter() - t0:.1f} s: {exc}")
        return None
    wall = time.perf_counter() - t0
    usage = meter.stop()
    stages: dict[str, tuple[float, float]] = {}
    for at, e in events:
        first, _ = stages.get(e.stage, (at, at))
        stages[e.stage] = (first, at)
    ok = answer.intersection == sets.exact
    print(
        f"(a) fedgate psi: {wall:.1f} s wall, {2 * rows / wall:,.0f} items/s "
        f"({2 * rows:,} items / wall); cardinality {answer.intersection:,} "
        + ("= the exact one" if ok else f"!= the exact {sets.exact:,} (WRONG)")
    )
    print(f"    {usage_line(usage)}")
    if stages:
        print(
            "    matcher stages (s from the call, first..last event): "
            + ", ".join(f"{s} {a:.1f}..{b:.1f}" for s, (a, b) in stages.items())
        )
    return PsiRun(wall, answer.intersection, usage, stages)


# --- (b) the floor --------------------------------------------------------------------------


class Floor(NamedTuple):
    rates: dict[str, float]  # group.floor_rates: items per wall second of one thread
    bound: float  # n * (1/hash + 2/mult)
    with_checks: float  # and the 3n point checks of a session, over the two cores
    cpu_rates: dict[str, float]  # the same steps, items per CPU second of their thread
    cpu_bound: float  # the bound from cpu_rates: what two idle cores would allow


def cpu_rates(seconds: float) -> dict[str, float]:
    """Items per CPU second of the thread for the hash and the multiplication: unlike
    wall-clock rates, other programs' load does not slow these down."""
    items = [os.urandom(18) for _ in range(256)]
    label = b"fedgate-bench-psi-cpu-rates"
    points = bytes(group.hash_to_points(label, items))
    scalar = group.new_scalar()
    steps = {
        "hash_to_points": lambda: group.hash_to_points(label, items),
        "blind": lambda: group.blind(points, scalar),
    }
    rates: dict[str, float] = {}
    for name, step in steps.items():
        rounds, start = 0, time.thread_time()
        while (spent := time.thread_time() - start) < seconds / 2 and rounds < 10_000:
            step()
            rounds += 1
        rates[name] = rounds * len(items) / max(spent, 1e-9)
    return rates


def measure_floor(rows: int) -> Floor:
    rates = group.floor_rates(3.0)
    h, m, c = rates["hash_to_points"], rates["blind"], rates["check_points"]
    bound = rows * (1 / h + 2 / m)
    cpu = cpu_rates(2.0)
    cpu_bound = rows * (1 / cpu["hash_to_points"] + 2 / cpu["blind"])
    return Floor(rates, bound, bound + 1.5 * rows / c, cpu, cpu_bound)


def print_floor(floor: Floor, rows: int, psi: PsiRun | None) -> None:
    r = floor.rates
    print(
        f"(b) ristretto255 on one core here: hash to the group {r['hash_to_points']:,.0f}/s, "
        f"scalar multiplication {r['blind']:,.0f}/s, point check {r['check_points']:,.0f}/s "
        f"({load_line()})"
    )
    print(
        f"(b) floor of (a): each owner hashes {rows:,} items and makes {2 * rows:,} scalar "
        f"multiplications, the two at once on the two cores: {floor.bound:.1f} s "
        f"({floor.with_checks:.1f} s with the session's {3 * rows:,} point checks)"
    )
    c = floor.cpu_rates
    print(
        f"(b) by CPU time of the thread (the load does not slow these): hash "
        f"{c['hash_to_points']:,.0f}/s, multiplication {c['blind']:,.0f}/s: floor "
        f"{floor.cpu_bound:.1f} s on two idle cores"
    )
    if psi is not None:
        ratio = psi.wall / floor.bound
        verdict = "PASS" if ratio <= RATIO_GOAL else "MISS"
        owners_cpu = psi.usage.cpu[LEFT] + psi.usage.cpu[RIGHT]
        print(
            f"(b) ratio (a)/(b) {ratio:.2f} (goal <= {RATIO_GOAL}) {verdict}; against the "
            f"floor with checks {psi.wall / floor.with_checks:.2f}; against the CPU-time "
            f"floor {psi.wall / floor.cpu_bound:.2f}"
        )
        print(
            f"(b) the owners used {owners_cpu:.1f} CPU s against the floor's "
            f"{2 * floor.cpu_bound:.1f} (CPU time), and got {owners_cpu / (2 * psi.wall):.0%} "
            "of the two cores over the wall time (the rest: waiting, or other programs)"
        )


# --- (c) the reference ------------------------------------------------------------------------


class Reference(NamedTuple):
    rows: int  # the size it ran at
    seconds: float  # at that size
    scaled: float  # at --rows (linear)
    intersection: int
    peak_mb: float
    steps: dict[str, float]


def reference_python() -> Path:
    """The reference's interpreter, in a virtualenv of its own made on first use."""
    python = REFERENCE_VENV / "bin" / "python"
    marker = REFERENCE_VENV / ".installed"
    if marker.exists():
        return python
    print(f"(c) making a virtualenv with {REFERENCE_PACKAGE} in {REFERENCE_VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(REFERENCE_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", REFERENCE_PACKAGE],
        check=True,
        timeout=900,
    )
    marker.write_text(REFERENCE_PACKAGE + "\n")
    return python


def bench_reference(rows: int, reference_rows: int) -> Reference:
    n = min(rows, reference_rows) if reference_rows > 0 else rows
    python = reference_python()
    print(f"(c) {REFERENCE_PACKAGE} at {n:,} x {n:,}; {load_line()}", flush=True)
    done = subprocess.run(
        [str(python), "-c", REFERENCE_WORKER, str(n), str(n // 2)],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    secs = out["seconds"]
    ref = Reference(
        n, secs["total"], secs["total"] * rows / n, out["intersection"],
        out["peak_kb"] / 1024, secs,
    )  # fmt: skip
    ok = ref.intersection == n // 2
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in secs.items() if k != "total")
    print(
        f"(c) openmined-psi (P-256 ECDH, one thread): {ref.seconds:.1f} s at {n:,} x {n:,} "
        f"({steps}; peak RSS {ref.peak_mb:,.0f} MB; cardinality "
        + ("right" if ok else f"{ref.intersection:,}, WRONG")
        + ")"
    )
    if n != rows:
        print(
            f"(c) EXTRAPOLATED linearly to {rows:,} x {rows:,}: {ref.scaled:.1f} s "
            f"(measured at {n:,} x {n:,}, times {rows / n:g})"
        )
    return ref


# --- (d) the join aggregate -----------------------------------------------------------------------


class JoinRun(NamedTuple):
    wall: float
    same: bool
    usage: Usage
    groups: int


def pooled_answer(sets: Sets) -> list[tuple[object, ...]]:
    """The join aggregate on the pooled rows, held to k like the owners' release."""
    con = duckdb.connect(config={"threads": 2})
    con.execute("SET enable_progress_bar = false")
    con.register("a", sets.left)
    con.register("b", sets.right)
    rows: list[tuple[object, ...]] = con.execute(POOLED_SQL).fetchall()
    con.close()
    return rows


def bench_join(client: Client, procs: Sequence[NodeProcess], sets: Sets) -> JoinRun | None:
    rows = sets.left.num_rows
    print(f"(d) join aggregate, {rows:,} x {rows:,} rows, {GROUPS} groups; {load_line()}")
    meter = Meter(procs)
    t0 = time.perf_counter()
    try:
        result = client.query(JOIN_SQL, timeout=TIMEOUT)
    except ClientError as exc:
        print(f"(d) join FAILED after {time.perf_counter() - t0:.1f} s: {exc}")
        return None
    wall = time.perf_counter() - t0
    usage = meter.stop()
    got = sorted(tuple(r.values()) for r in result.table.to_pylist())
    want = pooled_answer(sets)
    same = got == want  # numbers compared by value: an int sum equals a Decimal one
    verdict = "PASS" if wall <= JOIN_GOAL else "MISS"
    print(
        f"(d) join COUNT, SUM by {GROUPS} keys: {wall:.1f} s wall (goal <= {JOIN_GOAL:.0f} s) "
        f"{verdict}; {len(got)} groups, "
        + ("the same as DuckDB on the pooled rows" if same else "DIFFERS from DuckDB (WRONG)")
    )
    print(f"    {usage_line(usage)}")
    return JoinRun(wall, same, usage, len(got))


# --- summary --------------------------------------------------------------------------------------


def summary(
    rows: int,
    psi: PsiRun | None,
    floor: Floor | None,
    ref: Reference | None,
    join: JoinRun | None,
) -> None:
    lines: list[tuple[str, str, str, str]] = []
    if psi is not None:
        peak = max(psi.usage.peak_mb[n] for n in (LEFT, RIGHT))
        lines.append(
            (
                "(a) PSI wall",
                f"{psi.wall:.1f} s ({2 * rows / psi.wall:,.0f} items/s)",
                f"<= {RATIO_GOAL} x floor",
                f"floor {floor.bound:.1f} s" if floor else "-",
            )
        )
        verdict = "PASS" if peak <= RSS_GOAL_MB else "MISS"
        lines.append(
            ("(a) peak RSS, larger owner", f"{peak:,.0f} MB {verdict}", f"<= {RSS_GOAL_MB} MB", "-")
        )
    if floor is not None:
        ratio = f"{psi.wall / floor.bound:.2f}" if psi is not None else "-"
        verdict = (
            "" if psi is None else (" PASS" if psi.wall / floor.bound <= RATIO_GOAL else " MISS")
        )
        lines.append(
            ("(b) ratio (a)/floor", ratio + verdict, f"<= {RATIO_GOAL}", f"{floor.bound:.1f} s")
        )
    if ref is not None:
        label = "measured" if ref.rows == rows else f"extrapolated from {ref.rows:,}"
        vs = "-"
        if psi is not None:
            verdict = "PASS" if psi.wall < ref.scaled else "MISS"
            vs = f"(a) takes {psi.wall / ref.scaled:.2f} x its time {verdict}"
        lines.append(("(c) openmined-psi", f"{ref.scaled:.1f} s ({label})", "(a) faster", vs))
    if join is not None:
        verdict = "PASS" if join.wall <= JOIN_GOAL and join.same else "MISS"
        lines.append(
            (
                "(d) join SUM by 20 keys",
                f"{join.wall:.1f} s {verdict}",
                f"<= {JOIN_GOAL:.0f} s",
                "= DuckDB" if join.same else "DIFFERS from DuckDB",
            )
        )
        peak = max(join.usage.peak_mb[n] for n in (LEFT, RIGHT))
        lines.append(("(d) peak RSS, larger owner", f"{peak:,.0f} MB", "-", "-"))
    print(f"summary at {rows:,} x {rows:,} ({load_line()}):")
    head = ("figure", "measured", "goal", "floor / reference")
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(4)]
    for r in [head, *lines]:
        print("    " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--parts", type=parts_of(PARTS), default=PARTS)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--reference-rows", type=int, default=0, help="0: --rows")
    args = parser.parse_args()
    rows: int = max(2, args.rows)
    parts: tuple[str, ...] = args.parts
    if args.skip_reference:
        parts = tuple(p for p in parts if p != "c")
    StopSignal().install()  # a killed bench stops its nodes
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {load_line()}")
    psi_run: PsiRun | None = None
    floor: Floor | None = None
    join: JoinRun | None = None
    ref: Reference | None = None
    failed = False  # an answer refused or wrong: the exit status says so
    if "b" in parts:
        floor = measure_floor(rows)
    if "a" in parts or "d" in parts:
        t0 = time.perf_counter()
        sets = make_sets(rows)
        with tempfile.TemporaryDirectory(prefix="fedgate-bench-psi-") as tmp:
            root = Path(tmp)
            fed = provision(root / "fed", write_regions(root), free_ports=True)
            with running(fed) as procs:
                publish_sets(fed, sets)
                idle = ", ".join(
                    f"{p.node_id} {status_kb(p.pid, 'VmRSS') / 1024:,.0f} MB" for p in procs
                )
                print(
                    f"setup: {rows:,} codes at each owner ({sets.exact:,} shared), three nodes "
                    f"up, datasets registered in {time.perf_counter() - t0:.1f} s; RSS {idle}"
                )
                profile = Profile.load(fed.profile_path(ANALYST))
                with Client(profile, timeout=TIMEOUT) as client:
                    if "a" in parts:
                        psi_run = bench_psi(client, procs, sets)
                        failed |= psi_run is None or psi_run.intersection != sets.exact
                    if "d" in parts:
                        join = bench_join(client, procs, sets)
                        failed |= join is None or not join.same
    if floor is not None:
        print_floor(floor, rows, psi_run)
    if "c" in parts:
        ref = bench_reference(rows, args.reference_rows)
    summary(rows, psi_run, floor, ref, join)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
