"""An approved custom app's ClientApp, run in a process of its own under resource limits.

The owner node never imports an app. For each run that names one, it starts this module
as a child process (``AppHost``), hands it the run's granted rows once, then each Flower
message as bytes, and reads back each reply. The child sets its own limits before it
imports the app: address space, CPU seconds, no file growth (``RLIMIT_FSIZE`` 0), no
core dumps, no IP network (``training.netns``, set first by ``training.app_child``:
a user, network and IPC namespace of its own), and (``training.landlock``) reads only of
Python, fedgate's packages and the app's own files, no file writes, no TCP, and
(``training.seccomp``) no sockets but IP and netlink ones, no changes to a file's mode,
owner, times or xattrs; it runs in
a session of its own with a cleaned environment (Flower offline, its home in a temporary
folder) and is killed with the run. Frames on its stdin and stdout are an 8-byte length
and the bytes; the app's own prints go to stderr (the node's log). A failure reaches the
caller as the exception's type only: its message could hold the rows' values.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from flwr.app import Message
from numpy.typing import NDArray

from gateway.errors import (
    Aborted,
    DeadlineExceeded,
    FailedPrecondition,
    FedgateError,
    ResourceExhausted,
)
from gateway.training.app_child import EXIT_NOT_ISOLATED

OK, FAILED, OUT_OF_MEMORY = b"\x00", b"\x01", b"\x02"
# Exception names a failure may show (an app's own class could be named anything)
KNOWN_ERRORS = frozenset(
    {
        "ArithmeticError", "AssertionError", "AttributeError", "ConnectionError",
        "FileNotFoundError", "FloatingPointError", "ImportError", "IndexError", "KeyError",
        "LookupError", "ModuleNotFoundError", "NameError", "NotImplementedError", "OSError",
        "OverflowError", "PermissionError", "RecursionError", "RuntimeError", "TypeError",
        "ValueError", "ZeroDivisionError",
    }
)  # fmt: skip
SYSTEM_READABLE = ("/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/dev/null")
IDLE_SECONDS = 900.0  # an app process with no message for this long ends itself
MAX_LOG_LINES = 1000  # of one app process's output kept in the node's log
MAX_LOG_LINE = 1000
log = logging.getLogger("fedgate.app")
MAX_FRAME = 256 * 1024 * 1024
# RLIMIT_CPU's hard limit past its soft one: at the soft limit the kernel sends SIGXCPU
# (the owner's RESOURCE_EXHAUSTED), at the hard one SIGKILL; with both equal only the
# SIGKILL came, and a busy app ended "ABORTED" (review, 2026-12-05). An app that
# catches SIGXCPU is killed this much later.
CPU_GRACE_SECONDS = 5
_ROOT = Path(__file__).resolve().parents[2]  # the folder holding gateway/ and federation/


@dataclass(frozen=True)
class AppLimits:
    memory_mb: int = 2048  # address space: Python, numpy and Flower take ~1 GB of it
    cpu_seconds: int = 600  # of the whole run


def _write(out: IO[bytes], payload: bytes) -> None:
    out.write(len(payload).to_bytes(8, "big") + payload)
    out.flush()


def _ready(fd: int, events: int, wait: float | None) -> bool:
    """Whether ``fd`` is ready for ``events`` within ``wait`` seconds (None: however long).
    ``poll``, not ``select``: select refuses an fd from 1024 up, which a busy node's pipe
    may be (review, 2026-12-05: an app then failed to start, "the app's process ended")."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(None if wait is None else max(0, int(wait * 1000) + 1)))


def _write_by(fd: int, payload: bytes, deadline: float | None) -> None:
    """A frame to a non-blocking pipe, by ``deadline`` (``TimeoutError`` after): an app
    that does not read (asleep at import, its read blocked) held a message over the pipe's
    64 KiB past its call's timeout (review, 2026-12-05)."""
    view = memoryview(len(payload).to_bytes(8, "big") + payload)
    while view:
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            raise TimeoutError
        if not _ready(fd, select.POLLOUT, wait):
            raise TimeoutError
        try:
            view = view[os.write(fd, view[: 1 << 20]) :]
        except BlockingIOError:
            continue


def _read(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not _ready(fd, select.POLLIN, wait):
                raise TimeoutError
        try:
            got = os.read(fd, min(left, 1 << 20))
        except OSError:  # the pipe was closed under us: the process is gone
            raise EOFError from None
        if not got:
            raise EOFError
        chunks.append(got)
        left -= len(got)
    return b"".join(chunks)


def _frame(fd: int, deadline: float | None = None) -> bytes:
    size = int.from_bytes(_read(fd, 8, deadline), "big")
    if size > MAX_FRAME:
        raise EOFError
    return _read(fd, size, deadline)


class AppHost:
    """The parent's handle on one run's app process."""

    def __init__(
        self,
        app_dir: Path,
        X: NDArray[np.float64],
        y: NDArray[np.float64],
        limits: AppLimits = AppLimits(),  # noqa: B008 - frozen
    ) -> None:
        self._home = tempfile.TemporaryDirectory(prefix="fedgate-app-")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(_ROOT),
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": self._home.name,
            "FLWR_HOME": self._home.name,
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            # numpy's BLAS starts worker threads as it loads, before the sandbox is
            # applied, and Landlock and seccomp bind only the thread that applies them
            # (and those it starts later): a BLAS thread ran free (review, 2026-12-04).
            **dict.fromkeys(_THREAD_VARS, "1"),
        }
        args = [str(app_dir), str(limits.memory_mb), str(limits.cpu_seconds)]
        self.proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "gateway.training.app_child", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # to the node's log (the child may write no file)
            env=env,
            cwd=self._home.name,
            start_new_session=True,
        )
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(  # ends at the pipe's end, when the process is gone
            target=_log_lines, args=(self.proc.stderr,), name="app-log", daemon=True
        ).start()
        buf = io.BytesIO()
        np.savez(buf, X=X, y=y)
        self._send(buf.getvalue())

    def _send(self, payload: bytes, deadline: float | None = None) -> None:
        if self._closed or self.proc.stdin is None:
            raise Aborted("the app's process was stopped")
        try:
            fd = self.proc.stdin.fileno()
            os.set_blocking(fd, False)
            _write_by(fd, payload, deadline)
        except TimeoutError:
            self._close()
            raise DeadlineExceeded("the app did not answer in time; it was stopped") from None
        except (OSError, ValueError):
            raise self._ended() from None

    def call(self, message: bytes, timeout: float) -> bytes:
        """The app's reply to one message, or a typed error (the process is then gone).
        One call at a time; ``close`` from another thread ends a call in progress."""
        with self._lock:
            deadline = time.monotonic() + max(timeout, 0.01)
            self._send(message, deadline)  # by the call's deadline too: the app may not read
            assert self.proc.stdout is not None
            try:
                frame = _frame(self.proc.stdout.fileno(), deadline)
            except TimeoutError:
                self._close()
                raise DeadlineExceeded("the app did not answer in time; it was stopped") from None
            except EOFError:
                raise self._ended() from None
            if frame[:1] == OK:
                return frame[1:]
            if frame[:1] == OUT_OF_MEMORY:
                self._close()
                raise ResourceExhausted("the app ran out of its memory limit; it was stopped")
            name = frame[1:65].decode("ascii", "replace")
            # Only a built-in exception's name: the app chooses the rest (it could spell rows).
            raise Aborted(f"the app failed ({name if name in KNOWN_ERRORS else 'Exception'})")

    def _ended(self) -> FedgateError:
        # Let it finish, for 2 s at most (an end of its pipe is not always its end: a frame
        # over MAX_FRAME is refused while it still writes), and leave it unreaped, so that
        # its id is still its group's when the group is killed.
        end = time.monotonic() + 2
        with contextlib.suppress(ChildProcessError, OSError):
            flags = os.WEXITED | os.WNOWAIT | os.WNOHANG
            while not os.waitid(os.P_PID, self.proc.pid, flags) and time.monotonic() < end:
                time.sleep(0.02)
        code = self._close()  # the group killed (what it forked), then it is reaped
        if code == -signal.SIGXCPU:
            return ResourceExhausted("the app went over its CPU time limit; it was stopped")
        if code == EXIT_NOT_ISOLATED:
            return FailedPrecondition(
                "this node cannot sandbox an app's process (a user, network and IPC namespace, "
                "one thread, its seccomp filter: see the node's log); no app runs here until it "
                "can"
            )
        return Aborted("the app's process ended")

    def close(self) -> int | None:
        """Stop the process (also while a call waits on it: that call then fails)."""
        self._kill()
        with self._lock:
            return self._close()

    def _kill(self) -> None:
        """The whole process group, also once its leader has ended (not yet reaped, its
        id is still the group's): processes the app forked would else live on with its
        rows (review, 2026-12-04). Never after the leader is reaped: its id may be
        another group's by then."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def _close(self) -> int | None:
        """Under ``_lock``: no call is reading the pipes that are closed here."""
        self._kill()
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        if not self._closed:
            self._closed = True
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    f.close()
            self._home.cleanup()
        return code


def _log_lines(stream: IO[bytes] | None) -> None:
    """The app's output and tracebacks, into the node's log: bounded per line and run."""
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError), stream:
        n = 0
        while piece := stream.readline(MAX_LOG_LINE):  # a line longer is cut in pieces
            n += 1
            if n <= MAX_LOG_LINES:
                log.info("app: %s", piece.decode("utf-8", "replace").rstrip())


# Libraries' thread pools, one thread each in the app's process (see AppHost).
_THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)

# --- the child ----------------------------------------------------------------------------


def _limit(memory_mb: int, cpu_seconds: int) -> None:
    import resource

    mem = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + CPU_GRACE_SECONDS))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write then fails, the process lives


def _init(module: object, msg: Message, n_features: int) -> Message:
    """The app's ``init(n_features, n_outputs, seed)`` as a reply's arrays (float64)."""
    from flwr.app import Array, ArrayRecord, RecordDict

    config = msg.content.config_records["config"]
    n_classes, seed = config.get("n_classes", 0), config.get("seed", 0)
    n_outputs = n_classes if isinstance(n_classes, int) and n_classes > 0 else 1
    init = getattr(module, "init", None)
    if not callable(init):
        raise TypeError("client_app.py defines no init")
    arrays = [np.asarray(a, dtype=np.float64) for a in init(n_features, n_outputs, seed)]
    named = ArrayRecord({f"w{i}": Array(np.ascontiguousarray(a)) for i, a in enumerate(arrays)})
    return Message(RecordDict({"arrays": named}), reply_to=msg)


def child(argv: list[str]) -> int:
    app_dir, memory_mb, cpu_seconds = Path(argv[0]), int(argv[1]), int(argv[2])
    frames_in = sys.stdin.buffer.fileno()
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the app's prints go to the log
    _limit(memory_mb, cpu_seconds)
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:  # a thread that exists now would not be bound by what follows
        print(
            f"fedgate app sandbox: {threads} threads before the sandbox, stopping", file=sys.stderr
        )
        return EXIT_NOT_ISOLATED
    from gateway.training import landlock, seccomp

    readable = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), app_dir}
    readable |= {_ROOT / "gateway", _ROOT / "federation", *map(Path, SYSTEM_READABLE)}
    print(f"fedgate app sandbox: {landlock.restrict(sorted(readable))}", file=sys.stderr)
    filtered = seccomp.restrict()
    print(f"fedgate app sandbox: {filtered}", file=sys.stderr)
    if not filtered.startswith("seccomp:") and seccomp.supported():
        return EXIT_NOT_ISOLATED  # the filter exists for this machine but did not apply

    from flwr.app import Array, ArrayRecord, Context, RecordDict

    from federation.training.app_bundle import ROWS, load_module
    from federation.training.client_app import INIT_MESSAGE
    from gateway.training.grid import from_bytes, to_bytes

    try:
        with np.load(io.BytesIO(_frame(frames_in))) as z:
            X, y = z["X"], z["y"]
    except EOFError:
        return 0
    module = load_module(app_dir, "fedgate_app")
    app = getattr(module, "app", None)
    context: Context | None = None
    while True:
        try:  # a run whose home went away stops here too, not only when the owner says
            data = _frame(frames_in, time.monotonic() + IDLE_SECONDS)
        except (EOFError, TimeoutError):
            return 0
        try:
            msg = from_bytes(data)
            if context is None:
                rows = ArrayRecord({"X": Array(X), "y": Array(y)})
                context = Context(
                    run_id=msg.metadata.run_id,
                    node_id=msg.metadata.dst_node_id,
                    node_config={},
                    state=RecordDict({ROWS: rows}),
                    run_config={},
                )
            if msg.metadata.message_type == INIT_MESSAGE:  # the run's initial model
                reply = _init(module, msg, X.shape[1])
            elif app is None:
                raise TypeError("client_app.py defines no app")
            else:
                reply = app(msg, context)
            _write(out, OK + to_bytes(reply))
        except MemoryError:
            _write(out, OUT_OF_MEMORY)
        except Exception as exc:  # the app's: its type to the owner, the trace to the log
            traceback.print_exc()
            _write(out, FAILED + type(exc).__name__.encode("ascii", "replace")[:64])


if __name__ == "__main__":
    sys.exit(child(sys.argv[1:]))
