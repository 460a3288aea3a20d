"""Who is acting, what they may do, and the audit trail of what they did or tried to do.

Rules (Scaleway IAM): anything in another organization is "not found" (existence is not
leaked); a plain bearer sees only its own keys; the Owner and the ``IAMManager`` or
``OrganizationManager`` permission sets see and manage everything in their organization. The local
operator (the CLI, with the store file in hand) may do anything, and is audited as ``cli``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from core.store import Database, Writer
from core.store import audit as store_audit
from core.store import directory as store_dir

MANAGER_SETS = frozenset({"IAMManager", "OrganizationManager"})
PERMISSION_SETS = MANAGER_SETS


@dataclass(frozen=True)
class Actor:
    kind: str  # "cli" (the local operator), "user" or "application"
    id: str | None = None
    organization_id: str | None = None
    permission_sets: frozenset[str] = frozenset()
    is_owner: bool = False
    access_key: str | None = None
    ip: str | None = None
    key_permissions: frozenset[str] | None = None  # a restricted key's (keys:verify)

    @property
    def is_manager(self) -> bool:
        if self.key_permissions is not None:  # a restricted key manages nothing
            return False
        return self.kind == "cli" or self.is_owner or bool(self.permission_sets & MANAGER_SETS)


LOCAL_OPERATOR = Actor("cli")


class ServiceError(Exception):
    status = 400
    type = "invalid_arguments"

    def __init__(self, message: str, field: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.reason = reason  # a machine-readable cause where the type alone is not enough


class Invalid(ServiceError):
    pass


class NotFound(ServiceError):
    status, type = 404, "not_found"


class Forbidden(ServiceError):
    status, type = 403, "permission_denied"


class Conflict(ServiceError):
    status, type = 409, "conflict"


class Unprocessable(ServiceError):
    """A well-formed value the API cannot act on now (an expiry already past): 422, so that a
    400 always means the request broke the published schema."""

    status = 422


MANAGERS_ONLY = "needs the Owner, IAMManager or OrganizationManager"


def require_manager(actor: Actor, what: str) -> None:
    if not actor.is_manager:
        raise Forbidden(f"{what} {MANAGERS_ONLY}")


async def organization_of(db: Database, actor: Actor) -> str:
    if actor.organization_id is not None:
        return actor.organization_id
    org = await store_dir.first_organization(db)
    if org is None:
        raise NotFound("there is no organization yet: run `gateway init` first")
    return org.id


def _event(
    actor: Actor,
    org_id: str | None,
    action: str,
    target_type: str,
    target_id: str | None,
    outcome: str,
    detail: str | None,
) -> store_audit.AuditEvent:
    return store_audit.AuditEvent(
        created_at=time.time(),
        organization_id=org_id,
        actor_type=actor.kind,
        actor_id=actor.id,
        actor_access_key=actor.access_key,
        action=action,
        target_type=target_type,
        target_id=target_id,
        source_ip=actor.ip,
        outcome=outcome,
        detail=detail,
    )


async def record(
    w: Writer,
    actor: Actor,
    org_id: str | None,
    action: str,
    target_type: str,
    target_id: str | None,
    detail: str | None = None,
) -> None:
    """A successful mutation, written in the mutation's own transaction."""
    await store_audit.record(
        w, _event(actor, org_id, action, target_type, target_id, "success", detail)
    )


@asynccontextmanager
async def audited(
    db: Database, actor: Actor, action: str, target_type: str, target_id: str | None
) -> AsyncIterator[None]:
    """Record a denied attempt (403, or 404 on something hidden or absent), then re-raise."""
    try:
        yield
    except (Forbidden, NotFound) as exc:
        async with db.transaction() as w:
            await store_audit.record(
                w,
                _event(
                    actor,
                    actor.organization_id,
                    action,
                    target_type,
                    target_id,
                    "denied",
                    exc.message,
                ),
            )
        raise
