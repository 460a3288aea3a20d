"""Webhooks of an organization: the service functions over them, for the API, CLI and console.

Managing webhooks needs a manager (Owner, IAMManager, OrganizationManager): a webhook receives
every key's changes. A webhook's secret (``whsec_...``) is shown once, at creation; the store
keeps it to sign with (an HMAC needs the secret itself, unlike a key's secret, kept as a hash).
The URL must be http(s); where it points is the manager's choice, so the delivery task reaches
whatever the gateway's network reaches: keep that in mind on a host with private neighbours.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from admin.access import (
    Actor,
    NotFound,
    Unprocessable,
    audited,
    organization_of,
    record,
    require_manager,
)
from admin.fields import DESCRIPTION, WEBHOOK_EVENTS, WEBHOOK_URL
from core.store import Database
from core.store import webhooks as store_webhooks
from core.store.webhooks import Delivery, Webhook
from core.webhook_signing import new_secret


@dataclass(frozen=True)
class NewWebhook:
    webhook: Webhook
    secret: str = field(repr=False)  # shown once


def _events(values: Sequence[str]) -> tuple[str, ...]:
    events: tuple[str, ...] = WEBHOOK_EVENTS.parse("events", list(values))
    if not events:
        raise Unprocessable("events must name at least one event type", "events")
    return events


def _url(value: Any) -> str:
    """The published pattern, then what the deliverer needs of it: a host, and a port it can
    connect to (else every delivery would fail for 24 hours, and the URL was never usable).
    Past the pattern a refusal is 422, as for any request the schema takes and the service not."""
    url: str = WEBHOOK_URL.parse("url", value)
    unusable = "url must be an http:// or https:// URL:"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
        raise Unprocessable(f"{unusable} {exc}", "url") from None
    if not parts.hostname:
        raise Unprocessable(f"{unusable} it names no host", "url")
    try:
        parts.hostname.encode("idna")
    except UnicodeError as exc:  # a label empty or over 63 characters (RFC 1035, 2.3.4)
        raise Unprocessable(f"{unusable} its host {exc}", "url") from None
    if port == 0:
        raise Unprocessable(f"{unusable} port 0 is no port", "url")
    return url


async def create(
    db: Database, actor: Actor, url: str, events: Sequence[str], description: str = ""
) -> NewWebhook:
    async with audited(db, actor, "webhook.create", "webhook", None):
        require_manager(actor, "managing webhooks")
    checked_url = _url(url)
    checked_events = _events(events)
    checked_description: str = DESCRIPTION.parse("description", description)
    org_id = await organization_of(db, actor)
    now = time.time()
    hook = Webhook(
        str(uuid.uuid4()), org_id, checked_url, checked_events, checked_description, now, now
    )
    secret = new_secret()
    async with db.transaction() as w:
        await store_webhooks.insert(w, hook, secret)
        await record(w, actor, org_id, "webhook.create", "webhook", hook.id, checked_url)
    return NewWebhook(hook, secret)


async def get(db: Database, actor: Actor, webhook_id: str) -> Webhook:
    async with audited(db, actor, "webhook.read", "webhook", webhook_id):
        require_manager(actor, "managing webhooks")
        hook = await store_webhooks.get(db, webhook_id)
        if hook is None or hook.organization_id != await organization_of(db, actor):
            raise NotFound(f"webhook {webhook_id!r} does not exist", "id")
    return hook


async def list_of(db: Database, actor: Actor) -> list[Webhook]:
    require_manager(actor, "managing webhooks")
    return await store_webhooks.list_of(db, await organization_of(db, actor))


async def update(db: Database, actor: Actor, webhook_id: str, body: dict[str, Any]) -> Webhook:
    hook = await get(db, actor, webhook_id)
    changes: dict[str, Any] = {}
    if body.get("url") is not None:
        changes["url"] = _url(body["url"])
    if body.get("events") is not None:
        changes["events"] = _events(body["events"])
    if body.get("description") is not None:
        changes["description"] = DESCRIPTION.parse("description", body["description"])
    if changes:
        async with db.transaction() as w:
            await store_webhooks.update(w, webhook_id, changes, time.time())
            await record(
                w,
                actor,
                hook.organization_id,
                "webhook.update",
                "webhook",
                webhook_id,
                ", ".join(sorted(changes)),
            )
    return await get(db, actor, webhook_id)


async def delete(db: Database, actor: Actor, webhook_id: str) -> None:
    """Delete the webhook and its delivery log; what was not yet sent is not sent."""
    hook = await get(db, actor, webhook_id)
    async with db.transaction() as w:
        await store_webhooks.delete(w, webhook_id)
        await record(w, actor, hook.organization_id, "webhook.delete", "webhook", webhook_id)


async def send_test(db: Database, actor: Actor, webhook_id: str) -> str:
    """Queue a ``webhook.test`` event for this webhook alone; returns its message id (the
    ``webhook-id`` it arrives with, and its line in the delivery log)."""
    hook = await get(db, actor, webhook_id)
    async with db.transaction() as w:
        message_id = await store_webhooks.test_event(w, hook, time.time())
        await record(w, actor, hook.organization_id, "webhook.test", "webhook", webhook_id)
    return message_id


async def deliveries(
    db: Database, actor: Actor, webhook_id: str, status: str | None = None, limit: int = 50
) -> list[Delivery]:
    """The webhook's delivery log, newest first."""
    await get(db, actor, webhook_id)
    return await store_webhooks.deliveries(db, webhook_id, limit, status)
