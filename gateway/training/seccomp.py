"""A seccomp filter: a process may make only IP and netlink sockets, for itself and its children.

An approved app's process has no IP network (``training.netns``) and Landlock limits
its files, but a pathname unix socket is reached by ``connect``, which Landlock does
not check: ``/dev/log``, a resolver's or a container engine's socket would carry what
the app read; nor does a network namespace hold ``AF_VSOCK`` (the hypervisor and its
other guests). With this filter ``socket`` of any family but ``AF_INET``, ``AF_INET6``
and ``AF_NETLINK`` (so ``AF_UNIX``, ``AF_VSOCK``, ``AF_PACKET``, ...), the ``chmod``,
``chown``, ``utime`` and ``setxattr``/``removexattr`` families (a file's metadata, which
Landlock does not check), ``setsid`` and ``setpgid`` (what the app forks stays in the
group its host kills), a ``socketpair`` of any type
but ``SOCK_STREAM`` (a datagram pair's ``sendto`` names a path: review, 2026-12-04) and
io_uring fail with ``EACCES``, a syscall of another ABI kills the process (pipes, a
stream ``socketpair`` and a fork ``multiprocessing`` pool still work; the forkserver
start method does not). It binds the calling thread and the threads and processes it
starts later, not threads that exist already: install it while the process has one. A classic
BPF program through ``ctypes`` (``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)``) for
x86-64 and arm64; elsewhere ``restrict`` says it did nothing. It needs ``no_new_privs``,
which it sets.
"""

from __future__ import annotations

import ctypes
import errno
import platform

_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_RET_ALLOW, _RET_ERRNO, _RET_KILL = 0x7FFF0000, 0x00050000, 0x80000000
# BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_JMP|BPF_JGE|BPF_K, BPF_RET
_LD_ABS, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06
_X32 = 0x40000000  # x86-64's x32 syscall numbers start here
_IO_URING = (425, 426, 427)  # io_uring_setup, _enter, _register (x86-64 and arm64 alike)
_SOCK_STREAM, _SOCK_TYPE_MASK = 1, 0xF
# AF_INET, AF_INET6, AF_NETLINK: the only families socket() may make (the network
# namespace holds the first two; netlink speaks to this process's own kernel objects)
_FAMILIES = (2, 10, 16)
_AND = 0x54  # BPF_ALU|BPF_AND|BPF_K
# machine -> (AUDIT_ARCH_*, the socket and socketpair syscalls' numbers)
_ARCHES = {"x86_64": (0xC000003E, 41, 53), "aarch64": (0xC00000B7, 198, 199)}
_IOCTL = {"x86_64": 16, "aarch64": 29}
# ioctl commands that change a file's flags or extended attributes, which Landlock does not
# check outside device files (review, 2026-12-05: an app set a readable file's flags, a
# trace a later init process could read): FS_IOC_SETFLAGS, FS_IOC32_SETFLAGS,
# FS_IOC_FSSETXATTR.
_IOCTL_REFUSED = (0x40086602, 0x40046602, 0x401C5820)
# Syscalls that change a file's metadata by path or fd, which Landlock does not check
# (review, 2026-12-05: an app set node.key's mode, a readable file's times and an xattr):
# refused. x86-64: chmod, fchmod, chown, fchown, lchown, utime, utimes, setxattr,
# lsetxattr, fsetxattr, removexattr, lremovexattr, fremovexattr, fchownat, futimesat,
# fchmodat, utimensat; both: fchmodat2, setxattrat, removexattrat (Linux 6.6, 6.13).
_METADATA = {
    "x86_64": (90, 91, 92, 93, 94, 132, 235, 188, 189, 190, 197, 198, 199, 260, 261, 268, 280),
    # setxattr, lsetxattr, fsetxattr, removexattr, lremovexattr, fremovexattr, fchmod,
    # fchmodat, fchownat, fchown, utimensat (arm64 has no chmod, chown, utime, ...)
    "aarch64": (5, 6, 7, 14, 15, 16, 52, 53, 54, 55, 88),
}
_METADATA_BOTH = (452, 463, 466)
# setpgid and setsid: a process the app forks stays in the app's process group, which the
# host kills whole at the end (review, 2026-12-05: a forked child that called setsid()
# left the group and lived on with the rows, past the app's end).
_GROUP = {"x86_64": (109, 112), "aarch64": (154, 157)}


class _Insn(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Insn))]


_Step = tuple[int, "int | str", "int | str", int]


def _assemble(steps: list[tuple[str | None, _Step]]) -> list[tuple[int, int, int, int]]:
    """Labelled steps to BPF: a jump to a label becomes its relative offset (the next
    instruction is 0); a jump given as a number stays as it is."""
    at = {label: i for i, (label, _) in enumerate(steps) if label}
    out = []
    for i, (_, (code, jt, jf, k)) in enumerate(steps):
        jt_, jf_ = (at[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf))
        if not (0 <= jt_ < 256 and 0 <= jf_ < 256):  # BPF's jt/jf are 8 bits
            raise ValueError(f"seccomp: step {i} jumps too far ({jt}, {jf})")
        out.append((code, jt_, jf_, k))
    return out


def _program(
    arch: int,
    socket_nr: int,
    socketpair_nr: int,
    refused: tuple[int, ...] = (),
    ioctl_nr: int | None = None,
) -> list[tuple[int, int, int, int]]:
    """seccomp_data: nr at 0, arch at 4, args[0] at 16 and args[1] at 24 (low halves,
    little-endian). Another ABI (i386's ``int 0x80`` on x86-64) kills the process; x32
    numbers and io_uring (which makes sockets without ``socket``) are refused;
    ``socket`` of any family but AF_INET, AF_INET6 and AF_NETLINK is refused (AF_UNIX
    reaches pathname sockets; AF_VSOCK reaches the hypervisor and its other guests, and
    no network namespace holds it: review, 2026-12-05), and ``socketpair`` of a type but
    SOCK_STREAM; the syscalls in ``refused`` (``_METADATA``) are refused, and ``ioctl``
    (``ioctl_nr``) with a command of ``_IOCTL_REFUSED``."""
    ioctl: list[tuple[str | None, _Step]] = []  # the jump to the command's check
    commands: list[tuple[str | None, _Step]] = []  # the check
    if ioctl_nr is not None:
        ioctl = [(None, (_JEQ, "ioctl", 0, ioctl_nr))]
        commands = [
            ("ioctl", (_LD_ABS, 0, 0, 24)),  # ioctl's command (an unsigned int)
            *((None, (_JEQ, "refuse", 0, cmd)) for cmd in _IOCTL_REFUSED[:-1]),
            (None, (_JEQ, "refuse", "allow", _IOCTL_REFUSED[-1])),
        ]
    steps: list[tuple[str | None, _Step]] = [
        (None, (_LD_ABS, 0, 0, 4)),
        (None, (_JEQ, 1, 0, arch)),
        (None, (_RET, 0, 0, _RET_KILL)),
        (None, (_LD_ABS, 0, 0, 0)),
        (None, (_JGE, "refuse", 0, _X32)),
        *((None, (_JEQ, "refuse", 0, nr)) for nr in (*_IO_URING, *refused)),
        *ioctl,
        (None, (_JEQ, "socket", 0, socket_nr)),
        (None, (_JEQ, "socketpair", "allow", socketpair_nr)),
        ("socket", (_LD_ABS, 0, 0, 16)),  # socket's domain
        *((None, (_JEQ, "allow", 0, family)) for family in _FAMILIES[:-1]),
        (None, (_JEQ, "allow", "refuse", _FAMILIES[-1])),
        # socketpair's type, less SOCK_CLOEXEC/SOCK_NONBLOCK
        ("socketpair", (_LD_ABS, 0, 0, 24)),
        (None, (_AND, 0, 0, _SOCK_TYPE_MASK)),
        (None, (_JEQ, "allow", "refuse", _SOCK_STREAM)),
        *commands,
        ("refuse", (_RET, 0, 0, _RET_ERRNO | errno.EACCES)),
        ("allow", (_RET, 0, 0, _RET_ALLOW)),
    ]
    return _assemble(steps)


def supported() -> bool:
    """Whether this machine has a filter here (x86-64, arm64)."""
    return platform.machine() in _ARCHES


def restrict() -> str:
    """Refuse sockets but IP and netlink ones from now on; what was applied, or why not."""
    arch = _ARCHES.get(platform.machine())
    if arch is None:
        return f"sockets not restricted: no filter for {platform.machine()}"
    machine = platform.machine()
    refused = _METADATA[machine] + _METADATA_BOTH + _GROUP[machine]
    insns = _program(*arch, refused, _IOCTL[machine])
    array = (_Insn * len(insns))(*(_Insn(*i) for i in insns))
    prog = _Prog(len(insns), ctypes.cast(array, ctypes.POINTER(_Insn)))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return "sockets not restricted: prctl(NO_NEW_PRIVS) failed"
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        return f"sockets not restricted: seccomp failed (errno {ctypes.get_errno()})"
    return (
        "seccomp: no sockets but IP and netlink, no chmod, chown, utime, xattr or file flag "
        "changes, no leaving the process group"
    )
