"""A thread-safe least-recently-used cache bounded by the bytes of what it holds.

Used for results that are pure functions of their key (the engine's exact results, the
home's merged answers): a hit returns what a miss would have computed, so keeping one
changes the cost of a question, never its answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class BoundedCache:
    def __init__(self, max_bytes: int, max_item_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_item_bytes = max_bytes // 16 if max_item_bytes is None else max_item_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """The value kept for ``key``, or None."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Keep ``value`` (of about ``nbytes``) unless it is too big to be worth it."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if nbytes > self.max_item_bytes:
                return  # and no older value for the key stays either
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            self._evict()

    def grow(self, key: Hashable, nbytes: int) -> None:
        """Count ``nbytes`` more against ``key`` (something was added to its value)."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return
            self._items[key] = (hit[0], hit[1] + nbytes)
            self._bytes += nbytes
            self._evict()

    def _evict(self) -> None:
        while self._bytes > self.max_bytes:
            _, (_, dropped) = self._items.popitem(last=False)
            self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
