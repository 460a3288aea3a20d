"""What housekeeping does to keys on its own, off the request path: the webhook events no admin
action writes, a key about to expire (``key.expiring``, 7 days and 1 day before) and a key rate
limited (``key.rate_limited``, at most once per key and hour); and the keys left unused past
their organization's ``disable_unused_after_days``, disabled (kept, refused with 403
key_disabled, restorable), audited as ``housekeeping``, with their ``key.updated`` and
``key.disabled`` events (``reason: "unused"``).

The request path only counts a 429 for the key's usage (``gateway.usage``), as it did before;
the usage flush hands the limited (key, hour) pairs here. Each notice is written once for every
node (``key_notices``, ``core.store.webhooks.first_notice``), in the transaction of its event.
"""

from __future__ import annotations

import logging

from core.keyview import rfc3339
from core.store import Database
from core.store import audit as store_audit
from core.store import keys as store_keys
from core.store import lifetimes as store_lifetimes
from core.store import webhooks as store_webhooks

log = logging.getLogger("gateway.notices")

DAY = 86400.0
# (notice, seconds before expiry), the farthest first.
EXPIRY_NOTICES = (("expiring_7d", 7 * DAY), ("expiring_1d", 1 * DAY))


class KeyNotices:
    def __init__(self) -> None:
        self._limited_sent: set[tuple[str, int]] = set()  # this process's, for the current hour

    async def expiring(self, db: Database, now: float) -> int:
        """Tell of every key entering its last 7 days or its last day; returns how many events.
        A key whose whole life is shorter than a notice's lead gets only the nearer notice."""
        told = 0
        for key in await store_keys.expiring(db, now, now + EXPIRY_NOTICES[0][1]):
            assert key.expires_at is not None
            left = key.expires_at - now
            due = [
                name
                for name, lead in EXPIRY_NOTICES
                if left <= lead and key.expires_at - key.created_at > lead
            ]
            if not due:
                continue
            async with db.transaction() as w:
                fresh = [
                    name
                    for name in due
                    if await store_webhooks.first_notice(w, key.access_key, name, now)
                ]
                if due[-1] in fresh:  # the nearest lead that applies, once
                    await store_webhooks.key_event(
                        w, "key.expiring", key, now, expires_in_seconds=int(left)
                    )
                    told += 1
        return told

    async def rate_limited(self, db: Database, limited: set[tuple[str, int]], now: float) -> int:
        """Tell of the keys rate limited in an hour, once per key and hour."""
        hour = int(now // 3600)
        self._limited_sent = {pair for pair in self._limited_sent if pair[1] >= hour - 1}
        told = 0
        for access_key, at in sorted(limited - self._limited_sent):
            async with db.transaction() as w:
                key = await store_keys.get(w, access_key)
                notice = f"rate_limited:{at}"
                fresh = key is not None and await store_webhooks.first_notice(
                    w, access_key, notice, now
                )
                if key is not None and fresh:
                    await store_webhooks.key_event(
                        w, "key.rate_limited", key, now, hour=rfc3339(at * 3600.0)
                    )
                    told += 1
            self._limited_sent.add((access_key, at))
        return told

    async def retire_unused(self, db: Database, now: float) -> int:
        """Disable the keys unused longer than their organization allows (kept, refused with
        403 key_disabled, restorable with the same secret); returns how many."""
        retired = 0
        for access_key, org_id, days in await store_lifetimes.unused_since(db, now):
            async with db.transaction() as w:
                if await store_keys.get(w, access_key) is None:  # revoked meanwhile
                    continue
                await store_keys.update(
                    w, access_key, {"disabled": True}, now, reason="unused", unused_days=days
                )
                await store_audit.record(
                    w,
                    store_audit.AuditEvent(
                        created_at=now,
                        organization_id=org_id,
                        actor_type="housekeeping",
                        actor_id=None,
                        actor_access_key=None,
                        action="api_key.disable",
                        target_type="api_key",
                        target_id=access_key,
                        source_ip=None,
                        outcome="success",
                        detail=f"unused for more than {days} days (disable_unused_after_days)",
                    ),
                )
            retired += 1
            log.info("disabled %s: unused for more than %d days", access_key, days)
        return retired
