"""The resources and kills parts of scripts/bench_abuse.py (issue 13).

What a storm of malformed messages, a load of real clients and an owner killed over and
over do to the nodes: memory, threads and fds must come back, refusals must not flood
the logs, and a client must only ever see an answer or the owner named as unavailable.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from gateway.client import Client, ClientError, Profile
from gateway.demo.launcher import start_node, wait_serving
from gateway.tls import secure_channel

if TYPE_CHECKING:
    from abuse_setup import Bench

Figures = dict[str, tuple[float, int, int]]  # node -> (RSS MB, threads, open fds)
METHODS = ("/fedgate.v1.Gateway/Query", "/fedgate.v1.Gateway/Catalog", "/fedgate.v1.Peer/Execute")
GROUPED = "SELECT city, COUNT(*) AS n, SUM(revenue) AS r FROM firms GROUP BY city"
FILTERED = "SELECT city, COUNT(*) AS n FROM firms WHERE employees > {} GROUP BY city"
BAD_FILTER = "SELECT COUNT(*) AS n FROM firms WHERE revenue > {}"  # revenue: aggregate only
OVERSIZED = 4 * 1024 * 1024 + 1024  # just over a node's default node.max_message_bytes
STORM_THREADS = 8
KILLED = "owner2"


def _sample(bench: Bench) -> Figures:
    """RSS, threads and fds of every running node, from /proc (no dependency)."""
    out: Figures = {}
    for p in list(bench.procs):
        try:
            status = Path(f"/proc/{p.pid}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            rss = int(fields["VmRSS"].split()[0]) / 1024
            out[p.node_id] = (rss, int(fields["Threads"]), len(os.listdir(f"/proc/{p.pid}/fd")))
        except (OSError, KeyError, ValueError):  # a node that just died has no figures
            continue
    return out


@contextmanager
def _measured(bench: Bench, settle: float) -> Iterator[None]:
    """Figures before, the worst while the block runs (a pile-up of threads or buffers
    may be gone by its end) and ``settle`` seconds after; per node, and the goal."""
    before, peak, stop = _sample(bench), Figures(), threading.Event()

    def merge() -> None:
        for node, now in _sample(bench).items():
            old = peak.get(node, now)
            peak[node] = (max(old[0], now[0]), max(old[1], now[1]), max(old[2], now[2]))

    def run() -> None:
        while not stop.wait(0.2):
            merge()

    sampler = threading.Thread(target=run, name="sampler", daemon=True)
    sampler.start()
    try:
        yield
    finally:
        stop.set()
        sampler.join(timeout=5)
        merge()  # at least one sample, however short the block
    time.sleep(settle)
    after, missed = _sample(bench), []
    for node, b in before.items():
        p, a, parts = peak.get(node, b), after.get(node, b), []
        for i, (name, fmt) in enumerate((("RSS", "{:.1f} MB"), ("threads", "{}"), ("fds", "{}"))):
            change = 100 * (a[i] - b[i]) / b[i] if b[i] else 0.0
            missed += [f"{node} {name}"] if abs(change) > 10 else []
            vals = " / ".join(fmt.format(v) for v in (b[i], p[i], a[i]))
            delta = "" if i == 0 else f"{a[i] - b[i]:+d}, "
            parts.append(f"{name} {vals} ({delta}{change:+.1f} %)")
        print(f"  {node:<7} " + "   ".join(parts))
    held = "held" if not missed else "MISSED: " + ", ".join(missed)
    print(f"  (before / max during / {settle:g} s after)  goal: within 10 % of before: {held}")


def _codes(tally: Counter[str]) -> str:
    return ", ".join(f"{code} {n:,}" for code, n in tally.most_common()) or "none"


def _parallel(bodies: list[Callable[[], None]], deadline: float) -> None:
    """Run every body in its own thread and join them all; one still running well past
    ``deadline`` (monotonic) is reported, not waited for."""
    threads = [threading.Thread(target=b, daemon=True) for b in bodies]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=max(1.0, deadline + 30 - time.monotonic()))
    if any(th.is_alive() for th in threads):
        print("  WARNING: a thread did not finish in time")


def _garbage(i: int, rng: random.Random) -> bytes:
    """Bytes no request message decodes from, of several kinds."""
    if i % 500 == 499:
        return rng.randbytes(OVERSIZED)  # more than a node accepts in one message
    return (
        b"\xff\xff\xff\xff",
        rng.randbytes(rng.randint(1, 512)),
        b"\x0a\xff\xff\xff\xff\x07" + b"x" * 16,  # field 1 says 2 GiB follow
        b"\x0a\x02\xff\xfe",  # bad UTF-8 in a string field
    )[i % 4]


def _storm(bench: Bench, messages: int) -> dict[tuple[str, str], Counter[str]]:
    """Malformed messages as raw bytes from STORM_THREADS threads, round the nodes and
    METHODS; a refusal's retry hint is ignored: the point is a storm, not a polite client."""
    targets = [(n.id, m) for n in bench.fed.nodes for m in METHODS]
    tally: dict[tuple[str, str], Counter[str]] = {t: Counter() for t in targets}
    lock, deadline, a = threading.Lock(), time.monotonic() + 60 + messages / 50, bench.analyst

    def run(t: int) -> None:
        rng, size = random.Random(t), 2 * OVERSIZED
        channels = {
            n.id: secure_channel(
                n.listen, n.id, ca=a.ca, cert=a.cert, key=a.key, max_message_bytes=size
            )
            for n in bench.fed.nodes
        }
        try:
            for i in range(t, messages, STORM_THREADS):
                if time.monotonic() > deadline:
                    break
                node, method = targets[i % len(targets)]
                try:
                    raw = channels[node].unary_unary(method, None, None)  # bytes as they are
                    raw(_garbage(i, rng), timeout=5)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                with lock:
                    tally[node, method][code] += 1
        finally:
            for ch in channels.values():
                ch.close()

    _parallel([partial(run, t) for t in range(STORM_THREADS)], deadline)
    return tally


def _load(bench: Bench, seconds: float, clients: int) -> Counter[str]:
    """``clients`` clients of the analyst running real queries without pause."""
    tally: Counter[str] = Counter()
    lock, end = threading.Lock(), time.monotonic() + seconds

    def run(k: int) -> None:
        with Client(bench.analyst, timeout=30) as c:
            for i in range(10_000_000):
                if time.monotonic() > end:
                    break
                sql = FILTERED.format((i * clients + k) % 50) if i % 4 == 3 else GROUPED
                try:
                    c.query(sql)
                    code = "OK"
                except ClientError as exc:
                    code = exc.code.name
                with lock:
                    tally[code] += 1

    _parallel([partial(run, k) for k in range(clients)], end + 30)
    return tally


def _logs(bench: Bench) -> dict[Path, int]:
    """Every log file of every node (node.log, its rotations, stdout.log) and its size."""
    dirs = [bench.fed.node_dir(p.node_id) for p in bench.procs]
    return {f: f.stat().st_size for d in dirs for f in d.glob("*.log*") if f.is_file()}


def _log_growth(bench: Bench, before: dict[Path, int], requests: Mapping[str, int]) -> str:
    """Log bytes each node wrote since ``before`` per request (``requests[node]`` of them),
    and its longest new line."""
    out = []
    for p in bench.procs:
        grown, longest = 0, 0
        for f, size in _logs(bench).items():
            if f.parent != bench.fed.node_dir(p.node_id):
                continue
            start = before.get(f, 0) if before.get(f, 0) <= size else 0  # rotated: all new
            grown += size - start
            with f.open("rb") as fh:
                fh.seek(start)
                longest = max([longest, *map(len, fh.read().splitlines())])
        out.append(
            f"{p.node_id} {grown / max(1, requests[p.node_id]):,.0f} B (longest line {longest:,} B)"
        )
    return "log per request: " + ", ".join(out)


def resources(
    bench: Bench, *, messages: int, load_seconds: float, clients: int, settle: float
) -> None:
    """RSS, threads and fds under a malformed-message storm and a client load, measured
    from a warmed-up baseline (a node's worker pool starts its threads on demand and
    keeps them, its first peer probe opens channels); log bytes per refused request."""
    cold = _sample(bench)
    _load(bench, 3.0, max(clients, STORM_THREADS))
    _storm(bench, 10 * STORM_THREADS)
    # Each node's first peer probe, peer_probe_seconds after it came up (spawn + ~2 s),
    # opens its channels to the others: 2-3 more fds, kept.
    configs = [tomllib.loads(p.config.read_text()).get("node", {}) for p in bench.procs]
    probe = max(float(c.get("peer_probe_seconds", 15.0)) for c in configs)
    up = min(time.monotonic() - p.started for p in bench.procs)
    time.sleep(max(settle, probe + 5 - up))
    for label, figures in (("cold", cold), ("warmed up", _sample(bench))):
        for node, (rss, threads, fds) in figures.items():
            print(f"resources: {label:<9} {node:<7} RSS {rss:.1f} MB  threads {threads}  fds {fds}")

    print(f"resources: A. {messages:,} malformed messages from {STORM_THREADS} threads")
    logs, t0 = _logs(bench), time.perf_counter()
    with _measured(bench, settle):
        tally = _storm(bench, messages)
        took = time.perf_counter() - t0
        sent = sum(sum(c.values()) for c in tally.values())
    per_node = Counter[str]()
    for (node, _), codes in tally.items():
        per_node[node] += sum(codes.values())
    print(f"  {sent:,} sent in {took:.1f} s ({sent / took:,.0f}/s; every 500th {OVERSIZED:,} B)")
    print(f"  {_log_growth(bench, logs, per_node)} (per message it received)")
    for (node, method), codes in tally.items():
        print(f"    {node:<7} {method:<28} {_codes(codes)}")
    with Client(bench.analyst, timeout=30) as c:
        t0 = time.perf_counter()
        c.query(GROUPED)
        print(f"  after the storm a real query was answered in {time.perf_counter() - t0:.2f} s")

    print(f"resources: B. {clients} clients querying for {load_seconds:g} s")
    t0 = time.perf_counter()
    with _measured(bench, settle):
        seen = _load(bench, load_seconds, clients)
        took = time.perf_counter() - t0
    print(
        f"  {sum(seen.values()):,} queries in {took:.1f} s "
        f"({seen['OK'] / took:.1f} answered q/s): {_codes(seen)}"
    )

    print("resources: C. log bytes per refused request (node.log*, stdout.log)")
    long_sql = "SELECT COUNT(*) AS n FROM firms WHERE city IN ('" + "x" * 100_000 + "')"
    kinds = (
        ("filter on revenue (aggregate only)", BAD_FILTER, ""),
        ("1 MB purpose", GROUPED, "p" * 1_000_000),
        ("100 KB SQL text", long_sql, ""),
    )
    with Client(bench.analyst, timeout=30) as c:
        for name, sql, purpose in kinds:
            logs, seen = _logs(bench), Counter[str]()
            for i in range(200):
                try:
                    c.query(sql.replace("{}", str(i)), purpose=purpose)
                    seen["OK"] += 1
                except ClientError as exc:
                    seen[exc.code.name] += 1
            time.sleep(0.3)  # the nodes' last lines flushed
            print(f"  200 x {name}: {_codes(seen)}")
            refused = {p.node_id: 200 - seen["OK"] for p in bench.procs}
            print(f"    {_log_growth(bench, logs, refused)}")


def kills(bench: Bench, *, kills: int) -> None:
    """Kill -9 an owner ``kills`` times under two querying clients; tally what they saw."""
    stop, lock = threading.Event(), threading.Lock()
    tallies = {False: Counter[str](), True: Counter[str]()}
    messages: dict[str, tuple[int, str]] = {}  # normalised -> (count, an example)
    print(f"kills: {KILLED} killed -9 {kills} times while two clients query without pause")

    def run(allow: bool) -> None:
        with Client(bench.analyst, timeout=5) as c:
            for _ in range(10_000_000):
                if stop.is_set():
                    break
                try:
                    code = "OK (partial)" if c.query(GROUPED, allow_partial=allow).missing else "OK"
                except ClientError as exc:
                    code, text = exc.code.name, str(exc)
                    key = re.sub(r"[0-9a-f]{8,}|\d+(\.\d+)?", "#", text)
                    with lock:
                        messages[key] = (messages.get(key, (0, ""))[0] + 1, text)
                with lock:
                    tallies[allow][code] += 1

    ops = Profile.load(bench.fed.operator_profile(KILLED))
    address = {KILLED: bench.fed.node(KILLED).listen}
    rng, downtimes = random.Random(13), []
    threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in (False, True)]
    for th in threads:
        th.start()
    try:
        for _ in range(kills):
            time.sleep(0.5)  # queries run with the owner up in between
            old = bench.proc(KILLED)
            os.kill(old.pid, signal.SIGKILL)
            old.process.wait(timeout=10)
            t0 = time.monotonic()
            time.sleep(rng.uniform(0.3, 1.0))
            new = start_node(KILLED, old.config, old.log_path)
            bench.procs[bench.procs.index(old)] = new  # so the bench stops it at exit
            wait_serving([new], address, ops, timeout=30)
            downtimes.append(time.monotonic() - t0)
        time.sleep(0.5)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=30)
    with Client(bench.analyst, timeout=30) as c:
        full = c.query(GROUPED).missing == ()
    if downtimes:
        print(
            f"  down {min(downtimes):.2f} to {max(downtimes):.2f} s each (kill to SERVING, "
            f"mean {sum(downtimes) / len(downtimes):.2f} s); every owner answers after: {full}"
        )
    for allow, tally in tallies.items():
        print(f"  allow_partial={allow!s:<5}: {_codes(tally)}")

    def count(pred: Callable[[str], object]) -> int:
        return sum(n for n, e in messages.values() if pred(e))

    ours = count(lambda e: "refused our certificate" in e)
    print(f"  'refused our certificate' (goal 0: the owner was down, not refusing us): {ours:,}")
    tls = [
        (n, e) for n, e in messages.values() if re.search(r"certificate|tls|handshake|ssl", e, re.I)
    ]
    print(f"  errors mentioning a certificate, TLS or a handshake: {sum(n for n, _ in tls):,}")
    for n, example in tls:
        print(f"    {n:>6,} x {example[:400]}")
    late = ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    off = count(lambda e: not e.startswith(late) or KILLED not in e)
    print(f"  {len(messages)} distinct error messages (digits and ids aside):")
    for n, example in sorted(messages.values(), reverse=True):
        print(f"    {n:>6,} x {example[:120]}")
    held = "held" if not off else f"MISSED by {off:,} errors"
    print(f"  goal: only OK, UNAVAILABLE or DEADLINE_EXCEEDED naming the owner: {held}")
