"""A bounded map whose entries expire: the verifier's positive and negative caches.

Replaces cachetools' ``TTLCache`` on the hot path: its lookup runs a Python-level timer and a
linked-list walk (~1.5 µs a hit, measured with bench/micro_verify.py); here a hit is one dict
lookup and one clock read. Not thread-safe: used inside one event loop, with no ``await``
between a check and a set (docs/architecture.md).

Bounded by insertion order: past ``max_entries`` the oldest entry goes first (for a cache of
recently verified keys, oldest-inserted is a fair stand-in for least-recently-used, and the TTL
re-inserts every live key at least once per ``ttl_seconds`` anyway). Expired entries are dropped
when met and by :meth:`purge`, which the verifier's housekeeping calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLMap(Generic[K, V]):
    def __init__(
        self, max_entries: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self.clock = clock
        # Deadlines and values in two dicts, not (deadline, value) tuples: a tuple holding an
        # object the garbage collector tracks is tracked too, and every full collection walks
        # every tracked object (its pauses grew with the cache: docs/architecture.md).
        self._deadlines: dict[K, float] = {}
        self._values: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        deadline = self._deadlines.get(key)
        if deadline is None:
            return None
        if deadline <= self.clock():
            del self._deadlines[key], self._values[key]
            return None
        return self._values[key]

    def __contains__(self, key: K) -> bool:
        return self.get(key) is not None

    def __setitem__(self, key: K, value: V) -> None:
        deadlines = self._deadlines
        deadlines.pop(key, None)  # re-inserted at the end: the newest
        deadlines[key] = self.clock() + self.ttl
        self._values[key] = value
        while len(deadlines) > self.max_entries:
            oldest = next(iter(deadlines))
            del deadlines[oldest], self._values[oldest]

    def pop(self, key: K) -> V | None:
        if self._deadlines.pop(key, None) is None:
            return None
        return self._values.pop(key)

    def clear(self) -> None:
        self._deadlines.clear()
        self._values.clear()

    def purge(self) -> int:
        """Drop every expired entry; returns how many. Every entry has the same TTL and a set
        moves its key to the end, so the dict is in deadline order: expired entries are at the
        front, and this costs what it drops, not the size of the map."""
        now = self.clock()
        deadlines, values = self._deadlines, self._values
        dropped = 0
        while deadlines:
            oldest = next(iter(deadlines))
            if deadlines[oldest] > now:
                break
            del deadlines[oldest], values[oldest]
            dropped += 1
        return dropped

    def __len__(self) -> int:
        return len(self._deadlines)
