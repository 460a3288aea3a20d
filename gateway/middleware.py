"""API keys for one Python service, without a second hop: an ASGI middleware.

    from gateway.middleware import APIKeyMiddleware
    app = APIKeyMiddleware(app, config="gateway.toml", exempt=["/healthz"])

It verifies with the proxy's own verifier, store and revocation feed (SQLite or PostgreSQL, from
the same config file), holds the same policies (``gateway.gate``) and answers a refusal with the
same JSON error. An admitted request reaches the app with its identity in ``scope["state"]``
(``request.state.api_key`` in Starlette and FastAPI: a :class:`core.identity.Identity`, or None
on an ``optional`` route without a key) and as the trusted identity headers, for apps that read
headers. Whatever the client sent under those names, and the key itself (``X-Auth-Token``, our
``Authorization: Bearer``), never reaches the app.

Which rules apply to a path: the config's ``[[routes]]`` (their ``upstream`` is not used here;
``auth``, ``projects``, ``resource`` and ``rate_limits`` are), and on paths no route matches, a
key is required. ``exempt`` paths (a path, or a prefix at a segment boundary) pass without a key,
identity headers still removed. The app is handed the normalised path the decision was made on
(``path`` and ``raw_path``), never the path as sent, so it cannot route a request elsewhere than
where it was checked; a path whose escapes are not UTF-8 is refused. The store is opened at the
app's lifespan startup, or at the first request when the server runs no lifespan (httpx's ASGI
transport, for one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from core import config as config_module
from core.config import Config, Route
from core.credentials import carries_secret
from core.errors import MESSAGES, new_request_id
from gateway import errors
from gateway.errors import error_response
from gateway.gate import Pending, Refusal
from gateway.headers import AUTHORIZATION, OVERRIDES, TOKEN_HEADER, is_spoofable, split_request
from gateway.resources import Resources
from gateway.routing import Router, is_ambiguous, normalise_path


def decided_paths(path: str) -> tuple[str, bytes] | None:
    """The ASGI ``path`` (percent-decoded, as servers make it) and ``raw_path`` of a normalised
    path; None when its escapes do not decode to UTF-8 (no path an app could route)."""
    try:
        return unquote(path, errors="strict"), path.encode("ascii")
    except UnicodeDecodeError:
        return None


class KeyRefused(HTTPException):
    """What ``gateway.dependency.require_key`` raises; the gateway's JSON error by
    `answer_refusal`, which the middleware registers on the app it wraps."""

    def __init__(self, status: int, reason: str, message: str | None = None) -> None:
        headers = {"WWW-Authenticate": "X-Auth-Token"} if status == 401 else None
        super().__init__(status, message or MESSAGES[reason], headers)
        self.reason = reason
        self.message = message


async def answer_refusal(request: Request, exc: Exception) -> Response:
    """The gateway's JSON error for a `KeyRefused` (an exception handler of the app)."""
    assert isinstance(exc, KeyRefused)
    headers, body = error_response(exc.status_code, exc.reason, new_request_id(), exc.message)
    kept = {k.decode(): v.decode() for k, v in headers if k != b"content-length"}
    return Response(body, exc.status_code, headers=kept)


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
_AUTHORIZATIONS = (AUTHORIZATION, b"proxy-authorization")
ELSEWHERE = Route(prefix="/", upstream="http://unused.invalid")  # no route matched: key required


class APIKeyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        config: Config | str | Path,
        *,
        exempt: Iterable[str] = (),
        state_key: str = "api_key",
    ) -> None:
        self.app = app
        if hasattr(app, "add_exception_handler"):  # Starlette, FastAPI: require_key's refusals
            app.add_exception_handler(KeyRefused, answer_refusal)
        loaded = config if isinstance(config, Config) else config_module.load(Path(config))
        self.resources = Resources(loaded)
        self.router = Router(loaded.routes)
        self.exempt = tuple(p.rstrip("/") or "/" for p in exempt)
        self.state_key = state_key
        self.secret_marks = self.resources.secret_format.marks
        self.gate = self.resources.gate
        self._starting: asyncio.Lock | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await self.lifespan(scope, receive, send)
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if not self.resources.started:
            await self.start()
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = normalise_path(raw.split(b"?", 1)[0])
        # The app routes what the decision was made on, not the path as sent: else
        # `/protected/../healthz` is let through as exempt and served by the protected handler.
        decided = decided_paths(path)
        if decided is None or is_ambiguous(path):
            return await self.refuse_path(scope, send, "ambiguous_path")
        headers = split_request(scope["headers"], self.secret_marks)
        kept = [(n, v) for n, v in scope["headers"] if not self._ours(n, v)]
        state = dict(scope.get("state") or {})
        scope = {**scope, "path": decided[0], "raw_path": decided[1]}
        if self._exempt(path):
            state[self.state_key] = None
            return await self.app({**scope, "headers": kept, "state": state}, receive, send)
        request_id = headers.request_id.decode("ascii") if headers.request_id else new_request_id()
        match = self.router.match(path)
        route = match[0] if match is not None else ELSEWHERE
        client = scope.get("client")
        verdict = self.gate.admit(
            route, headers.tokens, scope.get("method", "GET"), client[0] if client else "unknown"
        )
        if isinstance(verdict, Pending):
            verdict = await self.gate.finish(verdict)
        if isinstance(verdict, Refusal):
            if scope["type"] == "websocket":  # refused before the handshake is accepted
                await send({"type": "websocket.close", "code": 1008})
                return
            await errors.send_error(
                send,
                verdict.status,
                verdict.reason,
                request_id,
                message=verdict.message,
                extra=verdict.headers,
            )
            return
        identity = verdict.identity
        if identity is not None:
            kept += identity.headers
        state[self.state_key] = identity
        inner = {**scope, "headers": kept, "state": state}
        if not verdict.headers:
            return await self.app(inner, receive, send)

        async def with_fields(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *verdict.headers]}
            await send(message)

        await self.app(inner, receive, with_fields)

    async def refuse_path(self, scope: dict[str, Any], send: Any, reason: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await errors.send_error(send, 400, reason, new_request_id())

    def _ours(self, name: bytes, value: bytes) -> bool:
        """A key carrier, or a header that could pass for one of our identity headers."""
        lower = name.lower()
        if lower == TOKEN_HEADER or is_spoofable(lower) or lower in OVERRIDES:
            return True
        # Ours in any form (Bearer, or our secret's shape anywhere in the value).
        return lower in _AUTHORIZATIONS and carries_secret(value, self.secret_marks)

    def _exempt(self, path: str) -> bool:
        return any(
            path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in self.exempt
        )

    async def start(self) -> None:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self.resources.started:
                await self.resources.start()

    async def lifespan(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The app's lifespan, with the store opened before its startup and closed after its
        shutdown."""

        async def received() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
            return message

        async def sent(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.resources.stop()
            await send(message)

        await self.app(scope, received, sent)
