"""Benchmark issue 11: federated logistic regression (FedAvg) over 3 owners, three ways.

Usage: python scripts/bench_training.py [--rounds 10] [--rows 30000] [--skip-flower]
       [--out DIR]

The same rows (``--rows`` in all, split 25/35/40 % over three owners, a little non-IID),
the same task (``logreg``: 8 features, 5 local epochs, lr 0.5, seed 7), the same number
of rounds (each: a train and an evaluate message per owner, after one ``query.stats``
message that standardises the features), side by side in one run:

(a) fedgate: ``Client.train`` through four node processes on loopback (mTLS): the home
    ``home`` runs the strategy in its training worker process, the owners ``n1``, ``n2``,
    ``n3`` each answer through their release pipeline (decide, audit, receipt).
(b) Flower's own deployment engine for the same app: ``flower-superlink --insecure`` and
    three ``flower-supernode --insecure`` processes on loopback, the app submitted with
    ``flwr run``. The app is a real Flower app folder (``pyproject.toml`` with
    ``[tool.flwr.app]``) generated into a temporary directory: its ServerApp runs the
    server side of a fedgate run (``gateway.training.worker.run``: the stats, Flower's
    FedAvg over ``federation.training.server``) with Flower's Grid carrying its messages,
    its ClientApp is an owner's (``federation.training.client_app.make_client_app``) on
    the SuperNode's Parquet part; so the maths is fedgate's, only the engine differs.
    Offline: ``--disable-runtime-dependency-installation``, ``FLWR_TELEMETRY_ENABLED=0``,
    ``FLWR_DISABLE_UPDATE_CHECK=1``, ``FLWR_HOME`` inside the temporary directory.
    ``--skip-flower`` leaves it out.
(c) the floor: fedgate's training worker code (``gateway.training.worker.run``, the
    ``ExchangeGrid``) with each owner's ClientApp called directly in this process, every
    message still serialised with Flower's serde: no node, no network, no release step.

Figures: wall time (from the call to the final model), the first round (start-up, the
stats message and round 1) and the mean time of the rounds after it, the peak RSS of
every process (node processes: VmHWM since this part began; processes that come and go:
their VmHWM sampled every 0.1 s), CPU time, the RSS an owner node adds while training,
and whether the final weights of (a), (b), (c) are the same (max abs difference).
Goals: (a) <= 2x (c); (a) >= 50x faster than (b); training adds <= 60 MB to an owner
(an owner that has answered one query, as nodes in service have: the warm-up's own
cost, DuckDB's code mapped by a node's first query, is printed before the runs).
A fourth node set runs the first training run once more with the home's
``[training] warm_worker`` on (its forkserver started with the node, not with the run):
``fedgate warm home``.

The same with SecAgg+ (``--secagg``: each round Flower's four SecAgg+ exchanges, then the
evaluation): (a) ``fedgate secagg`` through the nodes and (c) ``floor secagg`` in this
process; their final weights are within SecAgg+'s quantisation (it rounds stochastically)
of each other's and of the plain run's. Goal: a SecAgg+ round <= 0.5 s. The machine's load
average is printed before each part.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import ipaddress
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NamedTuple

# Flower reads these when first imported, here and in every process this script starts.
OFFLINE = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
}
os.environ.update(OFFLINE)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from bench_psi import cpu_seconds, load_line, reset_peak, status_kb  # noqa: E402
from bench_psi import publish as register  # noqa: E402
from flwr.app import ConfigRecord, Context, RecordDict  # noqa: E402
from flwr.common.constant import SUPERLINK_NODE_ID  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from federation.training import features  # noqa: E402
from federation.training.client_app import Loader, make_client_app  # noqa: E402
from gateway import descriptor  # noqa: E402
from gateway.client import Client, ClientError, Profile  # noqa: E402
from gateway.demo.launcher import StopSignal, running, wait_training_ready  # noqa: E402
from gateway.demo.provision import Federation, free_port, provision  # noqa: E402
from gateway.roles.train_home import FIRST_NODE_ID, TrainAsk  # noqa: E402
from gateway.training import worker  # noqa: E402
from gateway.training.grid import from_bytes, to_bytes  # noqa: E402
from gateway.training.job import Job  # noqa: E402
from gateway.training.spec import TrainSpec  # noqa: E402

HOME = "home"
OWNERS = ("n1", "n2", "n3")
ANALYST = "bench@home"
DATASET = "train_rows"
FEATURES = tuple(f"x{i}" for i in range(1, 9))
LABEL = "y"
SHARES = (0.25, 0.35, 0.40)
TASK, N_CLASSES, LR, EPOCHS, SEED = "logreg", 2, 0.5, 5, 7
K = 5  # the grants' minimum rows
TIMEOUT = 900.0  # the client's, for one fedgate run
SAMPLE_SECONDS = 0.1
SPEED_GOAL = 2.0  # (a) <= 2x (c)
CORES = os.cpu_count() or 1
FLOWER_GOAL = 50.0  # (b) >= 50x (a)
RSS_GOAL_MB = 60.0  # what training may add to an owner node
SAME_WEIGHTS = 1e-9  # max abs difference for "the same weights"
SECAGG_ROUND_GOAL = 0.5  # seconds
WARM_SECONDS = 2.0  # for a warm home's forkserver to have started before its first run
QUANTISED = 1e-3  # SecAgg+ vs plain: its quantisation step is about 3e-5 a value
FLOWER_CONNECT_SECONDS = 120.0  # for the SuperNodes to register
FLOWER_ROUND_SECONDS = 180.0  # bound of one Flower round (the run's wait grows with rounds)
STOP_GRACE = 15.0  # a SuperNode takes a few seconds to stop on SIGTERM


class Settings(NamedTuple):
    rounds: int
    rows: int


# --- data -------------------------------------------------------------------------------


def make_parts(rows: int, seed: int = 11) -> list[pa.Table]:
    """One table per owner: 8 features of different scales and offsets, a noisy binary
    label from a logistic model, each owner's features shifted a little (non-IID)."""
    rng = np.random.default_rng(seed)
    d = len(FEATURES)
    coef = rng.normal(size=d)
    scale = rng.uniform(0.5, 5.0, size=d)
    shift = rng.normal(size=d) * 3.0
    sizes = [max(K * 2, int(rows * s)) for s in SHARES]
    parts = []
    for i, n in enumerate(sizes):
        X = rng.normal(size=(n, d)) * scale + shift + 0.3 * i
        logit = ((X - shift) / scale) @ coef + 0.5
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
        parts.append(pa.table({**{f: X[:, j] for j, f in enumerate(FEATURES)}, LABEL: y}))
    return parts


def read_part(path: Path) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A part's feature matrix and labels, encoded as an owner node encodes them."""
    table = pq.read_table(path, columns=[*FEATURES, LABEL])
    X = features.encode({c: table.column(c) for c in FEATURES}, FEATURES)
    return X, np.asarray(table.column(LABEL).to_numpy(), dtype=np.float64)


def write_parts(parts: Sequence[pa.Table], where: Path) -> list[Path]:
    where.mkdir(parents=True, exist_ok=True)
    paths = []
    for node, table in zip(OWNERS, parts, strict=True):
        paths.append(where / f"{node}.parquet")
        pq.write_table(table, paths[-1])
    return paths


def spec(s: Settings, *, secagg: bool = False) -> TrainSpec:
    return TrainSpec(
        task=TASK, dataset=DATASET, features=FEATURES, label=LABEL, rounds=s.rounds,
        seed=SEED, learning_rate=LR, local_epochs=EPOCHS, n_classes=N_CLASSES, secagg=secagg,
    )  # fmt: skip


# --- processes ----------------------------------------------------------------------------


class ProcStat(NamedTuple):
    pid: int
    label: str
    peak_mb: float  # VmHWM, the largest seen
    cpu: float  # user + system seconds, the last seen
    seconds: float  # how long it was seen alive
    cpu_run: float  # user + system seconds spent while sampled (all of it if born meanwhile)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def descendants(roots: Sequence[int]) -> dict[int, int]:
    """Every living process under ``roots`` (and the roots): pid -> its start time."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        started[pid] = int(fields[19])
    out: dict[int, int] = {}
    todo = [r for r in roots if r in started]
    while todo and len(out) < 10_000:
        pid = todo.pop()
        if pid not in out:
            out[pid] = started[pid]
            todo.extend(children.get(pid, []))
    return out


def label_of(pid: int, roots: Mapping[int, str], parent: str) -> str:
    """A process's name in the report: the root's name, Flower's entry point, or what
    started it."""
    if pid in roots:
        return roots[pid]
    args = _cmdline(pid)
    for a in args[:3]:
        base = Path(a).name
        if base.startswith(("flower-", "flwr")):
            return base
    joined = " ".join(args)
    if "multiprocessing" in joined:
        kind = "training worker" if "spawn_main" in joined else "multiprocessing helper"
        return f"{parent}: {kind}"
    return Path(args[0]).name if args else "?"


def _endpoint(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """An address of /proc/net/{tcp,udp}[6] (hex, 32-bit words in host order)."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1]), int(port, 16)
    ip = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    return ip.ipv4_mapped or ip, int(port, 16)


def outside_sockets() -> dict[int, str]:
    """Socket inode -> remote address, for every TCP/UDP socket of this machine whose peer
    is neither loopback nor unset: a call out, if one of ours holds it."""
    out: dict[int, str] = {}
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 10:
                continue
            ip, port = _endpoint(f[2])
            if not (ip.is_loopback or ip.is_unspecified) and f[9] != "0":
                out[int(f[9])] = f"{table} {ip}:{port}"
    return out


def sockets_of(pid: int) -> set[int]:
    found = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    found.add(int(link[8:-1]))
    except OSError:
        pass
    return found


class Sampler:
    """Peak RSS and CPU of a set of processes and everything they start, sampled on a
    thread every ``SAMPLE_SECONDS`` (a process that lives less long may be missed), the
    largest RSS they held together at one sample, and any of their sockets whose peer
    was not on loopback at a sample (a call out)."""

    def __init__(self, roots: Mapping[int, str]) -> None:
        self.roots = dict(roots)
        self.stats: dict[tuple[int, int], dict[str, float | str]] = {}
        self.max_total_mb = 0.0
        self.calls_out: set[str] = set()  # connections that left loopback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self._root_of: dict[int, str] = {}
        self._first = True

    def __enter__(self) -> Sampler:
        self.sample()
        self._first = False
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def sample(self) -> None:
        now = time.monotonic()
        total = 0.0
        live = descendants(list(self.roots))
        for pid, start in live.items():
            try:  # a process may end between the scan and these reads
                hwm, rss = status_kb(pid, "VmHWM"), status_kb(pid, "VmRSS")
                cpu = cpu_seconds(pid)
            except (OSError, IndexError, ValueError):
                continue
            if hwm < 0:
                continue  # a zombie
            key = (pid, start)
            rec = self.stats.get(key)
            if rec is None:
                parent = self._parent_label(pid)
                rec = self.stats[key] = {
                    "label": label_of(pid, self.roots, parent),
                    "peak": 0.0,
                    "first": now,
                    "cpu0": cpu if self._first else 0.0,
                }
            elif pid not in self.roots:
                # a child first seen before its exec (still its parent's command line)
                # takes the entry point it runs now (a run once missed flwr-serverapp)
                again = label_of(pid, self.roots, self._parent_label(pid))
                if again.startswith(("flower-", "flwr")):
                    rec["label"] = again
            rec["peak"] = max(float(rec["peak"]), hwm / 1024)
            rec["cpu"], rec["last"] = cpu, now
            total += rss / 1024
        self.max_total_mb = max(self.max_total_mb, total)
        outside = outside_sockets()  # cheap; the processes' sockets only when there are some
        if outside:
            for pid in live:
                for inode in sockets_of(pid) & outside.keys():
                    self.calls_out.add(f"{label_of(pid, self.roots, '?')} -> {outside[inode]}")

    def _parent_label(self, pid: int) -> str:
        fields = _stat_fields(pid)
        ppid = int(fields[1]) if fields else 0
        return self.roots.get(ppid, "?")

    def seen(self) -> set[tuple[int, int]]:
        return set(self.stats)

    def results(self) -> list[ProcStat]:
        return [
            ProcStat(
                pid,
                str(r["label"]),
                float(r["peak"]),
                float(r.get("cpu", 0.0)),
                float(r.get("last", r["first"])) - float(r["first"]),
                float(r.get("cpu", 0.0)) - float(r["cpu0"]),
            )
            for (pid, _), r in sorted(self.stats.items(), key=lambda kv: kv[1]["first"])
        ]


def proc_lines(stats: Sequence[ProcStat], grouped: bool) -> list[str]:
    if not grouped:
        return [f"{s.label} {s.peak_mb:,.0f} MB ({s.cpu:.1f} CPU s)" for s in stats]
    kinds: dict[str, list[ProcStat]] = {}
    for s in stats:
        kinds.setdefault(s.label, []).append(s)
    return [
        f"{label} x{len(g)}: peak {max(s.peak_mb for s in g):,.0f} MB each at most, "
        f"{sum(s.peak_mb for s in g):,.0f} MB summed, {sum(s.cpu for s in g):.1f} CPU s"
        for label, g in kinds.items()
    ]


# --- results ------------------------------------------------------------------------------

Model = dict[str, npt.NDArray[np.float64]]


class Outcome(NamedTuple):
    name: str
    wall: float
    marks: list[float]  # seconds from the start at which each round ended
    model: Model  # w0.., mean, std
    procs: list[ProcStat]
    max_total_mb: float
    calls_out: list[str]  # sockets to a peer off loopback, seen at a sample

    @property
    def first_round(self) -> float:
        return self.marks[0] if self.marks else float("nan")

    @property
    def per_round(self) -> float:
        """The mean time of a round after the first (the first, if there is one round)."""
        if len(self.marks) < 2:
            return self.first_round
        return (self.marks[-1] - self.marks[0]) / (len(self.marks) - 1)


def model_of(npz: bytes) -> Model:
    with np.load(io.BytesIO(npz)) as z:
        return {k: np.array(z[k], dtype=np.float64) for k in z.files}


def max_diff(a: Model, b: Model) -> float:
    """The largest absolute difference over the weights and the standardisation."""
    if set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        return float("inf")
    return max(float(np.max(np.abs(a[k] - b[k]))) if a[k].size else 0.0 for k in a)


def calls_line(o: Outcome) -> str:
    if not o.calls_out:
        return (
            "no socket of these processes had a peer off loopback "
            f"(sampled every {SAMPLE_SECONDS:g} s)"
        )
    return "CALLS OUT: " + "; ".join(o.calls_out)


def cpu_run(o: Outcome) -> float:
    """CPU seconds every process of a part used during the run."""
    return sum(p.cpu_run for p in o.procs)


def cpu_line(o: Outcome) -> str:
    """Where the run's CPU went: on a machine of ``CORES`` cores the run's wall cannot be
    shorter than its CPU over the cores, whatever the protocol's waits."""
    parts = ", ".join(f"{p.label} {p.cpu_run:.2f}" for p in o.procs if p.cpu_run > 0)
    total = cpu_run(o)
    return (
        f"CPU during the run (s, /proc, 10 ms ticks): {parts}; all {total:.2f} s = "
        f"{total / CORES:.2f} s of wall on {CORES} cores ({total / CORES / o.wall:.0%} of the wall)"
    )


def timing_line(o: Outcome, rounds: int) -> str:
    return (
        f"{o.wall:.2f} s wall for {rounds} rounds; start-up + stats + round 1 "
        f"{o.first_round:.2f} s, then {o.per_round:.3f} s per round"
    )


# --- (a) fedgate ----------------------------------------------------------------------------


def write_regions(root: Path, warm: bool = False) -> Path:
    """Four top-level members, ``home`` first (the analyst's, holding no rows)."""
    regions = root / "regions"
    regions.mkdir()
    lines = ['federation = "bench-training"']
    for m in (HOME, *OWNERS):
        lines += ["", "[[members]]", f'id = "{m}"', f'name = "{m}"', 'level = "province"']
        (regions / f"{m}.toml").write_text(
            f'[node]\nid = "{m}"\norg = "{m} bureau"\nlisten = "127.0.0.1:0"\n'
            'data_dir = "x"\nengine_threads = 1\n[metrics]\nlisten = ""\n'
            + ("[training]\nwarm_worker = true\n" if m == HOME and warm else "")
        )
    lines += ["", "[[analysts]]", f'id = "{ANALYST}"', f'home = "{HOME}"']
    (regions / "federation.toml").write_text("\n".join(lines) + "\n")
    return regions


def publish(fed: Federation, node: str, table: pa.Table, rounds: int) -> None:
    """Register the owner's part (L2) and grant the home's organisation ``train`` on it:
    the features and the label as ``aggregate``, the task ``logreg``, ``rounds`` at most."""
    columns = (
        *(descriptor.ColumnSpec(f, "float64", lower=-1e3, upper=1e3) for f in FEATURES),
        descriptor.ColumnSpec(LABEL, "int64", lower=0, upper=1),
    )
    register(
        fed, node, DATASET, table, columns,
        {c: ("aggregate",) for c in (*FEATURES, LABEL)}, ("train", "query"), train_tasks=(TASK,),
        max_rounds=max(rounds, 1),
    )  # fmt: skip


class OwnerMemory(NamedTuple):
    before_mb: dict[str, float]  # VmRSS just before the run
    peak_mb: dict[str, float]  # VmHWM over the run
    after_mb: dict[str, float]  # VmRSS after it
    grown_mb: dict[str, tuple[float, float]]  # RssAnon, RssFile: after minus before

    @property
    def added_mb(self) -> float:
        return max(self.peak_mb[n] - self.before_mb[n] for n in self.before_mb)


def owner_rss(pids: Mapping[str, int], field: str) -> dict[str, float]:
    return {n: status_kb(pids[n], field) / 1024 for n in OWNERS}


class FedgateRun(NamedTuple):
    outcome: Outcome
    memory: OwnerMemory
    receipts: int


def train_once(
    fed: Federation, pids: Mapping[str, int], s: Settings, name: str, *, secagg: bool = False
) -> FedgateRun | None:
    """One ``Client.train`` run through the running nodes, measured."""
    reset_peak_ok = all([reset_peak(pid) for pid in pids.values()])
    before = owner_rss(pids, "VmRSS")
    anon0, file0 = owner_rss(pids, "RssAnon"), owner_rss(pids, "RssFile")
    marks: list[float] = []
    ask = TrainAsk(spec(s, secagg=secagg), OWNERS, "training benchmark")
    with (
        Sampler({pid: n for n, pid in pids.items()}) as sampler,
        Client(Profile.load(fed.profile_path(ANALYST)), timeout=TIMEOUT) as client,
    ):
        start = time.perf_counter()
        run = client.train(ask, on_round=lambda _: marks.append(time.perf_counter() - start))
        try:
            result = run.result(timeout=TIMEOUT)
        except (ClientError, TimeoutError) as exc:
            print(f"(a) fedgate FAILED after {time.perf_counter() - start:.1f} s: {exc}")
            return None
        wall = time.perf_counter() - start
    anon1, file1 = owner_rss(pids, "RssAnon"), owner_rss(pids, "RssFile")
    grown = {n: (anon1[n] - anon0[n], file1[n] - file0[n]) for n in OWNERS}
    memory = OwnerMemory(before, owner_rss(pids, "VmHWM"), owner_rss(pids, "VmRSS"), grown)
    out = Outcome(
        name,
        wall,
        marks,
        model_of(result.model_npz),
        sampler.results(),
        sampler.max_total_mb,
        sorted(sampler.calls_out),
    )
    since = "this run" if reset_peak_ok else "node start (the kernel refused a reset)"
    print(f"(a) {name}: {timing_line(out, s.rounds)}; {len(result.owners)} owner receipts")
    print(f"    peak RSS (VmHWM since {since}): " + "; ".join(proc_lines(out.procs, False)))
    print(f"    {calls_line(out)}")
    print(f"    {cpu_line(out)}")
    print(
        "    owner RSS before / peak / after the run: "
        + "; ".join(
            f"{n} {memory.before_mb[n]:,.0f} / {memory.peak_mb[n]:,.0f} / "
            f"{memory.after_mb[n]:,.0f} MB"
            for n in OWNERS
        )
        + f"; training added at most {memory.added_mb:,.1f} MB (goal <= {RSS_GOAL_MB:.0f} MB) "
        + ("PASS" if memory.added_mb <= RSS_GOAL_MB else "MISS")
    )
    print(
        "    owner RSS grown by the run, heap and other anonymous memory / mapped files "
        "(code pages first used): "
        + "; ".join(f"{n} {a:+,.1f} / {f:+,.1f} MB" for n, (a, f) in memory.grown_mb.items())
    )
    return FedgateRun(out, memory, len(result.owners))


def warm_up(fed: Federation, pids: Mapping[str, int]) -> None:
    """One ordinary query at every owner first, as a node in service has answered: its
    first query maps DuckDB's code (some 30-45 MB of file pages), which is the engine's
    cost, not training's. Printed, so the cold figure stays in view."""
    before = owner_rss(pids, "VmRSS")
    with Client(Profile.load(fed.profile_path(ANALYST)), timeout=TIMEOUT) as client:
        client.query(f"SELECT COUNT(*) AS n FROM {DATASET}", nodes=OWNERS)
    after = owner_rss(pids, "VmRSS")
    print(
        "(a) warm-up: one COUNT(*) query at every owner (a node's first query maps "
        "DuckDB's code) added "
        + "; ".join(f"{n} {after[n] - before[n]:+,.1f} MB" for n in OWNERS)
        + " before any training"
    )


def bench_fedgate(
    parts: Sequence[pa.Table],
    s: Settings,
    *,
    warm: bool = False,
    names: Sequence[str] = ("fedgate", "fedgate again", "fedgate secagg"),
) -> list[FedgateRun]:
    """Four nodes, the owners' parts registered and granted, one query at every owner,
    then ``names``' runs: the first training run the nodes see (what a node pays once
    for training, e.g. the home's worker start, shows here), the same run again, and
    the same run with SecAgg+. ``warm``: the home starts its training forkserver with
    the node (``[training] warm_worker``)."""
    t0 = time.perf_counter()
    runs: list[FedgateRun] = []
    with tempfile.TemporaryDirectory(prefix="fedgate-bench-train-") as tmp:
        root = Path(tmp)
        fed = provision(root / "fed", write_regions(root, warm), free_ports=True)
        with running(fed) as procs:
            for node, table in zip(OWNERS, parts, strict=True):
                publish(fed, node, table, s.rounds)
            # each owner, given its train grant, loads Flower in the background: not timed
            wait_training_ready([fed.node_dir(n) / "node.log" for n in OWNERS])
            pids = {p.node_id: p.pid for p in procs}
            idle = ", ".join(
                f"{n} {status_kb(pid, 'VmRSS') / 1024:,.0f} MB" for n, pid in pids.items()
            )
            print(
                f"(a) setup: four nodes up, {len(OWNERS)} datasets registered and granted in "
                f"{time.perf_counter() - t0:.1f} s; RSS {idle}"
            )
            warm_up(fed, pids)
            if warm:  # the forkserver started with the node: let it finish starting
                time.sleep(WARM_SECONDS)
            for name in names:
                print(f"(a) {name}, {s.rounds} rounds; {load_line()}", flush=True)
                run = train_once(fed, pids, s, name, secagg=name.endswith("secagg"))
                if run is None:
                    break
                runs.append(run)
    return runs


# --- (b) Flower's deployment engine --------------------------------------------------------------

APP_NAME = "fedbench"

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{name}"
version = "1.0.0"
description = "fedgate's training run (numpy logistic regression, FedAvg) as a Flower app"
license = "Apache-2.0"
dependencies = ["flwr>=1.42"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "fedgate"

[tool.flwr.app.components]
serverapp = "{name}.server_app:app"
clientapp = "{name}.client_app:app"

[tool.flwr.app.config]
spec = "{spec}"
nodes = {nodes}
round-timeout = {round_timeout}
connect-timeout = {connect_timeout}
result-dir = "{result_dir}"
"""

SERVER_APP = '''\
"""The ServerApp: the server side of a fedgate training run, ``gateway.training.worker.run``
(Flower's strategy over ``federation.training.server``), on the Grid Flower gives it.

``worker.run`` hands each batch of serialised messages to an ``exchange``; in a fedgate
node that carries them over mTLS to the owners, here Flower's Grid carries them to the
SuperNodes: the same messages, the same replies.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from gateway.training import worker
from gateway.training.grid import from_bytes, to_bytes
from gateway.training.job import Job
from gateway.training.spec import TrainSpec

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    out = Path(str(cfg["result-dir"]))
    marks: list[float] = []
    facts: dict[str, Any] = {"started": time.time(), "marks": marks, "error": None}
    try:
        nodes = int(cfg["nodes"])
        deadline = time.monotonic() + float(cfg["connect-timeout"])
        while len(list(grid.get_node_ids())) < nodes:  # Flower lists nodes as they connect
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {nodes} SuperNodes connected")
            time.sleep(0.2)

        def exchange(batch: Any, timeout: float | None) -> list[tuple[int, bytes]]:
            asked = []
            for node, data in batch:
                m = from_bytes(data)  # rebuilt under this ServerApp's own run identity
                kind, group = m.metadata.message_type, m.metadata.group_id
                asked.append(Message(m.content, node, kind, group_id=group))
            replies = grid.send_and_receive(asked, timeout=timeout)
            return [(r.metadata.src_node_id, to_bytes(r)) for r in replies]

        spec = TrainSpec.parse(Path(str(cfg["spec"])).read_text())
        node_ids = tuple(sorted(grid.get_node_ids()))
        job = Job(context.run_id, spec, node_ids, nodes, float(cfg["round-timeout"]))
        result = worker.run(job, exchange, lambda _: marks.append(time.time()))
        (out / "model.npz").write_bytes(result["model"])
    except Exception as exc:
        facts["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        facts["ended"] = time.time()
        tmp = out / "result.json.tmp"
        tmp.write_text(json.dumps(facts))
        os.replace(tmp, out / "result.json")  # the benchmark waits for this file
'''

CLIENT_APP = '''\
"""The ClientApp: an owner's ClientApp (``federation.training.client_app``, as a fedgate
owner node builds it) on this SuperNode's part of the rows (node config ``data``: a
Parquet file, encoded as an owner node encodes its granted columns)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from federation.training import features
from federation.training.client_app import Loader, make_client_app

app = ClientApp()


def _owner(context: Context) -> ClientApp:
    spec = json.loads(Path(str(context.run_config["spec"])).read_text())["train"]
    path = str(context.node_config["data"])
    names, label = list(spec["features"]), str(spec["label"])

    def load(_: ConfigRecord) -> tuple[np.ndarray, np.ndarray]:
        table = pq.read_table(path, columns=[*names, label])
        X = features.encode({c: table.column(c) for c in names}, names)
        return X, np.asarray(table.column(label).to_numpy(), dtype=np.float64)

    loader: Loader = load
    return make_client_app(loader)


@app.train()
def train(msg: Message, context: Context) -> Message:
    return _owner(context)(msg, context)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return _owner(context)(msg, context)


@app.query("stats")
def stats(msg: Message, context: Context) -> Message:
    return _owner(context)(msg, context)
'''


def write_flower_app(where: Path, s: Settings, result_dir: Path) -> Path:
    """The Flower app folder: pyproject with ``[tool.flwr.app]`` and the two apps; the
    run's signed spec (as a fedgate home would sign it) in ``spec.json`` beside it."""
    app = where / APP_NAME
    (app / APP_NAME).mkdir(parents=True)
    spec_path = where / "spec.json"
    spec_path.write_text(spec(s).body())
    (app / "pyproject.toml").write_text(
        PYPROJECT.format(
            name=APP_NAME,
            spec=spec_path,
            nodes=len(OWNERS),
            round_timeout=FLOWER_ROUND_SECONDS,
            connect_timeout=FLOWER_CONNECT_SECONDS,
            result_dir=result_dir,
        )
    )
    (app / APP_NAME / "__init__.py").write_text('"""fedgate\'s training benchmark app."""\n')
    (app / APP_NAME / "server_app.py").write_text(SERVER_APP)
    (app / APP_NAME / "client_app.py").write_text(CLIENT_APP)
    return app


class Started(NamedTuple):
    name: str
    args: list[str]
    process: subprocess.Popen[bytes]
    log: Path


def flower_env(home: Path) -> dict[str, str]:
    """Offline, with Flower's home folder in the temporary directory; Flower starts its
    own entry points (``flower-superexec``, ``flwr-serverapp``, ``flwr-clientapp``) by
    name, so this interpreter's ``bin`` goes first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        **OFFLINE,
        "FLWR_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }


def start(name: str, args: list[str], env: dict[str, str], logs: Path) -> Started:
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / args[0]), *args[1:]],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own group: stopped by its id, children with it
        )
    return Started(name, args, proc, log)


def tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def become_subreaper() -> bool:
    """Have the processes Flower's processes start, once orphaned, handed to this process
    (Linux ``PR_SET_CHILD_SUBREAPER``), so ``stop_all`` can reap them: PID 1 of a
    container may never reap, and they would stay as zombies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(36, 1, 0, 0, 0)) == 0  # 36: PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap(pids: set[int]) -> None:
    """Collect the exit status of those of ``pids`` that are now this process's children."""
    for _ in range(50):  # up to 5 s
        left = set()
        for pid in pids:
            try:
                if os.waitpid(pid, os.WNOHANG) == (0, 0):
                    left.add(pid)
            except ChildProcessError:
                pass  # not ours, or already collected
        if not left:
            return
        pids = left
        time.sleep(0.1)


def stop_all(started: Sequence[Started], extra: set[tuple[int, int]]) -> None:
    """SIGTERM each process we started, SIGKILL its group after the grace period, then
    whatever it started that is still alive (checked by pid and start time, so a reused
    pid is never signalled)."""
    tree = set(descendants([p.process.pid for p in started]).items()) | extra
    for p in started:
        if p.process.poll() is None:
            p.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for p in started:
        try:
            p.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(p.process.pid, signal.SIGKILL)
            p.process.wait(timeout=5)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid, st in tree if (f := _stat_fields(pid)) and int(f[19]) == st]
        alive = [pid for pid in alive if (f := _stat_fields(pid)) and f[0] != "Z"]
        for pid in alive:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        if not alive:
            break
        for _ in range(50):  # up to 5 s for them to go
            if not any((f := _stat_fields(pid)) and f[0] != "Z" for pid in alive):
                break
            time.sleep(0.1)
    reap({pid for pid, _ in tree})


def wait_for(
    check: Callable[[], bool], seconds: float, what: str, procs: Sequence[Started]
) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        for p in procs:
            if p.process.poll() is not None:
                raise RuntimeError(f"{p.name} exited ({p.process.returncode}):\n{tail(p.log)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {seconds:.0f} s")
        time.sleep(0.2)


def bench_flower(paths: Sequence[Path], s: Settings, work: Path) -> Outcome | None:
    """Flower's SuperLink, three SuperNodes and ``flwr run``, every process stopped after."""
    home, logs, result_dir = work / "flwr-home", work / "flower-logs", work / "flower-result"
    for d in (home, logs, result_dir):
        d.mkdir()
    app = write_flower_app(work, s, result_dir)
    env = flower_env(home)
    link = free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\naddress = "127.0.0.1:{link}"\n'
        "insecure = true\n"
    )
    started: list[Started] = []
    seen: set[tuple[int, int]] = set()
    become_subreaper()
    t0 = time.perf_counter()
    try:
        started.append(start("superlink", [
            "flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(link),
            "--disable-runtime-dependency-installation",
        ], env, logs))  # fmt: skip
        for node, path in zip(OWNERS, paths, strict=True):
            started.append(start(f"supernode-{node}", [
                "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}",
                "--host", "127.0.0.1", "--port", str(free_port()),
                "--node-config", f'data="{path}"',
            ], env, logs))  # fmt: skip
        nodes = started[1:]
        wait_for(
            lambda: all("SuperNode ID:" in p.log.read_text(errors="replace") for p in nodes),
            FLOWER_CONNECT_SECONDS,
            "the SuperNodes did not register",
            started,
        )
        roots = {p.process.pid: p.name for p in started}
        idle = ", ".join(
            f"{p.name} {status_kb(p.process.pid, 'VmRSS') / 1024:,.0f} MB" for p in started
        )
        print(
            f"(b) setup: SuperLink and {len(nodes)} SuperNodes registered in "
            f"{time.perf_counter() - t0:.1f} s; RSS {idle}; env "
            + " ".join(f"{k}={v}" for k, v in OFFLINE.items())
            + ", FLWR_HOME in a temporary directory; commands:"
        )
        for p in started:
            print(f"    $ {shlex.join(p.args)}")
        print(f"(b) Flower deployment engine, {s.rounds} rounds; {load_line()}", flush=True)
        with Sampler(roots) as sampler:
            begun, start_clock = time.perf_counter(), time.time()
            cli = start("flwr-run", ["flwr", "run", str(app), "bench", "--stream"], env, logs)
            started.append(cli)
            print(f"    $ {shlex.join(cli.args)}", flush=True)
            sampler.roots[cli.process.pid] = "flwr run"
            done = result_dir / "result.json"

            def finished() -> bool:
                if cli.process.poll() not in (None, 0):
                    raise RuntimeError(
                        f"flwr run exited ({cli.process.returncode}):\n{tail(cli.log)}"
                    )
                return done.exists()

            wait_for(
                finished,
                60 + s.rounds * FLOWER_ROUND_SECONDS,
                "the Flower run did not finish",
                started[:-1],
            )
            wall = time.perf_counter() - begun
            seen = sampler.seen()
        facts = json.loads(done.read_text())
        if facts.get("error"):
            print(f"(b) Flower run FAILED: {facts['error']}\n{tail(cli.log)}")
            return None
    except (RuntimeError, TimeoutError) as exc:
        print(f"(b) Flower FAILED after {time.perf_counter() - t0:.1f} s: {exc}")
        return None
    finally:
        stop_all(started, seen)
    marks = [m - start_clock for m in facts["marks"]]
    model = model_of((result_dir / "model.npz").read_bytes())
    out = Outcome(
        "flower",
        wall,
        marks,
        model,
        sampler.results(),
        sampler.max_total_mb,
        sorted(sampler.calls_out),
    )
    print(f"(b) Flower: {timing_line(out, s.rounds)}")
    print(f"    {calls_line(out)}")
    print(
        f"    processes: {len(out.procs)}; peak RSS summed over all of them "
        f"{sum(p.peak_mb for p in out.procs):,.0f} MB, at most {out.max_total_mb:,.0f} MB "
        f"at once; CPU {sum(p.cpu for p in out.procs):.1f} s"
    )
    for line in proc_lines(out.procs, True):
        print(f"    {line}")
    return out


# --- (c) the floor --------------------------------------------------------------------------


def cached_loader(path: Path) -> Loader:
    """An owner's loader: its rows read once per run, as a node caches them."""
    cache: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []

    def load(_: ConfigRecord) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        if not cache:
            cache.append(read_part(path))
        return cache[0]

    return load


@contextmanager
def server_identity(run_id: int) -> Iterator[None]:
    """Flower's process-global identity, as the training worker sets it (and put back)."""
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def bench_floor(paths: Sequence[Path], s: Settings, *, secagg: bool = False) -> Outcome:
    """The worker's code with an ``exchange`` that calls each owner's ClientApp here."""
    name = "floor secagg" if secagg else "floor"
    print(f"(c) {name}, {s.rounds} rounds in this process; {load_line()}", flush=True)
    run_id = 7
    apps, contexts = {}, {}
    for i, path in enumerate(paths):  # the home numbers owners in name order, from 1001
        node = FIRST_NODE_ID + i
        apps[node] = make_client_app(cached_loader(path), secagg=secagg)
        contexts[node] = Context(
            run_id=run_id, node_id=node, node_config={}, state=RecordDict(), run_config={}
        )

    def exchange(
        out: Sequence[tuple[int, bytes]], timeout: float | None
    ) -> list[tuple[int, bytes]]:
        return [
            (node, to_bytes(apps[node](from_bytes(data), contexts[node]))) for node, data in out
        ]

    job = Job(run_id, spec(s, secagg=secagg), tuple(apps), len(apps), 600.0)
    pid = os.getpid()
    reset_peak(pid)
    cpu0 = cpu_seconds(pid)
    marks: list[float] = []
    with server_identity(run_id):
        begun = time.perf_counter()
        result = worker.run(job, exchange, lambda _: marks.append(time.perf_counter() - begun))
        wall = time.perf_counter() - begun
    used = cpu_seconds(pid) - cpu0
    me = ProcStat(pid, "this process", status_kb(pid, "VmHWM") / 1024, used, wall, used)
    out = Outcome(name, wall, marks, model_of(result["model"]), [me], me.peak_mb, [])
    print(
        f"(c) {name}: {timing_line(out, s.rounds)}; peak RSS of this process {me.peak_mb:,.0f} MB"
    )
    return out


def worker_start(tries: int = 3) -> float:
    """What a fresh interpreter takes to import the training worker (Flower, numpy,
    ``federation.training``): what a home's first run pays to start the forkserver its
    runs are forked from (later runs fork in milliseconds). The
    best of ``tries``, as other programs' load only ever adds to it."""
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import gateway.training.worker"],
            check=True,
            timeout=120,
            env={**os.environ, **OFFLINE},
        )
        best = min(best, time.perf_counter() - t0)
    return best


# --- summary --------------------------------------------------------------------------------


def compare(runs: Sequence[Outcome]) -> list[tuple[str, float]]:
    pairs = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            pairs.append((f"{a.name} vs {b.name}", max_diff(a.model, b.model)))
    return pairs


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def summary(
    s: Settings,
    fedgate: Sequence[FedgateRun],
    flower: Outcome | None,
    floor: Outcome,
    floor_secagg: Outcome,
    start_cost: float,
    diffs: Sequence[tuple[str, float]],
    quantised: Sequence[tuple[str, float]],
) -> None:
    lines: list[tuple[str, str, str, str]] = []

    def add(figure: str, measured: str, goal: str = "-", note: str = "-") -> None:
        lines.append((figure, measured, goal, note))

    plain = [r for r in fedgate if not r.outcome.name.endswith("secagg")]
    secure = [r for r in fedgate if r.outcome.name.endswith("secagg")]
    for r in plain:
        o, ratio = r.outcome, r.outcome.wall / floor.wall
        timing = f"{o.wall:.2f} s ({o.per_round:.3f} s/round)"
        add(
            f"(a) {o.name} wall",
            timing,
            f"<= {SPEED_GOAL:g}x (c)",
            f"{ratio:.1f}x (c) {verdict(ratio <= SPEED_GOAL)}; "
            f"{o.wall / (floor.wall + start_cost):.1f}x (c + worker start)",
        )
        add(
            f"(a) {o.name} per round",
            f"{o.per_round:.3f} s",
            f"<= {SPEED_GOAL:g}x (c)",
            f"{o.per_round / floor.per_round:.1f}x (c) "
            + verdict(o.per_round <= SPEED_GOAL * floor.per_round),
        )
    for r in plain:
        o, used = r.outcome, cpu_run(r.outcome)
        add(
            f"(a) {o.name}: CPU of every process",
            f"{used:.2f} s",
            "-",
            f"{used / cpu_run(floor):.1f}x (c)'s {cpu_run(floor):.2f} s; over {CORES} cores "
            f"{used / CORES:.2f} s, {used / CORES / o.wall:.0%} of its wall",
        )
    for r in plain:
        owners = [p.peak_mb for p in r.outcome.procs if p.label in OWNERS]
        added = r.memory.added_mb
        add(
            f"(a) {r.outcome.name}: RSS an owner adds",
            f"{added:,.1f} MB",
            f"<= {RSS_GOAL_MB:.0f} MB",
            f"{verdict(added <= RSS_GOAL_MB)}, owner peak {max(owners):,.0f} MB",
        )
    if flower is not None:
        note = "-"
        if fedgate:
            speedup = [flower.wall / r.outcome.wall for r in fedgate]
            note = f"(a) {speedup[0]:.0f}x faster {verdict(speedup[0] >= FLOWER_GOAL)}" + (
                f" ({speedup[1]:.0f}x again)" if len(speedup) > 1 else ""
            )
        add(
            "(b) Flower deployment wall",
            f"{flower.wall:.1f} s ({flower.per_round:.2f} s/round)",
            f">= {FLOWER_GOAL:g}x (a)",
            note,
        )
        summed = sum(p.peak_mb for p in flower.procs)
        add(
            "(b) Flower processes, peak RSS summed",
            f"{len(flower.procs)}, {summed:,.0f} MB",
            "-",
            f"at most {flower.max_total_mb:,.0f} MB at once",
        )
    add("(c) floor wall", f"{floor.wall:.2f} s ({floor.per_round:.3f} s/round)")
    for name, d in diffs:
        add(
            f"weights {name}",
            f"max |diff| {d:.1e}",
            f"<= {SAME_WEIGHTS:g}",
            "same" if d <= SAME_WEIGHTS else "DIFFERENT",
        )
    for name, d in quantised:
        add(
            f"weights {name}",
            f"max |diff| {d:.1e}",
            f"<= {QUANTISED:g}",
            "within quantisation" if d <= QUANTISED else "DIFFERENT",
        )
    for r in secure:
        o = r.outcome
        add(
            f"(a) {o.name} per round",
            f"{o.per_round:.3f} s",
            f"<= {SECAGG_ROUND_GOAL:g} s",
            f"{verdict(o.per_round <= SECAGG_ROUND_GOAL)}; "
            f"{o.per_round / floor_secagg.per_round:.1f}x (c) secagg"
            + (
                f", {o.per_round / plain[-1].outcome.per_round:.1f}x a plain round" if plain else ""
            ),
        )
        add(
            f"(a) {o.name} wall",
            f"{o.wall:.2f} s",
            "-",
            f"{o.wall / floor_secagg.wall:.1f}x (c) secagg",
        )
    add(
        "(c) floor secagg wall",
        f"{floor_secagg.wall:.2f} s ({floor_secagg.per_round:.3f} s/round)",
    )
    print(f"summary, {s.rounds} rounds over {s.rows:,} rows ({load_line()}):")
    head = ("figure", "measured", "goal", "verdict / reference")
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(4)]
    for row in [head, *lines]:
        print("    " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def save(out: Path, runs: Sequence[Outcome], diffs: Sequence[tuple[str, float]]) -> None:
    """Each part's final model (``<name>.npz``) and the figures (``figures.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    for r in runs:
        np.savez(out / f"{r.name.replace(' ', '-')}.npz", **r.model)  # type: ignore[arg-type]
    figures = {
        r.name: {"wall": r.wall, "marks": r.marks, "procs": [p._asdict() for p in r.procs]}
        for r in runs
    }
    figures["max_abs_diff"] = dict(diffs)
    (out / "figures.json").write_text(json.dumps(figures, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--rows", type=int, default=30_000, help="in all, over the 3 owners")
    parser.add_argument("--skip-flower", action="store_true", help="leave (b) out")
    parser.add_argument("--out", type=Path, help="write each part's model and the figures")
    args = parser.parse_args()
    s = Settings(rounds=max(1, args.rounds), rows=max(10 * K, args.rows))
    StopSignal().install()  # a killed bench stops what it started
    logging.getLogger("flwr").setLevel(logging.WARNING)  # (c) runs Flower's loop here
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {load_line()}")
    parts = make_parts(s.rows)
    sizes = ", ".join(f"{n} {t.num_rows:,}" for n, t in zip(OWNERS, parts, strict=True))
    print(
        f"task {TASK} (FedAvg), {len(FEATURES)} features, {EPOCHS} local epochs, lr {LR}, "
        f"seed {SEED}; rows per owner: {sizes}"
    )
    with tempfile.TemporaryDirectory(prefix="fedgate-bench-train-flower-") as tmp:
        work = Path(tmp)
        paths = write_parts(parts, work / "parts")
        floor = bench_floor(paths, s)
        floor_secagg = bench_floor(paths, s, secagg=True)
        start_cost = worker_start()
        print(
            f"(c) a fresh interpreter importing the training worker (a home's first run starts "
            f"one, its forkserver), best of 3: {start_cost:.2f} s; the floor plus that: "
            f"{floor.wall + start_cost:.2f} s"
        )
        fedgate_runs = bench_fedgate(parts, s)
        fedgate_runs += bench_fedgate(parts, s, warm=True, names=("fedgate warm home",))
        flower = None if args.skip_flower else bench_flower(paths, s, work)
    outcomes = [r.outcome for r in fedgate_runs]
    plain = [o for o in outcomes if not o.name.endswith("secagg")]
    secure = [o for o in outcomes if o.name.endswith("secagg")]
    runs = plain + [r for r in (flower, floor) if r is not None]
    diffs = compare(runs)
    # SecAgg+ rounds each value stochastically (Flower's quantiser draws from numpy's
    # global generator): two SecAgg+ runs agree to its quantisation step, not bit for bit.
    quantised = compare([*secure, floor_secagg])
    quantised += [(f"{o.name} vs floor", max_diff(o.model, floor.model)) for o in secure]
    quantised.append(("floor secagg vs floor", max_diff(floor_secagg.model, floor.model)))
    for name, d in diffs:
        same = "the same" if d <= SAME_WEIGHTS else "DIFFERENT (WRONG)"
        print(f"final weights {name}: max abs difference {d:.2e}: {same}")
    for name, d in quantised:
        near = f"within SecAgg+'s quantisation (<= {QUANTISED:g})" if d <= QUANTISED else "WRONG"
        print(f"final weights {name}: max abs difference {d:.2e}: {near}")
    summary(s, fedgate_runs, flower, floor, floor_secagg, start_cost, diffs, quantised)
    if args.out is not None:
        save(args.out, [*runs, *secure, floor_secagg], [*diffs, *quantised])
    failed = len(fedgate_runs) < 3 or (flower is None and not args.skip_flower)
    wrong = any(d > SAME_WEIGHTS for _, d in diffs) or any(d > QUANTISED for _, d in quantised)
    return 1 if failed or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
