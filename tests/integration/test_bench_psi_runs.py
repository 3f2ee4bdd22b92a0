"""The PSI benchmark (issue 12) keeps working at a tiny size: its answers are checked (the
cardinality against the exact one, the join against DuckDB); its timings are not."""

from __future__ import annotations

import sys

import pytest

from tests import procs
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_bench_psi_runs() -> None:
    result = procs.run(
        [sys.executable, str(ROOT / "scripts" / "bench_psi.py"), "--rows", "2000"]
        + ["--skip-reference"],
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for figure in (
        "setup: 2,000 codes at each owner (1,000 shared)",
        "(a) fedgate psi: ",
        "cardinality 1,000 = the exact one",
        "peak RSS (VmHWM since",
        "(b) ristretto255 on one core here: hash to the group",
        "(b) floor of (a):",
        "(b) ratio (a)/(b)",
        "(d) join COUNT, SUM by 20 keys:",
        "the same as DuckDB on the pooled rows",
        "summary at 2,000 x 2,000",
    ):
        assert figure in out, figure
    assert "WRONG" not in out and "openmined" not in out  # --skip-reference skips (c)


def test_bench_psi_parts_pick_what_runs() -> None:
    """``--parts b`` measures the floor alone: no node is started, no set is matched."""
    result = procs.run(
        [sys.executable, str(ROOT / "scripts" / "bench_psi.py"), "--rows", "1000"]
        + ["--parts", "b"],
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "(b) floor of (a):" in out
    assert "(a) fedgate psi" not in out and "(d)" not in out and "setup:" not in out
