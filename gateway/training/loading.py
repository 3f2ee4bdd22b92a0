"""Flower is imported by one thread at a time.

A node's start does not wait for Flower (~10 MB in a node, ~0.3 s of CPU): its training
owner is made by a thread the node starts once it serves and holds a train grant (or by a
run's first message, if that comes first). A home's run process imports its worker
(``gateway/training/job.py``), and tests and benchmarks run the worker beside an owner in
one process. Two threads importing Flower's modules in different orders deadlock in
Python's per-module import locks (seen in review; ``tests/unit/test_training_loading.py``),
so every such import goes through ``load``.
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
