"""The verify API's answers, from the data plane's own gate (``gateway.gate``): the same cache,
rules, rate limits and credits as a request through the proxy. A caller outside the proxy (a
queue worker, a gRPC service) asks through the admin API (``POST /v1/keys/verify``), which the
composition hands `KeyVerification` to."""

from __future__ import annotations

from core.config import Route
from core.errors import EXPIRED, INVALID, MALFORMED
from core.plans import Budget, period
from core.store import StoreUnavailable
from core.store import credits as store_credits
from core.store import keys as store_keys
from core.tokens import hash_secret
from core.verification import VerifyAnswer, VerifyQuery
from gateway.gate import CREDITS_HEADER, Gate, Pending, Refusal

CODES = {INVALID: "unknown_token", MALFORMED: "malformed_token", EXPIRED: "expired_token"}
# Stands for the calling service: the rules of a route, nothing upstream of it.
_UPSTREAM = "http://verify.invalid"


class KeyVerification:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self._routes: dict[tuple[str | None, int], Route] = {}

    def route(self, resource: str | None, cost: int) -> Route:
        found = self._routes.get((resource, cost))
        if found is None:
            if len(self._routes) > 1000:
                self._routes.clear()
            found = self._routes[(resource, cost)] = Route(
                prefix="/v1/keys/verify", upstream=_UPSTREAM, resource=resource, cost=cost
            )
        return found

    async def _left(self, budget: Budget | None) -> int | None:
        """What a budget has left when nothing was spent (cost 0 only asks): this process's
        view, as after a spend, else the store's; None for no budget (unlimited) or no store."""
        if budget is None:
            return None
        held = self.gate.wallet.remaining(budget)
        if held is not None:
            return max(0, held)
        now = self.gate.clock()
        try:
            found = await store_credits.remaining(
                self.gate.verifier.db, budget.owner, period(budget.interval, now)
            )
        except StoreUnavailable:
            return None
        # No balance in this period yet: the next reservation starts it full.
        return max(0, found) if found is not None else budget.refill_to

    async def __call__(self, query: VerifyQuery) -> VerifyAnswer:
        route = self.route(query.resource, query.cost)
        # No address said: a key kept to some networks is refused (":" is no address).
        client = query.ip if query.ip is not None else ":"
        verdict = self.gate.admit(route, [query.secret_key.encode()], query.method, client)
        if isinstance(verdict, Pending):
            verdict = await self.gate.finish(verdict)
        headers = {name.decode(): value.decode() for name, value in verdict.headers}
        credits = headers.pop(CREDITS_HEADER.decode(), None)
        retry = headers.pop("retry-after", None)
        remaining = None if credits is None else int(credits)
        if remaining is None and verdict.identity is not None:
            remaining = await self._left(verdict.identity.budget)
        usage = self.gate.usage
        if usage is not None and verdict.identity is not None:  # counted as the proxy counts
            status = verdict.status if isinstance(verdict, Refusal) else 200
            usage.count(verdict.identity.access_key, status)
        if not isinstance(verdict, Refusal):
            return VerifyAnswer("valid", verdict.identity, remaining, headers or None)
        code = CODES.get(verdict.reason, verdict.reason)
        if code == "unknown_token":
            try:
                if await store_keys.revoked_secret(
                    self.gate.verifier.db, hash_secret(query.secret_key)
                ):
                    code = "revoked"
            except StoreUnavailable:
                code = "store_unavailable"
        return VerifyAnswer(
            code,
            verdict.identity,
            remaining,
            headers or None,
            None if retry is None else int(retry),
        )
