"""Token -> Identity, through a positive cache, a negative cache and the store.

The hot path is :meth:`Verifier.cached`: synchronous, no I/O. Only on a miss does
:meth:`Verifier.load` await the store, and concurrent misses for one token share one query
(single flight). The caches (``gateway.ttl.TTLMap``) are not thread-safe, but inside one event loop
they are safe as long as no ``await`` sits between a check and a set (docs/architecture.md).

Revocations, edits and rolls made by any process reach every verifier through the store's
``key_events`` feed, which :meth:`Verifier.run_follower` polls every
``invalidation_interval_seconds``: revocation is effective within that interval plus one query,
whatever the cache TTL. A load that started before an invalidation it did not see is
never cached (the ``_generation`` check), so a stale read cannot outlive the eviction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from core.config import CacheConfig
from core.errors import ACCESS_KEY_GIVEN, EXPIRED, INVALID, MALFORMED
from core.identity import Identity
from core.store import Database, StoreUnavailable
from core.store import keys as store_keys
from core.store.records import KeyLookup
from core.tokens import SecretFormat, hash_secret, is_access_key
from gateway.http.loop import RunningLoop
from gateway.metrics import LAG_BUCKETS, Histogram
from gateway.ttl import TTLMap, front

log = logging.getLogger("gateway.verifier")

LAST_USED_RESOLUTION = 60.0  # write last_used_at at most once a minute per key
# `key_events` rows are kept this long (gateway.housekeeping prunes older ones). A follower that
# has not read the feed for half of it may have missed pruned events, so it starts afresh.
EVENT_RETENTION_SECONDS = 3600.0
# The lengths an imported secret may have (Kong's and Unkey's fall well within).
IMPORTED_LENGTHS = (8, 256)


class Verifier:
    def __init__(
        self,
        db: Database,
        cache: CacheConfig,
        secret_format: SecretFormat,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.config = cache
        self.format = secret_format
        self.clock = clock
        # [keys] accept_imported: secrets without our shape are looked up by hash too (keys
        # imported from another gateway). Off, they are refused before any lookup, as ever.
        self.accept_imported = False
        self._positive: TTLMap[bytes, Identity] = TTLMap(cache.max_entries, cache.ttl_seconds)
        self._negative: TTLMap[bytes, bool] = TTLMap(cache.max_entries, cache.negative_ttl_seconds)
        # A key's cached digests, as a plain tuple of bytes: untracked by the garbage collector
        # (a set always is), so a full collection does not walk one per cached key.
        self._by_access_key: dict[str, tuple[bytes, ...]] = {}
        # The lookups in flight, one per digest however many requests wait on it.
        self._inflight: dict[bytes, asyncio.Future[Identity | str]] = {}
        self._generation = 0
        self._cursor: int | None = None  # where the next read of the key feed starts
        self._last_read: set[int] = set()  # event ids of the last read (the windows overlap)
        self._connections_seen = -1
        self._followed_at: float | None = None  # when the feed was last read
        self._last_marked: dict[str, float] = {}
        self._pending_used: dict[str, float] = {}
        self.store_queries = 0  # queries sent to the store: the benchmark counts them
        # For the metrics: cache outcomes, and the time from a key change to its eviction here.
        self.hits = self.negative_hits = self.misses = 0
        self.revocation_lag = Histogram(LAG_BUCKETS)
        self._batch: dict[bytes, asyncio.Future[Identity | str]] = {}  # the next query's
        # Told the access keys of every change followed (None: the whole cache was dropped):
        # open WebSockets are put through the gate again (gateway.ws_sessions.Sessions).
        self.on_change: list[Callable[[set[str] | None], None]] = []
        self._querying: asyncio.Task[None] | None = None
        self._loop = RunningLoop()  # asked once per miss: no get_running_loop()

    def configure(self, cache: CacheConfig) -> None:
        """New cache settings (a reload): new entries live the new TTLs; entries cached before
        keep the deadline they were given."""
        self.config = cache
        for cache_map, ttl in (
            (self._positive, cache.ttl_seconds),
            (self._negative, cache.negative_ttl_seconds),
        ):
            cache_map.ttl, cache_map.max_entries = ttl, cache.max_entries

    # -- the hot path ---------------------------------------------------------------------------

    def cached(self, token: str) -> Identity | str | bytes:
        """Identity or a rejection reason without I/O, else the token's hash for :meth:`load`.

        The hash comes first: a token whose hash is cached *is* that stored secret, so a hit
        needs no checksum. Only on a miss is the format checked, so typos and scanner noise
        still never reach the store; the length test first keeps huge tokens from being hashed.
        A token without our shape leaves at the first test it fails, as before, unless imported
        keys are accepted (``[keys] accept_imported``): then one of 8 to 256 characters is
        looked up by hash alone, like ours. Our secrets take the same steps either way (each
        added test comes after one they pass, joined by ``and``/``or``, so it is not reached).
        """
        size = len(token)
        if size not in self.format.lengths and not (
            self.accept_imported and IMPORTED_LENGTHS[0] <= size <= IMPORTED_LENGTHS[1]
        ):
            # Sending the access key instead of the secret is a common slip: say so.
            return ACCESS_KEY_GIVEN if is_access_key(token) else MALFORMED
        try:
            digest = hash_secret(token)
        except UnicodeEncodeError:
            return MALFORMED
        identity = self._positive.get(digest)
        if identity is not None:
            self.hits += 1
            return self._accept(identity)
        if self.format.mode_of(token) is None and not self.accept_imported:
            return MALFORMED
        if digest in self._negative:
            self.negative_hits += 1
            return INVALID
        self.misses += 1
        return digest

    async def verify(self, token: str) -> Identity | str:
        """The whole check; raises StoreUnavailable when an uncached token cannot be looked up."""
        result = self.cached(token)
        return await self.load(result) if isinstance(result, bytes) else result

    async def load(self, digest: bytes) -> Identity | str:
        # shield: one caller giving up (client gone) must not cancel the others' lookup.
        return await asyncio.shield(self.lookup(digest))

    def lookup(self, digest: bytes) -> asyncio.Future[Identity | str]:
        """The lookup of a digest no cache holds, shared by every request that waits on it:
        an identity or a rejection reason, or StoreUnavailable. Callers must not cancel it
        (`load` shields it; ``GatewayApp.serve_by_callbacks`` only adds a done callback).

        Misses are looked up in batches, one query in flight at a time: those that arrive while
        a query runs go together in the next (a flood of unknown tokens then costs one thread
        hop per batch, not per token). No task per miss: the query's results settle the
        futures (a task per miss was 10% of row 7's CPU under py-spy)."""
        future = self._inflight.get(digest)
        if future is None:
            loop = self._loop()
            future = self._inflight[digest] = loop.create_future()
            self._batch[digest] = future
            if self._querying is None:
                self._querying = loop.create_task(self._run_queries())
        return future

    async def _run_queries(self) -> None:
        batch: dict[bytes, asyncio.Future[Identity | str]] = {}
        try:
            while self._batch:
                batch, self._batch = self._batch, {}
                self.store_queries += 1
                # A key change followed after this point may not be in what the query reads:
                # what it finds is then answered but not cached.
                generation = self._generation
                try:
                    found = await store_keys.lookup_many(self.db, list(batch))
                except Exception as exc:
                    for digest, future in batch.items():
                        self._inflight.pop(digest, None)
                        if not future.done():
                            future.set_exception(exc)
                            future.exception()  # retrieved: every waiter may be gone
                    batch = {}
                    continue
                unchanged = generation == self._generation
                for digest, future in batch.items():
                    self._inflight.pop(digest, None)
                    if not future.done():
                        future.set_result(self._settle(digest, found.get(digest), unchanged))
                batch = {}
        finally:
            self._querying = None
            for digest, future in (*batch.items(), *self._batch.items()):  # cancelled: shutdown
                self._inflight.pop(digest, None)
                future.cancel()
            self._batch = {}

    def _settle(self, digest: bytes, row: KeyLookup | None, unchanged: bool) -> Identity | str:
        """What a lookup found, cached (unless a key changed while it ran) and checked."""
        if row is None:
            if unchanged:
                self._negative[digest] = True
            return INVALID
        identity = Identity.from_lookup(row)
        if unchanged:
            self._positive[digest] = identity
            held = self._by_access_key.get(identity.access_key, ())
            if digest not in held:
                self._by_access_key[identity.access_key] = (*held, digest)
        return self._accept(identity)

    def _accept(self, identity: Identity) -> Identity | str:
        """Reject an expired key or secret (even from cache); note the use for last_used_at."""
        now = self.clock()
        if identity.expired(now):
            return EXPIRED
        last = self._last_marked.get(identity.access_key)
        if last is None or now - last >= LAST_USED_RESOLUTION:
            self._last_marked.pop(identity.access_key, None)  # kept in time order: see trim
            self._last_marked[identity.access_key] = now
            self._pending_used[identity.access_key] = now
        return identity

    # -- invalidation ---------------------------------------------------------------------------

    def evict(self, access_key: str) -> None:
        for digest in self._by_access_key.pop(access_key, ()):
            self._positive.pop(digest)

    def clear(self) -> None:
        self._generation += 1
        self._positive.clear()
        self._negative.clear()
        self._by_access_key.clear()
        for listener in self.on_change:
            listener(None)

    async def poll_events(self) -> int:
        """Apply new ``key_events``; returns how many. Raises StoreUnavailable."""
        now = self.clock()
        cut_off = (
            self._followed_at is not None and now - self._followed_at > EVENT_RETENTION_SECONDS / 2
        )
        if self._connections_seen != self.db.connections_opened or self._cursor is None or cut_off:
            # First poll, the store was reconnected or replaced (what we cached may be stale, and
            # notifications were lost), or the feed was out of reach for so long that the events
            # we missed may be pruned: start afresh.
            cursor = await store_keys.feed_start(self.db)
            if self._cursor is not None:
                self.clear()
            self._cursor, self._last_read = cursor, set()
            self._connections_seen = self.db.connections_opened
            self._followed_at = now
            return 0
        read = await store_keys.read_feed(self.db, self._cursor)
        self._followed_at = now
        new = [event for event in read.events if event[0] not in self._last_read]
        if new:
            self._generation += 1
            if self.accept_imported:
                # An imported key's old secret may have been refused a moment ago and be
                # remembered as unknown: forget what was unknown (ours are new, never seen).
                self._negative.clear()
            for _, access_key, changed_at in new:
                self.evict(access_key)
                # The writer's clock against ours: another node's skew shows here (never < 0).
                self.revocation_lag.observe(max(0.0, self.clock() - changed_at))
            changed = {access_key for _, access_key, _ in new}
            for listener in self.on_change:
                listener(changed)
        self._cursor, self._last_read = read.cursor, {event[0] for event in read.events}
        return len(new)

    def following(self, within: float) -> bool:
        """Whether the key feed was read in the last ``within`` seconds."""
        return self._followed_at is not None and self.clock() - self._followed_at <= within

    async def run_follower(self) -> None:
        """Background task owned by ``Resources``: follow the feed until cancelled."""
        failing = False
        while True:
            try:
                await self.poll_events()
                if failing:
                    log.warning("store is readable again; following key events")
                failing = False
            except StoreUnavailable as exc:
                if not failing:
                    log.warning("cannot follow key events: %s", exc)
                failing = True
            # PostgreSQL's NOTIFY ends the wait at once; the interval is the safety net.
            await self.db.wait_for_change(self.config.invalidation_interval_seconds)

    # -- last_used_at ---------------------------------------------------------------------------

    async def flush_last_used(self) -> int:
        """Write pending last-used times in one batch; kept for the next try if the store fails."""
        if not self._pending_used:
            return 0
        pending, self._pending_used = self._pending_used, {}
        try:
            async with self.db.transaction() as w:
                await store_keys.touch_last_used(w, ((t, ak) for ak, t in pending.items()))
        except StoreUnavailable:
            for access_key, when in pending.items():
                self._pending_used.setdefault(access_key, when)
            raise
        return len(pending)

    def trim(self) -> None:
        """Drop what has expired, in time proportional to what is dropped: every map here is in
        time order, so the old entries are at the front. (Whole-map passes stalled the event
        loop for tens of ms with 30,000 cached keys: bench/run.py row 8.)"""
        self._positive.purge()
        self._negative.purge()
        now = self.clock()
        marked = self._last_marked
        for key in front(marked, lambda _, at: now - at >= LAST_USED_RESOLUTION):
            del marked[key]
        # Digests of evicted or expired entries linger here until their key is evicted again;
        # rebuilt only when they outnumber the live ones, so the cost is amortised.
        if len(self._by_access_key) > 2 * len(self._positive) + 1000:
            self._by_access_key = {
                ak: live
                for ak, hashes in self._by_access_key.items()
                if (live := tuple(h for h in hashes if h in self._positive))
            }
