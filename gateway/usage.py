"""Requests per key and hour, by outcome, and the credits they spent, counted in memory and
written in batches.

On the request path a count is a dict entry bumped on the event loop; housekeeping adds the
batch to ``key_usage`` every round (``core.store.usage``), as last-used times are written. What
could not be written (the store away) is kept and added to the next batch, so nothing is counted
twice or lost while the process lives.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from core.store import Database, StoreUnavailable
from core.store import usage as store_usage


def outcome(status: int | None) -> int | None:
    """Which count a response goes to: 0 allowed, 1 denied (401/403), 2 rate limited (429);
    None for no response (the client left first)."""
    if status is None:
        return None
    if status == 429:
        return 2
    if status in (401, 403):
        return 1
    return 0


class Usage:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.pending: dict[tuple[str, int], list[int]] = {}
        # (access key, hour) of the keys rate limited, from the batches written: for the
        # ``key.rate_limited`` webhook event (gateway.notices), nothing more on the request path.
        self.limited: set[tuple[str, int]] = set()

    def count(self, access_key: str, status: int | None) -> None:
        which = outcome(status)
        if which is None:
            return
        self._add(access_key, which, 1)

    def spend(self, access_key: str, credits: int) -> None:
        """Credits a key's admitted request spent (counted when admitted)."""
        self._add(access_key, 3, credits)

    def _add(self, access_key: str, which: int, amount: int) -> None:
        key = (access_key, int(self.clock() // 3600))
        counts = self.pending.get(key)
        if counts is None:
            counts = self.pending[key] = [0, 0, 0, 0]
        counts[which] += amount

    async def flush(self, db: Database) -> int:
        """Add the pending counts to the store in one batch; kept for the next try if it fails."""
        if not self.pending:
            return 0
        batch, self.pending = self.pending, {}
        try:
            async with db.transaction() as w:
                await store_usage.add(
                    w, ((ak, hour, c[0], c[1], c[2], c[3]) for (ak, hour), c in batch.items())
                )
        except StoreUnavailable:
            for key, counts in batch.items():
                kept = self.pending.setdefault(key, [0, 0, 0, 0])
                for i in range(4):
                    kept[i] += counts[i]
            raise
        self.limited.update(key for key, counts in batch.items() if counts[2])
        return len(batch)
