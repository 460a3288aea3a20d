"""SQL for credit balances and the reservations (leases) gateways hold against them.

A balance (``credit_balances``) is what no gateway holds: a gateway takes credits out of it into
its lease (``granted``), spends them locally, and says in the lease how far it may have got
(``ceiling``: it never spends past the ceiling it has written) and how far it has got
(``spent``). Released, a lease gives back ``granted - spent``; expired (its gateway died or lost
the store), ``granted - ceiling``, the part its gateway cannot have spent. The proof that no more
is ever admitted than a balance held is in docs/plans-and-credits.md.

A balance belongs to one refill period (``period``, ``core.plans.period``) and one ``epoch``
(bumped when an operator sets it): leases of another period or epoch give nothing back.

A reclaimed lease leaves a tombstone (``credit_tombstones``) with its ceiling for
``KEEP_TOMBSTONES`` seconds: when the spend journal its dead gateway left on its node reports
what it truly spent (``settle``), the part between that and the ceiling comes back too, once.
Every statement that moves credits of a lease first locks its balance row, so a write still in
flight for that lease (its holder died with its commit on the wire) has ended before the lease
is read; a transaction that locks several balances locks them in the order of their owners, so
two such transactions never wait for each other in a circle (a deadlock).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.store.database import Database, Writer

KEEP_TOMBSTONES = 7 * 86_400  # seconds: how late a dead gateway's journal may still report


@dataclass(frozen=True)
class Lease:
    """What a gateway holds of one balance after a reservation or a report."""

    granted: int
    ceiling: int
    remaining: int  # what the balance has left beyond every lease
    period: str
    epoch: int


async def _lock(w: Writer, owner: str) -> tuple[str, int, int] | None:
    """The balance row of ``owner`` (period, remaining, epoch), locked until the transaction
    ends (on SQLite the one writer holds everything already)."""
    lock = " FOR UPDATE" if w.dialect == "postgresql" else ""
    row = await w.fetchone(
        f"SELECT period, remaining, epoch FROM credit_balances WHERE owner = ?{lock}", (owner,)
    )
    return None if row is None else (str(row[0]), int(row[1]), int(row[2]))


def _later(stored: str, asked: str) -> bool:
    """Whether a balance's period ``stored`` comes after the ``asked`` one: two days, or two
    months (ISO dates sort in their order). A period of another shape is the budget's own
    change (a refill interval edited), not a clock behind."""
    return len(stored) == len(asked) and stored > asked


async def _balance(
    w: Writer, owner: str, period: str, initial: int, refill_to: int, now: float
) -> tuple[int, int] | None:
    """The balance's remaining and epoch, locked for this transaction, created at ``initial``
    and refilled to ``refill_to`` when its period has passed (the leases of the old period then
    end). None when it is already in a later period than ``period``: the caller's clock is
    behind another gateway's, which refilled it, and a period only moves forward (set back, it
    would be refilled again at every report of each side until the clocks agree)."""
    await w.execute(
        "INSERT INTO credit_balances (owner, period, remaining, epoch, updated_at) "
        "VALUES (?, ?, ?, 0, ?) ON CONFLICT (owner) DO NOTHING",
        (owner, period, initial, now),
    )
    row = await _lock(w, owner)
    assert row is not None
    if row[0] != period and _later(row[0], period):
        return None
    if row[0] != period:
        await w.execute(
            "UPDATE credit_balances SET period = ?, remaining = ?, debt = 0, updated_at = ? "
            "WHERE owner = ?",
            (period, refill_to, now, owner),
        )
        await w.execute(
            "DELETE FROM credit_leases WHERE owner = ? AND period <> ?", (owner, period)
        )
        return refill_to, int(row[2])
    return int(row[1]), int(row[2])


async def reserve(
    w: Writer,
    lease_id: str,
    owner: str,
    period: str,
    initial: int,
    spent: int,
    want_granted: int,
    want_ceiling: int,
    expires_at: float,
    now: float,
    refill_to: int | None = None,
) -> Lease | None:
    """Report ``spent`` on the lease, take from the balance until it has ``want_granted`` (or
    the balance is empty), and set its ceiling to ``want_ceiling`` (never above what it was
    granted; a holder lowers its own ceiling before it asks for a lower one). None when the
    lease is gone (reclaimed, or ended by a refill or an operator's reset) while its holder
    still thinks it holds it: the holder drops it. A lease id not seen before starts one.
    A balance not seen before starts at ``initial``; a new period at ``refill_to`` (default:
    ``initial``)."""
    refilled = initial if refill_to is None else refill_to
    balance = await _balance(w, owner, period, initial, refilled, now)
    if balance is None:
        # The holder's clock is still in a period that has ended: nothing is left of it to
        # reserve. It spends again once its clock has passed the refill too.
        return None if spent else Lease(0, 0, 0, period, -1)
    remaining, epoch = balance
    row = await w.fetchone(
        "SELECT granted, ceiling, period, epoch FROM credit_leases WHERE id = ?", (lease_id,)
    )
    if row is None:
        if spent or await _tombstone(w, lease_id) is not None:
            return None  # it had been granted a lease that has ended
        granted, ceiling = 0, 0
    else:
        granted, ceiling = int(row[0]), int(row[1])
        if row[2] != period or int(row[3]) != epoch:
            return None
    take = min(max(0, want_granted - granted), remaining)
    granted += take
    ceiling = max(spent, min(granted, want_ceiling))
    # Held beyond what its holder wants now (it reserved ahead for a burst, and its pace has
    # dropped): back to the balance, for the other processes, whose requests it would refuse
    # meanwhile. Never below the ceiling: what lies above it its holder cannot spend.
    spare = granted - max(want_granted, ceiling)
    if take:
        remaining -= take
        await w.execute(
            "UPDATE credit_balances SET remaining = ?, updated_at = ? WHERE owner = ?",
            (remaining, now, owner),
        )
    elif spare > 0:
        granted -= spare
        await _give_back(w, owner, period, epoch, spare, now)
        found = await _lock(w, owner)
        assert found is not None
        remaining = found[1]
    if row is None:
        await w.execute(
            "INSERT INTO credit_leases (id, owner, period, epoch, granted, ceiling, spent, "
            "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (lease_id, owner, period, epoch, granted, ceiling, spent, expires_at),
        )
    else:
        await w.execute(
            "UPDATE credit_leases SET granted = ?, ceiling = ?, spent = ?, expires_at = ? "
            "WHERE id = ?",
            (granted, ceiling, spent, expires_at, lease_id),
        )
    return Lease(granted, ceiling, remaining, period, epoch)


async def _tombstone(w: Writer, lease_id: str) -> tuple[str, str, int, int, int | None] | None:
    row = await w.fetchone(
        "SELECT owner, period, epoch, ceiling, spent FROM credit_tombstones WHERE id = ?",
        (lease_id,),
    )
    if row is None:
        return None
    return str(row[0]), str(row[1]), int(row[2]), int(row[3]), row[4]


async def _give_back(
    w: Writer, owner: str, period: str, epoch: int, count: int, now: float
) -> None:
    """To the balance of the same period and epoch only: never across a refill or a reset;
    what it owes (`rebase`) is paid first."""
    if count > 0:
        await w.execute(
            "UPDATE credit_balances SET "
            "remaining = remaining + CASE WHEN debt < ?1 THEN ?1 - debt ELSE 0 END, "
            "debt = CASE WHEN debt < ?1 THEN 0 ELSE debt - ?1 END, updated_at = ?2 "
            "WHERE owner = ?3 AND period = ?4 AND epoch = ?5",
            (count, now, owner, period, epoch),
        )


async def settle_all(w: Writer, counts: list[tuple[str, int]], now: float) -> None:
    """`settle` for each (lease id, spent), in the order of their balances' owners."""
    owners: dict[str, str] = {}
    ids = [lease_id for lease_id, _ in counts]
    for start in range(0, len(ids), 500):  # within every engine's limit of parameters
        part = ids[start : start + 500]
        marks = ", ".join("?" * len(part))
        rows = await w.fetchall(
            f"SELECT id, owner FROM credit_leases WHERE id IN ({marks}) UNION ALL "
            f"SELECT id, owner FROM credit_tombstones WHERE id IN ({marks}) AND owner <> ''",
            (*part, *part),
        )
        owners.update((str(lease_id), str(owner)) for lease_id, owner in rows)
    for lease_id, spent in sorted(counts, key=lambda c: (owners.get(c[0], ""), c[0])):
        await settle(w, lease_id, spent, now)


async def settle(w: Writer, lease_id: str, spent: int, now: float) -> None:
    """A lease is over and ``spent`` is all it spent (its holder let go of it, or died and its
    journal says so): what it did not spend goes back, once. A live lease gives back
    ``granted - spent``; a reclaimed one, which gave back ``granted - ceiling`` then, gives
    ``ceiling - spent`` now. A lease the store does not know (yet: its holder died while its
    first reservation was being committed) is remembered as settled with ``spent``, for
    `reclaim` to use. Settling again gives nothing."""
    found = await w.fetchone(
        "SELECT owner FROM credit_leases WHERE id = ? UNION ALL "
        "SELECT owner FROM credit_tombstones WHERE id = ? AND owner <> ''",
        (lease_id, lease_id),
    )
    if found is not None:
        await _lock(w, str(found[0]))
    row = await w.fetchone(
        "SELECT owner, period, epoch, granted FROM credit_leases WHERE id = ?", (lease_id,)
    )
    if row is not None:
        await _give_back(w, row[0], row[1], int(row[2]), int(row[3]) - spent, now)
        await w.execute("DELETE FROM credit_leases WHERE id = ?", (lease_id,))
        return
    tombstone = await _tombstone(w, lease_id)
    if tombstone is None:
        await w.execute(
            "INSERT INTO credit_tombstones (id, owner, period, epoch, ceiling, spent, ended_at) "
            "VALUES (?, '', '', -1, 0, ?, ?) ON CONFLICT (id) DO NOTHING",
            (lease_id, spent, now),
        )
        return
    owner, period, epoch, ceiling, settled = tombstone
    if settled is None:
        await _give_back(w, owner, period, epoch, ceiling - spent, now)
        await w.execute("UPDATE credit_tombstones SET spent = ? WHERE id = ?", (spent, lease_id))


async def reclaim(w: Writer, now: float) -> int:
    """Expired leases end: each gives back ``granted - ceiling`` (what its holder cannot have
    spent) and leaves a tombstone with its ceiling for `settle`; or ``granted - spent`` when its
    holder's journal has already been settled. Tombstones older than ``KEEP_TOMBSTONES`` go.
    Returns how many leases ended."""
    expired = await w.fetchall(
        "SELECT id, owner FROM credit_leases WHERE expires_at < ? ORDER BY owner, id", (now,)
    )
    ended = 0
    for lease_id, owner in expired:
        await _lock(w, owner)
        # Again under the lock: renewed, settled or reclaimed by another gateway meanwhile.
        row = await w.fetchone(
            "SELECT period, epoch, granted, ceiling FROM credit_leases "
            "WHERE id = ? AND expires_at < ?",
            (lease_id, now),
        )
        if row is None:
            continue
        period, epoch, granted, ceiling = row[0], int(row[1]), int(row[2]), int(row[3])
        tombstone = await _tombstone(w, lease_id)
        if tombstone is not None and tombstone[4] is not None:
            await _give_back(w, owner, period, epoch, granted - int(tombstone[4]), now)
        else:
            await _give_back(w, owner, period, epoch, granted - ceiling, now)
            await w.execute(
                "INSERT INTO credit_tombstones (id, owner, period, epoch, ceiling, spent, "
                "ended_at) VALUES (?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (id) DO NOTHING",
                (lease_id, owner, period, epoch, ceiling, now),
            )
        await w.execute("DELETE FROM credit_leases WHERE id = ?", (lease_id,))
        ended += 1
    await w.execute("DELETE FROM credit_tombstones WHERE ended_at < ?", (now - KEEP_TOMBSTONES,))
    return ended


async def set_balance(w: Writer, owner: str, remaining: int, period: str, now: float) -> None:
    """An operator's new balance: the leases held against the old one end (their holders drop
    them at their next report)."""
    await w.execute(
        "INSERT INTO credit_balances (owner, period, remaining, epoch, updated_at) "
        "VALUES (?1, ?2, ?3, 0, ?4) ON CONFLICT (owner) DO UPDATE SET period = ?2, "
        "remaining = ?3, epoch = credit_balances.epoch + 1, debt = 0, updated_at = ?4",
        (owner, period, remaining, now),
    )
    await w.execute("DELETE FROM credit_leases WHERE owner = ?", (owner,))
    await w.execute("DELETE FROM credit_tombstones WHERE owner = ?", (owner,))


async def remaining(db: Database, owner: str, period: str) -> int | None:
    """What is left of a balance in ``period``: unreserved, plus what its leases have not yet
    reported spent, less what it owes. None when it has no balance in that period yet (it
    starts full)."""
    row = await db.fetchone(
        "SELECT b.remaining - b.debt + coalesce((SELECT sum(l.granted - l.spent) "
        "FROM credit_leases l "
        "WHERE l.owner = b.owner AND l.period = b.period AND l.epoch = b.epoch), 0) "
        "FROM credit_balances b WHERE b.owner = ? AND b.period = ?",
        (owner, period),
    )
    return None if row is None else max(0, int(row[0]))


async def rebase(w: Writer, owner: str, delta: int, now: float) -> None:
    """The amount of a budget changed by ``delta`` (its plan's credits edited, or it moved to
    another plan) while its period runs: what it spent stays spent, and what is left moves by
    ``delta``. Lowered below what the leases hold, the balance owes the rest, paid first from
    what they give back: no more is ever admitted than the new amount."""
    row = await _lock(w, owner)
    if row is None or delta == 0:
        return  # no balance yet: it starts at the new amount
    if delta > 0:
        await w.execute(
            "UPDATE credit_balances SET "
            "remaining = remaining + CASE WHEN debt < ?1 THEN ?1 - debt ELSE 0 END, "
            "debt = CASE WHEN debt < ?1 THEN 0 ELSE debt - ?1 END, updated_at = ?2 "
            "WHERE owner = ?3",
            (delta, now, owner),
        )
        return
    await w.execute(
        "UPDATE credit_balances SET "
        "debt = debt + CASE WHEN remaining < ?1 THEN ?1 - remaining ELSE 0 END, "
        "remaining = CASE WHEN remaining < ?1 THEN 0 ELSE remaining - ?1 END, updated_at = ?2 "
        "WHERE owner = ?3",
        (-delta, now, owner),
    )
