"""WebSockets through the gateway, on routes that allow them (``websocket = true``).

``gateway serve``'s server protocol hands an upgraded connection over as it stands
(``gateway.http.server.Upgraded``); `WebSocketProxy.take` does the rest:

- **The handshake is a request like any other**: routed, its key checked by the gate (policies,
  rate limits and credits included; it counts as one request), refused with the same JSON
  errors written as a plain HTTP answer (403 ``websocket_not_allowed`` on a route without
  WebSockets). Admitted, it goes upstream as an upgrade request the gateway writes: the
  identity headers (and the assertion where the route signs), the client's own ``X-Auth-*``
  dropped, subprotocol names that carry a secret removed, and the client's
  ``Sec-WebSocket-Key``, ``-Version`` and ``-Extensions`` as they came, so the upstream's
  ``Sec-WebSocket-Accept`` and any permessage-deflate it agrees to hold end to end
  (``gateway.ws_upstream``). Its 101 is passed to the client with ``X-Request-Id``; any other
  answer is passed on with its status and body; a connection that fails is 502, silence past
  the route timeout 504.
- **After the 101, bytes** (``gateway.ws_relay``): relayed both ways as they arrive, only the
  frame headers read (``gateway.ws_frames``), frames up to ``MAX_FRAME`` (1009 past it; an
  unmasked client frame is 1002). The bytes counted into the access log are the payloads of
  the data frames, as on the wire (compressed where permessage-deflate is on).

Sessions end on their own terms (either side's close frame reaches the other), or the gateway's,
each direction at its next frame boundary, with its own close frame to both sides:
- **idle**: nothing either way for the route's ``websocket_idle_timeout_seconds``: 1001;
- **the key is revoked, expires or no longer passes the route** (an edit): 1008 (policy
  violation) and the refusal's reason, within the revocation bound (``gateway.ws_sessions``).

Under any other ASGI server the app is handed ASGI messages, not a connection: a WebSocket is
refused there (403 ``websocket_not_allowed``, saying so).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from core.config import Route
from core.errors import new_request_id
from core.identity import Identity
from gateway import errors
from gateway.exchange import Exchange
from gateway.gate import Pending, Refusal
from gateway.headers import filter_response, split_request
from gateway.http.client import UpstreamError, head_of
from gateway.http.cycle import PLAIN, STATUS_LINE
from gateway.http.server import Upgraded
from gateway.routing import is_ambiguous, normalise_path
from gateway.ws_relay import Held, Relay
from gateway.ws_sessions import Session
from gateway.ws_upstream import HANDSHAKE, Reading, client_key, handshake, upgrade_head

if TYPE_CHECKING:
    from gateway.app import GatewayApp

log = logging.getLogger("gateway.websocket")

MAX_FRAME = 16 * 1024 * 1024  # a frame's payload, either way
# Of an upstream's refusal of the upgrade, what reaches the client beside its status and body.
REFUSAL_HEADERS = frozenset({b"content-type", b"www-authenticate"})
NOT_HERE = (
    "WebSockets go through `gateway serve`, which relays them as bytes; this server hands the "
    "gateway ASGI messages instead."
)


class WebSocketProxy:
    def __init__(self, app: GatewayApp) -> None:
        self.app = app
        self.sessions = app.resources.sessions
        self.handshakes: set[asyncio.Task[None]] = set()

    def take(self, upgraded: Upgraded) -> None:
        """The server protocol's handover: the client's connection is held (what it sends
        kept) while the handshake runs in a task, which stops if the client goes away."""
        client = Held(upgraded.transport, upgraded.early, upgraded.connections)
        upgraded.transport.set_protocol(client)
        upgraded.transport.resume_reading()  # paused by the server if it read ahead
        task = asyncio.get_running_loop().create_task(self.handshake(upgraded, client))
        self.handshakes.add(task)
        task.add_done_callback(self.handshakes.discard)
        client.on_lost = task.cancel

    async def handshake(self, upgraded: Upgraded, client: Held) -> None:
        """One handshake: refused (and told to the access log, the metrics and the key's usage
        now), or relayed (and told when the session is over, status 101)."""
        exchange = Exchange()
        relayed = False
        try:
            relayed = await self.open(upgraded, client, exchange)
        except Exception:
            log.exception("unhandled error in a WebSocket handshake")
            self.refuse(client, exchange, 500, "internal_error", new_request_id())
        finally:
            if not relayed:
                self.report(upgraded.scope, exchange)

    async def open(self, upgraded: Upgraded, client: Held, exchange: Exchange) -> bool:
        """Decide the handshake; True when the session was relayed."""
        app, scope = self.app, upgraded.scope
        headers = split_request(scope["headers"], app.secret_marks)
        request_id = headers.request_id.decode("ascii") if headers.request_id else new_request_id()
        exchange.request_id = request_id
        exchange.path = normalise_path(scope["raw_path"].split(b"?", 1)[0])
        if is_ambiguous(exchange.path):
            return self.refuse(client, exchange, 400, "ambiguous_path", request_id)
        match = app.router.match(exchange.path)
        if match is None:
            return self.refuse(client, exchange, 404, "no_route", request_id)
        route, upstream_path = match
        exchange.route = route.prefix
        if not route.websocket:
            return self.refuse(client, exchange, 403, "websocket_not_allowed", request_id)
        if client_key(scope["headers"]) is None:  # no accept to check the upstream's 101 by
            return self.refuse(client, exchange, 400, "bad_websocket_handshake", request_id)
        peer = scope["client"][0] if scope.get("client") else "unknown"
        seen = self.sessions.changes  # a change from here on may not have reached the verdict
        verdict = app.gate.admit(route, headers.tokens, "GET", peer)
        if isinstance(verdict, Pending):
            verdict = await app.gate.finish(verdict)
        identity = exchange.identity = verdict.identity
        if isinstance(verdict, Refusal):
            return self.refuse(
                client,
                exchange,
                verdict.status,
                verdict.reason,
                request_id,
                verdict.headers,
                verdict.message,
            )
        own = [(k, v) for k, v in headers.forward if k not in HANDSHAKE]
        forward = app.trusted(headers, own, identity, route, request_id, peer, scope)
        if forward is None:
            return self.refuse(client, exchange, 503, "assertion_unavailable", request_id)
        query = scope.get("query_string", b"")
        target = upstream_path.encode("ascii") + (b"?" + query if query else b"")
        where = app.origins[route.prefix]
        head = head_of(
            "GET",
            target,
            where.authority,
            upgrade_head(scope["headers"], app.secret_marks) + forward,
        )
        context = app.upstream.context(route.ca_file) if where.tls else None
        try:
            answer, upstream = await handshake(where, context, head, route.timeout_seconds)
        except UpstreamError as exc:
            if not exc.timeout:
                log.warning("websocket upstream %s failed: %s", route.upstream, exc)
            return self.refuse(client, exchange, *exc.answer, request_id)
        if answer.status != 101:  # the upstream refused the handshake: its answer, passed on
            exchange.status, exchange.response_bytes = answer.status, len(answer.body)
            kept = [(k, v) for k, v in answer.headers if k in REFUSAL_HEADERS]
            client.answer(whole_answer(answer.status, kept, answer.body, request_id))
            return False
        switching = head_101(filter_response(answer.headers), request_id)
        if not answer.says_websocket(client_key(scope["headers"])) or switching is None:
            log.warning(
                "websocket upstream %s answered 101 without a WebSocket answering the client's "
                "Sec-WebSocket-Key",
                route.upstream,
            )
            upstream.transport.close()
            return self.refuse(client, exchange, 502, "upstream_unreachable", request_id)
        client.on_lost = None
        if client.lost:
            upstream.transport.close()
            return False
        client.transport.write(switching)
        exchange.status = 101
        self.relay(upgraded, client, upstream, route, identity, headers.tokens, exchange, seen)
        return True

    def relay(
        self,
        upgraded: Upgraded,
        client: Held,
        upstream: Reading,
        route: Route,
        identity: Identity | None,
        tokens: list[bytes],
        exchange: Exchange,
        seen: int,
    ) -> None:
        """The session, from the 101: relayed, held by key, reported when over."""
        session: Session | None = None
        connections = upgraded.connections

        def over(relay: Relay) -> None:
            connections.discard(relay)
            if session is not None:
                self.sessions.remove(session)
            exchange.reason = relay.why
            exchange.request_bytes = relay.client.reader.data_bytes
            exchange.response_bytes = relay.upstream.reader.data_bytes
            self.report(upgraded.scope, exchange)

        relay = Relay(client, upstream, route.websocket_idle_timeout_seconds, MAX_FRAME, over)
        connections.discard(client)
        connections.add(relay)
        if identity is not None:
            peer = upgraded.scope["client"][0] if upgraded.scope.get("client") else "unknown"

            def stop(code: int, reason: str) -> None:
                relay.end(code, reason, reason)

            session = Session(route, tokens, peer, identity, stop)
            self.sessions.add(session, seen)
        relay.start()

    def refuse(
        self,
        client: Held,
        exchange: Exchange,
        status: int,
        reason: str,
        request_id: str,
        extra: tuple[tuple[bytes, bytes], ...] = (),
        message: str | None = None,
    ) -> bool:
        """The gateway's JSON error as a plain HTTP answer, then the connection closed."""
        exchange.status, exchange.reason = status, reason
        headers, body = errors.error_response(status, reason, request_id, message, extra)
        exchange.response_bytes = len(body)
        client.answer(whole_answer(status, headers, body, None))
        return False

    def report(self, scope: dict[str, Any], exchange: Exchange) -> None:
        resources = self.app.resources
        exchange.report(
            scope,
            resources.metrics,
            resources.access_log,
            resources.config.access_query,
            resources.usage,
        )


def head_101(headers: list[tuple[bytes, bytes]], request_id: str) -> bytes | None:
    """The 101 the client gets: the upstream's fields (less hop-by-hop ones), the upgrade's
    own and X-Request-Id. None when a field is not valid HTTP (response splitting)."""
    lines = [STATUS_LINE[101]]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    lines.append(
        b"upgrade: websocket\r\nconnection: Upgrade\r\nx-request-id: %s\r\n\r\n"
        % request_id.encode("ascii")
    )
    head = b"".join(lines)
    if len(head.translate(None, PLAIN)) != 2 * (len(headers) + 5):
        return None
    return head


def whole_answer(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, request_id: str | None
) -> bytes:
    """An answer refusing the handshake, with its length, then the connection's close."""
    lines = [STATUS_LINE.get(status) or b"HTTP/1.1 %d \r\n" % status]
    for name, value in headers:
        if name not in (b"content-length", b"connection"):
            lines += (name, b": ", value, b"\r\n")
    if request_id is not None:
        lines.append(b"x-request-id: %s\r\n" % request_id.encode("ascii"))
    lines.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    return b"".join(lines) + body


async def refuse_asgi(scope: dict[str, Any], send: Any, exchange: Exchange) -> None:
    """A WebSocket under another ASGI server: refused, as an HTTP answer where the server has
    the ASGI WebSocket Denial Response extension, else with a close (1008)."""
    request_id = new_request_id()
    exchange.request_id, exchange.path = request_id, scope.get("path", "")
    exchange.status, exchange.reason = 403, "websocket_not_allowed"
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})  # policy violation
        return

    async def as_websocket(event: dict[str, Any]) -> None:
        await send({**event, "type": "websocket." + event["type"]})

    await errors.send_error(
        as_websocket, 403, "websocket_not_allowed", request_id, message=NOT_HERE
    )
