"""The demo's own parts, without a federation: whom its grants are for, and how its
training run is shown."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import serde
from gateway.client import ClientError, TrainRun
from gateway.demo.provision import REGION_DIR, Federation, plan
from gateway.demo.showcase import grantee_orgs
from gateway.demo.training import TRAIN_SECONDS, run_training, train_and_compare
from gateway.roles.train_home import TrainRound


def _planned() -> Federation:
    name, nodes, analysts = plan(REGION_DIR, free_ports=False)
    return Federation(Path("never-made"), name, tuple(nodes), tuple(analysts))


@pytest.mark.parametrize("home", [n.id for n in _planned().nodes])
def test_the_demo_grants_the_organisation_it_runs_as(home: str) -> None:
    # review (2026-12-05): only the analysts' organisations (Shanghai, Anhui) were
    # granted, so `demo --home jiangsu` (run as ops@jiangsu) was refused every answer
    fed = _planned()
    orgs = grantee_orgs(fed, home)
    assert fed.node(home).org in orgs  # the org of its analyst and of its operator alike
    assert set(grantee_orgs(fed)) <= set(orgs)  # every analyst's organisation still


def test_without_a_home_the_analysts_organisations_are_granted() -> None:
    fed = _planned()  # as the tests' federation and the benchmarks write them
    assert grantee_orgs(fed) == sorted({fed.node(h).org for _user, h in fed.analysts})


class _Call:
    """A Train stream of two rounds that waits, after each, until the demo has printed it
    (or 10 s), then ends without a result."""

    def __init__(self, printed: dict[int, threading.Event]) -> None:
        self.printed = printed
        self.in_time: list[bool] = []

    def __iter__(self) -> Iterator[Any]:
        for n in sorted(self.printed):
            yield serde.train_event_to_proto(
                TrainRound(n, len(self.printed), 4, 0.5, 0.5, 0.8, 0.1)
            )
            self.in_time.append(self.printed[n].wait(timeout=10))

    def cancel(self) -> None:
        pass


class _Client:
    def __init__(self, call: _Call) -> None:
        self.call = call
        self.timeout: float | None = None

    def train(
        self, ask: object, *, timeout: float | None = None, on_round: Callable[..., None]
    ) -> TrainRun:
        self.timeout = timeout
        return TrainRun(self.call, on_round)


def test_the_demo_prints_each_round_as_it_ends() -> None:
    # review (2026-12-05): the rounds were gathered and printed after the run
    printed = {1: threading.Event(), 2: threading.Event()}
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        for n, event in printed.items():
            if f"round {n:>2}/2" in line:
                event.set()

    call = _Call(printed)
    assert run_training(_Client(call), {}, say) is False  # type: ignore[arg-type]
    assert call.in_time == [True, True]
    assert said[0].startswith("-- Which enterprises are high-tech")
    assert "round  1/2: 4 owners" in said[1] and "round  2/2: 4 owners" in said[2]
    assert said[3] == "   FAILED: UNAVAILABLE: the home ended the run without a result"


def test_the_demo_run_has_the_deadline_the_demo_waits_for() -> None:
    # review (2026-12-05): the run had the client's 30 s deadline, the wait was 300 s
    client = _Client(_Call({}))
    with pytest.raises(ClientError):
        train_and_compare(client, {}, lambda _r: None)  # type: ignore[arg-type]
    assert client.timeout == TRAIN_SECONDS
    client = _Client(_Call({}))
    assert run_training(client, {}, lambda _line: None) is False  # type: ignore[arg-type]
    assert client.timeout == TRAIN_SECONDS
