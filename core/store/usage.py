"""SQL for ``key_usage``: requests per key and hour (hours since the epoch, UTC), by outcome.

The gateways count in memory and add their counts in batches (``gateway.usage``); several
gateways adding to one hour add up (an upsert that sums). Rows older than ``RETENTION_HOURS`` are
pruned with the rest of the store's housekeeping.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.store.database import Database, Writer, json_batches

RETENTION_HOURS = 90 * 24
Counts = tuple[int, int, int]  # allowed, denied (401/403), limited (429)


_SUM = (
    "ON CONFLICT (access_key, hour) DO UPDATE SET "
    "allowed = key_usage.allowed + excluded.allowed, "
    "denied = key_usage.denied + excluded.denied, "
    "limited = key_usage.limited + excluded.limited"
)


async def add(w: Writer, rows: Iterable[tuple[str, int, int, int, int]]) -> None:
    """(access_key, hour, allowed, denied, limited) rows, added to what is there: on SQLite one
    statement per thousand rows (``json_batches`` says why), on PostgreSQL one executemany."""
    batch = list(rows)
    if w.dialect != "sqlite":
        await w.executemany(
            "INSERT INTO key_usage (access_key, hour, allowed, denied, limited) "
            "VALUES (?, ?, ?, ?, ?) " + _SUM,
            batch,
        )
        return
    for encoded in json_batches(batch):
        # "WHERE true": an upsert after SELECT ... FROM needs it (SQLite's parser).
        await w.execute(
            "INSERT INTO key_usage (access_key, hour, allowed, denied, limited) "
            "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 "
            "FROM json_each(?1) WHERE true " + _SUM,
            (encoded,),
        )


async def since(db: Database, access_key: str, hour: int) -> dict[int, Counts]:
    """A key's counts from ``hour`` on, by hour."""
    rows = await db.fetchall(
        "SELECT hour, allowed, denied, limited FROM key_usage WHERE access_key = ? AND hour >= ?",
        (access_key, hour),
    )
    return {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}


async def prune(w: Writer, now: float) -> None:
    await w.execute("DELETE FROM key_usage WHERE hour < ?", (int(now // 3600) - RETENTION_HOURS,))
