"""SQL for webhooks, their outbox and the notices sent once.

**The outbox.** An event is written by :func:`key_event` inside the transaction of the change it
tells of, one ``webhook_outbox`` row per webhook that subscribed to its type: no event without its
change, no change without its event. The delivery task (``gateway.webhooks``) claims due rows with
:func:`claim` and records each attempt with :func:`settle`; the rows are also each webhook's
delivery log (:func:`deliveries`).

**Order per key.** A row is due only when no earlier row of the same webhook and key is still
pending, so a receiver sees a key's events in the order they were written, even across retries.
A key's changes lock its ``api_keys`` row, so their outbox rows take ids in commit order.

**Exactly one sender.** A claim sets ``claimed_until`` (a lease) and a token; on PostgreSQL the
rows are picked ``FOR UPDATE SKIP LOCKED``, so two nodes claiming at once take different rows; on
SQLite the claim is one ``BEGIN IMMEDIATE`` transaction. A node killed mid-delivery leaves its
lease to run out, and another node (or itself, restarted) sends the event again: at least once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.keyview import key_json, rfc3339
from core.store.database import Database, Writer
from core.store.records import ApiKey
from core.webhook_signing import new_message_id

# The events a webhook may subscribe to. "key.disabled" is fired by ``core.store.keys.update``
# when a key is switched off, whichever path did it (the API, a leak report, housekeeping).
EVENT_TYPES = (
    "key.created",
    "key.updated",
    "key.rolled",
    "key.revoked",
    "key.disabled",
    "key.expiring",
    "key.leaked",
    "key.rate_limited",
)
TEST_EVENT = "webhook.test"  # sent by POST /v1/webhooks/{id}/test, to that webhook only
RETRY_WINDOW_SECONDS = 24 * 3600.0  # retried this long after the event, then marked failed
# Waits between attempts (then the last, repeated), the schedule Standard Webhooks suggests.
BACKOFF_SECONDS = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)


@dataclass(frozen=True)
class Webhook:
    id: str
    organization_id: str
    url: str
    events: tuple[str, ...]
    description: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Delivery:
    """One event to one webhook: its place in the delivery log."""

    id: int
    webhook_id: str
    message_id: str
    event_type: str
    access_key: str
    created_at: float
    status: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: float
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: float | None
    delivered_at: float | None


@dataclass(frozen=True)
class Claimed:
    """A delivery claimed for one attempt, with what the attempt needs."""

    id: int
    token: str
    url: str
    secret: str = ""  # never in a repr: it signs
    message_id: str = ""
    body: bytes = b""
    created_at: float = 0.0
    attempts: int = 0

    def __repr__(self) -> str:
        return f"Claimed(id={self.id}, url={self.url!r}, message_id={self.message_id!r})"


_WEBHOOK = (
    "SELECT id, organization_id, url, events, description, created_at, updated_at FROM webhooks"
)


def _webhook(row: tuple[Any, ...]) -> Webhook:
    return Webhook(row[0], row[1], row[2], tuple(json.loads(row[3])), row[4], row[5], row[6])


async def insert(w: Writer, hook: Webhook, secret: str) -> None:
    await w.execute(
        "INSERT INTO webhooks (id, organization_id, url, events, description, secret, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            hook.id,
            hook.organization_id,
            hook.url,
            json.dumps(list(hook.events)),
            hook.description,
            secret,
            hook.created_at,
            hook.updated_at,
        ),
    )


async def get(db: Database | Writer, webhook_id: str) -> Webhook | None:
    row = await db.fetchone(f"{_WEBHOOK} WHERE id = ?", (webhook_id,))
    return _webhook(row) if row else None


async def list_of(db: Database, org_id: str) -> list[Webhook]:
    rows = await db.fetchall(
        f"{_WEBHOOK} WHERE organization_id = ? ORDER BY created_at, id", (org_id,)
    )
    return [_webhook(r) for r in rows]


async def update(w: Writer, webhook_id: str, changes: dict[str, Any], now: float) -> None:
    columns = [c for c in ("url", "events", "description") if c in changes]
    values = [json.dumps(list(changes[c])) if c == "events" else changes[c] for c in columns]
    sets = "".join(f"{c} = ?, " for c in columns)
    await w.execute(
        f"UPDATE webhooks SET {sets}updated_at = ? WHERE id = ?", [*values, now, webhook_id]
    )


async def delete(w: Writer, webhook_id: str) -> None:
    await w.execute("DELETE FROM webhook_outbox WHERE webhook_id = ?", (webhook_id,))
    await w.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))


# -- writing events ------------------------------------------------------------------------------


def body_of(message_id: str, event_type: str, now: float, data: dict[str, Any]) -> str:
    return json.dumps(
        {"id": message_id, "type": event_type, "timestamp": rfc3339(now), "data": data},
        separators=(",", ":"),
    )


async def _add(
    w: Writer, webhook_ids: Sequence[str], event_type: str, access_key: str, body: str, now: float
) -> None:
    message_id = json.loads(body)["id"]
    for webhook_id in webhook_ids:
        await w.execute(
            "INSERT INTO webhook_outbox (webhook_id, message_id, event_type, access_key, body, "
            "created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (webhook_id, message_id, event_type, access_key, body, now, now),
        )


def _subscribed(rows: list[tuple[Any, ...]], event_type: str) -> list[str]:
    return [str(r[0]) for r in rows if event_type in json.loads(r[1])]


async def event(
    w: Writer,
    organization_id: str,
    event_type: str,
    access_key: str,
    data: dict[str, Any],
    now: float,
) -> int:
    """Queue an event for every webhook of the organization subscribed to its type, in the
    caller's transaction; returns how many webhooks will be told."""
    rows = await w.fetchall(
        "SELECT id, events FROM webhooks WHERE organization_id = ? ORDER BY id", (organization_id,)
    )
    targets = _subscribed(rows, event_type)
    if targets:
        body = body_of(new_message_id(), event_type, now, data)
        await _add(w, targets, event_type, access_key, body, now)
    return len(targets)


async def key_event(w: Writer, event_type: str, key: ApiKey, now: float, **extra: Any) -> int:
    """The event of a change to ``key`` (as the API shows it, never a secret), plus ``extra``
    (where a key leaked, which notice this is)."""
    return await event(
        w, key.organization_id, event_type, key.access_key, {**key_json(key), **extra}, now
    )


async def subscribers(w: Writer, access_key: str, event_type: str) -> list[str]:
    """The webhooks told of ``event_type`` for this key: one query, so a change made where no
    webhook listens costs one statement more than it did without webhooks."""
    rows = await w.fetchall(
        "SELECT h.id, h.events FROM webhooks h JOIN api_keys k "
        "ON k.organization_id = h.organization_id WHERE k.access_key = ? ORDER BY h.id",
        (access_key,),
    )
    return _subscribed(rows, event_type)


async def key_event_to(
    w: Writer, targets: Sequence[str], event_type: str, key: ApiKey, now: float, **extra: Any
) -> None:
    """:func:`key_event` for webhooks already found by :func:`subscribers`."""
    body = body_of(new_message_id(), event_type, now, {**key_json(key), **extra})
    await _add(w, targets, event_type, key.access_key, body, now)


async def test_event(w: Writer, hook: Webhook, now: float) -> str:
    """A test event for one webhook; returns its message id."""
    message_id = new_message_id()
    data = {"webhook_id": hook.id, "message": "a test event from the gateway"}
    await _add(w, [hook.id], TEST_EVENT, "", body_of(message_id, TEST_EVENT, now, data), now)
    return message_id


async def first_notice(w: Writer, access_key: str, notice: str, now: float) -> bool:
    """Note that ``notice`` was sent for the key; False if some node already had."""
    added = await w.execute(
        "INSERT INTO key_notices (access_key, notice, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT (access_key, notice) DO NOTHING",
        (access_key, notice, now),
    )
    return added > 0


# -- delivering ------------------------------------------------------------------------------------

_DUE = """SELECT o.id FROM webhook_outbox o
    WHERE o.status = 'pending' AND o.next_attempt_at <= ?1
      AND (o.claimed_until IS NULL OR o.claimed_until <= ?1)
      AND NOT EXISTS (SELECT 1 FROM webhook_outbox p WHERE p.webhook_id = o.webhook_id
                      AND p.access_key = o.access_key AND p.status = 'pending' AND p.id < o.id)
    ORDER BY o.id LIMIT ?2"""


_ANY_DUE = """SELECT 1 FROM webhook_outbox
    WHERE status = 'pending' AND next_attempt_at <= ?1
      AND (claimed_until IS NULL OR claimed_until <= ?1) LIMIT 1"""


async def claim(db: Database, now: float, lease_seconds: float, limit: int) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries for one attempt each, for ``lease_seconds``.

    Every delivering process asks every ``poll_interval_seconds``, and the outbox is empty
    most of the time: a read on the due index answers that alone, where the claim is a
    transaction of three statements (50 nodes at rest ran 150 statements a second for it)."""
    if await db.fetchone(_ANY_DUE, (now,)) is None:
        return []
    token = secrets.token_hex(8)
    due = _DUE + (" FOR UPDATE OF o SKIP LOCKED" if db.dialect == "postgresql" else "")
    async with db.transaction() as w:
        rows = await w.fetchall(
            f"UPDATE webhook_outbox SET claimed_until = ?3, claim_token = ?4, "
            f"attempts = attempts + 1 WHERE id IN ({due}) RETURNING id",
            (now, limit, now + lease_seconds, token),
        )
        if not rows:
            return []
        ids = [int(r[0]) for r in rows]
        found = await w.fetchall(
            "SELECT o.id, h.url, h.secret, o.message_id, o.body, o.created_at, o.attempts "
            "FROM webhook_outbox o JOIN webhooks h ON h.id = o.webhook_id "
            f"WHERE o.id IN ({','.join('?' * len(ids))}) ORDER BY o.id",
            ids,
        )
    return [
        Claimed(int(r[0]), token, r[1], r[2], r[3], str(r[4]).encode(), float(r[5]), int(r[6]))
        for r in found
    ]


def backoff(attempts: int) -> float:
    return BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS)) - 1]


async def settle(
    db: Database,
    claimed: Claimed,
    now: float,
    status_code: int | None,
    error: str | None,
) -> str:
    """Record an attempt: delivered on a 2xx; else retried after the backoff, or failed once
    the retry window has passed. Only the claim's holder may settle it (a lease that ran out
    may have been claimed again). Returns the delivery's status."""
    if status_code is not None and 200 <= status_code < 300:
        status, next_at = "delivered", now
    elif now >= claimed.created_at + RETRY_WINDOW_SECONDS:
        status, next_at = "failed", now
    else:
        status = "pending"
        next_at = min(now + backoff(claimed.attempts), claimed.created_at + RETRY_WINDOW_SECONDS)
    async with db.transaction() as w:
        await w.execute(
            "UPDATE webhook_outbox SET status = ?, next_attempt_at = ?, claimed_until = NULL, "
            "claim_token = NULL, last_status_code = ?, last_error = ?, last_attempt_at = ?, "
            "delivered_at = ? WHERE id = ? AND claim_token = ?",
            (
                status,
                next_at,
                status_code,
                error,
                now,
                now if status == "delivered" else None,
                claimed.id,
                claimed.token,
            ),
        )
    return status


_DELIVERY = """SELECT id, webhook_id, message_id, event_type, access_key, created_at, status,
    attempts, next_attempt_at, last_status_code, last_error, last_attempt_at, delivered_at
    FROM webhook_outbox"""


async def deliveries(
    db: Database, webhook_id: str, limit: int = 50, status: str | None = None
) -> list[Delivery]:
    """The webhook's delivery log, newest first."""
    where, params = "webhook_id = ?", [webhook_id]
    if status is not None:
        where += " AND status = ?"
        params.append(status)
    rows = await db.fetchall(
        f"{_DELIVERY} WHERE {where} ORDER BY id DESC LIMIT ?", [*params, limit]
    )
    return [Delivery(*r) for r in rows]


async def prune(w: Writer, now: float, keep_seconds: float) -> None:
    """Housekeeping: settled deliveries past ``keep_seconds``, and notices past their use
    (a rate-limit notice is for its hour; an expiry notice outlives any key's 7 days)."""
    await w.execute(
        "DELETE FROM webhook_outbox WHERE status <> 'pending' AND created_at < ?",
        (now - keep_seconds,),
    )
    await w.execute("DELETE FROM key_notices WHERE created_at < ?", (now - 8 * 86400,))
