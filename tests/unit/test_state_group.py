"""Group commit when SQLite ends the whole transaction (review, 2026-12-04): a full disk
inside one caller's part of a batch came back as "no such savepoint" (INTERNAL) to every
caller of the batch, and the node's health never heard that it could not record."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import CannotRecord
from gateway.state import State


def _full(db: sqlite3.Connection) -> None:
    # What SQLite does on SQLITE_FULL or an I/O error in some statements: the whole
    # transaction is rolled back, then the error raised.
    db.execute("ROLLBACK")
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    raise error


def _fine(db: sqlite3.Connection) -> str:
    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('x', '1')")
    return "ok"


def test_a_batch_that_sqlite_rolled_back_whole_fails_as_cannot_record(tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite3")
    told: list[bool] = []
    state.on_recording = told.append
    results = _batched(state, {"fine": _fine, "full": _full})
    assert results["lead"] == "ok"
    for name in ("fine", "full"):  # nothing of the batch was recorded: both are told so
        assert isinstance(results[name], CannotRecord), results[name]
    assert told == [False]  # the node's health hears it cannot record
    with state.read() as db:  # and the state is still usable
        assert db.execute("SELECT value FROM meta WHERE key = 'x'").fetchone() == ("1",)
    assert state.group(_fine) == "ok"
    assert told == [False, True]
    state.close()


def _batched(state: State, fns: dict[str, Callable[[sqlite3.Connection], object]]) -> dict:
    """Each of ``fns`` from its own thread, all but a first one in one batch."""
    results: dict[str, object] = {}

    def run(name: str, fn: Callable[[sqlite3.Connection], object]) -> None:
        try:
            results[name] = state.group(fn)
        except Exception as exc:  # noqa: BLE001 - what each caller got
            results[name] = exc

    state._lock.acquire()  # the first caller leads and waits: the others form one batch
    threads = [threading.Thread(target=run, args=("lead", _fine))]
    threads[0].start()
    time.sleep(0.2)
    for name, fn in fns.items():
        threads.append(threading.Thread(target=run, args=(name, fn)))
        threads[-1].start()
        time.sleep(0.1)
    state._lock.release()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    return results


@pytest.mark.parametrize("first", [True, False])
def test_a_caller_whose_part_fails_alone_leaves_the_others_recorded(
    tmp_path: Path, first: bool
) -> None:
    state = State(tmp_path / "state.sqlite3")

    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('y', 'half')")
        raise ValueError("its own bug")

    order = ("broken", "fine") if first else ("fine", "broken")
    fns = {"broken": broken, "fine": _fine}
    results = _batched(state, {name: fns[name] for name in order})
    assert results["fine"] == "ok" and str(results["broken"]) == "its own bug"
    with state.read() as db:  # the broken part rolled back alone, the other committed
        assert db.execute("SELECT value FROM meta WHERE key = 'x'").fetchone() == ("1",)
        assert db.execute("SELECT value FROM meta WHERE key = 'y'").fetchone() is None
    state.close()


def test_writes_after_close_are_refused_and_never_jam(tmp_path: Path) -> None:
    """Review (2026-12-05): a call that outlived the node's stop wrote to the closed
    state: its error escaped the group commit before any waiter was told, the committer's
    role stayed taken, and every later writer waited for ever (the node could not exit
    on SIGTERM). Now each is refused UNAVAILABLE at once, and nothing waits."""
    from concurrent.futures import ThreadPoolExecutor

    from gateway.errors import Unavailable

    state = State(tmp_path / "s.db")
    state.close()

    def write(i: int) -> object:
        try:
            return state.group(lambda db: db.execute("SELECT 1").fetchone())
        except Unavailable as exc:
            return exc

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(write, i) for i in range(8)]
        results = [f.result(timeout=10) for f in futures]  # none waits for ever
    assert all(isinstance(r, Unavailable) for r in results), results
    with pytest.raises(Unavailable, match="stopping"), state.transaction() as db:
        db.execute("SELECT 1")
