"""The shared resources of one process, made and closed by the lifespan: the store, the verifier,
the upstream session and the background tasks that follow the key feed and flush last-used times.

The composition root (``gatewaycli.server``) starts one ``Resources`` and hands it to both the proxy
app and the admin app, so a process has one store connection pair and one cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from core.config import Config
from core.store import StoreUnavailable, make_store
from core.tokens import SecretFormat
from gateway.housekeeping import Housekeeping
from gateway.proxy import Upstream
from gateway.verifier import Verifier

log = logging.getLogger("gateway")


class Resources:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.db = make_store(config.store)
        self.secret_format = SecretFormat(config.key_prefix)
        self.verifier = Verifier(self.db, config.cache, self.secret_format, clock)
        self.housekeeping = Housekeeping(self.verifier)
        self.upstream = Upstream()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False
        self.draining = False  # set at SIGTERM: readiness says so at once

    async def start(self) -> None:
        if self.started:
            return
        await self.db.open(create=False)  # `gateway init` creates the store, never serving
        try:
            await self.verifier.poll_events()
        except StoreUnavailable as exc:  # the follower keeps trying
            log.warning("%s", exc)
        await self.upstream.start()
        self._tasks = [
            asyncio.create_task(self.verifier.run_follower(), name="key-events-follower"),
            asyncio.create_task(self.housekeeping.run(), name="housekeeping"),
        ]
        self.started = True

    async def readiness(self) -> str | None:
        """Why this process should not get traffic now, or None when it is ready: not draining,
        the store answers (within a second), and the key feed has been read recently (within
        two intervals and a second), so revocations reach it."""
        if self.draining:
            return "draining"
        try:
            await asyncio.wait_for(self.db.fetchone("SELECT 1"), 1.0)
        except (StoreUnavailable, TimeoutError):
            return "store_unavailable"
        interval = self.config.cache.invalidation_interval_seconds
        if not self.verifier.following(within=2 * interval + 1.0):
            return "key_feed_behind"
        return None

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(StoreUnavailable):
            await self.verifier.flush_last_used()
        await self.upstream.close()
        await self.db.close()
