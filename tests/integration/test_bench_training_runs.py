"""The training benchmark (issue 11) keeps working at a tiny size: its final weights are
checked (fedgate, run twice through real nodes, against the floor: the same worker code
with the ClientApps called in one process); its timings are not."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

BENCH = ROOT / "scripts" / "bench_training.py"


def run_bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """The benchmark as a process; past ``timeout`` it gets SIGTERM first, so that it
    stops the node and Flower processes it started (SIGKILL would orphan them)."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCH), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
        pytest.fail(f"the benchmark did not finish in {timeout:g} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_bench_training_runs(tmp_path: Path) -> None:
    result = run_bench(
        "--rounds", "2", "--rows", "600", "--skip-flower", "--out", str(tmp_path), timeout=300
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
        "summary, 2 rounds over 600 rows",
        "(a) fedgate: RSS an owner adds",
        "(c) floor secagg: ",
        "(a) fedgate secagg: ",
        "final weights fedgate secagg vs floor secagg: max abs difference",
        "final weights fedgate secagg vs floor: max abs difference",
        "(a) fedgate secagg per round",
    ):
        assert figure in out, figure
    assert "(b)" not in out and "flower.npz" not in {p.name for p in tmp_path.iterdir()}
    assert "WRONG" not in out and "FAILED" not in out
    fedgate, floor = load(tmp_path / "fedgate.npz"), load(tmp_path / "floor.npz")
    assert set(fedgate) == {"w0", "w1", "mean", "std"} == set(floor)
    for key in fedgate:
        np.testing.assert_array_equal(fedgate[key], floor[key])
    assert np.abs(fedgate["w0"]).max() > 0.05, "two rounds of training moved no weight"
