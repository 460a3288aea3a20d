"""A bounded map whose entries expire: the verifier's positive and negative caches.

Replaces cachetools' ``TTLCache`` on the hot path: its lookup runs a Python-level timer and a
linked-list walk (~1.5 µs a hit, measured with bench/micro_verify.py); here a hit is one dict
lookup and one clock read. Not thread-safe: used inside one event loop, with no ``await``
between a check and a set (docs/architecture.md).

Bounded by insertion order: past ``max_entries`` the oldest entries go first, a 64th of the
bound at a time (for a cache of recently verified keys, oldest-inserted is a fair stand-in for
least-recently-used, and the TTL re-inserts every live key at least once per ``ttl_seconds``
anyway). Expired entries are dropped when met and by :meth:`purge`, which the verifier's
housekeeping calls.

Why in batches, and one iterator per pass: a dict keeps the slots of deleted entries until it
is resized, and ``next(iter(d))`` walks them from the start each time. Dropping entries from the
front one ``next(iter(d))`` at a time was quadratic: purging 80,000 expired entries held the
event loop for 1.6 s, and every insert into a full map of 100,000 cost 25 us (bench rows 6 and 7,
which fill the caches, were 0.51 of row 5 in the run before this change and 0.80 and 0.88 after;
row 8's p99 through HTTP went from 6.4 to 4.9 ms).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
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
        if len(deadlines) > self.max_entries:
            self._drop(itertools.islice(deadlines, max(1, self.max_entries // 64)))

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
        front, and one pass stops at the first live one."""
        now = self.clock()
        expired = front(self._deadlines, lambda _, deadline: deadline <= now)
        self._drop(expired)
        if expired and len(expired) >= len(self._deadlines):
            # Most of the map was dropped: copies without the deleted slots, so passes from the
            # front do not walk them until the next resize.
            self._deadlines, self._values = dict(self._deadlines), dict(self._values)
        return len(expired)

    def _drop(self, keys: Iterable[K]) -> None:
        deadlines, values = self._deadlines, self._values
        for key in list(keys):  # listed first: the dicts change under the loop
            del deadlines[key], values[key]

    def __len__(self) -> int:
        return len(self._deadlines)


def front(mapping: dict[K, V], old: Callable[[K, V], bool]) -> list[K]:
    """The keys at the front of ``mapping`` (insertion order) for which ``old`` holds, up to the
    first for which it does not: one pass, for maps kept in time order. Deleting them one
    ``next(iter(mapping))`` at a time walks the deleted slots again on each (module docstring)."""
    keys = []
    for key, value in mapping.items():
        if not old(key, value):
            break
        keys.append(key)
    return keys
