"""The identity of a verified key, and what the control plane needs of a verifier.

``Identity`` crosses every boundary of the gateway: the verifier makes it, the proxy (and the
later forms of the data plane) turns it into the trusted identity headers, and the admin API takes
the caller to be its bearer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from core.plans import Budget, compact
from core.policies import Network, RateLimit, networks
from core.store.records import KeyLookup

# The trusted identity headers, in the order upstreams receive them.
IDENTITY_HEADERS = (
    "x-auth-access-key",
    "x-auth-bearer-type",
    "x-auth-bearer-id",
    "x-organization-id",
    "x-project-id",
    "x-auth-key-mode",
)
# Sent only when there is something to say: the key's plan's name, and its metadata merged over
# its plan's (compact ASCII JSON).
PLAN_HEADER = b"x-auth-plan"
METADATA_HEADER = b"x-auth-key-metadata"
# A recipient replaces CR, LF and NUL in a field value with SP (RFC 9110 §5.5); so does the
# gateway with every control character of a plan's name before it goes upstream, whatever wrote
# the name (a store copied from a gateway that did not refuse them).
_FIELD_SAFE = bytes.maketrans(bytes([*range(0x20), 0x7F]), b" " * 0x21)


@dataclass(frozen=True, slots=True)
class Identity:
    access_key: str
    organization_id: str
    bearer_type: str
    bearer_id: str
    project_id: str
    mode: str
    expires_at: float | None
    secret_expires_at: float | None
    # The trusted identity headers as they go on the wire, built once per load.
    headers: tuple[tuple[bytes, bytes], ...]
    # The key's policies (core.policies): its own rate limits, and the networks it may be used
    # from (parsed once per load; empty: anywhere).
    rate_limits: tuple[RateLimit, ...] = ()
    allowed_networks: tuple[Network, ...] = ()
    permissions: frozenset[str] | None = None  # a restricted key's; None: not restricted
    disabled: bool = False  # refused with 403 key_disabled until enabled again
    # What its plan and bearer add (core.plans.resolve): the plan's name, the merged metadata,
    # the plan's rate limits and whose logs count them, and the credits it spends from.
    plan_id: str | None = None
    plan: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tier_limits: tuple[RateLimit, ...] = ()
    tier_owner: str = ""
    budget: Budget | None = None

    @classmethod
    def from_lookup(cls, row: KeyLookup) -> Identity:
        values = (
            row.access_key,
            row.bearer_type,
            row.bearer_id,
            row.organization_id,
            row.project_id,
            row.mode,
        )
        headers = tuple(
            (name.encode("ascii"), value.encode("utf-8"))
            for name, value in zip(IDENTITY_HEADERS, values, strict=True)
        )
        resolved = row.resolved
        plan = resolved.plan if resolved is not None else None
        metadata = resolved.metadata if resolved is not None else {}
        if plan is not None:
            headers += ((PLAN_HEADER, plan.name.encode("utf-8").translate(_FIELD_SAFE)),)
        if metadata:
            headers += ((METADATA_HEADER, compact(metadata)),)
        return cls(
            row.access_key,
            row.organization_id,
            row.bearer_type,
            row.bearer_id,
            row.project_id,
            row.mode,
            row.expires_at,
            row.secret_expires_at,
            headers,
            row.rate_limits,
            networks(row.allowed_ips),
            None if row.permissions is None else frozenset(row.permissions),
            row.disabled,
            plan.id if plan is not None else None,
            plan.name if plan is not None else None,
            metadata,
            resolved.tier_limits if resolved is not None else (),
            resolved.tier_owner if resolved is not None else "",
            resolved.budget if resolved is not None else None,
        )

    def expired(self, now: float) -> bool:
        return (self.expires_at is not None and now >= self.expires_at) or (
            self.secret_expires_at is not None and now >= self.secret_expires_at
        )


class Authenticator(Protocol):
    """What the admin API needs to know who is calling: the data plane's verifier fits."""

    async def verify(self, token: str) -> Identity | str:
        """The key's identity, or the reason it is refused; raises StoreUnavailable."""
        ...
