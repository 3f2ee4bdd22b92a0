"""``--nodes all`` at the home: who lists the dataset, and what stops the run."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.errors import DeadlineExceeded, NotFound, Unavailable
from gateway.roles.train_home import TrainHome


def _home(found: list[str], silent: list[str]) -> TrainHome:
    unused: Any = None  # the run's other parts: not reached by these checks
    return TrainHome("home", unused, unused, unused, unused, lambda ds, timeout: (found, silent))


def test_every_member_that_lists_the_dataset() -> None:
    assert _home(["a", "b"], [])._publishers("ds", time.monotonic() + 5) == ("a", "b")


def test_a_member_that_did_not_answer_stops_the_run() -> None:
    """It may hold the dataset: training without it silently would change the run."""
    with pytest.raises(Unavailable, match="member.s. c .timed out. did not answer the catalog"):
        _home(["a"], ["c (timed out)"])._publishers("ds", time.monotonic() + 5)


def test_nobody_lists_it_or_no_time_is_left() -> None:
    with pytest.raises(NotFound, match="no member lists a dataset 'ds'"):
        _home([], [])._publishers("ds", time.monotonic() + 5)
    with pytest.raises(DeadlineExceeded):
        _home(["a"], [])._publishers("ds", time.monotonic() - 1)
