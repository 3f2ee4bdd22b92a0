"""The training benchmark (issue 11) at a tiny size, one run of it checking both of the
issue's weight claims; its timings are not checked.

Same weights as the floor: fedgate, run twice through real nodes, and the floor (the same
worker code with the ClientApps called in one process) end with identical weights.

Same weights as Flower: the app is the one ``scripts/bench_training.py`` generates, a
real Flower app folder (``pyproject.toml`` with ``[tool.flwr.app]``) whose ServerApp runs
the server side of a fedgate run (``gateway.training.worker.run``: the statistics, then
FedAvg over ``federation.training.server``) and whose ClientApp is an owner's
(``federation.training.client_app``): numpy logistic regression. The benchmark runs it
(a) through four fedgate nodes on loopback (mTLS, the home's Grid, each owner's release
pipeline) and (b) through ``flower-superlink --insecure`` and three
``flower-supernode --insecure`` processes on loopback with ``flwr run``, offline
(``--disable-runtime-dependency-installation``, telemetry and update check off,
``FLWR_HOME`` in a temporary directory), with the same seed and the same three
partitions, and stops every process it started. Two rounds of small parts: Flower's
deployment engine alone takes ~40 s for them (3 s polls, a process per message).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import procs
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

BENCH = ROOT / "scripts" / "bench_training.py"


def run_bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """The benchmark as a process; past ``timeout`` it gets SIGTERM first, so that it
    stops the node and Flower processes it started (``tests.procs.run``)."""
    return procs.run([sys.executable, str(BENCH), *args], timeout=timeout)


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


ROUNDS = 2


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_bench_training_runs_and_matches_flower(tmp_path: Path) -> None:
    result = run_bench(
        "--rounds", str(ROUNDS), "--rows", "600", "--out", str(tmp_path), timeout=600
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for figure in (
        "machine: ",
        "rows per owner: n1 150, n2 210, n3 240",
        "(c) floor: ",
        "(c) a fresh interpreter importing the training worker",
        "(a) setup: four nodes up, 3 datasets registered and granted",
        "(a) warm-up: one COUNT(*) query at every owner",
        "(a) fedgate: ",
        "(a) fedgate again: ",
        "(a) fedgate warm home: ",
        "15 owner receipts",  # per owner: stats, then a train and an evaluate per round
        "owner RSS before / peak / after the run:",
        "no socket of these processes had a peer off loopback",
        "final weights fedgate vs floor: max abs difference 0.00e+00: the same",
        "final weights fedgate vs fedgate again: max abs difference 0.00e+00: the same",
        f"summary, {ROUNDS} rounds over 600 rows",
        "(a) fedgate: RSS an owner adds",
        "(c) floor secagg: ",
        "(a) fedgate secagg: ",
        "final weights fedgate secagg vs floor secagg: max abs difference",
        "final weights fedgate secagg vs floor: max abs difference",
        "(a) fedgate secagg per round",
    ):
        assert figure in out, figure
    assert "WRONG" not in out and "FAILED" not in out
    fedgate, floor = load(tmp_path / "fedgate.npz"), load(tmp_path / "floor.npz")
    assert set(fedgate) == {"w0", "w1", "mean", "std"} == set(floor)
    for key in fedgate:
        np.testing.assert_array_equal(fedgate[key], floor[key])
    for line in (
        "$ flower-superlink --insecure ",
        "--disable-runtime-dependency-installation",
        "$ flower-supernode --insecure --superlink 127.0.0.1:",
        "$ flwr run ",
        "FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1",
        "(b) Flower: ",
    ):
        assert line in out, line
    # Nothing of either engine opened a connection off loopback (four fedgate runs: the
    # first, again, with SecAgg+, on a warm home; and Flower's).
    assert out.count("no socket of these processes had a peer off loopback") == 5
    flower = load(tmp_path / "flower.npz")
    assert set(flower) == set(fedgate)
    for key in fedgate:  # the standardisation both runs computed, and the model
        np.testing.assert_allclose(flower[key], fedgate[key], rtol=0, atol=1e-9, err_msg=key)
    assert np.abs(fedgate["w0"]).max() > 0.05, "two rounds of training moved no weight"
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert len(figures["fedgate"]["marks"]) == len(figures["flower"]["marks"]) == ROUNDS
    # Flower's processes (SuperLink, SuperNodes, SuperExecs, the ServerApp and one
    # ClientApp process per message) are all gone.
    kinds = {p["label"] for p in figures["flower"]["procs"]}
    assert {"superlink", "flwr-serverapp", "flwr-clientapp"} <= kinds
    for p in figures["flower"]["procs"]:
        assert not any(k in _cmdline(p["pid"]) for k in ("flower-", "flwr")), p
