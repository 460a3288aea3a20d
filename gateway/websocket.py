"""WebSockets through the gateway, on routes that allow them (``websocket = true``).

The handshake is a request like any other: routed, its key checked by the gate (policies and rate
limits included; it counts as one request), and refused with the same JSON errors (the ASGI
WebSocket Denial Response: a 403 says a route does not allow WebSockets). Once admitted, the
gateway opens the upstream WebSocket with the identity headers (and the assertion where the
route signs), and accepts the client's only after the upstream's 101, with the subprotocol the
upstream chose. Messages then flow both ways as they are; either side's close code and reason
are passed to the other.

Sessions end on their own terms, or:
- **idle**: nothing either way for the route's ``websocket_idle_timeout_seconds``: both sides
  are closed with 1001 (going away);
- **the key is revoked, expires or no longer passes the route** (an edit): both sides are
  closed with 1008 (policy violation), within the revocation bound. Each open session is held
  by ``Sessions``, which the verifier tells about every key change it follows; the sessions of a
  changed key are put through the gate again, and an expiry is a timer of the session's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from core.config import Route
from core.credentials import carries_secret
from core.errors import new_request_id
from core.identity import Identity
from gateway import errors
from gateway.exchange import Exchange
from gateway.gate import Gate, Pending, Refusal
from gateway.headers import split_request
from gateway.routing import is_ambiguous, normalise_path

if TYPE_CHECKING:
    from gateway.app import GatewayApp

log = logging.getLogger("gateway.websocket")

# The handshake's own headers: each hop negotiates them afresh (RFC 6455 §4.1).
HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
    }
)
POLICY_VIOLATION = 1008
GOING_AWAY = 1001
MAX_MESSAGE = 16 * 1024 * 1024  # as uvicorn's ws_max_size, for the upstream side too


def offered(scope: dict[str, Any], secret_marks: tuple[bytes, ...]) -> list[Any] | None:
    """The subprotocols the client offered, less any holding a string of our secret's shape:
    browsers cannot set headers on a WebSocket, so some clients carry their key there, and it
    must not reach the upstream (`core.credentials.carries_secret`)."""
    kept = [
        name
        for name in scope.get("subprotocols") or ()
        if not carries_secret(name.encode("latin-1"), secret_marks)
    ]
    return kept or None


class Session:
    """One open WebSocket: what the gate admitted it on, and how to end it."""

    def __init__(self, route: Route, tokens: list[bytes], client: str, identity: Identity) -> None:
        self.route, self.tokens, self.client, self.identity = route, tokens, client, identity
        self.ended: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self.expiry: asyncio.TimerHandle | None = None

    def end(self, code: int, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result((code, reason))


class Sessions:
    """Every open WebSocket of this process, by access key: put through the gate again when
    the verifier follows a change to its key."""

    def __init__(self, gate: Gate, clock: Callable[[], float]) -> None:
        self.gate = gate
        self.clock = clock
        self.by_key: dict[str, set[Session]] = {}
        self._checks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return sum(len(sessions) for sessions in self.by_key.values())

    def add(self, session: Session) -> None:
        self.by_key.setdefault(session.identity.access_key, set()).add(session)
        expires = [
            t
            for t in (session.identity.expires_at, session.identity.secret_expires_at)
            if t is not None
        ]
        if expires:
            delay = max(0.0, min(expires) - self.clock())
            loop = asyncio.get_running_loop()
            session.expiry = loop.call_later(delay, self._recheck, session)

    def remove(self, session: Session) -> None:
        held = self.by_key.get(session.identity.access_key)
        if held is not None:
            held.discard(session)
            if not held:
                del self.by_key[session.identity.access_key]
        if session.expiry is not None:
            session.expiry.cancel()

    def changed(self, access_keys: set[str] | None) -> None:
        """The verifier evicted these keys (None: its whole cache)."""
        keys = list(self.by_key) if access_keys is None else access_keys & self.by_key.keys()
        for access_key in keys:
            for session in list(self.by_key.get(access_key, ())):
                self._recheck(session)

    def _recheck(self, session: Session) -> None:
        task = asyncio.get_running_loop().create_task(self._check(session))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(self, session: Session) -> None:
        gate = self.gate
        verdict = gate.admit(session.route, session.tokens, "GET", session.client, limited=False)
        if isinstance(verdict, Pending):
            verdict = await gate.finish(verdict)
        if isinstance(verdict, Refusal) and verdict.status != 503:
            session.end(POLICY_VIOLATION, verdict.reason)


class WebSocketProxy:
    def __init__(self, app: GatewayApp) -> None:
        self.app = app
        resources = app.resources
        self.sessions = resources.sessions

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """One session, told to the access log, the metrics and the key's usage when it is over
        (status 101 for a session, or the refusal's; the bytes of the messages both ways)."""
        exchange = Exchange()

        async def counted(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "websocket.accept":
                exchange.status = 101
            elif kind == "websocket.http.response.start":
                exchange.status = message["status"]
            elif kind == "websocket.close" and exchange.status is None:
                exchange.status = 403
            await send(message)

        resources = self.app.resources
        try:
            await self.handle(scope, receive, counted, exchange)
        finally:
            exchange.report(
                {**scope, "method": "GET"},
                resources.metrics,
                resources.access_log,
                resources.config.access_query,
                resources.usage,
            )

    async def handle(
        self, scope: dict[str, Any], receive: Any, send: Any, exchange: Exchange
    ) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        deny = denial(scope, send, exchange)
        app = self.app
        headers = split_request(scope["headers"], app.secret_marks)
        request_id = headers.request_id.decode("ascii") if headers.request_id else new_request_id()
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        exchange.request_id = request_id
        exchange.path = normalise_path(raw_path.split(b"?", 1)[0])
        if is_ambiguous(exchange.path):
            return await deny(400, "ambiguous_path", request_id)
        match = app.router.match(exchange.path)
        if match is None:
            return await deny(404, "no_route", request_id)
        route, upstream_path = match
        exchange.route = route.prefix
        if not route.websocket:
            return await deny(403, "websocket_not_allowed", request_id)
        client = scope["client"][0] if scope.get("client") else "unknown"
        verdict = app.gate.admit(route, headers.tokens, "GET", client)
        if isinstance(verdict, Pending):
            verdict = await app.gate.finish(verdict)
        exchange.identity = verdict.identity
        if isinstance(verdict, Refusal):
            return await deny(
                verdict.status, verdict.reason, request_id, verdict.headers, verdict.message
            )
        own = [(k, v) for k, v in headers.forward if k not in HANDSHAKE]
        forward = app.trusted(headers, own, verdict.identity, route, request_id, client, scope)
        if forward is None:
            return await deny(503, "assertion_unavailable", request_id)
        query = scope.get("query_string", b"")
        scheme, _, authority = route.upstream.partition("://")
        uri = f"{'wss' if scheme == 'https' else 'ws'}://{authority}{upstream_path}"
        if query:
            uri += "?" + query.decode("latin-1")
        try:
            upstream = await asyncio.wait_for(
                connect(
                    uri,
                    additional_headers=[
                        (k.decode("latin-1"), v.decode("latin-1")) for k, v in forward
                    ],
                    subprotocols=offered(scope, app.secret_marks),
                    user_agent_header=None,
                    ssl=app.upstream.context(route.ca_file) if scheme == "https" else None,
                    max_size=MAX_MESSAGE,
                    open_timeout=None,
                    ping_interval=None,  # the client's hop keeps its own pings (uvicorn)
                ),
                route.timeout_seconds,
            )
        except TimeoutError:
            return await deny(504, "upstream_timeout", request_id)
        except InvalidStatus as exc:
            # The upstream refused the handshake: its answer, as it gave it.
            response = exc.response
            if "websocket.http.response" not in (scope.get("extensions") or {}):
                return await deny(response.status_code, "upstream_refused", request_id)
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in response.headers.raw_items()
                        if k.lower() in ("content-type", "content-length", "www-authenticate")
                    ],
                }
            )
            await send({"type": "websocket.http.response.body", "body": response.body or b""})
            return
        except (OSError, InvalidHandshake) as exc:
            log.warning("websocket upstream %s failed: %s", route.upstream, exc)
            return await deny(502, "upstream_unreachable", request_id)
        await self.relay(
            scope, receive, send, upstream, route, verdict.identity, request_id, exchange
        )

    async def relay(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        upstream: ClientConnection,
        route: Route,
        identity: Identity | None,
        request_id: str,
        exchange: Exchange,
    ) -> None:
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": upstream.subprotocol,
                "headers": [(b"x-request-id", request_id.encode("ascii"))],
            }
        )
        loop = asyncio.get_running_loop()
        last = [loop.time()]
        session = None
        if identity is not None:
            tokens = split_request(scope["headers"], self.app.secret_marks).tokens
            client = scope["client"][0] if scope.get("client") else "unknown"
            session = Session(route, tokens, client, identity)
            self.sessions.add(session)
        ended: asyncio.Future[tuple[int, str]] = (
            session.ended if session is not None else loop.create_future()
        )

        async def from_client() -> tuple[int, str]:
            while True:
                message = await receive()
                last[0] = loop.time()
                if message["type"] == "websocket.disconnect":
                    return message.get("code", 1005), message.get("reason") or ""
                text = message.get("text")
                data = text if text is not None else message.get("bytes") or b""
                exchange.request_bytes += len(data)
                await upstream.send(data)

        async def from_upstream() -> tuple[int, str]:
            try:
                async for data in upstream:
                    last[0] = loop.time()
                    exchange.response_bytes += len(data)
                    key = "text" if isinstance(data, str) else "bytes"
                    await send({"type": "websocket.send", key: data})
            except ConnectionClosed:
                pass
            received = upstream.protocol.close_rcvd
            return (received.code, received.reason) if received else (1006, "")

        async def idle() -> tuple[int, str]:
            timeout = route.websocket_idle_timeout_seconds
            while (left := last[0] + timeout - loop.time()) > 0:
                await asyncio.sleep(left)
            return GOING_AWAY, "idle timeout"

        tasks = {
            "client": asyncio.ensure_future(from_client()),
            "upstream": asyncio.ensure_future(from_upstream()),
            "idle": asyncio.ensure_future(idle()),
        }
        try:
            done, _ = await asyncio.wait(
                [*tasks.values(), ended], return_when=asyncio.FIRST_COMPLETED
            )
            if ended in done:
                first, result = "policy", ended.result()
            else:
                first = next(name for name, task in tasks.items() if task in done)
                result = tasks[first].result()
        except Exception as exc:  # a send to a gone client, a broken upstream
            log.debug("websocket %s ended: %s", request_id, exc)
            first, result = "error", (1011, "")
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            if session is not None:
                self.sessions.remove(session)
        code, reason = result
        if first in ("policy", "idle"):
            exchange.reason = reason.replace(" ", "_")  # invalid_token, idle_timeout, ...
        if first != "client":  # the client is told why: the upstream's code, or ours
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": _sendable(code), "reason": reason})
        if first != "upstream":
            with contextlib.suppress(Exception):
                await upstream.close(_sendable(code), reason)
        with contextlib.suppress(Exception):
            await upstream.close()


def _sendable(code: int) -> int:
    """1005 (no code) and 1006 (no close frame) may not be sent (RFC 6455 §7.4.1): 1000."""
    return 1000 if code in (1005, 1006) else code


Deny = Callable[..., Awaitable[None]]


def denial(scope: dict[str, Any], send: Any, exchange: Exchange) -> Deny:
    """How to refuse this handshake: the gateway's JSON error as an HTTP answer (the ASGI
    WebSocket Denial Response extension, which uvicorn has), else a bare close (1008)."""
    answers = "websocket.http.response" in (scope.get("extensions") or {})

    async def as_websocket(event: dict[str, Any]) -> None:
        await send({**event, "type": "websocket." + event["type"]})

    async def deny(
        status: int,
        reason: str,
        request_id: str,
        extra: tuple[tuple[bytes, bytes], ...] = (),
        message: str | None = None,
    ) -> None:
        exchange.status, exchange.reason = status, reason
        if not answers:
            await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": reason})
            return
        await errors.send_error(
            as_websocket, status, reason, request_id, message=message, extra=extra
        )

    return deny
