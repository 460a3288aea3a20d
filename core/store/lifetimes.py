"""SQL for organizations' lifetime policies, and the keys that break one."""

from __future__ import annotations

from dataclasses import dataclass

from core.store.database import Database, Writer

DAY = 86400.0


@dataclass(frozen=True)
class LifetimePolicy:
    organization_id: str
    max_key_lifetime_days: int | None = None  # None: keys may live for ever
    disable_unused_after_days: int | None = None  # None: unused keys are left alone
    updated_at: float | None = None


@dataclass(frozen=True)
class Violation:
    access_key: str
    reason: str  # no_expiry | lifetime_too_long | unused
    detail: str


async def get(db: Database | Writer, org_id: str) -> LifetimePolicy:
    row = await db.fetchone(
        "SELECT organization_id, max_key_lifetime_days, disable_unused_after_days, updated_at "
        "FROM organization_policies WHERE organization_id = ?",
        (org_id,),
    )
    return LifetimePolicy(*row) if row else LifetimePolicy(org_id)


async def put(w: Writer, policy: LifetimePolicy) -> None:
    await w.execute(
        "INSERT INTO organization_policies (organization_id, max_key_lifetime_days, "
        "disable_unused_after_days, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (organization_id) DO UPDATE SET "
        "max_key_lifetime_days = excluded.max_key_lifetime_days, "
        "disable_unused_after_days = excluded.disable_unused_after_days, "
        "updated_at = excluded.updated_at",
        (
            policy.organization_id,
            policy.max_key_lifetime_days,
            policy.disable_unused_after_days,
            policy.updated_at,
        ),
    )


# A key's unused time starts at its last use, else its creation, and again when it is enabled
# (a key disabled for disuse and enabled by its owner is not disabled again at once).
_UNUSED_SINCE = (
    "coalesce(k.last_used_at, k.created_at) < {limit} "
    "AND coalesce(k.enabled_at, k.created_at) < {limit}"
)


async def unused_since(db: Database, now: float) -> list[tuple[str, str, int]]:
    """(access key, organization, days) of every key unused (never, or not since) for longer
    than its organization's ``disable_unused_after_days``; a key never used counts from its
    creation, a key enabled again from then. Keys already disabled are left out: housekeeping
    has nothing more to do to them."""
    limit = _UNUSED_SINCE.format(limit="? - p.disable_unused_after_days * ?")
    rows = await db.fetchall(
        "SELECT k.access_key, k.organization_id, p.disable_unused_after_days "
        "FROM api_keys k JOIN organization_policies p ON p.organization_id = k.organization_id "
        f"WHERE p.disable_unused_after_days IS NOT NULL AND k.disabled = 0 AND {limit} "
        "ORDER BY k.access_key",
        (now, DAY, now, DAY),
    )
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


async def violations(db: Database, policy: LifetimePolicy, now: float) -> list[Violation]:
    """The organization's keys that break its policy, as they stand."""
    found: list[Violation] = []
    limit = policy.max_key_lifetime_days
    if limit is not None:
        rows = await db.fetchall(
            "SELECT access_key, created_at, expires_at FROM api_keys WHERE organization_id = ? "
            "AND (expires_at IS NULL OR expires_at - created_at > ?) ORDER BY access_key",
            (policy.organization_id, limit * DAY),
        )
        for access_key, created_at, expires_at in rows:
            if expires_at is None:
                found.append(Violation(access_key, "no_expiry", "never expires"))
            else:
                days = (expires_at - created_at) / DAY
                found.append(
                    Violation(
                        access_key,
                        "lifetime_too_long",
                        f"lives {days:.0f} days, more than {limit}",
                    )
                )
    unused = policy.disable_unused_after_days
    if unused is not None:
        since = now - unused * DAY
        rows = await db.fetchall(
            "SELECT k.access_key FROM api_keys k WHERE k.organization_id = ? "
            f"AND {_UNUSED_SINCE.format(limit='?')} ORDER BY k.access_key",
            (policy.organization_id, since, since),
        )
        found.extend(
            Violation(str(r[0]), "unused", f"unused for more than {unused} days") for r in rows
        )
    return found
