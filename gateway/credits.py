"""Credits spent by this process: reserved from the store in blocks, spent here without a store
round trip, given back when no longer needed (``core.store.credits`` holds the SQL, and
docs/plans-and-credits.md the proof that no more is admitted than a balance held).

Per budget this process has a `Held`: the lease it holds in the store, what was granted to it,
the ceiling it has written there (it spends only up to that), and what it has spent. On the
request path `Wallet.spend` is a plain call: it spends under the ceiling, refuses at once when
the store said the balance was empty, and otherwise asks for a `top_up` (one store write, the
only await, once per block rather than per request). A background task (`Wallet.run`, owned by
``Resources``) reports every ``sync_interval_seconds``: what was spent, the next block and
ceiling (sized to twice the traffic of an interval, so the request path seldom waits), and
lease renewals; it gives back the leases of budgets idle for a few intervals, and reclaims the
expired leases of gateways that died.

Every spend is journaled before its request is admitted (``gateway.spend_journal``: one store
into a memory-mapped file), so the count of a process killed with SIGKILL outlives it: the
journals of the node's dead processes are settled at start-up, every ``lease_seconds / 2``, at
shutdown, and when a supervisor sees a worker die (``gateway.orphans``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from core.plans import Budget
from core.store import Database, StoreUnavailable, Writer
from core.store import credits as store_credits
from gateway.lease import Held
from gateway.orphans import settle_orphans
from gateway.spend_journal import SpendJournal

log = logging.getLogger("gateway.credits")

IDLE_ROUNDS = 25  # intervals without a spend before a lease is given back
EMPTY = -1  # `spend`'s answer when the budget is spent
TOP_UP_TRIES = 8  # reports a waiting request makes, each asking twice the last


class Wallet:
    def __init__(
        self,
        db: Database,
        clock: Callable[[], float] = time.time,
        sync_interval: float = 0.2,
        lease_seconds: float = 10.0,
        journal: SpendJournal | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.sync_interval = sync_interval
        self.lease_seconds = lease_seconds
        self.journal = journal or SpendJournal()  # in memory only until `open_journal`
        self.counts = self.journal.counts
        self.held: dict[str, Held] = {}
        # Leases this process let go of, until the store has their final counts (a report that
        # failed is made again; what a stop could not report stays in the journal).
        self.unsettled: dict[str, Held] = {}
        self._lock = asyncio.Lock()  # one report at a time: a top-up and the round
        self._reclaimed_at = 0.0

    # -- the request path ---------------------------------------------------------------------

    def spend(self, budget: Budget, cost: int) -> int | None:
        """The remaining count after spending ``cost`` (this process's view), EMPTY when the
        budget is spent, or None when the store must be asked first (`top_up`)."""
        held = self.held.get(budget.owner)
        if (
            held is None
            or (held.budget is not budget and held.budget != budget)
            or self.clock() >= held.ends
        ):
            return None
        if held.spent + cost <= held.ceiling:
            spent = held.spent + cost
            self.counts[held.mark] = spent  # journaled before the request is admitted
            held.spent = spent
            held.cost = cost
            return held.granted - held.spent + held.store_remaining
        if held.heard and held.store_remaining <= 0 and held.granted == held.ceiling:
            return EMPTY
        return None

    def refund(self, budget: Budget, cost: int) -> None:
        """Undo the spend of ``cost`` just made for a request its rate limits then refused, with
        no await between: the journal's count goes down after the refusal, so it never says
        less than the requests admitted."""
        held = self.held.get(budget.owner)
        if held is not None and held.spent >= cost:
            held.spent -= cost
            self.counts[held.mark] = held.spent

    def empty(self, budget: Budget, cost: int) -> bool:
        """Whether the store said this budget cannot pay ``cost`` (no await)."""
        held = self.held.get(budget.owner)
        return (
            held is not None
            and held.heard
            and held.budget == budget
            and held.spent + cost > held.ceiling
            and held.granted == held.ceiling
            and held.store_remaining <= 0
            and self.clock() < held.ends
        )

    def remaining(self, budget: Budget) -> int | None:
        held = self.held.get(budget.owner)
        if held is None or held.budget != budget:
            return None
        return held.granted - held.spent + held.store_remaining

    async def top_up(self, budget: Budget, cost: int) -> int:
        """Reserve for ``budget`` now (a request is waiting), then spend ``cost``: the
        remaining count, or EMPTY. Raises StoreUnavailable."""
        async with self._lock:
            now = self.clock()
            held = self.held.get(budget.owner)
            if held is not None and (held.budget != budget or now >= held.ends):
                await self._release([held])
                held = None
            if held is None:
                held = self.held[budget.owner] = self._new(budget, now)
            found = self.spend(budget, cost)  # a top-up it waited behind may have made room
            if found is not None:
                return found
            held.cost = cost
            for attempt in range(TOP_UP_TRIES):
                # Again, asking for more, if requests spent the new block before this one did.
                async with self.db.transaction() as w:
                    applied = await self._report(w, held, now, need=cost << attempt)
                applied()
                found = self.spend(budget, cost)
                if found is not None:
                    return found
                if self.empty(budget, cost):
                    break
                held = self.held.get(budget.owner, held)
                now = self.clock()
        return EMPTY

    # -- reports ------------------------------------------------------------------------------

    async def _report(self, w: Writer, held: Held, now: float, need: int = 0) -> Callable[[], None]:
        """One lease's report: spent so far, the next block, the ceiling, the renewal. Returns
        what to apply here once the transaction has committed: a ceiling may be spent up to
        only when the store holds it."""
        headroom = held.headroom() + need
        spent = held.spent  # requests go on spending while the report is written
        # Never spend past the ceiling about to be written, if it is lower than the one held.
        held.ceiling = min(held.ceiling, spent + headroom)
        lease = await store_credits.reserve(
            w,
            held.lease_id,
            held.budget.owner,
            held.period,
            held.budget.initial,
            spent,
            want_granted=spent + 2 * headroom,
            want_ceiling=spent + headroom,
            expires_at=now + self.lease_seconds,
            now=now,
            refill_to=held.budget.refill_to,
        )
        if lease is None:
            # Ended under us (reclaimed, refilled, reset): settled with what it spent at the
            # next round, when no request can spend from it any more; start a new lease.
            self.unsettled[held.lease_id] = held
            fresh = self._new(held.budget, now)
            fresh.cost = held.cost
            self.held[held.budget.owner] = fresh
            lease = await store_credits.reserve(
                w,
                fresh.lease_id,
                fresh.budget.owner,
                fresh.period,
                fresh.budget.initial,
                0,
                want_granted=2 * headroom,
                want_ceiling=headroom,
                expires_at=now + self.lease_seconds,
                now=now,
                refill_to=fresh.budget.refill_to,
            )
            held, spent = fresh, 0
            if lease is None:
                return lambda: None
        found, written = lease, spent

        def apply() -> None:
            held.granted, held.ceiling = found.granted, found.ceiling
            held.store_remaining = found.remaining
            held.reported = written
            held.renew_at = now + self.lease_seconds / 2
            held.heard = True

        return apply

    async def sync(self) -> None:
        """One round: report every budget in use, give back the idle ones; every
        ``lease_seconds / 2``, settle the journals of the node's dead processes and reclaim the
        expired leases of others. Raises StoreUnavailable."""
        async with self._lock:
            now = self.clock()
            idle: list[Held] = []
            active: list[Held] = []
            for held in list(self.held.values()):
                if now >= held.ends:
                    idle.append(held)
                elif held.spent == held.reported and held.store_remaining > 0:
                    held.idle += 1
                    if held.idle >= IDLE_ROUNDS:
                        idle.append(held)
                    elif now >= held.renew_at:  # kept, so its lease is renewed
                        active.append(held)
                else:  # spent since the last report, or waiting for credits to come back
                    held.idle = 0 if held.spent != held.reported else held.idle + 1
                    (idle if held.idle >= IDLE_ROUNDS else active).append(held)
            if idle or self.unsettled:
                await self._release(idle)
            reclaim = now - self._reclaimed_at >= self.lease_seconds / 2
            if reclaim:  # first: a dead process's live lease settles whole, no tombstone
                await self.settle_orphans()
            if active:
                applied = []
                # In the order of the balances' owners, as every transaction locks them.
                active.sort(key=lambda held: held.budget.owner)
                async with self.db.transaction() as w:
                    for held in active:
                        applied.append(await self._report(w, held, now))
                for apply in applied:
                    apply()
            if reclaim:
                async with self.db.transaction() as w:
                    await store_credits.reclaim(w, now)
                self._reclaimed_at = now

    def _new(self, budget: Budget, now: float) -> Held:
        held = Held(budget, now, self.journal)
        self.counts = self.journal.counts  # a new slot may have grown the journal
        return held

    async def _release(self, helds: list[Held]) -> None:
        """Give leases back, with those let go of before. Each leaves this process's hands
        before the write is awaited, so no request spends from it after its count is taken;
        its journal slot is freed once the store has the count."""
        now = self.clock()
        for held in helds:
            if self.held.get(held.budget.owner) is held:
                del self.held[held.budget.owner]
            self.unsettled[held.lease_id] = held
        ending = list(self.unsettled.values())
        async with self.db.transaction() as w:
            await store_credits.settle_all(w, [(h.lease_id, h.spent) for h in ending], now)
        for held in ending:
            del self.unsettled[held.lease_id]
            self.journal.free(held.mark)

    async def release_all(self) -> None:
        """At shutdown: everything held and not spent goes back."""
        async with self._lock:
            if self.held or self.unsettled:
                await self._release(list(self.held.values()))

    # -- the journal --------------------------------------------------------------------------

    def open_journal(self, journal: SpendJournal) -> None:
        """Journal into ``journal`` (a file of the node) from now on: at start-up, before any
        lease is held."""
        assert not self.held and not self.unsettled
        self.journal.close()
        self.journal, self.counts = journal, journal.counts

    def close_journal(self) -> None:
        """At exit, after `release_all`: the file goes if every lease in it was settled."""
        self.journal.close()
        self.held.clear()
        self.unsettled.clear()
        self.journal = SpendJournal()
        self.counts = self.journal.counts

    async def settle_orphans(self) -> int:
        """What the node's dead processes spent, reported from their journals
        (``gateway.orphans``); first, this process's own journal made again if it was removed.
        Raises StoreUnavailable."""
        try:
            if self.journal.relink():
                self.counts = self.journal.counts
                log.warning(
                    "credits: this process's spend journal was removed from %s; made again as %s",
                    self.journal.directory,
                    self.journal.path,
                )
        except OSError as exc:  # the directory cannot be written now: the next sweep tries again
            log.warning("credits: cannot make this process's spend journal again: %s", exc)
        return await settle_orphans(self.db, self.journal.directory, self.clock)

    async def run(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.sync_interval)
            try:
                await self.sync()
                failing = False
            except (StoreUnavailable, OSError) as exc:  # OSError: a journal of the node
                if not failing:
                    log.warning("cannot report credits spent: %s", exc)
                failing = True
