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
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable

from core.plans import Budget, next_refill, period
from core.store import Database, StoreUnavailable, Writer
from core.store import credits as store_credits

log = logging.getLogger("gateway.credits")

MIN_BLOCK = 16  # credits (in units of the last cost) reserved at least, per budget
IDLE_ROUNDS = 25  # intervals without a spend before a lease is given back
EMPTY = -1  # `spend`'s answer when the budget is spent
TOP_UP_TRIES = 8  # reports a waiting request makes, each asking twice the last


class Held:
    """This process's lease on one budget."""

    __slots__ = (
        "budget",
        "ceiling",
        "cost",
        "ends",
        "granted",
        "heard",
        "idle",
        "lease_id",
        "period",
        "renew_at",
        "reported",
        "spent",
        "store_remaining",
    )

    def __init__(self, budget: Budget, now: float) -> None:
        self.budget = budget
        self.lease_id = os.urandom(12).hex()
        self.period = period(budget.interval, now)
        # When the period ends (the lease with it); a budget that never refills never ends.
        self.ends = math.inf if budget.refill is None else next_refill(budget.refill.interval, now)
        self.granted = self.ceiling = self.spent = self.reported = 0
        self.store_remaining = 0
        self.cost = 1
        self.idle = 0
        self.renew_at = 0.0  # when the lease needs renewing even if nothing was spent
        self.heard = False  # the store has answered a report: its counts are known

    def headroom(self) -> int:
        """What to hold spendable beyond what is spent: twice what an interval spent, and at
        least MIN_BLOCK of the last cost."""
        return max(MIN_BLOCK * self.cost, 2 * (self.spent - self.reported))


class Wallet:
    def __init__(
        self,
        db: Database,
        clock: Callable[[], float] = time.time,
        sync_interval: float = 0.2,
        lease_seconds: float = 10.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.sync_interval = sync_interval
        self.lease_seconds = lease_seconds
        self.held: dict[str, Held] = {}
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
            held.spent += cost
            held.cost = cost
            return held.granted - held.spent + held.store_remaining
        if held.heard and held.store_remaining <= 0 and held.granted == held.ceiling:
            return EMPTY
        return None

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
                held = self.held[budget.owner] = Held(budget, now)
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
        )
        if lease is None:
            # Ended under us (reclaimed, refilled, reset): what it had spent is accounted for;
            # start a new lease.
            fresh = Held(held.budget, now)
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
        """One round: report every budget in use, give back the idle ones, reclaim the
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
            if idle:
                await self._release(idle)
            reclaim = now - self._reclaimed_at >= self.lease_seconds / 2
            if not active and not reclaim:
                return  # nothing to write: a gateway without budgets in use writes nothing
            applied = []
            async with self.db.transaction() as w:
                for held in active:
                    applied.append(await self._report(w, held, now))
                if reclaim:
                    await store_credits.reclaim(w, now)
            for apply in applied:
                apply()
            if reclaim:
                self._reclaimed_at = now

    async def _release(self, helds: list[Held]) -> None:
        """Give leases back. Each leaves this process's hands before the write is awaited, so
        no request spends from it after its count is taken."""
        now = self.clock()
        for held in helds:
            if self.held.get(held.budget.owner) is held:
                del self.held[held.budget.owner]
        spent = [(held.lease_id, held.spent) for held in helds]
        async with self.db.transaction() as w:
            for lease_id, count in spent:
                await store_credits.release(w, lease_id, count, now)

    async def release_all(self) -> None:
        """At shutdown: everything held and not spent goes back."""
        async with self._lock:
            if self.held:
                await self._release(list(self.held.values()))

    async def run(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.sync_interval)
            try:
                await self.sync()
                failing = False
            except StoreUnavailable as exc:
                if not failing:
                    log.warning("cannot report credits spent: %s", exc)
                failing = True
