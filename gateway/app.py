"""The gateway: a raw ASGI callable gluing routing, verification, headers and the upstream client.

Raw ASGI rather than a framework route on the hot path (docs/architecture.md: ~25% more requests/s).
On a cache hit the only ``await`` before the upstream call is none at all: route match, token check,
cache lookup and header filtering are plain function calls.

Auth modes per route:
- ``required``: a valid key is needed.
- ``optional``: no token is forwarded anonymously (no identity headers); a token that is sent
  must be valid: a client sending a wrong key should hear so, not be served as anonymous.
- ``none``: the key, if any, is removed and never looked at.
The key is read from ``X-Auth-Token`` or ``Authorization: Bearer`` (``core.credentials``), and
neither carrier of it ever reaches an upstream. On every route, client headers that could pass
for our identity headers are removed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from typing import Any

from core.assertion_keys import JWKS_PATH
from core.config import Config, Route
from core.errors import new_request_id, readiness_json
from core.identity import Identity
from gateway import errors
from gateway.assertions import HEADER as ASSERTION
from gateway.exchange import Exchange
from gateway.gate import Admitted, Pending, Refusal
from gateway.headers import RequestHeaders, shaped, split_request
from gateway.http.client import BodyTooLarge, ClientGone, RequestBody, UpstreamError
from gateway.http.cycle import Cycle
from gateway.http.server import Upgraded
from gateway.plan import JWKS, READINESS, Context, Forward, Refuse, Start, Step, Wait
from gateway.proxy import origin
from gateway.relay import serve_step
from gateway.resources import Resources
from gateway.routing import Router, is_ambiguous, normalise_path
from gateway.websocket import WebSocketProxy, refuse_asgi

log = logging.getLogger("gateway.app")
# RFC 9110 §15.5.6: a 405 says what is allowed.
NOT_CONNECT = ((b"allow", b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),)


@functools.lru_cache(maxsize=4096)  # a client's address repeats on each of its requests
def replaced_address(peer: bytes, secure: bool) -> tuple[tuple[bytes, bytes], ...]:
    """Forwarded (RFC 7239 §4; an IPv6 node quoted, §6) and X-Real-IP, the client's address as
    the gateway knows it, in place of the client's own (``gateway.headers`` drops those)."""
    node = b'"[' + peer + b']"' if b":" in peer else peer
    proto = b"https" if secure else b"http"
    return ((b"forwarded", b"for=" + node + b";proto=" + proto), (b"x-real-ip", peer))


class GatewayApp:
    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.router = Router(resources.config.routes)
        # By prefix (unique, a str's cached hash): a frozen Route hashes all its fields on
        # every lookup, 0.5 us a request.
        self.origins = {route.prefix: origin(route) for route in resources.config.routes}
        resources.on_reload.append(self.apply)
        self.upstream = resources.upstream
        self.secret_marks = resources.secret_format.marks
        self.health_path = resources.config.health_path  # "" when the proxy has no probe
        self.access_log = resources.access_log  # None: "[log] access = off"
        self.access_query = resources.config.access_query
        self.metrics = resources.metrics  # None: "[metrics] enabled = false"
        self.gate = resources.gate  # one per process: one LimitsCache
        self.usage = resources.usage
        self.assertions = resources.assertions
        self.websockets = WebSocketProxy(self)
        self.jwks_path = JWKS_PATH if resources.config.assertion.jwks_on_proxy else ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """`resume` from the start for HTTP, the ASGI way in (any ASGI server, and `gateway
        serve` for what `serve_by_callbacks` hands over); WebSockets and the lifespan in `other`."""
        if scope["type"] != "http":
            return await self.other(scope, receive, send)
        if self.metrics is not None:
            self.metrics.in_flight += 1
        await self.resume(None, scope, receive, send, Exchange())

    def serve_by_callbacks(self, scope: dict[str, Any], cycle: Cycle, start: Start) -> None:
        """`gateway serve`'s way in (``gateway.http.server``): the request is decided by plain calls
        (`prepare`); a refusal is answered at once, a key that is not cached is waited for by a
        callback on its lookup, and a request without a body that is let through goes upstream
        on a kept-alive connection and is answered by callbacks (``gateway.relay``): no task,
        no coroutine, no ASGI message. Anything else (a body, Redis rate limits, no idle
        connection, a large response) is handed to `resume` in a task started by ``start``,
        with what was decided so far: nothing is checked or counted twice."""
        exchange = Exchange()
        if self.metrics is not None:
            self.metrics.in_flight += 1
        decide = functools.partial(self.prepare, scope, exchange)
        serve_step(self, decide, scope, cycle, start, exchange)

    def take_websocket(self, upgraded: Upgraded) -> None:
        """`gateway serve`'s way in for a WebSocket: the server protocol hands the upgraded
        connection over (``gateway.websocket``)."""
        self.websockets.take(upgraded)

    async def resume(
        self,
        step: Step | None,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        exchange: Exchange,
    ) -> None:
        """Serve the request from ``step`` (None: from the start), then tell the access log and
        the metrics, once the exchange is over, whatever happened. A `Forward` a relay hands
        over may be upstream already, or due on a new connection (its ``sent`` and ``fresh``).

        The status and the bytes answered are noted where the response is made (`refuse`, the
        engine, the probes), not by wrapping ``send`` in a coroutine of its own: each coroutine
        layer is paid again at every suspension and resumption of the request
        (docs/architecture.md, "The server side")."""
        try:
            if step is None:
                step = self.prepare(scope, exchange)
            if type(step) is Wait:
                verdict = await self.gate.finish(step.pending)
                step = self.step_after_gate(verdict, step.context, scope, exchange)
            if type(step) is Forward:
                await self.forward(step, receive, send, exchange)
            elif type(step) is Refuse:
                await self.refuse(send, exchange, *step)
            elif step == READINESS:
                await self.readiness(send, exchange)
            else:
                await self.jwks(send, exchange)
        except Exception:
            # Logged with its traceback here; the client gets a plain JSON 500 if nothing was
            # sent yet (uvicorn would otherwise answer with its own text).
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if exchange.status is None:
                exchange.status = 500
            # If the response had started, there is nothing more to say.
            with contextlib.suppress(Exception):
                await errors.send_error(send, 500, "internal_error", new_request_id())
        finally:
            self.closed(scope, exchange)

    def closed(self, scope: dict[str, Any], exchange: Exchange) -> None:
        """The exchange is over: the metrics, the key's usage and the access log are told."""
        metrics = self.metrics
        if metrics is not None:
            metrics.in_flight -= 1
        exchange.report(
            scope,
            metrics,
            self.access_log,
            self.access_query,
            self.usage,
        )

    async def other(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The scopes that are not HTTP requests: WebSockets (refused: they need `gateway
        serve`, which hands the gateway the connection) and the lifespan."""
        kind = scope["type"]
        if kind == "websocket":
            exchange = Exchange()
            try:
                if (await receive())["type"] == "websocket.connect":
                    await refuse_asgi(scope, send, exchange)
            finally:
                self.websockets.report(scope, exchange)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    def apply(self, config: Config) -> None:
        """A reloaded config: a request already routed keeps its route (it holds it)."""
        self.router = Router(config.routes)
        self.origins = {route.prefix: origin(route) for route in config.routes}
        self.health_path = config.health_path
        self.jwks_path = JWKS_PATH if config.assertion.jwks_on_proxy else ""

    async def readiness(self, send: Any, exchange: Exchange) -> None:
        """`[server] health_path`: the admin listener's /readyz, for a load balancer that only
        sees the proxy port."""
        status, body = readiness_json(await self.resources.readiness(), new_request_id())
        exchange.status, exchange.response_bytes = status, len(body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def trusted(
        self,
        headers: RequestHeaders,
        forward: list[tuple[bytes, bytes]],
        identity: Identity | None,
        route: Route,
        request_id: str,
        client: str,
        scope: dict[str, Any],
    ) -> list[tuple[bytes, bytes]] | None:
        """``forward`` with what the gateway vouches for added: the identity headers (and the
        route's assertion), the forwarding chain and the request id. None when the route signs
        and there is no key to sign with. (HTTP and WebSocket requests alike.)"""
        if identity is not None:
            forward.extend(identity.headers)
            if route.assertion:
                assertion = self.assertions.sign(identity, route)
                if assertion is None:
                    return None
                forward.append((ASSERTION, assertion.encode("ascii")))
        peer = client.encode("ascii")
        chain = headers.forwarded_for + b", " + peer if headers.forwarded_for else peer
        forward.append((b"x-forwarded-for", chain))
        secure = scope.get("scheme") in ("https", "wss")
        forward.append((b"x-forwarded-proto", b"https" if secure else b"http"))
        forward.extend(replaced_address(peer, secure))
        if headers.host is not None:
            forward.append((b"x-forwarded-host", headers.host))
        forward.append((b"x-request-id", request_id.encode("ascii")))
        return forward

    async def jwks(self, send: Any, exchange: Exchange) -> None:
        """`[assertion] jwks_on_proxy`: the assertion keys, for upstreams that only reach the
        proxy listener (the admin listener serves them too)."""
        body = self.assertions.jwks()
        exchange.status, exchange.response_bytes = 200, len(body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"max-age=60"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def lifespan(self, receive: Any, send: Any) -> None:
        """The ASGI lifespan, for running the app under any ASGI server: start and stop the
        resources. (`gateway serve` starts them itself, once for both of its listeners.)"""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.resources.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.resources.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def refuse(
        self,
        send: Any,
        exchange: Exchange,
        status: int,
        reason: str,
        request_id: str,
        extra: tuple[tuple[bytes, bytes], ...] = (),
        message: str | None = None,
    ) -> None:
        exchange.reason = reason
        exchange.status = status
        exchange.response_bytes += await errors.send_error(
            send, status, reason, request_id, message=message, extra=extra
        )

    def prepare(self, scope: dict[str, Any], exchange: Exchange) -> Step:
        """What to do with a request, decided by plain calls: the probes, the route, the key
        (a cache miss or Redis limits leave a `Wait`), the body's limit, the headers."""
        if self.health_path and scope["path"] == self.health_path:
            return READINESS
        if self.jwks_path and scope["path"] == self.jwks_path:
            return JWKS
        headers = split_request(scope["headers"], self.secret_marks)
        request_id = headers.request_id.decode("ascii") if headers.request_id else new_request_id()
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = normalise_path(raw_path.split(b"?", 1)[0])
        exchange.request_id, exchange.path = request_id, path
        if scope["method"] == "CONNECT":  # a tunnel would carry anything past the gate
            return Refuse(405, "method_not_allowed", request_id, NOT_CONNECT)
        if is_ambiguous(path):
            return Refuse(400, "ambiguous_path", request_id)
        match = self.router.match(path)
        if match is None:
            return Refuse(404, "no_route", request_id)
        route, upstream_path = match
        exchange.route = route.prefix
        client = scope.get("client")
        # The peer's address, or X-Forwarded-For's where [server] trusted_proxies allows:
        # uvicorn's proxy-headers middleware has put it in the scope already.
        client_ip = client[0] if client else "unknown"
        context = Context(headers, request_id, route, upstream_path, client_ip)
        verdict = self.gate.admit(route, headers.tokens, scope["method"], client_ip)
        if isinstance(verdict, Pending):
            return Wait(verdict, context)
        return self.step_after_gate(verdict, context, scope, exchange)

    def step_after_gate(
        self,
        verdict: Admitted | Refusal,
        context: Context,
        scope: dict[str, Any],
        exchange: Exchange,
    ) -> Forward | Refuse:
        """The gate's answer: a refusal, or the request as it goes upstream."""
        headers, request_id, route, upstream_path, client_ip = context
        identity = verdict.identity
        exchange.identity = identity
        if isinstance(verdict, Refusal):
            return Refuse(
                verdict.status, verdict.reason, request_id, verdict.headers, verdict.message
            )
        returned = [(b"x-request-id", request_id.encode("ascii")), *verdict.headers]
        if headers.content_length is not None:
            # Whitespace around a field value is not part of it (RFC 9110 §5.5): the parser
            # framed the body by "5 " as by "5", and so must this check.
            length = headers.content_length.strip(b" \t")
            if not length.isdigit():
                return Refuse(400, "bad_content_length", request_id)
            if int(length) > route.max_body_bytes:
                return Refuse(413, "body_too_large", request_id)
        forward = self.trusted(
            headers, headers.forward, identity, route, request_id, client_ip, scope
        )
        if forward is None:
            return Refuse(503, "assertion_unavailable", request_id)
        query = scope.get("query_string", b"")
        return Forward(
            route,
            self.origins[route.prefix],
            scope["method"],
            upstream_path.encode("ascii") + (b"?" + query if query else b""),
            forward,
            returned,
            headers.content_length is not None or headers.chunked,
            headers.content_length is None and headers.chunked,
            request_id,
        )

    async def forward(
        self,
        step: Forward,
        receive: Any,
        send: Any,
        exchange: Exchange,
    ) -> None:
        """The request upstream and its answer back, or the refusal its failure calls for."""
        route = step.route
        body = RequestBody(receive, route.max_body_bytes) if step.framed else None
        if not exchange.forwarded:  # else a relay sent it and handed it over (gateway.relay)
            exchange.forwarded = time.perf_counter()
        try:
            await self.upstream.forward(
                method=step.method,
                where=step.where,
                target=step.target,
                headers=step.headers,
                body=body,
                chunked=step.chunked,
                timeout=route.timeout_seconds,
                shape=functools.partial(shaped, step.returned),
                receive=receive,
                send=send,
                tally=exchange,
                sent=step.sent,
                fresh=step.fresh,
            )
        except BodyTooLarge:
            await self.refuse(send, exchange, 413, "body_too_large", step.request_id)
        except ClientGone as gone:
            if gone.answer is not None:  # the server's own refusal ended it (a late body)
                exchange.status, exchange.reason = gone.answer
        except UpstreamError as exc:
            if not exc.timeout:
                log.warning("upstream %s failed: %s", route.upstream, exc)
            await self.refuse(send, exchange, *exc.answer, step.request_id)
        finally:
            exchange.upstream_seconds = time.perf_counter() - exchange.forwarded
            exchange.request_bytes = body.received if body is not None else 0
