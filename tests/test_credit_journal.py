"""What a dead gateway process spent, reported from the journal it left on its node
(gateway.orphans, core.store.credits.settle): its lease settled whole, or, once reclaimed, the
part between its true count and its ceiling given back; once only, and never across an
operator's reset or a refill. Wallets on one store stand for processes; one "dies" by letting
go of its journal without a word to the store (tests/test_credits_nodes.py kills real ones)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from core.config import StoreConfig
from core.plans import Budget, Refill, period
from core.store import Database, make_store
from core.store import credits as store_credits
from gateway.credits import Wallet
from gateway.spend_journal import SpendJournal
from tests.support import BOTH_STORES, FakeClock

BACKENDS = BOTH_STORES
INITIAL = 1000
DAY = Budget("key:GWKdaily", INITIAL, Refill(INITIAL, "daily"))
ONCE = Budget("key:GWKonce", INITIAL, None)


class Rig:
    """A store, a clock, and wallets journaling into one node's directory."""

    def __init__(self, db: Database, directory: Path, clock: FakeClock) -> None:
        self.db, self.directory, self.clock = db, directory, clock

    def wallet(self) -> Wallet:
        return Wallet(self.db, self.clock, lease_seconds=10, journal=SpendJournal(self.directory))

    async def unreserved(self, budget: Budget) -> int:
        row = await self.db.fetchone(
            "SELECT remaining FROM credit_balances WHERE owner = ?", (budget.owner,)
        )
        assert row is not None
        return int(row[0])

    async def reclaim(self) -> int:
        async with self.db.transaction() as w:
            return await store_credits.reclaim(w, self.clock())

    async def spend(
        self, wallet: Wallet, budget: Budget, reported: int, more: int
    ) -> tuple[int, int]:
        """``reported`` spent and reported, then ``more``: (the ceiling in the store, spent)."""
        assert await wallet.top_up(budget, 1) >= 0
        for _ in range(reported - 1):
            assert wallet.spend(budget, 1) is not None
        await wallet.sync()
        for _ in range(more):
            assert wallet.spend(budget, 1) is not None
        held = wallet.held[budget.owner]
        row = await self.db.fetchone(
            "SELECT ceiling FROM credit_leases WHERE id = ?", (held.lease_id,)
        )
        assert row is not None
        assert held.spent == reported + more < int(row[0])  # something to lose
        return int(row[0]), held.spent


def die(wallet: Wallet) -> None:
    """SIGKILL, as far as the store and the node can tell: nothing given back, the journal's
    lock gone, its counts left in the file."""
    wallet.journal.close()


@pytest.fixture
def rig(tmp_path: Path, store_backend: Callable[[], str | None]) -> Any:
    def run(test: Callable[[Rig], Awaitable[None]]) -> None:
        url = store_backend()  # made by a loop of its own
        target = url if url is not None else str(tmp_path / "gateway.db")

        async def body() -> None:
            db = await make_store(StoreConfig().pointing_at(target)).open(create=True)
            clock = FakeClock()
            clock.freeze()
            try:
                await test(Rig(db, tmp_path / "journal", clock))
            finally:
                await db.close()

        asyncio.run(body())

    return run


def test_a_dead_processs_live_lease_is_settled_from_its_journal(rig: Any) -> None:
    async def test(rig: Rig) -> None:
        dead = rig.wallet()
        await rig.spend(dead, ONCE, reported=6, more=4)
        die(dead)
        sweeper = rig.wallet()
        assert await sweeper.settle_orphans() == 1
        assert await rig.unreserved(ONCE) == INITIAL - 10  # granted - spent came back
        assert await rig.db.fetchall("SELECT id FROM credit_leases") == []
        assert list(rig.directory.iterdir()) == [sweeper.journal.path]  # the dead one's went

    rig(test)


def test_a_reclaimed_lease_gives_back_ceiling_minus_spent_when_its_journal_reports(
    rig: Any,
) -> None:
    async def test(rig: Rig) -> None:
        dead = rig.wallet()
        ceiling, spent = await rig.spend(dead, ONCE, reported=6, more=4)
        die(dead)
        rig.clock.advance(11)
        assert await rig.reclaim() == 1  # before anyone read the journal
        assert await rig.unreserved(ONCE) == INITIAL - ceiling
        await rig.wallet().settle_orphans()
        assert await rig.unreserved(ONCE) == INITIAL - spent  # ceiling - spent, exactly

    rig(test)


@pytest.mark.parametrize("reclaimed", [False, True], ids=["live", "reclaimed"])
def test_a_journal_settled_twice_gives_back_once(rig: Any, reclaimed: bool, tmp_path: Path) -> None:
    """A sweeper that died between its commit and the journal's removal: the next one
    settles the same journal again, and nothing more comes back."""

    async def test(rig: Rig) -> None:
        dead = rig.wallet()
        _, spent = await rig.spend(dead, ONCE, reported=6, more=4)
        die(dead)
        (left,) = rig.directory.iterdir()
        shutil.copy(left, tmp_path / "copy")
        if reclaimed:
            rig.clock.advance(11)
            await rig.reclaim()
        sweeper = rig.wallet()
        await sweeper.settle_orphans()
        shutil.copy(tmp_path / "copy", left)
        assert await sweeper.settle_orphans() == 1
        rig.clock.advance(11)
        await rig.reclaim()
        assert await rig.unreserved(ONCE) == INITIAL - spent

    rig(test)


@pytest.mark.parametrize("reclaimed", [False, True], ids=["live", "reclaimed"])
def test_nothing_comes_back_across_an_operators_reset(rig: Any, reclaimed: bool) -> None:
    async def test(rig: Rig) -> None:
        dead = rig.wallet()
        await rig.spend(dead, ONCE, reported=6, more=4)
        die(dead)
        if reclaimed:
            rig.clock.advance(11)
            await rig.reclaim()
        async with rig.db.transaction() as w:
            await store_credits.set_balance(w, ONCE.owner, 500, "", rig.clock())
        await rig.wallet().settle_orphans()
        assert await rig.unreserved(ONCE) == 500

    rig(test)


@pytest.mark.parametrize("reclaimed", [False, True], ids=["live", "reclaimed"])
def test_nothing_comes_back_into_the_next_refill_period(rig: Any, reclaimed: bool) -> None:
    async def test(rig: Rig) -> None:
        dead = rig.wallet()
        await rig.spend(dead, DAY, reported=6, more=4)
        die(dead)
        if reclaimed:
            rig.clock.advance(11)
            await rig.reclaim()
        rig.clock.advance(86_400)
        fresh = rig.wallet()
        assert await fresh.top_up(DAY, 1) == INITIAL - 1  # the new day's balance
        await fresh.release_all()
        await fresh.settle_orphans()
        assert await rig.unreserved(DAY) == INITIAL - 1
        row = await rig.db.fetchone(
            "SELECT period FROM credit_balances WHERE owner = ?", (DAY.owner,)
        )
        assert row is not None and row[0] == period("daily", rig.clock())

    rig(test)


def test_a_holder_cut_off_past_its_lease_settles_what_it_spent_when_it_is_back(
    rig: Any,
) -> None:
    """Its lease was reclaimed while it went on spending below its ceiling: its next report
    finds the lease gone, and the part of the ceiling it did not spend comes back."""

    async def test(rig: Rig) -> None:
        holder = rig.wallet()
        await rig.spend(holder, ONCE, reported=6, more=4)
        rig.clock.advance(11)
        await rig.reclaim()
        assert holder.spend(ONCE, 1) is not None  # still below the ceiling it holds
        await holder.sync()  # finds the lease gone, starts another
        await holder.sync()  # settles the old one
        await holder.release_all()
        assert await rig.unreserved(ONCE) == INITIAL - 11
        holder.close_journal()
        assert list(rig.directory.iterdir()) == []  # every lease settled: the file went

    rig(test)


def test_a_lease_committed_after_its_dead_holders_journal_was_settled(rig: Any) -> None:
    """The holder died with its first reservation's commit on the wire: its journal (0 spent)
    was settled before the lease existed; when the lease expires, all of it comes back."""

    async def test(rig: Rig) -> None:
        async with rig.db.transaction() as w:
            await store_credits.settle(w, "a" * 24, 0, rig.clock())
            # What the holder's transaction did, committing now (`reserve` checks first).
            await w.execute(
                "INSERT INTO credit_balances (owner, period, remaining, epoch, updated_at) "
                "VALUES (?, '', ?, 0, 0)",
                (ONCE.owner, INITIAL - 40),
            )
            await w.execute(
                "INSERT INTO credit_leases (id, owner, period, epoch, granted, ceiling, spent, "
                "expires_at) VALUES (?, ?, '', 0, 40, 20, 0, ?)",
                ("a" * 24, ONCE.owner, rig.clock() + 10),
            )
        rig.clock.advance(11)
        await rig.reclaim()
        assert await rig.unreserved(ONCE) == INITIAL

    rig(test)


def test_what_is_no_journal_in_the_directory_stops_no_sweep(rig: Any) -> None:
    """A directory or a pipe named like a journal (or a file the gateway's user may not open,
    left by a gateway run as root) is skipped: before, each sweep raised on it, and with it
    every report of the round, so leases went unrenewed and unreclaimed for good."""

    async def test(rig: Rig) -> None:
        dead = rig.wallet()
        await rig.spend(dead, ONCE, reported=6, more=4)
        die(dead)
        (rig.directory / "stray.journal").mkdir()
        os.mkfifo(rig.directory / "pipe.journal")
        sweeper = rig.wallet()
        assert await sweeper.settle_orphans() == 1
        assert await rig.unreserved(ONCE) == INITIAL - 10
        assert await sweeper.top_up(ONCE, 1) >= 0
        await sweeper.sync()  # the round goes on: the sweep, the report, the reclaim
        held = sweeper.held[ONCE.owner]
        row = await rig.db.fetchone(
            "SELECT expires_at FROM credit_leases WHERE id = ?", (held.lease_id,)
        )
        assert row is not None and float(row[0]) == rig.clock() + 10
        assert {p.name for p in rig.directory.iterdir()} == {
            "stray.journal",
            "pipe.journal",
            sweeper.journal.path.name,  # type: ignore[union-attr]
        }

    rig(test)


def test_a_journal_deleted_under_its_process_is_made_again(rig: Any) -> None:
    """journal_dir removed while the gateway runs (a clean-up script, a tmpfs remounted): the
    process went on journaling into a file no sweeper could find, and a SIGKILL then lost
    ``ceiling - spent`` as if there were no journal. Its next sweep puts the file back, with
    every count, so a kill after that loses nothing."""

    async def test(rig: Rig) -> None:
        alive = rig.wallet()
        await rig.spend(alive, ONCE, reported=6, more=4)
        shutil.rmtree(rig.directory)
        rig.clock.advance(6)  # the next sweep is due
        await alive.sync()
        assert alive.journal.path is not None and alive.journal.path.parent == rig.directory
        assert alive.journal.path.exists()
        for _ in range(5):
            assert alive.spend(ONCE, 1) is not None  # into the file made again
        spent = alive.held[ONCE.owner].spent
        die(alive)
        assert await rig.wallet().settle_orphans() == 1
        assert await rig.unreserved(ONCE) == INITIAL - spent

    rig(test)
