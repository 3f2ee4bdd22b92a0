"""The benchmark scripts keep working (tiny sizes; the figures themselves are not asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_bench_node_runs() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_node.py"),
            "--calls",
            "20",
            "--starts",
            "1",
            "--scale",
            "0.02",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    for figure in ("start -> SERVING", "all 7 nodes SERVING", "idle RSS", "Catalog RPC"):
        assert figure in result.stdout
