"""The shared resources of one process, made and closed by the lifespan: the store, the verifier,
the upstream session and the background tasks that follow the key feed and flush last-used times.

The composition root (``gatewaycli.server``) starts one ``Resources`` and hands it to both the proxy
app and the admin app, so a process has one store connection pair and one cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

from core.config import Config
from core.store import StoreUnavailable, make_store
from core.tokens import SecretFormat
from gateway.access_log import AccessLog
from gateway.assertions import Assertions
from gateway.credits import Wallet
from gateway.gate import Gate
from gateway.housekeeping import Housekeeping
from gateway.http.client import Upstream
from gateway.metrics import Metrics, Snapshot
from gateway.node_limits import NodeJournal, NodeLimiter
from gateway.ratelimit import LocalLimiter
from gateway.redis_limits import RedisLimiter
from gateway.spend_journal import SpendJournal
from gateway.usage import Usage
from gateway.verifier import Verifier
from gateway.webhooks import WebhookDelivery
from gateway.ws_sessions import Sessions

log = logging.getLogger("gateway")


def listening(config: Config) -> tuple[object, ...]:
    """What the listeners are started with (``gatewaycli.listeners``), which a reload cannot
    change: the ``[server]`` timeouts and ``trusted_proxies``."""
    return (
        config.trusted_proxies,
        config.shutdown_timeout_seconds,
        config.header_timeout_seconds,
        config.body_timeout_seconds,
        config.send_timeout_seconds,
        config.keepalive_timeout_seconds,
    )


class Resources:
    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.time,
        node_journal: NodeJournal | None = None,
        listens: bool = True,
    ) -> None:
        """``node_journal``: the local rate limits' logs shared by the workers of a node
        (``gateway.node_limits``); without it they are this process's alone."""
        self.config = config
        # ``listens=False``: a worker of `serve --workers N`, told of key changes by its parent.
        self.db = make_store(config.store, listens)
        self.secret_format = SecretFormat(config.key_prefix)
        self.clock = clock
        self.verifier = Verifier(self.db, config.cache, self.secret_format, clock)
        self.verifier.accept_imported = config.accept_imported
        self.limiter: LocalLimiter | RedisLimiter = (
            RedisLimiter(config.ratelimit, clock)
            if config.ratelimit.backend == "redis"
            else LocalLimiter()
            if node_journal is None
            else NodeLimiter(node_journal)
        )
        self.usage = Usage(clock)
        # Credits this process holds and spends (reserved from the store in blocks).
        self.wallet = Wallet(
            self.db, clock, config.credits.sync_interval_seconds, config.credits.lease_seconds
        )
        # Who may pass: asked by every form of the data plane this process serves.
        self.gate = Gate(
            self.verifier,
            self.limiter,
            clock,
            config.ratelimit.fail == "open",
            self.wallet,
            self.usage,
        )
        self.sessions = Sessions(self.gate, clock)  # open WebSockets, ended when keys change
        self.verifier.on_change.append(self.sessions.changed)
        self.assertions = Assertions(config, clock)  # signs for `assertion = true` routes
        self.housekeeping = Housekeeping(
            self.verifier, self.limiter, self.usage, self.assertions, config.webhooks.keep_days
        )
        # Sends the store's webhook events, where this process takes part in delivering them.
        self.webhooks = WebhookDelivery(self.db, config.webhooks, clock)
        self.access_log = AccessLog(config.access_log) if config.access_log != "off" else None
        self.metrics = Metrics(config.metrics_per_project) if config.metrics else None
        self.upstream = Upstream()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False
        self.draining = False  # set at SIGTERM: readiness says so at once
        self.on_reload: list[Callable[[Config], None]] = []  # apps that hold parts of the config

    async def start(self) -> None:
        if self.started:
            return
        await self.db.open(create=False)  # `gateway init` creates the store, never serving
        try:
            await self.verifier.poll_events()
        except StoreUnavailable as exc:  # the follower keeps trying
            log.warning("%s", exc)
        self.open_journal()
        await self.settle_orphans()  # a node restarted after a SIGKILL: before it serves
        await self.upstream.start()
        if self.access_log is not None:
            self.access_log.start()
        self._tasks = [
            asyncio.create_task(self.verifier.run_follower(), name="key-events-follower"),
            asyncio.create_task(self.housekeeping.run(), name="housekeeping"),
            asyncio.create_task(self.wallet.run(), name="credits"),
        ]
        if self.config.webhooks.deliver:
            self._tasks.append(asyncio.create_task(self.webhooks.run(), name="webhook-delivery"))
        self.started = True

    def open_journal(self) -> None:
        """Credits spent are journaled in ``[credits] journal_dir`` (``gateway.spend_journal``);
        where it cannot be written (`gateway serve` refuses to start then), in memory only."""
        directory = self.config.credits.journal_dir
        if directory is None:
            return
        try:
            self.wallet.open_journal(SpendJournal(directory))
        except OSError as exc:
            log.warning(
                "credits: cannot journal spends in %s (%s): a process killed with SIGKILL "
                "loses what it reserved and did not spend",
                directory,
                exc.strerror or exc,
            )

    async def settle_orphans(self) -> None:
        """Report to the store what this node's dead processes spent, from their journals: at
        start-up, at shutdown, and when a supervisor sees a worker die."""
        try:
            await self.wallet.settle_orphans()
        except (StoreUnavailable, OSError) as exc:  # the journals stay for the next sweep
            log.warning("credits: cannot report what dead processes spent yet: %s", exc)

    def reload(self, new: Config) -> list[str]:
        """Apply a re-read config (SIGHUP): routes and cache settings, for requests that start
        from now on (one in flight keeps the route it matched). Returns the names of what a
        reload cannot change, which keep their old values until a restart."""
        old = self.config
        fixed = [
            name
            for name, before, after in (
                ("listen", old.listen, new.listen),
                ("workers", old.workers, new.workers),
                ("store", old.store, new.store),
                ("admin listen", old.admin_listen, new.admin_listen),
                (
                    "forward_auth listen",
                    old.forward_auth.listen,
                    new.forward_auth.listen,
                ),
                ("leaks listen", old.leaks.listen, new.leaks.listen),
                # The wallet, its reports and its journal are made at start-up.
                ("credits", old.credits, new.credits),
                ("tls", (old.tls, old.admin_tls), (new.tls, new.admin_tls)),
                ("key prefix", old.key_prefix, new.key_prefix),
                ("ratelimit", old.ratelimit, new.ratelimit),
                ("server timeouts", listening(old), listening(new)),
                (
                    "metrics",
                    (old.metrics, old.metrics_per_project),
                    (new.metrics, new.metrics_per_project),
                ),
            )
            if before != after
        ]
        self.config = dataclasses.replace(
            new,
            listen=old.listen,
            workers=old.workers,
            store=old.store,
            admin_listen=old.admin_listen,
            forward_auth=dataclasses.replace(new.forward_auth, listen=old.forward_auth.listen),
            leaks=dataclasses.replace(new.leaks, listen=old.leaks.listen),
            tls=old.tls,
            admin_tls=old.admin_tls,
            trusted_proxies=old.trusted_proxies,
            shutdown_timeout_seconds=old.shutdown_timeout_seconds,
            header_timeout_seconds=old.header_timeout_seconds,
            body_timeout_seconds=old.body_timeout_seconds,
            send_timeout_seconds=old.send_timeout_seconds,
            keepalive_timeout_seconds=old.keepalive_timeout_seconds,
            key_prefix=old.key_prefix,
            credits=old.credits,
            ratelimit=old.ratelimit,
            metrics=old.metrics,
            metrics_per_project=old.metrics_per_project,
        )
        self.verifier.configure(self.config.cache)
        self.verifier.accept_imported = self.config.accept_imported
        self.assertions.configure(self.config)
        for apply in self.on_reload:
            apply(self.config)
        return fixed

    def snapshot(self) -> Snapshot:
        """This process's counts for /metrics (``gateway.metrics``): requests, and what the
        verifier, the store and the access log count."""
        metrics = self.metrics or Metrics()
        verifier, db, access = self.verifier, self.db, self.access_log
        return metrics.snapshot(
            cache={
                "hit": verifier.hits,
                "negative_hit": verifier.negative_hits,
                "miss": verifier.misses,
            },
            store={"read": db.reads, "write": db.writes},
            store_errors=db.errors,
            rate_limit_unavailable=(
                self.limiter.unavailable if isinstance(self.limiter, RedisLimiter) else 0
            ),
            revocation_lag=list(verifier.revocation_lag.values),
            access_log=(
                {"written": access.written, "dropped": access.dropped, "failed": access.failed}
                if access is not None
                else {}
            ),
        )

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
        # A task cancelled inside a store call may end with that call's error instead (asyncpg,
        # resetting a pooled connection still mid-query, raises InternalClientError): stopping
        # goes on, and says so.
        ended = await asyncio.gather(*self._tasks, return_exceptions=True)
        for task, result in zip(self._tasks, ended, strict=True):
            if isinstance(result, Exception):
                log.warning("%s ended with %r while stopping", task.get_name(), result)
        with contextlib.suppress(StoreUnavailable):
            await self.wallet.release_all()  # what this process holds and did not spend
        await self.settle_orphans()
        self.wallet.close_journal()  # kept on disk if the store could not be told
        with contextlib.suppress(StoreUnavailable):
            await self.verifier.flush_last_used()
        with contextlib.suppress(StoreUnavailable):
            await self.usage.flush(self.db)
        await self.upstream.close()
        if isinstance(self.limiter, RedisLimiter):
            await self.limiter.close()
        if self.access_log is not None:
            self.access_log.close()
        await self.db.close()
