"""The node's log file: rotated at a size cap, each record formatted once; its stderr
kept under the same cap.

``RotatingFileHandler`` formats every record twice (once to decide whether to rotate,
once to write it) and asks the file system whether the file exists on every line: on a
busy node that is a measurable share of a query's CPU. This handler formats once and
keeps the same guarantee: no file grows past ``maxBytes``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import stat
from logging.handlers import RotatingFileHandler


class NodeLogHandler(RotatingFileHandler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + self.terminator).encode("utf-8", "replace")
            if self.stream is None:
                self.stream = self._open()
            if self.maxBytes > 0 and self.stream.tell() + len(line) > self.maxBytes:
                self.doRollover()
            self.stream.write(line.decode("utf-8"))
            self.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging must never take the node down
            self.handleError(record)


def cap_stderr(max_bytes: int, fd: int = 2) -> None:
    """Keep the node's stderr under ``max_bytes`` when it is a file opened for appending
    (``stdout.log`` under the demo, the tests and the benchmarks).

    gRPC writes a line there for every refused TLS handshake, and anyone who can reach
    the port can cause those. Over the cap the file is copied to ``<name>.1`` (replacing
    the last one) and emptied in place: the process keeps its descriptor, so it cannot be
    renamed (lines written between the copy and the emptying are lost). A file not opened
    for appending would keep its write offset and grow a hole: left alone, as are pipes,
    terminals and a service manager's journal, which keep their own limits."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size <= max_bytes:
            return
        if not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
            return
        path = os.readlink(f"/proc/self/fd/{fd}")
        shutil.copyfile(path, path + ".1")
        os.ftruncate(fd, 0)
    except OSError:  # no /proc, a file removed under us: try again next round
        return
