"""Training's imports (``gateway.training.loading``): the owner's and the worker's (a
process may hold both: a home's run process, the benchmark's floor), from two threads at
once, both finish. Each try is a fresh interpreter, where neither is loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CODE = """
import threading
from gateway.training.loading import load
done = []
threads = [
    threading.Thread(target=lambda m=m: done.append(load(m).__name__), daemon=True)
    for m in ("gateway.roles.train_owner", "gateway.training.worker")
]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
assert not any(t.is_alive() for t in threads), "an import hung"
assert sorted(done) == ["gateway.roles.train_owner", "gateway.training.worker"], done
print("both")
"""


def test_the_owner_and_the_worker_import_at_once_without_deadlock() -> None:
    for _ in range(3):
        result = subprocess.run(
            [sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0 and "both" in result.stdout, result.stderr


def test_flower_is_reached_only_through_load() -> None:
    """No module of the node imports a module that loads Flower (directly or through
    another), except those modules among themselves, ``TYPE_CHECKING`` blocks and
    ``load``: else a request thread could import Flower beside the node's own thread."""
    from tests.unit.test_layout import ROOT, _imports, _modules

    def module_name(path: Path) -> str:
        return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")

    paths = {module_name(p): p for p in _modules("gateway") + _modules("federation")}
    imports = {m: _imports(p, at_run_time=True, top_level=True) for m, p in paths.items()}
    flower = {m for m, names in imports.items() if any(n.split(".")[0] == "flwr" for n in names)}
    grown = True
    while grown:  # and every module that imports one of them
        more = {m for m, names in imports.items() if names & flower} - flower
        grown = bool(more)
        flower |= more
    # Training's own modules (in a training process, or reached only through load()):
    # a node module importing one that loads Flower joins ``flower`` above and fails.
    allowed = {m for m in paths if m.startswith(("gateway.training.", "federation.training."))}
    allowed |= {"gateway.roles.train_owner"}
    assert flower - allowed == set(), sorted(flower - allowed)
    lazy = {  # nor inside a function, but through load()
        m: sorted(n for n in names if n in flower or n.split(".")[0] == "flwr")
        for m, p in paths.items()
        if m not in allowed and (names := _imports(p, at_run_time=True))
    }
    assert {m: n for m, n in lazy.items() if n} == {}
    assert "gateway.roles.train_owner" in flower and "gateway.training.worker" in flower


def test_a_run_process_that_cannot_load_its_worker_tells_the_home() -> None:
    """The forkserver ignores a failed preload; the run's own import then fails in
    ``job.start``, which must say so on the pipe (the home maps it to a clear status)
    rather than end silently."""
    code = """
import sys
from multiprocessing import Pipe
sys.modules["gateway.training.worker"] = None  # importing it now raises ImportError
from gateway.training.job import Job, start
from gateway.training.spec import TrainSpec
home, run = Pipe()
start(run, Job(1, TrainSpec("logreg", "d", ("a",), "y", 1), (1,), 1, 5.0))
kind, error, missing = home.recv()
assert kind == "error" and error.code.name == "INTERNAL" and missing == [], (kind, error)
assert "could not start" in error.reason, error.reason
print("told")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "told" in result.stdout, result.stderr
    assert "could not load its worker" in result.stderr  # logged where the node logs
