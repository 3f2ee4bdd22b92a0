"""A user, network and IPC namespace of its own: a process gives up every IP network.

Landlock (``training.landlock``) covers TCP only; an approved app's process could still
send UDP datagrams (to the node's own DNS, to anything it can route to). In a new network
namespace a process has only a loopback device that is down: every send and connect
fails (``ENETUNREACH``), for it and its children, for good. It still reads and writes its
pipes. A user namespace comes with it, also for a node run as root: a process that kept
CAP_SYS_ADMIN of the first user namespace could ``setns`` back into the node's network.
``unshare(CLONE_NEWUSER)`` needs a process of one thread, so ``isolate`` runs first in
the app's process (``training.app_child``), before numpy or Flower are imported, and the
process stops if it fails (``EXIT_NOT_ISOLATED``). Pathname unix sockets (``/dev/log``,
a resolver's socket) are file-system objects, not network: this does not close them.
An IPC namespace of its own too: SysV shared memory, semaphores and message queues are
else the host's and outlive a process, and an app process holding rows left them in a
segment a later app process (an ``init`` given no rows) read (review, 2026-12-05); in its
own namespace a process sees no other's objects, and its own go with it.
Through ``ctypes``: Python 3.11 has no ``os.unshare``.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
_FLAGS = CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC


def _unshare(flags: int) -> int:
    """0, or the errno of ``unshare(flags)``."""
    libc = ctypes.CDLL(None, use_errno=True)
    return 0 if libc.unshare(ctypes.c_int(flags)) == 0 else ctypes.get_errno()


def isolate() -> str:
    """Move this process into a user, network and IPC namespace of its own, keeping its ids
    inside; what was applied. Raises OSError where the kernel refuses (the caller stops)."""
    uid, gid = os.getuid(), os.getgid()
    err = _unshare(_FLAGS)
    if err:
        raise OSError(err, f"unshare(NEWUSER | NEWNET | NEWIPC) failed: {os.strerror(err)}")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")
    return "a user, network and IPC namespace of its own: no IP network, no host IPC"
