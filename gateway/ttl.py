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
        self._data: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._data[key]
            return None
        return entry[1]

    def __contains__(self, key: K) -> bool:
        return self.get(key) is not None

    def __setitem__(self, key: K, value: V) -> None:
        data = self._data
        data.pop(key, None)  # re-inserted at the end: the newest
        data[key] = (self.clock() + self.ttl, value)
        while len(data) > self.max_entries:
            del data[next(iter(data))]

    def pop(self, key: K) -> V | None:
        entry = self._data.pop(key, None)
        return None if entry is None else entry[1]

    def clear(self) -> None:
        self._data.clear()

    def purge(self) -> int:
        """Drop every expired entry; returns how many. Every entry has the same TTL and a set
        moves its key to the end, so the dict is in deadline order: expired entries are at the
        front, and this costs what it drops, not the size of the map."""
        now = self.clock()
        data = self._data
        dropped = 0
        while data:
            oldest = next(iter(data))
            if data[oldest][0] > now:
                break
            del data[oldest]
            dropped += 1
        return dropped

    def __len__(self) -> int:
        return len(self._data)
