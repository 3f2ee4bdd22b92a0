"""The node's log file: rotated at a size cap, each record formatted once.

``RotatingFileHandler`` formats every record twice (once to decide whether to rotate,
once to write it) and asks the file system whether the file exists on every line: on a
busy node that is a measurable share of a query's CPU. This handler formats once and
keeps the same guarantee: no file grows past ``maxBytes``.
"""

from __future__ import annotations

import logging
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
