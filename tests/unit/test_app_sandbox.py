"""An approved app's full sandbox (``AppHost``'s child process), probed from inside:
each probe app's ``app`` raises ``ValueError`` where the sandbox held, ``KeyError``
where it did not (the host says only the exception's type)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Message, RecordDict

from gateway.errors import Aborted, DeadlineExceeded, ResourceExhausted
from gateway.training.app_host import AppHost, AppLimits
from gateway.training.grid import from_bytes, to_bytes
from tests.unit.training_grid import server_identity


def _isolates() -> bool:
    probe = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-c", "from gateway.training import netns; print(netns.isolate())"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return "no IP network" in probe.stdout


pytestmark = pytest.mark.skipif(not _isolates(), reason="no user namespace for a process here")


@pytest.fixture(scope="module")
def message() -> bytes:
    with server_identity():
        return to_bytes(from_bytes(to_bytes(Message(RecordDict(), 1001, "train"))))


@pytest.fixture()
def hosts() -> Iterator[list[AppHost]]:
    started: list[AppHost] = []
    yield started
    for host in started:
        host.close()


def _host(
    hosts: list[AppHost],
    folder: Path,
    source: str,
    limits: AppLimits = AppLimits(),  # noqa: B008 - frozen
) -> AppHost:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "client_app.py").write_text(textwrap.dedent(source))
    rows = np.arange(6, dtype=np.float64).reshape(3, 2)
    host = AppHost(folder, rows, np.zeros(3), limits)
    hosts.append(host)
    return host


def _probe(hosts: list[AppHost], folder: Path, body: str, message: bytes, prelude: str = "") -> str:
    """What the host says of the probe: its ``app`` runs ``body`` (after ``prelude``, at
    the module's top), and raises ``ValueError`` where the sandbox held."""
    source = "import ctypes, errno, os, socket\n" + textwrap.dedent(prelude)
    source += "\n\ndef app(msg, context):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    with pytest.raises(Aborted) as err:
        _host(hosts, folder, source).call(message, 60)
    return str(err.value)


_SHM = """\
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
KEY = 0x6665_6467  # fixed: the second process looks for the first's segment by it
"""


def test_an_app_process_has_an_ipc_namespace_of_its_own(
    hosts: list[AppHost], tmp_path: Path, message: bytes
) -> None:
    """Review finding: SysV shared memory is the host's, and outlives a process: an app
    process holding rows left them in a segment, and a later ``init`` process (given no
    rows) read them. Now each app process has an IPC namespace of its own (gone with it):
    the second finds no segment, and the node's namespace gets none."""
    writes = """
        shm = libc.shmget(KEY, 4096, 0o1600)  # IPC_CREAT, owner's read and write
        if shm < 0:
            raise OSError(ctypes.get_errno(), "shmget")
        addr = libc.shmat(shm, None, 0)
        ctypes.memmove(addr, b"ROWS", 4)
        raise ValueError
    """
    reads = """
        shm = libc.shmget(KEY, 0, 0)
        if shm >= 0:
            raise KeyError(ctypes.string_at(libc.shmat(shm, None, 0), 4))
        raise ValueError
    """
    try:
        assert "(ValueError)" in _probe(hosts, tmp_path / "a", writes, message, _SHM)
        assert "(ValueError)" in _probe(hosts, tmp_path / "b", reads, message, _SHM)
        time.sleep(0.2)
        assert (
            "0x66656467"
            not in subprocess.run(
                ["ipcs", "-m"],
                capture_output=True,
                text=True,
                check=True,  # noqa: S607
            ).stdout.lower()
        )
    finally:  # where the namespace was shared: the segment goes
        subprocess.run(["ipcrm", "-M", str(0x66656467)], capture_output=True)  # noqa: S607


def test_an_app_makes_no_vsock_socket(hosts: list[AppHost], tmp_path: Path, message: bytes) -> None:
    """Review finding: AF_VSOCK (to the hypervisor and its other guests) is not network
    a namespace holds, and the filter refused only AF_UNIX. Now it is refused."""
    body = """
        try:
            socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
        except PermissionError:
            raise ValueError from None
        raise KeyError
    """
    assert "(ValueError)" in _probe(hosts, tmp_path, body, message)


def test_an_app_changes_no_files_metadata(
    hosts: list[AppHost], tmp_path: Path, message: bytes
) -> None:
    """Review finding: Landlock does not check chmod, chown, utime or xattrs, and an app
    set the mode of a file outside its folder (the node's key), its times and an xattr.
    Now the seccomp filter refuses them all, by path and by fd, and the file is as it was."""
    from gateway.training import app_host

    target = app_host._ROOT / "federation" / f".sandbox-probe-{os.getpid()}"
    target.write_bytes(b"x")
    target.chmod(0o644)
    os.utime(target, (1_000_000, 1_000_000))
    body = f"""
        path, fd = {str(target)!r}, os.open({str(target)!r}, os.O_RDONLY)
        attempts = {{
            "chmod": lambda: os.chmod(path, 0o4755),
            "fchmod": lambda: os.fchmod(fd, 0o4755),
            "chown": lambda: os.chown(path, os.getuid(), os.getgid()),
            "fchown": lambda: os.fchown(fd, os.getuid(), os.getgid()),
            "lchown": lambda: os.lchown(path, os.getuid(), os.getgid()),
            "utime": lambda: os.utime(path, (5, 5)),
            "futime": lambda: os.utime(fd, (5, 5)),
            "setxattr": lambda: os.setxattr(path, "user.leak", b"rows"),
            "fsetxattr": lambda: os.setxattr(fd, "user.leak", b"rows"),
            "removexattr": lambda: os.removexattr(path, "user.leak"),
        }}
        for name, attempt in attempts.items():
            try:
                attempt()
            except PermissionError:
                continue
            except OSError:  # unsupported here, not refused: the filter did not hold
                pass
            raise KeyError(name)
        raise ValueError
    """
    try:
        said = _probe(hosts, tmp_path, body, message)
        stat = target.stat()
        assert "(ValueError)" in said and stat.st_mode & 0o7777 == 0o644, (said, stat)
        assert stat.st_mtime == 1_000_000 and not os.listxattr(target)
    finally:
        target.unlink()


def test_what_an_app_forks_stays_in_its_process_group(
    hosts: list[AppHost], tmp_path: Path, message: bytes
) -> None:
    """Review (2026-12-05): a process the app forked could call ``setsid()``, leave the
    group the host kills whole at the end, and live on with the rows. Now the filter
    refuses ``setsid`` and ``setpgid`` there (the fork itself still works)."""
    body = """
        pid = os.fork()
        if pid == 0:
            for attempt in (os.setsid, lambda: os.setpgid(0, 0)):
                try:
                    attempt()
                    os._exit(1)
                except PermissionError:
                    pass
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == 0:
            raise ValueError
        raise KeyError
    """
    assert "(ValueError)" in _probe(hosts, tmp_path, body, message)


def test_an_app_over_its_cpu_time_is_resource_exhausted(
    hosts: list[AppHost], tmp_path: Path, message: bytes
) -> None:
    """Review finding: with RLIMIT_CPU's soft and hard limits equal the kernel sent
    SIGKILL, never SIGXCPU, and a busy app ended ``ABORTED: the app's process ended``.
    Now its soft limit comes first: ``RESOURCE_EXHAUSTED``."""
    source = "def app(msg, context):\n    while True:\n        pass\n"
    host = _host(hosts, tmp_path, source, AppLimits(cpu_seconds=2))
    started = time.monotonic()
    with pytest.raises(ResourceExhausted, match="CPU time"):
        host.call(message, 60)
    assert time.monotonic() - started < 30


def test_a_message_to_an_app_that_does_not_read_keeps_the_calls_deadline(
    hosts: list[AppHost], tmp_path: Path, message: bytes
) -> None:
    """Review finding: the host wrote a message with no deadline: to an app asleep at
    import, a message over the pipe's 64 KiB blocked past the call's timeout (2 s
    returned after 20 s). Now the write keeps the call's deadline, and the app stops."""
    host = _host(hosts, tmp_path, "import time\n\ntime.sleep(30)\n")
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        host.call(message + b"\0" * (1 << 20), 2)
    assert time.monotonic() - started < 8
    assert host.proc.poll() is not None


def test_an_app_starts_and_answers_when_its_pipes_are_past_fd_1024(
    hosts: list[AppHost], tmp_path: Path, message: bytes
) -> None:
    """Review (2026-12-05): the pipes were waited on with ``select``, which refuses an fd
    from 1024 up: on a node holding many files an app failed to start, reported as "the
    app's process ended". ``poll`` has no such bound."""
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        host = _host(hosts, tmp_path, "def app(msg, context):\n    return msg\n")
        assert host.call(message, 30)  # it started, and answered
    finally:
        for fd in held:
            os.close(fd)
