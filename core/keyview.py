"""A key as users see it, in JSON: the admin API, the CLI's --json output and the body of every
webhook event (``core.store.webhooks``) show the same object, so it is made in one place. Never
the hash, only a short prefix of the current secret. Times are RFC 3339 UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.store.records import ApiKey


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
        "imported": key.imported,
    }
