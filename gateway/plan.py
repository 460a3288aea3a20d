"""What the proxy decided about a request, as values: `GatewayApp.prepare` makes them by plain
calls, and whoever carries the request out (`GatewayApp.resume` in a task, or
``gateway.relay`` by callbacks) takes it from there, so nothing is decided or counted twice."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from core.config import Route
from gateway.gate import Pending
from gateway.headers import RequestHeaders
from gateway.http.client import Origin
from gateway.http.upstream import Connection

if TYPE_CHECKING:
    from gateway.http.cycle import Cycle


class Context(NamedTuple):
    """What the gate's answer is held to, once it comes."""

    headers: RequestHeaders
    request_id: str
    route: Route
    upstream_path: str
    client_ip: str


class Forward(NamedTuple):
    """The request as it goes upstream."""

    route: Route
    where: Origin
    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]  # what goes upstream, the gateway's own added
    returned: list[tuple[bytes, bytes]]  # added to the response: X-Request-ID, RateLimit
    framed: bool  # the request has a body (Content-Length or chunked)
    chunked: bool  # ... without a length: it goes upstream chunked
    request_id: str
    # How a relay hands it over (gateway.relay): already upstream on this connection, which
    # has its response head; or to be sent on a new connection (the keep-alive race).
    sent: Connection | None = None
    fresh: bool = False


class Refuse(NamedTuple):
    """A JSON error, in the order `GatewayApp.refuse` takes it."""

    status: int
    reason: str
    request_id: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    message: str | None = None


class Wait(NamedTuple):
    """The gate needs the store or Redis (`Gate.finish`)."""

    pending: Pending
    context: Context


READINESS: Literal["readiness"] = "readiness"  # [server] health_path
JWKS: Literal["jwks"] = "jwks"  # [assertion] jwks_on_proxy
Step = Forward | Refuse | Wait | Literal["readiness", "jwks"]
# The server's: run this coroutine for that request in a task (gateway.http.server).
Start = Callable[["Cycle", Coroutine[Any, Any, None]], None]
