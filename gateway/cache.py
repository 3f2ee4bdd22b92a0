"""A thread-safe least-recently-used cache bounded by the bytes of what it holds.

Used for results that are pure functions of their key (the engine's exact results, the
home's merged answers): a hit returns what a miss would have computed, so keeping one
changes the cost of a question, never its answer.

A value's own bytes are not all an entry costs: its key (a query's text), the Python and
Arrow objects around it. Counted with ``entry_cost`` and capped with ``max_entries``,
20,000 one-row answers to distinct questions (~3.3 KiB of memory each, besides the key)
stay within the bound instead of counting 8 bytes each.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

# What one kept table costs besides its Arrow buffers and its key, rounded up: measured
# at ~3.3 KiB of resident memory per entry (the pa.Table and its schema, the slot, the
# dict entry), 20,000 one-row results of distinct queries in the engine's cache.
ENTRY_OVERHEAD_BYTES = 4 * 1024


def key_bytes(key: Hashable) -> int:
    """The characters and bytes a key holds (its strings, bytes and nested tuples)."""
    if isinstance(key, str | bytes):
        return len(key)
    if isinstance(key, tuple):
        return sum(key_bytes(part) for part in key)
    return 0


def entry_cost(key: Hashable) -> int:
    """What an entry of a table-valued cache costs besides its value: key and overhead."""
    return ENTRY_OVERHEAD_BYTES + key_bytes(key)


class BoundedCache:
    def __init__(
        self,
        max_bytes: int,
        max_item_bytes: int | None = None,
        *,
        max_entries: int | None = None,
        per_entry: Callable[[Hashable], int] | None = None,
    ) -> None:
        """``per_entry(key)``: bytes an entry costs besides its value's (``entry_cost``),
        counted against ``max_bytes`` and ``max_item_bytes``; ``max_entries``: at most
        this many kept, whatever their bytes."""
        self.max_bytes = max_bytes
        self.max_item_bytes = max_bytes // 16 if max_item_bytes is None else max_item_bytes
        self.max_entries = max_entries
        self._per_entry = per_entry
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
        if self._per_entry is not None:
            nbytes += self._per_entry(key)
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
        limit = len(self._items) if self.max_entries is None else self.max_entries
        while self._bytes > self.max_bytes or len(self._items) > limit:
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
