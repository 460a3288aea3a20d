"""Who is asking, and may they: the checks every form of the data plane makes, in one order.

The proxy (``gateway.app``), the forward-auth endpoint (``gateway.forward_auth``) and the ASGI
middleware (``gateway.middleware``) all ask :meth:`Gate.admit` about a request on a route: the
key (read from its carriers, verified through the cache), the route's projects, the key's
networks, a restricted key's permissions, then the rate limits (a refused request counts toward
none of them). The answer is the same everywhere: :class:`Admitted` (the identity, or None for an
anonymous request, and the RateLimit fields for the response) or a :class:`Refusal` with the
status and reason of the JSON error.

On a cache hit with local rate limits nothing here awaits: :meth:`Gate.admit` is a plain call.
Only a cache miss (the store) or Redis rate limits return a :class:`Pending`, which
:meth:`Gate.finish` completes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from core.config import Route
from core.credentials import pick
from core.errors import MISSING
from core.identity import Identity
from core.plans import refill_text
from core.policies import allows, restricted
from core.store import StoreUnavailable
from gateway.credits import EMPTY, Wallet
from gateway.ratelimit import Decision, Header, Limits, LimitsCache, LocalLimiter
from gateway.redis_limits import RedisLimiter
from gateway.redis_pipe import RedisReplyError
from gateway.usage import Usage
from gateway.verifier import Verifier

log = logging.getLogger("gateway.gate")


class Admitted(NamedTuple):
    identity: Identity | None  # None: an anonymous request (auth "none", or "optional")
    headers: tuple[Header, ...] = ()  # RateLimit-Policy and RateLimit, when limits applied


class Refusal(NamedTuple):
    status: int
    reason: str
    message: str | None = None  # None: the reason's usual message (core.errors)
    headers: tuple[Header, ...] = ()  # Retry-After and the RateLimit fields of a 429
    identity: Identity | None = None  # the key refused, when it is known (usage, logs)


class Pending(NamedTuple):
    """What is left to check once the store or Redis has answered."""

    route: Route
    method: str
    client: str
    digest: bytes | None = None  # the key is not cached: look it up
    identity: Identity | None = None
    limits: Limits | None = None  # the key's rate limits are in Redis
    limited: bool = True  # False: the rate limits are not checked (nor counted)
    cost: int = 0  # credits to reserve from the store before the request may pass
    headers: tuple[Header, ...] = ()  # what the rate limits already said (credits wait after)
    # In-process rate limits checked once the credits are reserved: a request the store finds
    # no credits for counts toward none of them.
    local_limits: Limits | None = None


ANONYMOUS = Admitted(None)


def _store_unavailable(exc: StoreUnavailable) -> Refusal:
    log.warning("uncached key rejected with 503: %s", exc)
    return Refusal(503, "store_unavailable")


CREDITS_HEADER = b"x-credits-remaining"


def _spent(
    identity: Identity,
    remaining: int,
    headers: tuple[Header, ...],
    usage: Usage | None,
    cost: int,
    wallet: Wallet,
) -> Admitted | Refusal:
    """The request's credits spent (``remaining`` left) or refused (EMPTY): then what is
    left, as this process sees it, may be more than nothing but less than ``cost``."""
    if remaining != EMPTY and usage is not None:
        usage.spend(identity.access_key, cost)
    if remaining == EMPTY:
        budget = identity.budget
        assert budget is not None
        left = max(0, wallet.remaining(budget) or 0)
        return Refusal(
            429,
            "usage_exceeded",
            refill_text(budget.interval, cost=cost, left=left),
            ((CREDITS_HEADER, str(left).encode()),),
            identity,
        )
    return Admitted(identity, (*headers, (CREDITS_HEADER, str(remaining).encode())))


class Gate:
    def __init__(
        self,
        verifier: Verifier,
        limiter: LocalLimiter | RedisLimiter,
        clock: Callable[[], float],
        fail_open: bool,
        wallet: Wallet | None = None,
        usage: Usage | None = None,
    ) -> None:
        self.verifier = verifier
        self.wallet = wallet or Wallet(verifier.db, clock)  # credits spent by this process
        self.usage = usage  # told the credits each admitted request spent
        self.limiter = limiter
        self.clock = clock
        self.fail_open = fail_open  # [ratelimit] fail = "open": Redis away lets requests through
        self.limits = LimitsCache()

    def admit(
        self, route: Route, tokens: list[bytes], method: str, client: str, limited: bool = True
    ) -> Admitted | Refusal | Pending:
        """``tokens``: the values of the request's key carriers (``core.credentials``);
        ``client``: the address the request comes from, as far as it can be trusted;
        ``limited``: False to hold everything but the rate limits (an open WebSocket's key
        checked again after a change: that is not a new request)."""
        if route.auth == "none":
            return ANONYMOUS
        token, refused = pick(tokens)
        if refused is not None:
            return Refusal(401, refused)
        if token is None:
            return Refusal(401, MISSING) if route.auth == "required" else ANONYMOUS
        found = self.verifier.cached(token)
        if isinstance(found, bytes):
            return Pending(route, method, client, digest=found, limited=limited)
        return self._held(found, route, method, client, limited)

    async def finish(self, pending: Pending) -> Admitted | Refusal:
        if pending.digest is not None:
            try:
                found = await self.verifier.load(pending.digest)
            except StoreUnavailable as exc:
                return _store_unavailable(exc)
            verdict = self._held(
                found, pending.route, pending.method, pending.client, pending.limited
            )
            if not isinstance(verdict, Pending):
                return verdict
            pending = verdict
        identity = pending.identity
        assert identity is not None
        headers = pending.headers
        if pending.limits is not None:
            assert isinstance(self.limiter, RedisLimiter)
            decision = await self.limiter.check(pending.limits, self.clock())
            verdict = self._decided(decision, identity)
            if isinstance(verdict, Refusal) or not pending.cost:
                return verdict
            headers = verdict.headers
            # Spent now if this process holds enough; else reserved below.
            spent = self.wallet.spend(identity.budget, pending.cost)  # type: ignore[arg-type]
            if spent is not None:
                return _spent(identity, spent, headers, self.usage, pending.cost, self.wallet)
        assert identity.budget is not None
        try:
            remaining = await self.wallet.top_up(identity.budget, pending.cost)
        except StoreUnavailable as exc:
            return _store_unavailable(exc)
        if remaining != EMPTY and pending.local_limits is not None:
            # No await since the spend: undone at once if the limits refuse the request.
            assert isinstance(self.limiter, LocalLimiter)
            decision = self.limiter.check(pending.local_limits, self.clock())
            verdict = self._decided(decision, identity)
            if isinstance(verdict, Refusal):
                self.wallet.refund(identity.budget, pending.cost)
                return verdict
            headers = verdict.headers
        return _spent(identity, remaining, headers, self.usage, pending.cost, self.wallet)

    def check_soon(self, pending: Pending) -> asyncio.Future[Any] | None:
        """``pending``'s Redis limits sent now, for a caller told by a callback when Redis has
        answered (then `limits_checked`); None: await `finish` instead (no connection yet)."""
        assert pending.limits is not None and isinstance(self.limiter, RedisLimiter)
        return self.limiter.send(pending.limits, self.clock())

    def limits_checked(
        self, pending: Pending, answer: asyncio.Future[Any]
    ) -> Admitted | Refusal | Pending | None:
        """The second half of `finish`, from `check_soon`'s answer; None when Redis did not
        know the script (flushed): `finish` sends it whole. A route that costs credits spends
        them here once the limits allow it; a Pending left waits for the store to reserve
        more (`finish`)."""
        identity = pending.identity
        assert pending.limits is not None and identity is not None
        assert isinstance(self.limiter, RedisLimiter)
        try:
            decision = self.limiter.read(pending.limits, answer)
        except RedisReplyError:
            return None
        verdict = self._decided(decision, identity)
        if isinstance(verdict, Refusal) or not pending.cost:
            return verdict
        route, method, client = pending.route, pending.method, pending.client
        return self._spend(route, method, client, identity, pending.cost, verdict.headers)

    def looked_up(
        self, pending: Pending, lookup: asyncio.Future[Identity | str]
    ) -> Admitted | Refusal | Pending:
        """The first half of `finish` for a caller told by a callback that ``pending``'s lookup
        (``Verifier.lookup``) has settled; a Pending left holds the Redis limits."""
        error = lookup.exception()
        if isinstance(error, StoreUnavailable):
            return _store_unavailable(error)
        if error is not None:
            raise error
        found = lookup.result()
        return self._held(found, pending.route, pending.method, pending.client, pending.limited)

    def _held(
        self, found: Identity | str, route: Route, method: str, client: str, limited: bool = True
    ) -> Admitted | Refusal | Pending:
        """The key's identity held to the route and to its policies."""
        if isinstance(found, str):
            return Refusal(401, found)
        identity = found
        if identity.disabled:
            return Refusal(403, "key_disabled", identity=identity)
        if route.projects and identity.project_id not in route.projects:
            return Refusal(403, "project_not_allowed", identity=identity)
        if identity.allowed_networks and not allows(identity.allowed_networks, client):
            message = (
                f"This key may not be used from {client}: it is limited to the networks in its "
                "allowed_ips."
            )
            return Refusal(403, "ip_not_allowed", message, identity=identity)
        if identity.permissions is not None:
            refusal = restricted(identity.permissions, route.resource, method)
            if refusal is not None:
                return Refusal(403, "insufficient_permissions", refusal, identity=identity)
        cost = route.cost if limited and identity.budget is not None else 0
        if cost and self.wallet.empty(identity.budget, cost):  # type: ignore[arg-type]
            # Refused at once when the budget is spent, before any rate limit counts it.
            return _spent(identity, EMPTY, (), None, cost, self.wallet)
        if not limited or not (route.rate_limits or identity.rate_limits or identity.tier_limits):
            if cost:
                return self._spend(route, method, client, identity, cost, ())
            return Admitted(identity)
        limits = self.limits.get(
            identity.access_key,
            route.prefix,
            identity.rate_limits,
            route.rate_limits,
            identity.tier_limits,
            identity.tier_owner,
        )
        if isinstance(self.limiter, LocalLimiter):  # no await: a hit still awaits nothing
            if not cost:
                return self._decided(self.limiter.check(limits, self.clock()), identity)
            # The credits first, then the limits: a request refused for credits (also when the
            # store must be asked) counts toward no limit; one the limits refuse is refunded.
            assert identity.budget is not None
            left = self.wallet.spend(identity.budget, cost)
            if left is None:
                return Pending(
                    route, method, client, identity=identity, cost=cost, local_limits=limits
                )
            if left == EMPTY:
                return _spent(identity, EMPTY, (), None, cost, self.wallet)
            verdict = self._decided(self.limiter.check(limits, self.clock()), identity)
            if isinstance(verdict, Refusal):
                self.wallet.refund(identity.budget, cost)
                return verdict
            return _spent(identity, left, verdict.headers, self.usage, cost, self.wallet)
        return Pending(route, method, client, identity=identity, limits=limits, cost=cost)

    def _spend(
        self,
        route: Route,
        method: str,
        client: str,
        identity: Identity,
        cost: int,
        headers: tuple[Header, ...],
    ) -> Admitted | Refusal | Pending:
        """Spend the route's cost from what this process holds (no await), or wait for the
        store to reserve more."""
        assert identity.budget is not None
        found = self.wallet.spend(identity.budget, cost)
        if found is None:
            return Pending(route, method, client, identity=identity, cost=cost, headers=headers)
        return _spent(identity, found, headers, self.usage, cost, self.wallet)

    def _decided(self, decision: Decision | None, identity: Identity) -> Admitted | Refusal:
        if decision is None:  # Redis did not answer
            if self.fail_open:
                return Admitted(identity)
            return Refusal(503, "rate_limit_unavailable", identity=identity)
        if not decision.allowed:
            return Refusal(429, "rate_limited", headers=decision.headers, identity=identity)
        return Admitted(identity, decision.headers)
