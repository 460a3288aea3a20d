"""Webhook delivery, off the request path: one background task per process, owned by
``Resources`` (started only where ``[webhooks] deliver`` is on).

The task claims due deliveries from the store's outbox (``core.store.webhooks.claim``: a lease,
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so every node may run it and each event is sent by one),
sends each as a signed POST (``core.webhook_signing``), and records the outcome: delivered on a
2xx, else retried with backoff for 24 hours, then failed. A receiver that never answers holds one
of ``concurrency`` slots for ``timeout_seconds`` and nothing else: the proxy shares only the event
loop with it, and awaits none of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from core.lifeconfig import WebhooksConfig
from core.store import Database, StoreUnavailable
from core.store import webhooks as store_webhooks
from core.webhook_signing import headers

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("gateway.webhooks")


class WebhookDelivery:
    def __init__(
        self, db: Database, config: WebhooksConfig, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.sent = self.failed = 0  # attempts answered 2xx, and the others

    @property
    def lease_seconds(self) -> float:
        """How long a claim holds: past the attempt's own timeout and the write of its outcome,
        so only a dead node's claim runs out (and then the event is sent again)."""
        return self.config.timeout_seconds + 5.0

    async def run(self) -> None:
        """Claim and send until cancelled; the sends in flight are cancelled with it."""
        # Imported here, not with the module: a process that delivers nothing (a worker with
        # `deliver = false`) starts without it.
        import aiohttp

        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
            connector=aiohttp.TCPConnector(limit=self.config.concurrency, force_close=True),
        )
        failing = False
        try:
            while True:
                try:
                    await self.round()
                    if failing:
                        log.warning("store is readable again; delivering webhooks")
                    failing = False
                except StoreUnavailable as exc:
                    if not failing:
                        log.warning("cannot deliver webhooks yet: %s", exc)
                    failing = True
                await asyncio.sleep(self.config.poll_interval_seconds)
        finally:
            for task in self._sending:
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)
            await self._session.close()
            self._session = None

    async def round(self) -> int:
        """Claim what is due, as many as there are free slots, and start sending them."""
        free = self.config.concurrency - len(self._sending)
        if free <= 0:
            return 0
        claimed = await store_webhooks.claim(self.db, self.clock(), self.lease_seconds, free)
        for delivery in claimed:
            task = asyncio.create_task(self._attempt(delivery), name="webhook-delivery")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return len(claimed)

    async def drain(self) -> None:
        """Wait for the sends in flight (tests)."""
        while self._sending:
            await asyncio.gather(*list(self._sending), return_exceptions=True)

    async def _attempt(self, delivery: store_webhooks.Claimed) -> None:
        import aiohttp

        assert self._session is not None
        sent_at = int(self.clock())
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                delivery.url,
                data=delivery.body,
                headers=headers(delivery.secret, delivery.message_id, sent_at, delivery.body),
                allow_redirects=False,  # a redirect is the receiver's error, not ours to follow
            ) as response:
                status = response.status
                if not 200 <= status < 300:
                    error = f"answered HTTP {status}"
        except TimeoutError:
            error = f"no answer within {self.config.timeout_seconds:g} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        except (ValueError, OSError) as exc:
            # What the client raises past its own errors for a URL it cannot use (a host label
            # over 63 characters: UnicodeError from the IDNA codec): this attempt failed, as
            # any other; left to escape, the event would be claimed again each lease, never
            # counted, and hold the key's later events back for ever.
            error = f"{type(exc).__name__}: {exc}"[:200]
        if error is None:
            self.sent += 1
        else:
            self.failed += 1
        try:
            await store_webhooks.settle(self.db, delivery, self.clock(), status, error)
        except StoreUnavailable as exc:
            # The lease runs out and the event is sent again: at least once.
            log.warning("webhook delivery %s sent but not recorded: %s", delivery.id, exc)
