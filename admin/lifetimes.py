"""Lifetime policies per organization: how long its keys may live (``max_key_lifetime_days``:
new keys and edits must carry an ``expires_at`` within it, else 422 naming the limit) and how
long a key may go unused (``disable_unused_after_days``: housekeeping then disables it:
refused with 403 key_disabled, restorable with the same secret, counted from its enabling then;
audited, with its ``key.updated`` and ``key.disabled`` events).

A new policy does not touch the keys that already break it: they keep working until they expire
or are edited (an edit must then comply), and are listed by ``violations`` (the API, ``gateway
keys audit-policy`` and the console), for their owners to roll or replace. Reading the policy is
open to every bearer of the organization (a key's creator needs its limit); changing it needs a
manager.
"""

from __future__ import annotations

import time
from typing import Any

from admin.access import (
    Actor,
    NotFound,
    Unprocessable,
    audited,
    organization_of,
    record,
    require_manager,
)
from admin.fields import LIFETIME_DAYS
from core.keyview import rfc3339
from core.store import Database
from core.store import lifetimes as store_lifetimes
from core.store.lifetimes import DAY, LifetimePolicy, Violation


async def _own(db: Database, actor: Actor, org_id: str) -> str:
    if org_id != await organization_of(db, actor):
        raise NotFound(f"organization {org_id!r} does not exist", "id")
    return org_id


async def get(db: Database, actor: Actor, org_id: str) -> LifetimePolicy:
    return await store_lifetimes.get(db, await _own(db, actor, org_id))


async def update(db: Database, actor: Actor, org_id: str, body: dict[str, Any]) -> LifetimePolicy:
    async with audited(db, actor, "organization.policy", "organization", org_id):
        await _own(db, actor, org_id)
        require_manager(actor, "changing the organization's key policy")
    current = await store_lifetimes.get(db, org_id)
    changes = {
        name: LIFETIME_DAYS.parse(name, body[name])
        for name in ("max_key_lifetime_days", "disable_unused_after_days")
        if name in body
    }
    policy = LifetimePolicy(
        org_id,
        changes.get("max_key_lifetime_days", current.max_key_lifetime_days),
        changes.get("disable_unused_after_days", current.disable_unused_after_days),
        time.time(),
    )
    async with db.transaction() as w:
        await store_lifetimes.put(w, policy)
        detail = ", ".join(f"{name} = {value}" for name, value in sorted(changes.items()))
        await record(w, actor, org_id, "organization.policy", "organization", org_id, detail)
    return policy


async def latest_expiry(db: Database, org_id: str, now: float) -> float | None:
    """The latest expiry the organization allows a key given one now (None: no limit)."""
    days = (await store_lifetimes.get(db, org_id)).max_key_lifetime_days
    return None if days is None else now + days * DAY


async def check_expiry(db: Database, org_id: str, expires_at: float | None, now: float) -> None:
    """Refuse (422) an expiry the organization's ``max_key_lifetime_days`` does not allow."""
    policy = await store_lifetimes.get(db, org_id)
    days = policy.max_key_lifetime_days
    if days is None:
        return
    latest = now + days * DAY
    if expires_at is None:
        raise Unprocessable(
            f"this organization's keys must expire within {days} days "
            f"(max_key_lifetime_days): give expires_at, no later than {rfc3339(latest)}",
            "expires_at",
        )
    if expires_at > latest:
        raise Unprocessable(
            f"expires_at is past this organization's limit of {days} days "
            f"(max_key_lifetime_days): no later than {rfc3339(latest)}",
            "expires_at",
        )


async def violations(db: Database, actor: Actor, org_id: str) -> list[Violation]:
    require_manager(actor, "listing the keys that break the key policy")
    policy = await store_lifetimes.get(db, await _own(db, actor, org_id))
    return await store_lifetimes.violations(db, policy, time.time())
