"""SQL for API keys, their secrets and the ``key_events`` change feed.

Every statement that changes a key or its secrets appends a ``key_events`` row in the same
transaction: the verifiers of every process follow that feed to evict what they cached
(revocation within ``invalidation_interval_seconds`` + 0.5 s). In the same transaction too, the
change's webhook event (``key.created``, ``.updated``, ``.rolled``, ``.revoked``) goes to the
outbox (``core.store.webhooks``), whichever path made the change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from core import plans
from core.policies import RateLimit
from core.store import webhooks as store_webhooks
from core.store.database import Database, Writer, json_batches
from core.store.records import ApiKey, KeyLookup, RevokedKey

_KEY_COLUMNS = """k.access_key, k.organization_id, k.user_id, k.application_id,
    k.default_project_id, k.description, k.mode, k.created_at, k.updated_at, k.expires_at,
    k.last_used_at, k.creation_ip,
    coalesce((SELECT s.secret_prefix FROM key_secrets s WHERE s.access_key = k.access_key
              ORDER BY s.created_at DESC LIMIT 1), ''),
    k.rate_limits, k.allowed_ips, k.permissions, k.disabled, k.metadata, k.plan_id, k.credits,
    k.imported"""

ORDERS = {
    "created_at_asc": "k.created_at ASC, k.access_key ASC",
    "created_at_desc": "k.created_at DESC, k.access_key DESC",
    "last_used_at_desc": "k.last_used_at IS NULL, k.last_used_at DESC, k.access_key ASC",
}


def _key(row: tuple[Any, ...]) -> ApiKey:
    *columns, limits, ips, held, disabled, metadata, plan_id, credits, imported = row
    key = ApiKey(*columns)
    return replace(
        key,
        rate_limits=rate_limits_of(limits),
        allowed_ips=_allowed_ips(ips),
        permissions=_permissions(held),
        disabled=bool(disabled),
        metadata=json.loads(metadata),
        plan_id=plan_id,
        credits=plans.credits_from_column(credits),
        imported=bool(imported),
    )


# Policies are JSON lists in their columns, written only by the service layer, which checked
# them (core.policies): read back as they were written.
def rate_limits_of(text: str) -> tuple[RateLimit, ...]:
    return tuple(RateLimit(**item) for item in json.loads(text))


def _allowed_ips(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


def _permissions(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(json.loads(text))


def policy_json(value: tuple[RateLimit, ...] | tuple[str, ...] | None) -> str | None:
    """A policy list as its column holds it (None: no permissions, an unrestricted key)."""
    if value is None:
        return None
    return json.dumps([v.to_json() if isinstance(v, RateLimit) else v for v in value])


LOOKUP_BATCH = 500  # hashes per query: well under SQLite's bound on bound parameters


# The key with its plan, its bearer's budget and its bearer's plan: all a verifier needs, in
# one query (core.plans.resolve decides which of them applies).
_LOOKUP = """SELECT s.secret_hash, k.access_key, k.organization_id, k.user_id, k.application_id,
        k.default_project_id, k.mode, k.expires_at, s.expires_at, k.rate_limits, k.allowed_ips,
        k.permissions, k.disabled, k.metadata, k.credits,
        kp.id, kp.name, kp.rate_limits, kp.credits, kp.metadata,
        coalesce(u.rate_limits, a.rate_limits), coalesce(u.credits, a.credits),
        bp.id, bp.name, bp.rate_limits, bp.credits, bp.metadata
    FROM key_secrets s JOIN api_keys k ON k.access_key = s.access_key
    LEFT JOIN plans kp ON kp.id = k.plan_id
    LEFT JOIN users u ON u.id = k.user_id
    LEFT JOIN applications a ON a.id = k.application_id
    LEFT JOIN plans bp ON bp.id = coalesce(u.plan_id, a.plan_id)
    WHERE s.secret_hash"""


async def lookup_many(db: Database, secret_hashes: list[bytes]) -> dict[bytes, KeyLookup]:
    """The keys of several secret hashes in one query (the verifier batches its cache misses).
    PostgreSQL takes them as one array parameter, so the statement is prepared once."""
    found: dict[bytes, KeyLookup] = {}
    for start in range(0, len(secret_hashes), LOOKUP_BATCH):
        part = secret_hashes[start : start + LOOKUP_BATCH]
        if db.dialect == "postgresql":
            rows = await db.fetchall(f"{_LOOKUP} = ANY(?::bytea[])", (part,))
        else:
            rows = await db.fetchall(f"{_LOOKUP} IN ({','.join('?' * len(part))})", part)
        for secret_hash, *row in rows:
            found[bytes(secret_hash)] = _lookup(tuple(row))
    return found


def _plan(row: tuple[Any, ...]) -> plans.PlanRow | None:
    plan_id, name, limits, credits, metadata = row
    if plan_id is None:
        return None
    return plans.PlanRow(
        plan_id,
        name,
        rate_limits_of(limits),
        plans.plan_credits_from_column(credits),
        json.loads(metadata),
    )


def _lookup(row: tuple[Any, ...]) -> KeyLookup:
    access_key, org, user_id, application_id, project, mode, expires_at, secret_expires = row[:8]
    bearer = f"user:{user_id}" if user_id is not None else f"application:{application_id}"
    resolved = plans.resolve(
        access_key,
        bearer,
        plans.credits_from_column(row[13]),
        json.loads(row[12]),
        _plan(row[14:19]),
        rate_limits_of(row[19] or "[]"),
        plans.credits_from_column(row[20]),
        _plan(row[21:26]),
    )
    return KeyLookup(
        access_key=access_key,
        organization_id=org,
        bearer_type="user" if user_id is not None else "application",
        bearer_id=user_id if user_id is not None else application_id,
        project_id=project,
        mode=mode,
        expires_at=expires_at,
        secret_expires_at=secret_expires,
        rate_limits=rate_limits_of(row[8]),
        allowed_ips=_allowed_ips(row[9]),
        permissions=_permissions(row[10]),
        disabled=bool(row[11]),
        resolved=resolved,
    )


async def get(db: Database | Writer, access_key: str) -> ApiKey | None:
    row = await db.fetchone(
        f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE k.access_key = ?", (access_key,)
    )
    return _key(row) if row else None


@dataclass(frozen=True)
class KeyFilter:
    organization_id: str
    user_id: str | None = None
    application_id: str | None = None
    bearer_type: str | None = None
    project_id: str | None = None
    mode: str | None = None
    expired: bool | None = None
    order_by: str = "created_at_asc"
    page: int = 1
    page_size: int = 20


def _by_bearer(f: KeyFilter, table: str) -> tuple[list[str], list[str]]:
    """The conditions (and their parameters) on organization and bearer, for the columns of
    ``table`` (``"k."``: api_keys as k; ``""``: revoked_keys, which has the same names)."""
    where, params = [f"{table}organization_id = ?"], [f.organization_id]
    for column, value in (("user_id", f.user_id), ("application_id", f.application_id)):
        if value is not None:
            where.append(f"{table}{column} = ?")
            params.append(value)
    if f.bearer_type in ("user", "application"):
        where.append(f"{table}{f.bearer_type}_id IS NOT NULL")
    return where, params


async def search(db: Database, f: KeyFilter, now: float) -> tuple[list[ApiKey], int]:
    """One page of keys matching the filter, and how many match in all."""
    where, params = _by_bearer(f, "k.")
    for column, value in (("k.default_project_id", f.project_id), ("k.mode", f.mode)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if f.expired is True:
        where.append("k.expires_at IS NOT NULL AND k.expires_at <= ?")
        params.append(now)  # type: ignore[arg-type]
    elif f.expired is False:
        where.append("(k.expires_at IS NULL OR k.expires_at > ?)")
        params.append(now)  # type: ignore[arg-type]
    clause = " AND ".join(where)
    total_row = await db.fetchone(f"SELECT count(*) FROM api_keys k WHERE {clause}", params)
    rows = await db.fetchall(
        f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE {clause} ORDER BY {ORDERS[f.order_by]} "
        "LIMIT ? OFFSET ?",
        [*params, f.page_size, (f.page - 1) * f.page_size],
    )
    return [_key(r) for r in rows], int(total_row[0]) if total_row else 0


async def event(w: Writer, access_key: str, action: str, now: float) -> None:
    await w.execute(
        "INSERT INTO key_events (access_key, action, created_at) VALUES (?, ?, ?)",
        (access_key, action, now),
    )


async def insert(w: Writer, key: ApiKey, secret_hash: bytes) -> None:
    await w.execute(
        """INSERT INTO api_keys (access_key, organization_id, user_id, application_id,
               default_project_id, description, mode, created_at, updated_at, expires_at,
               last_used_at, creation_ip, rate_limits, allowed_ips, permissions, disabled,
               metadata, plan_id, credits, imported)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            key.access_key,
            key.organization_id,
            key.user_id,
            key.application_id,
            key.default_project_id,
            key.description,
            key.mode,
            key.created_at,
            key.updated_at,
            key.expires_at,
            key.last_used_at,
            key.creation_ip,
            policy_json(key.rate_limits),
            policy_json(key.allowed_ips),
            policy_json(key.permissions),
            int(key.disabled),
            json.dumps(key.metadata),
            key.plan_id,
            plans.credits_column(key.credits),
            int(key.imported),
        ),
    )
    await add_secret(w, key.access_key, secret_hash, key.secret_prefix, key.created_at)
    await event(w, key.access_key, "create", key.created_at)
    await store_webhooks.key_event(w, "key.created", key, key.created_at)


async def add_secret(
    w: Writer, access_key: str, secret_hash: bytes, prefix: str, now: float
) -> None:
    await w.execute(
        "INSERT INTO key_secrets (secret_hash, access_key, secret_prefix, created_at) "
        "VALUES (?, ?, ?, ?)",
        (secret_hash, access_key, prefix, now),
    )


UPDATABLE = (
    "description",
    "default_project_id",
    "expires_at",
    "rate_limits",
    "allowed_ips",
    "permissions",
    "disabled",
    "metadata",
    "plan_id",
    "credits",
)
POLICIES = ("rate_limits", "allowed_ips", "permissions")


def _column(name: str, value: Any) -> Any:
    if name in POLICIES:
        return policy_json(value)
    if name == "disabled":
        return int(value)
    if name == "metadata":
        return json.dumps(value)
    if name == "credits":
        return plans.credits_column(value)
    return value


async def update(
    w: Writer, access_key: str, changes: dict[str, Any], now: float, **why: Any
) -> None:
    """Change the named columns (policies given as tuples); the event makes every verifier
    drop the key, so a tightened policy holds as fast as a revocation. A key switched off here
    is told of as ``key.disabled`` too (after its ``key.updated``); ``why`` goes into both."""
    columns = [c for c in UPDATABLE if c in changes]
    disabling = enabling = False
    if "disabled" in changes:
        row = await w.fetchone("SELECT disabled FROM api_keys WHERE access_key = ?", (access_key,))
        disabling = bool(changes["disabled"]) and row is not None and not row[0]
        enabling = not changes["disabled"] and row is not None and bool(row[0])
    sets = ", ".join(f"{c} = ?" for c in [*columns, *(["enabled_at"] if enabling else [])])
    values = [_column(c, changes[c]) for c in columns] + ([now] if enabling else [])
    await w.execute(
        f"UPDATE api_keys SET {sets}, updated_at = ? WHERE access_key = ?",
        [*values, now, access_key],
    )
    await event(w, access_key, "update", now)
    if "expires_at" in columns:  # a new expiry is told of again as it nears
        await w.execute(
            "DELETE FROM key_notices WHERE access_key = ? AND notice LIKE 'expiring%'",
            (access_key,),
        )
    targets = await store_webhooks.subscribers(w, access_key, "key.updated")
    changed = await get(w, access_key) if targets else None
    if changed is not None:
        await store_webhooks.key_event_to(
            w, targets, "key.updated", changed, now, changes=columns, **why
        )
    if disabling:
        told = await store_webhooks.subscribers(w, access_key, "key.disabled")
        off = await get(w, access_key) if told else None
        if off is not None:
            await store_webhooks.key_event_to(w, told, "key.disabled", off, now, **why)


async def roll(
    w: Writer, access_key: str, secret_hash: bytes, prefix: str, now: float, grace_seconds: float
) -> None:
    """Add a new secret; the older ones stop working after ``grace_seconds`` (0: at once). An
    imported key is ours from then on: its new secret has our prefix and checksum."""
    if grace_seconds <= 0:
        await w.execute("DELETE FROM key_secrets WHERE access_key = ?", (access_key,))
    else:
        until = now + grace_seconds
        await w.execute(
            "UPDATE key_secrets SET expires_at = CASE WHEN expires_at IS NOT NULL "
            "AND expires_at < ?1 THEN expires_at ELSE ?1 END WHERE access_key = ?2",
            (until, access_key),
        )
    await add_secret(w, access_key, secret_hash, prefix, now)
    await w.execute(
        "UPDATE api_keys SET updated_at = ?, imported = 0 WHERE access_key = ?", (now, access_key)
    )
    await event(w, access_key, "roll", now)
    targets = await store_webhooks.subscribers(w, access_key, "key.rolled")
    rolled = await get(w, access_key) if targets else None
    if rolled is not None:
        await store_webhooks.key_event_to(
            w, targets, "key.rolled", rolled, now, previous_secret_grace_seconds=grace_seconds
        )


async def delete(w: Writer, access_key: str, now: float, **why: Any) -> bool:
    """Revoke for good: the key and its secrets are deleted, and who it belonged to is kept in
    ``revoked_keys``; the event tells every verifier, and ``why`` goes into the webhook event."""
    targets = await store_webhooks.subscribers(w, access_key, "key.revoked")
    key = await get(w, access_key) if targets else None
    await w.execute(
        "INSERT INTO revoked_keys (access_key, organization_id, user_id, application_id, "
        "revoked_at) SELECT access_key, organization_id, user_id, application_id, ?1 "
        "FROM api_keys WHERE access_key = ?2 "
        "ON CONFLICT (access_key) DO UPDATE SET revoked_at = excluded.revoked_at",
        (now, access_key),
    )
    await w.execute(
        "INSERT INTO revoked_secrets (secret_hash, access_key, revoked_at) "
        "SELECT secret_hash, access_key, ? FROM key_secrets WHERE access_key = ? "
        "ON CONFLICT (secret_hash) DO NOTHING",
        (now, access_key),
    )
    await w.execute("DELETE FROM key_secrets WHERE access_key = ?", (access_key,))
    deleted = await w.execute("DELETE FROM api_keys WHERE access_key = ?", (access_key,))
    if deleted:
        await event(w, access_key, "revoke", now)
        if key is not None:
            await store_webhooks.key_event_to(w, targets, "key.revoked", key, now, **why)
    return deleted > 0


async def revoked(db: Database | Writer, access_key: str) -> RevokedKey | None:
    row = await db.fetchone(
        "SELECT access_key, organization_id, user_id, application_id, revoked_at "
        "FROM revoked_keys WHERE access_key = ?",
        (access_key,),
    )
    return RevokedKey(*row) if row else None


async def search_revoked(db: Database, f: KeyFilter) -> tuple[list[RevokedKey], int]:
    """One page of the revoked keys matching the filter's organization and bearer (a revoked
    key keeps no project, mode or expiry), newest revocation first, and how many in all."""
    where, params = _by_bearer(f, "")
    clause = " AND ".join(where)
    total_row = await db.fetchone(f"SELECT count(*) FROM revoked_keys WHERE {clause}", params)
    rows = await db.fetchall(
        "SELECT access_key, organization_id, user_id, application_id, revoked_at "
        f"FROM revoked_keys WHERE {clause} ORDER BY revoked_at DESC, access_key ASC "
        "LIMIT ? OFFSET ?",
        [*params, f.page_size, (f.page - 1) * f.page_size],
    )
    return [RevokedKey(*r) for r in rows], int(total_row[0]) if total_row else 0


async def revoked_secret(db: Database, secret_hash: bytes) -> bool:
    """Whether this secret belonged to a key since revoked."""
    row = await db.fetchone("SELECT 1 FROM revoked_secrets WHERE secret_hash = ?", (secret_hash,))
    return row is not None


@dataclass(frozen=True)
class FeedRead:
    # (event id, access key, when the change was written), in id order
    events: list[tuple[int, str, float]]
    cursor: int  # where the next read starts


async def feed_start(db: Database) -> int:
    """A cursor for following the feed from now on."""
    if db.dialect == "postgresql":
        row = await db.fetchone("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
    else:
        row = await db.fetchone("SELECT coalesce(max(id), 0) FROM key_events")
    return int(row[0]) if row else 0


async def read_feed(db: Database, cursor: int, limit: int = 10_000) -> FeedRead:
    """The events since ``cursor``, complete even when they commit out of id order.

    SQLite commits one writer at a time, in id order: the cursor is the last id read.
    PostgreSQL's ids come from a sequence, and a transaction that took id 10 may commit after one
    that took id 11 was read. So the cursor there is the ``xmin`` of the reading statement's
    snapshot: every transaction older than it has ended and is visible to that read; the next
    read starts again at it, so an event that commits late is read then, whatever its id. The
    windows overlap: a follower skips ids its previous read returned.
    """
    if db.dialect == "postgresql":
        rows = await db.fetchall(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, e.id, e.access_key, "
            "e.created_at "
            "FROM (SELECT 1) AS one LEFT JOIN key_events e ON e.xact_id >= ? ORDER BY e.id",
            (cursor,),
        )
        events = [(int(r[1]), str(r[2]), float(r[3])) for r in rows if r[1] is not None]
        return FeedRead(events, int(rows[0][0]) if rows else cursor)
    rows = await db.fetchall(
        "SELECT id, access_key, created_at FROM key_events WHERE id > ? ORDER BY id LIMIT ?",
        (cursor, limit),
    )
    events = [(int(r[0]), str(r[1]), float(r[2])) for r in rows]
    return FeedRead(events, events[-1][0] if events else cursor)


async def touch_last_used(w: Writer, uses: Iterable[tuple[float, str]]) -> None:
    """Batch of (time, access_key), never moving last_used_at backwards: on SQLite one
    statement per thousand keys (``json_batches`` says why), on PostgreSQL one executemany."""
    rows = list(uses)
    if w.dialect != "sqlite":
        await w.executemany(
            "UPDATE api_keys SET last_used_at = ?1 WHERE access_key = ?2 "
            "AND (last_used_at IS NULL OR last_used_at < ?1)",
            rows,
        )
        return
    for batch in json_batches(rows):
        await w.execute(
            "UPDATE api_keys SET last_used_at = u.value ->> 0 FROM json_each(?1) AS u "
            "WHERE api_keys.access_key = u.value ->> 1 "
            "AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < u.value ->> 0)",
            (batch,),
        )


async def prune(w: Writer, events_before: float, now: float) -> None:
    """Housekeeping: old feed rows (every follower is far past them) and expired roll secrets."""
    await w.execute("DELETE FROM key_events WHERE created_at < ?", (events_before,))
    await w.execute(
        "DELETE FROM key_secrets WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
    )


async def expiring(db: Database, now: float, until: float) -> list[ApiKey]:
    """Keys that expire after ``now`` and by ``until``, soonest first."""
    rows = await db.fetchall(
        f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE k.expires_at > ? AND k.expires_at <= ? "
        "ORDER BY k.expires_at",
        (now, until),
    )
    return [_key(r) for r in rows]
