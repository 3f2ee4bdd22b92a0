"""kill -9 an owner at random points during releases, 50 times: nothing is lost.

Afterwards every receipt the home node holds has its release entry in the owner's audit
log (same sequence number and hash), the owner's chain verifies offline, and the grant's
uses and spent privacy budget are exactly what its release entries say.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from gateway import identity
from gateway.client import Client, ClientError, Profile
from gateway.demo.launcher import running, start_node, wait_serving
from gateway.demo.provision import provision
from gateway.policy.model import Grant
from gateway.receipts import Receipt
from gateway.verifier import verify

pytestmark = pytest.mark.integration
KILLS = 50


def _regions(root: Path) -> Path:
    regions = root / "regions"
    regions.mkdir()
    (regions / "federation.toml").write_text(
        'federation = "crash"\n'
        '[[members]]\nid = "home"\nlevel = "province"\n'
        '[[members]]\nid = "owner"\nlevel = "province"\n'
        '[[analysts]]\nid = "a@home"\nhome = "home"\n'
    )
    for m in ("home", "owner"):
        (regions / f"{m}.toml").write_text(
            f'[node]\nid = "{m}"\norg = "{m} bureau"\nlisten = "127.0.0.1:0"\n'
            'data_dir = "x"\n[metrics]\nlisten = ""\n'
        )
    return regions


def test_kill_minus_nine_during_releases(tmp_path: Path) -> None:
    import shutil

    fed = provision(tmp_path / "fed", _regions(tmp_path), free_ports=True)
    from gateway.demo import sample_data

    written = sample_data.generate(tmp_path / "sample", scale=0.05, nodes=["wuhu"])
    for p in written["wuhu"]:
        if p.stem == "air_quality":
            shutil.copy(p, fed.data_dir("owner") / p.name)
            shutil.copy(p.with_suffix(".parquet"), fed.data_dir("owner"))
    rng = random.Random(1125)
    with running(fed) as procs:
        owner_proc = next(p for p in procs if p.node_id == "owner")
        ops = Profile.load(fed.operator_profile("owner"))
        with Client(ops) as c:
            c.register(fed.data_dir("owner") / "air_quality.toml")
            c.add_grant(
                Grant(
                    id="",
                    dataset="air_quality",
                    grantee_kind="node",
                    grantee="home",
                    operations=("query",),
                    min_group_size=1,
                    dp_epsilon=0.001,  # every release spends budget: it must survive kills
                    dp_budget=1000.0,
                    columns={"city": ("group_by",), "pm25": ("aggregate",)},
                )
            )
        analyst = Profile.load(fed.profile_path("a@home"))
        sql = "SELECT city, COUNT(*), AVG(pm25) FROM air_quality GROUP BY city"
        answered = 0
        landed = 0  # kills that cut a query short (it failed at the client)
        for _ in range(KILLS):
            with Client(analyst, timeout=30) as c:
                c.query(sql)  # warm: a fresh owner loads the data and OpenDP on first use
                answered += 1
            stop = threading.Event()
            counts = {"ok": 0, "failed": 0}

            def spam(stop: threading.Event = stop, counts: dict = counts) -> None:
                with Client(analyst, timeout=5) as c:
                    while not stop.is_set():
                        try:
                            c.query(sql)
                            counts["ok"] += 1
                        except ClientError:
                            counts["failed"] += 1

            threads = [threading.Thread(target=spam) for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.05, 0.3))
            os.kill(owner_proc.pid, signal.SIGKILL)
            owner_proc.process.wait(timeout=10)
            stop.set()
            for t in threads:
                t.join(timeout=30)
            answered += counts["ok"]
            landed += counts["failed"] > 0
            restarted = start_node(
                "owner", fed.config_path("owner"), fed.node_dir("owner") / "stdout.log"
            )
            procs[procs.index(owner_proc)] = restarted
            owner_proc = restarted
            wait_serving([restarted], {"owner": fed.node("owner").listen}, ops, timeout=30)
        print(f"\n{answered} answered, {landed} of {KILLS} kills cut a query short")
        assert answered >= KILLS + KILLS // 10  # releases were under way when the kills came
        assert landed >= KILLS // 2  # and were cut mid-request by them
        with Client(ops) as c:
            export = c.audit_export().decode()
    report = verify(export.splitlines(keepends=True), identity.load_bundle(fed.ca_cert))
    entries = {}
    for line in export.splitlines():
        if line.startswith("E\t"):
            _, seq, digest, body = line.split("\t", 3)
            entries[int(seq)] = (digest, json.loads(body))
    db = sqlite3.connect(fed.node_dir("home") / "state.sqlite3")
    receipts = [Receipt.from_json(r[0]) for r in db.execute("SELECT receipt FROM receipts")]
    db.close()
    assert len(receipts) >= answered
    for r in receipts:
        digest, body = entries[r.body["audit_seq"]]
        assert digest == r.body["audit_hash"], "receipt without its audit entry"
        assert body["kind"] == "release" and body["request_id"] == r.body["request_id"]
        assert body["result_digest"] == r.body["result_digest"]
    assert report.kinds["node.started"] == KILLS + 1
    assert report.kinds["release"] >= len(receipts)
    # The budget: exactly what the durable release entries charged, no half spend.
    releases = [b for _, b in entries.values() if b["kind"] == "release"]
    db = sqlite3.connect(fed.node_dir("owner") / "state.sqlite3")
    ((uses, spent),) = db.execute("SELECT uses, epsilon_spent FROM grants").fetchall()
    db.close()
    assert uses == len(releases)
    assert spent == pytest.approx(sum(b["epsilon"] for b in releases), rel=1e-9)
    assert 0 < spent <= 1000.0
