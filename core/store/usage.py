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
    "limited = key_usage.limited + excluded.limited, "
    "credits = key_usage.credits + excluded.credits"
)


async def add(w: Writer, rows: Iterable[tuple[str, int, int, int, int, int]]) -> None:
    """(access_key, hour, allowed, denied, limited, credits) rows, added to what is there: on
    SQLite one statement per thousand rows (``json_batches`` says why), on PostgreSQL one
    executemany."""
    batch = list(rows)
    if w.dialect != "sqlite":
        await w.executemany(
            "INSERT INTO key_usage (access_key, hour, allowed, denied, limited, credits) "
            "VALUES (?, ?, ?, ?, ?, ?) " + _SUM,
            batch,
        )
        return
    for encoded in json_batches(batch):
        # "WHERE true": an upsert after SELECT ... FROM needs it (SQLite's parser).
        await w.execute(
            "INSERT INTO key_usage (access_key, hour, allowed, denied, limited, credits) "
            "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 "
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


async def export_rows(
    db: Database, org_id: str, first_hour: int, end_hour: int
) -> list[tuple[int, str, str, str | None, tuple[int, int, int, int]]]:
    """Counts of the organization's keys (revoked ones too) between two hours: (hour,
    access_key, bearer as ``user:ID`` / ``application:ID``, plan id or None, (allowed, denied,
    limited, credits)). The plan is the key's, else its bearer's, as they are now."""
    rows = await db.fetchall(
        "SELECT u.hour, u.access_key, coalesce(k.user_id, r.user_id), "
        "coalesce(k.application_id, r.application_id), "
        "coalesce(k.plan_id, us.plan_id, ap.plan_id), "
        "u.allowed, u.denied, u.limited, u.credits "
        "FROM key_usage u "
        "LEFT JOIN api_keys k ON k.access_key = u.access_key "
        "LEFT JOIN revoked_keys r ON r.access_key = u.access_key "
        "LEFT JOIN users us ON us.id = coalesce(k.user_id, r.user_id) "
        "LEFT JOIN applications ap ON ap.id = coalesce(k.application_id, r.application_id) "
        "WHERE u.hour >= ? AND u.hour < ? "
        "AND coalesce(k.organization_id, r.organization_id) = ? ORDER BY u.hour, u.access_key",
        (first_hour, end_hour, org_id),
    )
    return [
        (
            int(r[0]),
            str(r[1]),
            f"user:{r[2]}" if r[2] is not None else f"application:{r[3]}",
            r[4],
            (int(r[5]), int(r[6]), int(r[7]), int(r[8])),
        )
        for r in rows
    ]
