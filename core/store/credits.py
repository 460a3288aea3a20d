"""SQL for credit balances and the reservations (leases) gateways hold against them.

A balance (``credit_balances``) is what no gateway holds: a gateway takes credits out of it into
its lease (``granted``), spends them locally, and says in the lease how far it may have got
(``ceiling``: it never spends past the ceiling it has written) and how far it has got
(``spent``). Released, a lease gives back ``granted - spent``; expired (its gateway died or lost
the store), ``granted - ceiling``, the part its gateway cannot have spent. The proof that no more
is ever admitted than a balance held is in docs/plans-and-credits.md.

A balance belongs to one refill period (``period``, ``core.plans.period``) and one ``epoch``
(bumped when an operator sets it): leases of another period or epoch give nothing back.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.store.database import Database, Writer


@dataclass(frozen=True)
class Lease:
    """What a gateway holds of one balance after a reservation or a report."""

    granted: int
    ceiling: int
    remaining: int  # what the balance has left beyond every lease
    period: str
    epoch: int


async def _balance(w: Writer, owner: str, period: str, initial: int, now: float) -> tuple[int, int]:
    """The balance's remaining and epoch, locked for this transaction, created at ``initial``
    and refilled to it when its period has passed (the leases of the old period then end)."""
    await w.execute(
        "INSERT INTO credit_balances (owner, period, remaining, epoch, updated_at) "
        "VALUES (?, ?, ?, 0, ?) ON CONFLICT (owner) DO NOTHING",
        (owner, period, initial, now),
    )
    lock = " FOR UPDATE" if w.dialect == "postgresql" else ""
    row = await w.fetchone(
        f"SELECT period, remaining, epoch FROM credit_balances WHERE owner = ?{lock}", (owner,)
    )
    assert row is not None
    if row[0] != period:
        await w.execute(
            "UPDATE credit_balances SET period = ?, remaining = ?, updated_at = ? WHERE owner = ?",
            (period, initial, now, owner),
        )
        await w.execute(
            "DELETE FROM credit_leases WHERE owner = ? AND period <> ?", (owner, period)
        )
        return initial, int(row[2])
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
) -> Lease | None:
    """Report ``spent`` on the lease, take from the balance until it has ``want_granted`` (or
    the balance is empty), and set its ceiling to ``want_ceiling`` (never above what it was
    granted; a holder lowers its own ceiling before it asks for a lower one). None when the
    lease is gone (reclaimed, or ended by a refill or an operator's reset) while its holder
    still thinks it holds it: the holder drops it. A lease id not seen before starts one."""
    remaining, epoch = await _balance(w, owner, period, initial, now)
    row = await w.fetchone(
        "SELECT granted, ceiling, period, epoch FROM credit_leases WHERE id = ?", (lease_id,)
    )
    if row is None:
        if spent:
            return None  # it had spent from a lease that has ended
        granted, ceiling = 0, 0
    else:
        granted, ceiling = int(row[0]), int(row[1])
        if row[2] != period or int(row[3]) != epoch:
            return None
    take = min(max(0, want_granted - granted), remaining)
    granted += take
    ceiling = max(spent, min(granted, want_ceiling))
    if take:
        remaining -= take
        await w.execute(
            "UPDATE credit_balances SET remaining = ?, updated_at = ? WHERE owner = ?",
            (remaining, now, owner),
        )
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


async def release(w: Writer, lease_id: str, spent: int, now: float) -> None:
    """Give back what was granted and not spent, to the balance of the same period and epoch."""
    row = await w.fetchone(
        "SELECT owner, period, epoch, granted FROM credit_leases WHERE id = ?", (lease_id,)
    )
    if row is None:
        return
    owner, period, epoch, granted = row
    await w.execute(
        "UPDATE credit_balances SET remaining = remaining + ?, updated_at = ? "
        "WHERE owner = ? AND period = ? AND epoch = ?",
        (max(0, int(granted) - spent), now, owner, period, epoch),
    )
    await w.execute("DELETE FROM credit_leases WHERE id = ?", (lease_id,))


async def reclaim(w: Writer, now: float) -> int:
    """Expired leases give back ``granted - ceiling`` (what their holder cannot have spent);
    returns how many ended."""
    rows = await w.fetchall(
        "SELECT id, owner, period, epoch, granted - ceiling FROM credit_leases "
        "WHERE expires_at < ?",
        (now,),
    )
    for lease_id, owner, period, epoch, unspent in rows:
        await w.execute(
            "UPDATE credit_balances SET remaining = remaining + ?, updated_at = ? "
            "WHERE owner = ? AND period = ? AND epoch = ?",
            (int(unspent), now, owner, period, epoch),
        )
        await w.execute("DELETE FROM credit_leases WHERE id = ?", (lease_id,))
    return len(rows)


async def set_balance(w: Writer, owner: str, remaining: int, period: str, now: float) -> None:
    """An operator's new balance: the leases held against the old one end (their holders drop
    them at their next report)."""
    await w.execute(
        "INSERT INTO credit_balances (owner, period, remaining, epoch, updated_at) "
        "VALUES (?1, ?2, ?3, 0, ?4) ON CONFLICT (owner) DO UPDATE SET period = ?2, "
        "remaining = ?3, epoch = credit_balances.epoch + 1, updated_at = ?4",
        (owner, period, remaining, now),
    )
    await w.execute("DELETE FROM credit_leases WHERE owner = ?", (owner,))


async def remaining(db: Database, owner: str, period: str) -> int | None:
    """What is left of a balance in ``period``: unreserved, plus what its leases have not yet
    reported spent. None when it has no balance in that period yet (it starts full)."""
    row = await db.fetchone(
        "SELECT b.remaining + coalesce((SELECT sum(l.granted - l.spent) FROM credit_leases l "
        "WHERE l.owner = b.owner AND l.period = b.period AND l.epoch = b.epoch), 0) "
        "FROM credit_balances b WHERE b.owner = ? AND b.period = ?",
        (owner, period),
    )
    return None if row is None else int(row[0])
