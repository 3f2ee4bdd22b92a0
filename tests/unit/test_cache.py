"""The byte-bounded LRU behind the engine's results and the home's answers."""

from __future__ import annotations

from gateway.cache import BoundedCache


def test_least_recently_used_goes_first_when_over_the_bytes() -> None:
    cache = BoundedCache(max_bytes=100, max_item_bytes=60)
    cache.put("a", 1, 40)
    cache.put("b", 2, 40)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3, 40)  # 120 > 100: the least recent ("b") goes
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (1, 3)
    assert cache.nbytes == 80 and len(cache) == 2


def test_an_item_too_big_is_not_kept_and_a_new_value_replaces_the_old() -> None:
    cache = BoundedCache(max_bytes=100, max_item_bytes=60)
    cache.put("big", "x", 61)
    assert cache.get("big") is None and cache.nbytes == 0
    cache.put("small", "v", 10)
    cache.put("small", "w", 61)  # too big now: the older value does not stay either
    assert cache.get("small") is None and cache.nbytes == 0
    cache.put("k", "old", 50)
    cache.put("k", "new", 30)
    assert cache.get("k") == "new" and cache.nbytes == 30
    cache.clear()
    assert cache.get("k") is None and cache.nbytes == 0 and len(cache) == 0


def test_the_default_item_limit_is_a_sixteenth() -> None:
    cache = BoundedCache(max_bytes=1600)
    cache.put("fits", 1, 100)
    cache.put("too big", 2, 101)
    assert cache.get("fits") == 1 and cache.get("too big") is None


def test_growing_an_item_counts_against_the_bound() -> None:
    cache = BoundedCache(max_bytes=100, max_item_bytes=60)
    cache.put("a", 1, 40)
    cache.put("b", 2, 40)
    cache.grow("b", 5)  # what was added beside "b" counts too
    assert cache.nbytes == 85
    cache.grow("missing", 50)  # nothing to grow
    assert cache.nbytes == 85
    cache.grow("b", 20)  # 105 > 100: the least recently used ("a") goes
    assert cache.get("a") is None and cache.get("b") == 2 and cache.nbytes == 65
