"""A key's usage for the console's charts and `gateway keys usage`: requests per hour over the
last 24 hours and per day over the last 30 days, each split into allowed, denied (401/403) and
rate limited (429), from the counts every gateway writes (``gateway.usage``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from admin.access import Actor
from admin.serialize import rfc3339
from admin.service import get_key
from core.store import Database
from core.store import usage as store_usage

HOURS, DAYS = 24, 30


def _bucket(start: float, counts: Sequence[int]) -> dict[str, Any]:
    allowed, denied, limited = counts
    return {"start": rfc3339(start), "allowed": allowed, "denied": denied, "rate_limited": limited}


async def key_usage(
    db: Database, actor: Actor, access_key: str, now: float | None = None
) -> dict[str, Any]:
    """Visible to whoever may see the key. Every bucket is there, empty ones as zeros; the
    current hour and day are the last ones, still being counted (gateways write every 5 s)."""
    key = await get_key(db, actor, access_key)
    now = time.time() if now is None else now
    hour = int(now // 3600)
    day = hour // 24
    found = await store_usage.since(db, key.access_key, (day - DAYS + 1) * 24)
    zero = (0, 0, 0)
    hourly = [_bucket(h * 3600, found.get(h, zero)) for h in range(hour - HOURS + 1, hour + 1)]
    by_day: dict[int, list[int]] = {}
    for h, counts in found.items():
        total = by_day.setdefault(h // 24, [0, 0, 0])
        for i in range(3):
            total[i] += counts[i]
    daily = [_bucket(d * 86_400, by_day.get(d, zero)) for d in range(day - DAYS + 1, day + 1)]
    return {"access_key": key.access_key, "hourly": hourly, "daily": daily}
