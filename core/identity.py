"""The identity of a verified key, and what the control plane needs of a verifier.

``Identity`` crosses every boundary of the gateway: the verifier makes it, the proxy (and the
later forms of the data plane) turns it into the trusted identity headers, and the admin API takes
the caller to be its bearer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
        return cls(
            row.access_key,
            row.organization_id,
            row.bearer_type,
            row.bearer_id,
            row.project_id,
            row.mode,
            row.expires_at,
            row.secret_expires_at,
            tuple(
                (name.encode("ascii"), value.encode("utf-8"))
                for name, value in zip(IDENTITY_HEADERS, values, strict=True)
            ),
            row.rate_limits,
            networks(row.allowed_ips),
            None if row.permissions is None else frozenset(row.permissions),
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
