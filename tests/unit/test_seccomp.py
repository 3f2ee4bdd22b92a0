"""The app process's seccomp filter, in child processes (a filter cannot be lifted)."""

from __future__ import annotations

import platform
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.training import seccomp

pytestmark = pytest.mark.skipif(not seccomp.supported(), reason="no filter for this machine")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    head = (
        "from gateway.training import seccomp\nassert seccomp.restrict().startswith('seccomp:')\n"
    )
    return subprocess.run(  # noqa: S603 - our own code
        [sys.executable, "-c", head + code], capture_output=True, text=True, timeout=60
    )


def test_unix_sockets_and_io_uring_are_refused_the_rest_works() -> None:
    proc = _run(
        "import ctypes, errno, socket\n"
        "try:\n"
        "    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "    raise SystemExit('a unix socket was made')\n"
        "except PermissionError:\n"
        "    pass\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.syscall(425, 8, None) == -1 and ctypes.get_errno() == errno.EACCES\n"
        "a, b = socket.socketpair()  # a pipe's kind of socket: allowed\n"
        "for kind in (socket.SOCK_DGRAM, socket.SOCK_SEQPACKET):  # sendto names a path\n"
        "    try:\n"
        "        socket.socketpair(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)\n"
        "        raise SystemExit(f'a {kind} pair was made')\n"
        "    except PermissionError:\n"
        "        pass\n"
        "c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)\n"
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()\n"
        "import numpy, flwr.app\n"
        "print('ok')\n"
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.skipif(platform.machine() != "x86_64", reason="i386's int 0x80 is x86-64's")
def test_a_syscall_of_another_abi_kills_the_process() -> None:
    """Review finding: i386's ``int 0x80`` socket (359) passed a filter that allowed other
    ABIs, and a datagram reached a unix socket outside."""
    proc = _run(
        "import ctypes, mmap\n"
        "code = bytes([0xB8, 0x67, 0x01, 0, 0, 0xBB, 1, 0, 0, 0, 0xB9, 2, 0, 0, 0,\n"
        "              0xBA, 0, 0, 0, 0, 0xCD, 0x80, 0xC3])  # socket(AF_UNIX, DGRAM, 0)\n"
        "buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "buf.write(code)\n"
        "addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))\n"
        "print('returned', ctypes.CFUNCTYPE(ctypes.c_int)(addr)())\n"
    )
    assert proc.returncode == -signal.SIGSYS, (proc.returncode, proc.stdout, proc.stderr)
    assert "returned" not in proc.stdout


def test_only_ip_and_netlink_sockets_are_made() -> None:
    """Review finding: only AF_UNIX was refused, and AF_VSOCK (the hypervisor and its
    other guests: no network namespace holds it) was made. Now socket() makes AF_INET,
    AF_INET6 and AF_NETLINK only."""
    proc = _run(
        "import socket\n"
        "for family in (socket.AF_VSOCK, socket.AF_PACKET, 9999):\n"
        "    try:\n"
        "        socket.socket(family, socket.SOCK_STREAM if family != socket.AF_PACKET\n"
        "                      else socket.SOCK_RAW)\n"
        "        raise SystemExit(f'a socket of family {family} was made')\n"
        "    except PermissionError:\n"
        "        pass\n"
        "socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()\n"
        "socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE).close()\n"
        "print('ok')\n"
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_a_files_metadata_is_not_changed(tmp_path: Path) -> None:
    """Review finding: chmod, chown, utime and xattrs, which Landlock does not check,
    worked on a file the app could read. The filter refuses them (EACCES)."""
    target = tmp_path / "f"
    target.write_bytes(b"x")
    target.chmod(0o644)
    proc = _run(
        "import os\n"
        f"path = {str(target)!r}\n"
        "fd = os.open(path, os.O_RDONLY)\n"
        "for name, attempt in {\n"
        "    'chmod': lambda: os.chmod(path, 0o4755), 'fchmod': lambda: os.fchmod(fd, 0o755),\n"
        "    'chmodat': lambda: os.chmod(path, 0o755, dir_fd=os.open('/', os.O_RDONLY)),\n"
        "    'chown': lambda: os.chown(path, -1, -1), 'fchown': lambda: os.fchown(fd, -1, -1),\n"
        "    'utime': lambda: os.utime(path, (5, 5)), 'futime': lambda: os.utime(fd, (5, 5)),\n"
        "    'setxattr': lambda: os.setxattr(path, 'user.leak', b'rows'),\n"
        "    'removexattr': lambda: os.removexattr(path, 'user.leak'),\n"
        "}.items():\n"
        "    try:\n"
        "        attempt()\n"
        "        raise SystemExit(f'{name} worked')\n"
        "    except PermissionError:\n"
        "        pass\n"
        "print('ok')\n"
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.stdout, proc.stderr)
    assert target.stat().st_mode & 0o7777 == 0o644


def test_a_files_flags_are_not_changed_by_ioctl(tmp_path: Path) -> None:
    """Review (2026-12-05): ``ioctl(FS_IOC_SETFLAGS)`` on a file opened for reading set its
    flags (nodump ...), which Landlock does not check outside device files: a trace a row-
    holding process could leave for a later one. Refused (EACCES); other ioctls work."""
    target = tmp_path / "f"
    target.write_bytes(b"x")
    proc = _run(
        "import fcntl, os, struct, termios\n"
        f"fd = os.open({str(target)!r}, os.O_RDONLY)\n"
        "for cmd in (0x40086602, 0x40046602, 0x401C5820):\n"
        "    try:\n"
        "        fcntl.ioctl(fd, cmd, struct.pack('q', 0x40) + bytes(24))\n"
        "        raise SystemExit(f'{cmd:#x} worked')\n"
        "    except PermissionError:\n"
        "        pass\n"
        "r, w = os.pipe()\n"
        "fcntl.ioctl(r, termios.FIONREAD, struct.pack('i', 0))  # any other ioctl works\n"
        "print('ok')\n"
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.stdout, proc.stderr)


def test_no_process_leaves_the_group(tmp_path: Path) -> None:
    """Review (2026-12-05): a process the app forked called ``setsid()`` and left the
    process group its host kills at the end, living on with the rows. ``setsid`` and
    ``setpgid`` are refused (EACCES); ``fork`` still works, and its child stays."""
    proc = _run(
        "import os\n"
        "pgrp = os.getpgrp()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    code = 0\n"
        "    for name, attempt in (('setsid', os.setsid), ('setpgid', lambda: os.setpgid(0, 0))):\n"
        "        try:\n"
        "            attempt()\n"
        "            code = 1\n"
        "        except PermissionError:\n"
        "            pass\n"
        "    os._exit(code if os.getpgrp() == pgrp else 2)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print('child', os.waitstatus_to_exitcode(status))\n"
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "child 0", (proc.stdout, proc.stderr)
