"""Flower is imported by one thread at a time, and only when training needs it.

A node does not import Flower at start (~56 MB and ~0.3 s of CPU that most nodes, which
never train, would pay): its training owner is made on a run's first message, and a home
imports its worker on a run's first start. Those two can happen at once in one process,
and two threads importing Flower's modules in different orders can deadlock in Python's
per-module import locks (seen in review), so both import through ``load``.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

_LOCK = threading.Lock()  # the process's import state is global: so is this lock


def load(module: str) -> ModuleType:
    """``module`` imported (once), with no other training import under way."""
    with _LOCK:
        return importlib.import_module(module)
