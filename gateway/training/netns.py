"""A network namespace of its own: a process gives up every network, UDP included.

Landlock (``training.landlock``) covers TCP only; an approved app's process could still
send UDP datagrams (to the node's own DNS, to anything it can route to). In a new network
namespace a process has only a loopback device that is down: every send and connect
fails (``ENETUNREACH``), for it and its children, for good. It still reads and writes its
pipes. ``unshare(CLONE_NEWNET)`` needs CAP_SYS_ADMIN (a node run as root); otherwise a
user namespace comes with it (``CLONE_NEWUSER``, where the kernel allows unprivileged
ones), which needs a process of one thread: the app's process starts with BLAS threads
off for that. Through ``ctypes``: Python 3.11 has no ``os.unshare``.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


def _unshare(flags: int) -> int:
    """0, or the errno of ``unshare(flags)``."""
    libc = ctypes.CDLL(None, use_errno=True)
    return 0 if libc.unshare(ctypes.c_int(flags)) == 0 else ctypes.get_errno()


def isolate() -> str:
    """Move this process into a network namespace of its own; what was applied, or why
    nothing was (the caller logs it)."""
    if _unshare(CLONE_NEWNET) == 0:
        return "a network namespace of its own: no network at all"
    uid, gid = os.getuid(), os.getgid()
    err = _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    if err:
        return f"network not isolated: unshare failed ({os.strerror(err)})"
    try:  # keep its own ids inside (files are read as the node's user either way)
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError:
        pass  # unmapped ids show as nobody; the namespace holds all the same
    return "a user and network namespace of its own: no network at all"
