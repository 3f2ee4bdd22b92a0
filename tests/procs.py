"""Processes a test starts that start processes of their own (the demo, the benchmarks):
run to a deadline that stops them the way that lets them stop theirs, and their output
read line by line without a silent stall outliving the test's deadline."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import pytest

# What a stopped benchmark or demo may take to stop the nodes it started: their grace
# period (10 s) and a few starts in progress.
STOP_GRACE = 60.0


def stop(proc: subprocess.Popen[str], grace: float = STOP_GRACE) -> tuple[str, str]:
    """SIGTERM first, so that ``proc`` stops the node (and Flower) processes it started
    (they run in sessions of their own: SIGKILL would orphan them); SIGKILL only past
    ``grace``. Returns what it printed meanwhile (``communicate``'s pair; "" for a pipe
    not made)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
    return out or "", err or ""


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(argv, capture_output=True, text=True, timeout=timeout)``, except
    that past ``timeout`` the process is stopped by ``stop`` and the test fails with its
    output (``subprocess.run`` SIGKILLs it, which leaves its nodes running)."""
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=cwd,
        env=env,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = stop(proc)
        pytest.fail(f"{' '.join(map(str, argv))} did not finish in {timeout:g} s:\n{out}\n{err}")
    except BaseException:  # an interrupted test stops it too
        stop(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class Lines:
    """The lines a process writes to ``stream``, read by a thread into a queue, so that a
    wait for one is bounded by its deadline even when the process prints nothing."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._queue.put(line)
        except ValueError:  # the pipe was closed under us (the process was ended)
            pass
        finally:
            self._queue.put(None)

    def until(self, wanted: Callable[[str], bool], *, seconds: float) -> str | None:
        """Lines up to the first one ``wanted`` (returned); None once the stream ended or
        ``seconds`` passed without one. Every line read is kept in ``seen``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                self._queue.put(None)  # ended: so it stays for a later call
                return None
            self.seen.append(line)
            if wanted(line):
                return line
        return None

    def rest(self, seconds: float) -> str:
        """What is left, once the stream ends (within ``seconds``): ``seen`` grows by it."""
        self.until(lambda _line: False, seconds=seconds)
        self._thread.join(timeout=1)
        return "".join(self.seen)
