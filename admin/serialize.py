"""JSON shapes shared by the CLI's --json output and the admin API: snake_case, RFC 3339 UTC."""

from __future__ import annotations

from typing import Any

from core import plans
from core.keyview import key_json, rfc3339
from core.store.audit import AuditEvent
from core.store.leaks import Leak
from core.store.lifetimes import LifetimePolicy
from core.store.records import Application, Plan, Project, User
from core.store.webhooks import Delivery, Webhook

__all__ = [
    "application_json",
    "audit_json",
    "delivery_json",
    "key_json",
    "leak_json",
    "plan_json",
    "policy_json",
    "project_json",
    "rfc3339",
    "user_json",
    "webhook_json",
]


def _budget(bearer: User | Application) -> dict[str, Any]:
    return {
        "plan_id": bearer.plan_id,
        "rate_limits": [r.to_json() for r in bearer.rate_limits],
        "credits": None if bearer.credits is None else bearer.credits.to_json(),
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "organization_id": plan.organization_id,
        "name": plan.name,
        "rate_limits": [r.to_json() for r in plan.rate_limits],
        "credits": plans.plan_credits_json(plan.credits),
        "metadata": plan.metadata,
        "created_at": rfc3339(plan.created_at),
        "updated_at": rfc3339(plan.updated_at),
    }


def project_json(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "organization_id": project.organization_id,
        "name": project.name,
        "created_at": rfc3339(project.created_at),
        "updated_at": rfc3339(project.updated_at),
    }


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "organization_id": user.organization_id,
        "email": user.email,
        "permission_sets": list(user.permission_sets),
        "is_owner": user.is_owner,
        "created_at": rfc3339(user.created_at),
        "updated_at": rfc3339(user.updated_at),
        **_budget(user),
    }


def application_json(app: Application) -> dict[str, Any]:
    return {
        "id": app.id,
        "organization_id": app.organization_id,
        "name": app.name,
        "permission_sets": list(app.permission_sets),
        "created_at": rfc3339(app.created_at),
        "updated_at": rfc3339(app.updated_at),
        **_budget(app),
    }


def audit_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "created_at": rfc3339(event.created_at),
        "organization_id": event.organization_id,
        "actor": {
            "type": event.actor_type,
            "id": event.actor_id,
            "access_key": event.actor_access_key,
        },
        "action": event.action,
        "target": {"type": event.target_type, "id": event.target_id},
        "source_ip": event.source_ip,
        "outcome": event.outcome,
        "detail": event.detail,
    }


def webhook_json(hook: Webhook) -> dict[str, Any]:
    """A webhook as the API shows it: never its secret (shown once, at creation)."""
    return {
        "id": hook.id,
        "organization_id": hook.organization_id,
        "url": hook.url,
        "events": list(hook.events),
        "description": hook.description,
        "created_at": rfc3339(hook.created_at),
        "updated_at": rfc3339(hook.updated_at),
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """One line of a webhook's delivery log."""
    return {
        "id": delivery.id,
        "message_id": delivery.message_id,
        "event_type": delivery.event_type,
        "access_key": delivery.access_key or None,
        "created_at": rfc3339(delivery.created_at),
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": rfc3339(delivery.next_attempt_at)
        if delivery.status == "pending"
        else None,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "last_attempt_at": rfc3339(delivery.last_attempt_at),
        "delivered_at": rfc3339(delivery.delivered_at),
    }


def leak_json(leak: Leak) -> dict[str, Any]:
    """A report of a key found leaked, and where."""
    return {
        "id": leak.id,
        "access_key": leak.access_key,
        "reported_at": rfc3339(leak.reported_at),
        "reporter": leak.reporter,
        "url": leak.url,
        "source": leak.source,
    }


def policy_json(policy: LifetimePolicy) -> dict[str, Any]:
    return {
        "organization_id": policy.organization_id,
        "max_key_lifetime_days": policy.max_key_lifetime_days,
        "disable_unused_after_days": policy.disable_unused_after_days,
        "updated_at": rfc3339(policy.updated_at),
    }
