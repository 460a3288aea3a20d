"""Frozen rows that cross module boundaries. Times are float seconds since the epoch (UTC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.plans import Credits, Resolved
from core.policies import RateLimit


@dataclass(frozen=True)
class Organization:
    id: str
    name: str
    default_project_id: str | None
    created_at: float


@dataclass(frozen=True)
class Project:
    id: str
    organization_id: str
    name: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class User:
    id: str
    organization_id: str
    email: str
    permission_sets: tuple[str, ...]
    is_owner: bool
    created_at: float
    updated_at: float
    plan_id: str | None = None
    rate_limits: tuple[RateLimit, ...] = ()  # one budget for all its keys
    credits: Credits | None = None  # one budget for all its keys


@dataclass(frozen=True)
class Application:
    id: str
    organization_id: str
    name: str
    permission_sets: tuple[str, ...]
    created_at: float
    updated_at: float
    plan_id: str | None = None
    rate_limits: tuple[RateLimit, ...] = ()  # one budget for all its keys
    credits: Credits | None = None  # one budget for all its keys


@dataclass(frozen=True)
class ApiKey:
    access_key: str
    organization_id: str
    user_id: str | None
    application_id: str | None
    default_project_id: str
    description: str
    mode: str
    created_at: float
    updated_at: float
    expires_at: float | None
    last_used_at: float | None
    creation_ip: str | None
    secret_prefix: str  # first characters of the newest secret, for recognition
    rate_limits: tuple[RateLimit, ...] = ()  # the key's own, on every route (core.policies)
    allowed_ips: tuple[str, ...] = ()  # networks it may be used from; empty: anywhere
    permissions: tuple[str, ...] | None = None  # a restricted key's; None: not restricted
    disabled: bool = False  # switched off (403 key_disabled) without being revoked
    metadata: dict[str, Any] = field(default_factory=dict)  # sent upstream, over its plan's
    plan_id: str | None = None
    credits: Credits | None = None  # its own budget (None: its plan's, its bearer's, or none)
    # Imported from another gateway: its secret lacks our prefix and checksum, and is found by
    # hash alone ([keys] accept_imported) until the key is rolled into our format.
    imported: bool = False

    @property
    def restricted(self) -> bool:
        return self.permissions is not None

    @property
    def bearer_type(self) -> str:
        return "user" if self.user_id is not None else "application"

    @property
    def bearer_id(self) -> str:
        return self.user_id if self.user_id is not None else str(self.application_id)


@dataclass(frozen=True)
class RevokedKey:
    """What is remembered of a revoked key: whose it was and when it went. No secret, no hash."""

    access_key: str
    organization_id: str
    user_id: str | None
    application_id: str | None
    revoked_at: float


@dataclass(frozen=True)
class KeyLookup:
    """What the verifier needs of a key, found by one secret's hash."""

    access_key: str
    organization_id: str
    bearer_type: str
    bearer_id: str
    project_id: str
    mode: str
    expires_at: float | None
    secret_expires_at: float | None
    rate_limits: tuple[RateLimit, ...] = ()
    allowed_ips: tuple[str, ...] = ()
    permissions: tuple[str, ...] | None = None
    disabled: bool = False
    resolved: Resolved | None = None  # its plan, budget, plan limits and metadata


@dataclass(frozen=True)
class Plan:
    id: str
    organization_id: str
    name: str
    rate_limits: tuple[RateLimit, ...]
    credits: Credits | None  # remaining: the amount each budget on it starts at
    metadata: dict[str, Any]
    created_at: float
    updated_at: float
