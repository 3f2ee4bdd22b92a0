"""A node's data folder, held by one node process at a time.

Two nodes started on one folder (the same config twice, or two configs naming one
``data_dir``) would share its state and logs, and the second would empty the first's
engine spill folder before failing on the port. The second is refused at once; the lock
is the kernel's, so it goes with the process however that ends (also ``kill -9``)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from gateway.errors import ConfigError
from gateway.state import State

LOCK_FILE = "node.lock"


def make(data_dir: Path) -> None:
    """Create ``data_dir`` if missing, readable by the node's user alone (state, audit,
    logs); a folder that exists keeps the mode its operator gave it."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def hold(data_dir: Path) -> int:
    """Create ``data_dir`` if missing and lock it for this process; returns the lock's
    descriptor (close it to let go). Raises ConfigError if another process holds it."""
    make(data_dir)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(
            f"node.data_dir {data_dir} is in use by another node process (pid {holder}): "
            "stop it, or give this node a data_dir of its own"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def claim(state: State, node_id: str) -> None:
    """The folder's state belongs to the first node that started on it: another node's
    config naming it would take over its catalog and grants and sign into its hash chain
    with another key, breaking both nodes' audit trails for good (review, 2026-12-04)."""
    with state.transaction() as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('node_id', ?)", (node_id,))
        elif row[0] != node_id:
            raise ConfigError(
                f"node.data_dir holds the state of node {row[0]!r}; this is node {node_id!r}: "
                "give this node a data_dir of its own"
            )
