"""Same weights as Flower (issue 11): one Flower app, run through fedgate and through
Flower's own deployment engine, ends with the same final weights.

The app is the one ``scripts/bench_training.py`` generates: a real Flower app folder
(``pyproject.toml`` with ``[tool.flwr.app]``) whose ServerApp runs the server side of a
fedgate run (``gateway.training.worker.run``: the statistics, then FedAvg over
``federation.training.server``) and whose ClientApp is an owner's
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
from pathlib import Path

import numpy as np
import pytest

from tests.integration.test_bench_training_runs import load, run_bench

pytestmark = pytest.mark.integration

ROUNDS = 2


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_same_weights_through_fedgate_and_flower(tmp_path: Path) -> None:
    result = run_bench(
        "--rounds", str(ROUNDS), "--rows", "600", "--out", str(tmp_path), timeout=600
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
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
    fedgate, flower = load(tmp_path / "fedgate.npz"), load(tmp_path / "flower.npz")
    assert set(fedgate) == {"w0", "w1", "mean", "std"} == set(flower)
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
