"""The command line under a reader that went away (`fedgate ... | head -1`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_closed_pipe_is_exit_0_without_a_message(tmp_path: Path, unbuffered: str) -> None:
    """Buffered (a user's shell), the output reaches the closed pipe only when it is
    flushed: at the interpreter's exit that was exit 120 and 'Exception ignored'."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before anything is written
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "gateway", "cert", "request", "--role", "analyst",
             "--id", "a@o", "--org", "o", "--out-dir", str(tmp_path)],
            stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60, env=env,
        )  # fmt: skip
    finally:
        os.close(writer)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert (tmp_path / "a@o.csr").exists()  # the command did its work first


def test_a_receipt_line_counts_its_groups_in_words() -> None:
    """A plain PSI session's receipt read "1 groups" (a newcomer's walkthrough)."""
    from gateway.cli.receipt import released

    assert released({"operation": "query", "groups_released": 1}) == "1 group"
    assert released({"operation": "query", "groups_released": 4}) == "4 groups"
    psi = {"operation": "psi", "role": "matcher", "peer": "b", "peer_dataset": "d"}
    assert released({**psi, "groups_released": 1}) == "matcher with b.d, 1 group"
