"""JSON shapes shared by the CLI's --json output and the admin API: snake_case, RFC 3339 UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core import plans
from core.store.audit import AuditEvent
from core.store.records import ApiKey, Application, Plan, Project, User


def rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def key_json(key: ApiKey) -> dict[str, Any]:
    """A key as users see it: never the hash, only a short prefix of the current secret."""
    return {
        "access_key": key.access_key,
        "description": key.description,
        "bearer_type": key.bearer_type,
        "user_id": key.user_id,
        "application_id": key.application_id,
        "organization_id": key.organization_id,
        "default_project_id": key.default_project_id,
        "mode": key.mode,
        "created_at": rfc3339(key.created_at),
        "updated_at": rfc3339(key.updated_at),
        "expires_at": rfc3339(key.expires_at),
        "last_used_at": rfc3339(key.last_used_at),
        "creation_ip": key.creation_ip,
        "secret_prefix": key.secret_prefix,
        "rate_limits": [r.to_json() for r in key.rate_limits],
        "allowed_ips": list(key.allowed_ips),
        "permissions": None if key.permissions is None else list(key.permissions),
        "disabled": key.disabled,
        "metadata": key.metadata,
        "plan_id": key.plan_id,
        "credits": None if key.credits is None else key.credits.to_json(),
    }


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
