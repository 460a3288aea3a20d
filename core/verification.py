"""What the admin API's ``POST /v1/keys/verify`` asks of the data plane, as values: the question
(a secret, and what it would be used for) and the answer (a code for every outcome). The data
plane answers it with its own gate (``gateway.verify``), handed to the admin app by the
composition, so a key verified there meets the proxy's cache, rules and credits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from core.identity import Identity

# Every answer's code: the proxy's refusal reasons where there is one, each distinct.
CODES = (
    "valid",
    "malformed_token",
    "unknown_token",
    "revoked",
    "expired_token",
    "key_disabled",
    "project_not_allowed",
    "ip_not_allowed",
    "insufficient_permissions",
    "rate_limited",
    "usage_exceeded",
    "store_unavailable",
    "rate_limit_unavailable",
)


@dataclass(frozen=True)
class VerifyQuery:
    secret_key: str
    resource: str | None = None  # as a route's `resource`: a restricted key's permissions
    method: str = "GET"
    cost: int = 0  # credits to spend if the key is good (0: only ask)
    ip: str | None = None  # the caller's client, for a key kept to some networks


@dataclass(frozen=True)
class VerifyAnswer:
    code: str
    identity: Identity | None = None
    credits_remaining: int | None = None
    rate_limit: dict[str, str] | None = None  # RateLimit-Policy and RateLimit, as the proxy says
    retry_after: int | None = None


class KeyChecker(Protocol):
    async def __call__(self, query: VerifyQuery) -> VerifyAnswer: ...
