"""Housekeeping, off the request path: one background task per process, owned by ``Resources``.

Every round (5 s): write the batched last-used times and usage counts, and drop what has expired
from the verifier's bookkeeping, the local rate-limit logs and the held assertions (and read the
assertion key file again if a rotation changed it). Every minute: prune the store, so it
does not grow with every change: ``key_events`` rows older than ``EVENT_RETENTION_SECONDS`` (an
hour: far longer than any follower waits between two reads of the feed, and a follower cut off for
longer starts afresh instead of trusting a feed with holes), and rolled secrets whose grace has
ended (the verifier already refuses them, even from cache), settled webhook deliveries past
``[webhooks] keep_days``; and tell of keys about to expire or rate limited (``gateway.notices``).
Several processes pruning the same store is harmless: the statements are idempotent, and each
notice is written once whichever node sees it first.
"""

from __future__ import annotations

import asyncio
import logging

from core.store import StoreUnavailable
from core.store import keys as store_keys
from core.store import usage as store_usage
from core.store import webhooks as store_webhooks
from gateway.assertions import Assertions
from gateway.notices import KeyNotices
from gateway.ratelimit import LocalLimiter
from gateway.redis_limits import RedisLimiter
from gateway.usage import Usage
from gateway.verifier import EVENT_RETENTION_SECONDS, Verifier

log = logging.getLogger("gateway.housekeeping")

ROUND_SECONDS = 5.0
PRUNE_EVERY_SECONDS = 60.0


class Housekeeping:
    def __init__(
        self,
        verifier: Verifier,
        limiter: LocalLimiter | RedisLimiter | None = None,
        usage: Usage | None = None,
        assertions: Assertions | None = None,
        keep_deliveries_days: int = 30,
    ) -> None:
        self.verifier = verifier
        self.notices = KeyNotices()
        self.keep_deliveries_seconds = keep_deliveries_days * 86400.0
        self.assertions = assertions
        self.limiter = limiter
        self.usage = usage
        self._pruned_at: float | None = None
        self._failing = False

    async def round(self) -> None:
        """One round; store trouble is logged once per outage and tried again next round."""
        verifier = self.verifier
        try:
            await verifier.flush_last_used()
            now = verifier.clock()
            if self.usage is not None:
                await self.usage.flush(verifier.db)
                if self.usage.limited:
                    limited, self.usage.limited = self.usage.limited, set()
                    await self.notices.rate_limited(verifier.db, limited, now)
            if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_SECONDS:
                async with verifier.db.transaction() as w:
                    await store_keys.prune(w, now - EVENT_RETENTION_SECONDS, now)
                    await store_usage.prune(w, now)
                    await store_webhooks.prune(w, now, self.keep_deliveries_seconds)
                await self.notices.expiring(verifier.db, now)
                await self.notices.retire_unused(verifier.db, now)
                self._pruned_at = now
            if self._failing:
                log.warning("store is writable again; last-used times recorded")
            self._failing = False
        except StoreUnavailable as exc:
            if not self._failing:
                log.warning("cannot record last use of keys or prune the store yet: %s", exc)
            self._failing = True
        verifier.trim()
        if isinstance(self.limiter, LocalLimiter):
            self.limiter.trim(verifier.clock())
        if self.assertions is not None:
            self.assertions.trim()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(ROUND_SECONDS)
            await self.round()
