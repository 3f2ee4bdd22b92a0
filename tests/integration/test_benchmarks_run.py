"""The benchmark scripts keep working (tiny sizes; the figures themselves are not asserted)."""

from __future__ import annotations

import sys

import pytest

from tests import procs
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_bench_node_runs() -> None:
    result = procs.run(
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
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    for figure in (
        "start -> SERVING",
        "all 7 nodes SERVING",
        "idle RSS",
        "Catalog RPC",
        "first DP query at an owner that had answered none",
    ):
        assert figure in result.stdout


def test_bench_query_runs() -> None:
    result = procs.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_query.py"),
            "--queries",
            "20",
            "--threads",
            "2",
            "--rows",
            "50000",
            "--repeat",
            "1",
            *("--part", "small,large"),  # the analytic part has its own test below
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "(c) analytic workload" not in result.stdout
    for figure in (
        "(a) small aggregate",
        "queries/s",
        "group-by aggregate",
        "filtered sum",
        "floor: the owners' generated statements alone",
    ):
        assert figure in result.stdout


def test_bench_query_analytic_runs() -> None:
    """Part (c), issue 10's analytic workload: every statement gets a line, answered (with
    its floor and verdict) or refused by the nodes with their message."""
    result = procs.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_query.py"),
            *("--part", "analytic", "--rows", "20000"),
            *("--analytic-runs", "1", "--new-texts", "5"),
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(a) small aggregate" not in out and "(b)" not in out
    for figure in (
        "(c) setup: 20,000 line items over 5 owners",
        "(c) analytic workload over 20,000 rows",
        "statements within 1.15x of their floor",
        "home CPU per question on a tiny table",
    ):
        assert figure in out
    lines = out.splitlines()
    for label in (
        *("Q1 plain columns", "Q1 pricing summary", "Q6 plain columns", "Q6 forecast revenue"),
        *("CASE by ship mode", "FILTER clauses", "month buckets", "year x region"),
        *("quantity buckets", "spread by flag"),
    ):
        (line,) = [x for x in lines if x.strip().startswith(label)]
        assert "REFUSED: " in line or line.endswith(("PASS", "MISS")), line  # not "differs"
    # The two plain statements need nothing of issue 10: they are answered, not refused.
    for label in ("Q1 plain columns", "Q6 plain columns"):
        (line,) = [x for x in lines if x.strip().startswith(label)]
        assert "REFUSED" not in line and "differs" not in line, line


def test_bench_audit_runs() -> None:
    result = procs.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_audit.py"),
            "--entries",
            "5000",
            "--batch",
            "100",
            "--single",
            "50",
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "append" in result.stdout and "verify:" in result.stdout


def test_bench_rpc_runs() -> None:
    result = procs.run(
        [sys.executable, str(ROOT / "scripts" / "bench_rpc.py"), "--calls", "50"],
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    for figure in (
        "mTLS gRPC unary call",
        "bidirectional stream",
        "DuckDB",
        "owner release of the small aggregate, in-process",
        "home merge and final step",
        "through the owner's gRPC server",
        "floor of one repeated federated query",
    ):
        assert figure in result.stdout


def test_bench_abuse_runs() -> None:
    result = procs.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_abuse.py"),
            *("--rows", "600", "--pairs", "4", "--targets", "2", "--oracle-cap", "40"),
            *("--messages", "300"),
            *("--load-seconds", "2", "--clients", "2", "--kills", "1", "--settle", "1"),
        ],
        timeout=420,
    )
    assert result.returncode == 0, result.stderr
    for figure in (
        "complement (all minus NOT victim)",
        "tracker (Denning)",
        "HAVING as an oracle",
        "existence by COUNT pairs",
        "k oracle, within 5 %",
        "equal answers (X OR test, X AND NOT test)",
        "benign: groups of >= 100 rows",
        "malformed messages",
        "log per request",
        "kills: owner2 killed -9 1 times",
    ):
        assert figure in result.stdout
