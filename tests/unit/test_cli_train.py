"""The run folder ``fedgate train --out`` writes (gateway/cli/train.py: write_run)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gateway.cli.train import write_run
from gateway.roles.train_home import TrainResult, TrainRound

NAN = math.nan


def test_a_dp_run_without_losses_writes_nulls(tmp_path: Path) -> None:
    """Under DP no loss or accuracy is released: the metrics hold null, not NaN."""
    rounds = tuple(TrainRound(i, 2, 3, NAN, NAN, NAN, 0.1 * i) for i in (1, 2))
    result = TrainResult("r1", b"npz", rounds, (), "logreg", ("a", "b"), "y", (0.0, 1.0), (1, 1))
    written = write_run(result, tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["train_loss"] for r in meta["rounds"]] == [None, None]
    assert meta["rounds"][1]["eval_accuracy"] is None
    assert (tmp_path / "run" / "plot.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "run" / "model.npz").read_bytes() == b"npz"
    assert len(written) == 3


def test_the_cli_offers_exactly_the_strategies_the_home_runs() -> None:
    """The CLI keeps its own list (it does not import Flower to parse arguments)."""
    from federation.training.server import STRATEGIES as RUN
    from gateway.cli.train import STRATEGIES as OFFERED

    assert tuple(RUN) == OFFERED


def test_dp_takes_a_clip_or_a_noise_multiplier_and_a_clip() -> None:
    import argparse

    from gateway.cli.train import _dp

    assert _dp("0.5") == (0.0, 0.5)
    assert _dp("1.1,0.5") == (1.1, 0.5)
    for bad in ("a", "1,2,3", "1;2"):
        with pytest.raises(argparse.ArgumentTypeError):
            _dp(bad)


def test_the_command_lines_class_limit_is_the_tasks() -> None:
    """The CLI keeps its own copy so that parsing arguments does not load numpy."""
    from federation.training.tasks import MAX_CLASSES
    from gateway.cli import train

    assert train.MAX_CLASSES == MAX_CLASSES
