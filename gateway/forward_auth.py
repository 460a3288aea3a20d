"""Forward-auth: the gateway's checks for a proxy that stays in front (nginx ``auth_request``,
Caddy ``forward_auth``, Traefik ``ForwardAuth``, Envoy ``ext_authz`` as an HTTP service).

The proxy asks, for each request it received, whether it may pass and as whom. The original
request is read from ``X-Forwarded-Method`` / ``X-Forwarded-Uri`` (Traefik, Caddy), else
``X-Original-Method`` / ``X-Original-URI`` (the nginx convention), else the check request's own
method and path with ``[forward_auth] path_prefix`` taken off (Envoy sends the original method
and ``path_prefix`` + the original path). The client's address is the last ``X-Forwarded-For``
entry (the one the proxy added), else the peer's. The key is read from its usual carriers, and
the routes and the key's policies are held exactly as on the proxy (``gateway.gate``).

Allowed: exactly 200, empty, with the identity headers (and the RateLimit fields, and on an
`assertion = true` route the X-Auth-Assertion) for the proxy to copy upstream; Envoy denies on
anything but 200. Refused: the proxy's own JSON error with its status, 401 with
``WWW-Authenticate``; 429 becomes ``[forward_auth] rate_limited_status`` (403 for nginx, which
turns every status but 401 and 403 into a 500). No route for the path is 403
``no_route`` for the same reason.

This listener believes the headers it is sent: it must be reachable by the proxy alone (loopback,
or a private network), and the proxy must clear client-sent identity headers before copying ours
(every configuration in ``docs/`` does).
"""

from __future__ import annotations

from typing import Any

from core.config import Config, ForwardAuthConfig
from core.errors import new_request_id
from gateway import errors
from gateway.assertions import HEADER as ASSERTION
from gateway.exchange import Exchange
from gateway.gate import Pending, Refusal
from gateway.headers import split_request
from gateway.resources import Resources
from gateway.routing import Router, normalise_path

# The headers a proxy says the original request in, by precedence.
ORIGINAL = (
    (b"x-forwarded-method", b"x-forwarded-uri"),
    (b"x-original-method", b"x-original-uri"),
)


def original_request(scope: dict[str, Any], settings: ForwardAuthConfig) -> tuple[str, bytes, str]:
    """The original request's method, raw path (no query) and client address."""
    found = {name.lower(): value for name, value in scope["headers"]}
    method, target = scope["method"], None
    for method_header, uri_header in ORIGINAL:
        if uri_header in found:
            method = found.get(method_header, method.encode()).decode("latin-1")
            target = found[uri_header]
            break
    if target is None:
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        target = raw.split(b"?", 1)[0]
        prefix = settings.path_prefix.encode()
        if prefix and (target == prefix or target.startswith(prefix + b"/")):
            target = target[len(prefix) :] or b"/"
    forwarded = found.get(b"x-forwarded-for")
    if forwarded:
        client = forwarded.decode("latin-1").rsplit(",", 1)[-1].strip()
    else:
        peer = scope.get("client")
        client = peer[0] if peer else "unknown"
    return method.upper(), target.split(b"?", 1)[0], client


class ForwardAuthApp:
    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.apply(resources.config)
        resources.on_reload.append(self.apply)
        self.marks = resources.secret_format.marks
        self.gate = resources.gate  # one per process: one LimitsCache

    def apply(self, config: Config) -> None:
        self.router = Router(config.routes)
        self.settings = config.forward_auth

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        exchange = Exchange()
        resources = self.resources
        try:
            await self.check(scope, send, exchange)
        finally:
            exchange.report(
                scope,
                resources.metrics,
                resources.access_log,
                False,
                resources.usage,
            )

    async def check(self, scope: dict[str, Any], send: Any, exchange: Exchange) -> None:
        headers = split_request(scope["headers"], self.marks)
        request_id = headers.request_id.decode("ascii") if headers.request_id else new_request_id()
        method, target, client = original_request(scope, self.settings)
        exchange.request_id = request_id
        exchange.path = path = normalise_path(target)
        match = self.router.match(path)
        if match is None:
            return await self.refuse(send, exchange, Refusal(403, "no_route"), request_id)
        route = match[0]
        exchange.route = route.prefix
        verdict = self.gate.admit(route, headers.tokens, method, client)
        if isinstance(verdict, Pending):
            verdict = await self.gate.finish(verdict)
        exchange.identity = verdict.identity
        if isinstance(verdict, Refusal):
            return await self.refuse(send, exchange, verdict, request_id)
        answer = [(b"x-request-id", request_id.encode("ascii")), *verdict.headers]
        if verdict.identity is not None:
            answer += verdict.identity.headers
            if route.assertion:
                assertion = self.resources.assertions.sign(verdict.identity, route, request_id)
                if assertion is None:
                    refusal = Refusal(503, "assertion_unavailable")
                    return await self.refuse(send, exchange, refusal, request_id)
                answer.append((ASSERTION, assertion.encode("ascii")))
        exchange.status = 200
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*answer, (b"content-length", b"0"), (b"cache-control", b"no-store")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def refuse(
        self, send: Any, exchange: Exchange, refusal: Refusal, request_id: str
    ) -> None:
        status = refusal.status
        if status == 429:
            status = self.settings.rate_limited_status
        exchange.status, exchange.reason = status, refusal.reason
        await errors.send_error(
            send,
            status,
            refusal.reason,
            request_id,
            message=refusal.message,
            extra=refusal.headers,
        )
