"""Forward-auth: the gateway's checks for a proxy that stays in front (nginx ``auth_request``,
Caddy ``forward_auth``, Traefik ``ForwardAuth``, Envoy ``ext_authz`` as an HTTP service).

The proxy asks, for each request it received, whether it may pass and as whom. The endpoint
believes exactly one proxy's way of saying the original request, ``[forward_auth] shape``
(no guessing: a client's own headers reach the check too, so believing a second shape would
let a client say another request than the one the proxy serves):

- ``nginx``: ``X-Original-Method`` and ``X-Original-URI`` (the auth subrequest's
  ``proxy_set_header``), the client's address in ``X-Real-IP`` (``$remote_addr``);
- ``traefik`` (Traefik's ForwardAuth, and Caddy's forward_auth, which asks the same way):
  ``X-Forwarded-Method`` and ``X-Forwarded-Uri``, the client's address the last
  ``X-Forwarded-For`` entry (the one the proxy set or appended);
- ``envoy``: the check request's own method and path, less ``[forward_auth] path_prefix``,
  the client's address the last ``X-Forwarded-For`` entry (``use_remote_address``).

Every other shape's headers are ignored; a check request without its shape's headers (or with
one of them twice) is 400 ``bad_check_request``: the proxy is not configured as documented.
The proxy forwards the path as it received it, so a path that normalising would change (dot
segments, encoded slashes, ``//``) is 400 ``ambiguous_path`` here, as is one the proxy would
refuse too (``gateway.routing.is_ambiguous``): the decision is only ever made on the path the
upstream will see.
The key is read from its usual carriers, and the routes and the key's policies are held exactly
as on the proxy (``gateway.gate``).

Allowed: exactly 200, empty, with the identity headers (and the RateLimit fields, and on an
`assertion = true` route the X-Auth-Assertion) for the proxy to copy upstream; Envoy denies on
anything but 200. Refused: the proxy's own JSON error with its status, 401 with
``WWW-Authenticate``; 429 becomes ``[forward_auth] rate_limited_status`` (403 for nginx, which
turns every status but 401 and 403 into a 500). No route for the path is 403
``no_route`` for the same reason.

This listener believes the headers it is sent: it must be reachable by the proxy alone (loopback,
or a private network), and the proxy must clear client-sent identity headers before copying ours
(every configuration in ``docs/forward-auth/`` does).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from core.config import Config, ConfigError, ForwardAuthConfig, forward_auth_shape_error
from core.errors import new_request_id
from gateway import errors
from gateway.assertions import HEADER as ASSERTION
from gateway.exchange import Exchange
from gateway.gate import Pending, Refusal
from gateway.headers import split_request
from gateway.resources import Resources
from gateway.routing import Router, is_ambiguous, normalise_path

log = logging.getLogger("gateway.forward_auth")
BAD_CHECK = "The check request is not shaped like [forward_auth] shape's proxy sends it"
# Where each shape says the original method and target; None: the check request's own.
ORIGINAL = {
    "nginx": (b"x-original-method", b"x-original-uri"),
    "traefik": (b"x-forwarded-method", b"x-forwarded-uri"),
    "envoy": None,
}
# Where each shape says the client's address: one value, or the last entry of a list.
CLIENT = {"nginx": b"x-real-ip", "traefik": b"x-forwarded-for", "envoy": b"x-forwarded-for"}


_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")


class BadCheck(Exception):
    """The check request lacks what its proxy's shape always sends."""


def original_request(scope: dict[str, Any], settings: ForwardAuthConfig) -> tuple[str, bytes, str]:
    """The original request's method, raw path (no query) and client address, read the way
    ``settings.shape`` sends them; BadCheck when they are not there."""
    found: dict[bytes, list[bytes]] = {}
    for name, value in scope["headers"]:
        found.setdefault(name.lower(), []).append(value)
    shape = settings.shape
    names = ORIGINAL[shape]
    if names is None:
        method = scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        target = raw.split(b"?", 1)[0]
        prefix = settings.path_prefix.encode()
        if prefix:
            if not (target == prefix or target.startswith(prefix + b"/")):
                raise BadCheck(f"the check path does not start with path_prefix {prefix!r}")
            target = target[len(prefix) :] or b"/"
    else:
        method = _one(found, names[0]).decode("latin-1")
        target = _one(found, names[1])
    where = CLIENT[shape]
    if where == b"x-real-ip":
        client = _one(found, where).decode("latin-1").strip()
    else:
        chain = b",".join(found.get(where, ()))
        client = chain.decode("latin-1").rsplit(",", 1)[-1].strip()
    if not client:
        raise BadCheck(f"no client address in {where.decode()}")
    return method.upper(), target.split(b"?", 1)[0], client


def as_sent(target: bytes) -> str:
    """The raw path as text, its escapes' hex upper-cased (``%2f`` and ``%2F`` are the same
    octet, RFC 3986 §6.2.2.1): a plain path normalises to exactly this."""
    return _ESCAPE.sub(lambda m: m.group(0).upper(), target.decode("latin-1"))


def _one(found: dict[bytes, list[bytes]], name: bytes) -> bytes:
    values = found.get(name, [])
    if len(values) != 1:
        raise BadCheck(f"{name.decode()} must be sent exactly once, not {len(values)} times")
    return values[0]


class ForwardAuthApp:
    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        if resources.config.forward_auth.shape not in ORIGINAL:
            raise ConfigError(forward_auth_shape_error(resources.config.source))
        self.settings = resources.config.forward_auth
        self.apply(resources.config)
        resources.on_reload.append(self.apply)
        self.secret_marks = resources.secret_format.marks
        self.gate = resources.gate  # one per process: one LimitsCache

    def apply(self, config: Config) -> None:
        """At start and at a reload; a reload whose file names no shape keeps the running one
        (the endpoint stays open until a restart, and must not start guessing)."""
        settings = config.forward_auth
        if settings.shape not in ORIGINAL:
            running = self.settings.shape
            log.error("%s; keeping shape = %r", forward_auth_shape_error(config.source), running)
            settings = dataclasses.replace(settings, shape=running)
        self.router = Router(config.routes)
        self.settings = settings

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
        headers = split_request(scope["headers"], self.secret_marks)
        request_id = headers.request_id.decode("ascii") if headers.request_id else new_request_id()
        try:
            method, target, client = original_request(scope, self.settings)
        except BadCheck as exc:
            refusal = Refusal(400, "bad_check_request", f"{BAD_CHECK} ({exc}).")
            return await self.refuse(send, exchange, refusal, request_id)
        exchange.request_id = request_id
        exchange.path = path = normalise_path(target)
        # The proxy in front forwards the path as it received it, not this normalised one: a
        # path that normalising changes (`/api/x/..%2F..%2Fopen`) would be decided here as one
        # path and served upstream as another, so only a path already plain is answered.
        if is_ambiguous(path) or path != as_sent(target):
            return await self.refuse(send, exchange, Refusal(400, "ambiguous_path"), request_id)
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
                assertion = self.resources.assertions.sign(verdict.identity, route)
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
