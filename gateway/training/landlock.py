"""Linux Landlock, unprivileged: a process gives up file writes, reads outside a few
folders, and TCP, for itself and its children, for good.

Used by an approved app's process (``training.app_host``) before it imports the app:
it may then read Python, its packages and the app's own files, and nothing else (not
the node's keys, state or data), write no file, neither connect nor listen on TCP, and
neither signal nor reach by abstract unix socket any process outside it (the node).
Landlock needs Linux 5.13 (files), 6.7 (TCP: ABI 4) and 6.12 (scopes: ABI 6);
``restrict`` returns what it could apply, and the caller logs it. The kernel's ABI,
through ``ctypes`` syscalls: ``landlock_create_ruleset`` 444, ``landlock_add_rule`` 445,
``landlock_restrict_self`` 446 (the same numbers on x86-64 and arm64).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from pathlib import Path

_CREATE, _ADD_RULE, _RESTRICT = 444, 445, 446
_VERSION = 1  # LANDLOCK_CREATE_RULESET_VERSION
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# access_fs bits (ABI 1..3)
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_WRITES = sum(1 << b for b in range(4, 13))  # remove, make_*, refer (ABI 2)
REFER, TRUNCATE = 1 << 13, 1 << 14  # ABI 2, ABI 3
_READS = EXECUTE | READ_FILE | READ_DIR
# access_net bits (ABI 4)
BIND_TCP, CONNECT_TCP = 1 << 0, 1 << 1


# scoped bits (ABI 6): no abstract unix sockets out of the domain, no signals out of it
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi() -> int:
    """The kernel's Landlock ABI version; 0 where there is none."""
    libc = ctypes.CDLL(None, use_errno=True)
    version = int(libc.syscall(_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(_VERSION)))
    return max(version, 0)


def restrict(readable: Iterable[Path]) -> str:
    """Allow only reading (and executing) beneath ``readable``; no writes, no TCP (ABI 4).
    Returns what was applied, or why nothing was."""
    version = abi()
    if version < 1:
        return "not restricted: this kernel has no Landlock"
    libc = ctypes.CDLL(None, use_errno=True)
    handled = _READS | WRITE_FILE | _WRITES
    handled |= (REFER if version >= 2 else 0) | (TRUNCATE if version >= 3 else 0)
    net = BIND_TCP | CONNECT_TCP if version >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if version >= 6 else 0
    attr = _RulesetAttr(handled, net, scoped)
    fields = 3 if scoped else 2 if net else 1
    size = fields * ctypes.sizeof(ctypes.c_uint64)
    fd = int(libc.syscall(_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)))
    if fd < 0:
        return f"not restricted: landlock_create_ruleset failed (errno {ctypes.get_errno()})"
    try:
        for path in readable:
            if not path.exists():
                continue
            target = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                access = _READS if path.is_dir() else EXECUTE | READ_FILE
                rule = _PathBeneath(access, target)
                if libc.syscall(_ADD_RULE, fd, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                    return f"not restricted: landlock_add_rule failed for {path}"
            finally:
                os.close(target)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return "not restricted: prctl(NO_NEW_PRIVS) failed"
        if libc.syscall(_RESTRICT, fd, 0) != 0:
            return f"not restricted: landlock_restrict_self failed (errno {ctypes.get_errno()})"
    finally:
        os.close(fd)
    what = "reads only beneath its allowed folders, no file writes"
    what += ", no TCP" if net else " (TCP not restricted)"
    what += ", no signals or abstract sockets out" if scoped else ""
    return f"Landlock ABI {version}: {what}"
