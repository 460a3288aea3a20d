"""The HTTP/1.1 server protocol of every listener: httptools parsing, one
``gateway.http.cycle.Cycle`` per request, held to what a security boundary needs. uvicorn's
``Server`` runs it (sockets, TLS, signals, graceful shutdown); the per-request path is ours
(docs/architecture.md, "The server side", has the measurement).

- **A bounded head**: the request line and headers are counted as the parser hands them over,
  and past ``MAX_HEAD_BYTES`` the connection gets 431 (RFC 6585 §5) and is closed.
- **A head on time**: it must arrive whole within ``header_timeout`` seconds of the connection
  or of its first byte (`[server] header_timeout_seconds`), or the connection gets 408 and is
  closed: one byte then silence held a connection for as long as the client liked. An idle
  keep-alive connection is closed after uvicorn's ``timeout_keep_alive``. One timer per
  connection, not one per request: it checks both when it fires and sets itself again.
- **Trailers are never headers**: a chunked body's trailer fields are dropped (RFC 9110 §6.5.1
  lets a recipient discard them), whatever the packet boundaries: uvicorn appended them to the
  request's headers, so a trailer could add a Host or a key.
- **Host** (RFC 9112 §3.2): an HTTP/1.1 request without one, with two, or with one that is not a
  valid authority is 400; so is an absolute-form target whose authority differs from Host.
- **A pipeline**: requests are answered in order, one at a time; with a malformed request in
  it, the requests before it are answered, then the 400, then the connection is closed.
- **An Upgrade to WebSocket** (RFC 6455 §4.1: a GET, HTTP/1.1, ``Connection: Upgrade``,
  ``Upgrade: websocket``), on a listener that serves them and to an app that takes them
  (``take_websocket``): the connection is handed over as it stands, an ``Upgraded`` (the
  request's scope, the transport, what the client sent after the head), and is the app's from
  then on; this module knows nothing of what the app does with it. Behind a request still
  being answered it is 400 (answered in order): the handover would take the connection from
  under that answer. With a body it is 400 too: its bytes would be read as the client's frames.
- **An Upgrade the gateway does not perform**: the parser stops at the head, so a body would never
  be read. Without a body the request is served as a plain one and the connection closed after
  it; with a body it is 400.

- **The app's callback way in**: an app with a ``serve_by_callbacks`` method
  (``GatewayApp.serve_by_callbacks``) is handed each request with a way to start a task for
  it, and answers what it can by callbacks (``gateway.relay``), behind uvicorn's proxy-headers
  middleware too (run on the scope first); any other app is called as ASGI, in a task per
  request.
- **Writes wait for the end of the loop iteration** (``gateway.http.batch``): the answers of one
  iteration leave together, one wake-up of their reader instead of one each.

Refusals (`gateway.http.refusals`) are answered with the same JSON error shape as everything else.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import httptools
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl

from gateway.http.batch import Batched, Flusher
from gateway.http.cycle import Cycle
from gateway.http.refusals import AUTHORITY, MAX_HEAD_BYTES, Refused, internal_error, refusal

log = logging.getLogger("gateway.http")

# The body of a request answered before it was read is read and dropped up to this much, so the
# answer is not lost to a reset (nginx's lingering close); past it the connection is closed.
DISCARD_BYTES = 1024 * 1024
# A connection closed by the gateway is closed for writing first, then read and dropped for up
# to this long (and DISCARD_BYTES), until the client closes: closed at once with bytes unread,
# the kernel sends a reset, which makes the client's kernel drop what it had not yet read of
# the last answers (RFC 9112 §9.6; nginx's lingering_close, whose lingering_timeout is 5 s).
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class Upgraded:
    """A connection upgraded to WebSocket, handed to the app that takes them
    (``take_websocket``): nothing has been answered on it, and it is the app's from now on."""

    scope: dict[str, Any]  # the request's, as any other's, of type "websocket" (scheme ws, wss)
    transport: asyncio.Transport  # the client's; the app sets its own protocol on it
    early: bytes  # what the client sent after the head, read already
    # The server's open connections: the app's protocol joins them while it is open, so that a
    # graceful shutdown waits for it and calls its ``shutdown()``.
    connections: set[Any]


class ClientTransport(Batched):
    """The client's transport: closing it lingers (`GatewayHttpProtocol.linger`)."""

    __slots__ = ("protocol",)

    def __init__(self, transport: Any, flusher: Flusher, protocol: GatewayHttpProtocol) -> None:
        super().__init__(transport, flusher)
        self.protocol = protocol

    def close(self) -> None:
        self.protocol.linger()


class GatewayHttpProtocol(asyncio.Protocol):
    """One connection. Made by uvicorn's server with its config and shared state (the set of
    connections and of request tasks it drains at shutdown)."""

    # Set per listener by gatewaycli.listeners.uvicorn_config ([server] *_timeout_seconds).
    header_timeout = 10.0
    body_timeout = 60.0
    send_timeout = 60.0
    websockets = False  # True on the proxy's listener: upgrades go to the app's take_websocket

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks
        self.keep_alive_timeout: float = config.timeout_keep_alive
        self.root_path: str = config.root_path
        # The app's callback way in (GatewayApp.serve_by_callbacks). Behind uvicorn's
        # proxy-headers middleware ([server] trusted_proxies) the middleware's own rewrite of
        # the scope is run first (`_believe_proxy`); under any other wrapper every request is
        # an ASGI call.
        self.by_callbacks = getattr(self.app, "serve_by_callbacks", None)
        inner = self.app
        self.proxy_headers: ProxyHeadersMiddleware | None = None
        if isinstance(self.app, ProxyHeadersMiddleware) and hasattr(
            self.app.app, "serve_by_callbacks"
        ):
            inner = self.app.app
            self.by_callbacks = inner.serve_by_callbacks
            self.proxy_headers = ProxyHeadersMiddleware(_as_is, config.forwarded_allow_ips)
        # Who takes an upgraded connection (None: an Upgrade is served as a plain request).
        self.take_websocket: Callable[[Upgraded], None] | None = (
            getattr(inner, "take_websocket", None) if self.websockets else None
        )
        self.upgrade: dict[str, Any] | None = None  # the scope of a WebSocket upgrade being read
        self.parser = httptools.HttpRequestParser(self)
        # A complete request followed by bytes the parser would refuse after "Connection:
        # close" still gets its answer (as uvicorn).
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: ClientTransport = None  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.cycle: Cycle | None = None
        self.pipeline: deque[Cycle] = deque()  # parsed, waiting for the one before them
        # The request being parsed.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.hosts: list[bytes] = []
        self.valid_host: bytes | None = None  # the last Host found to be a valid authority
        self.expect_continue = False
        self.head_bytes = 0
        self.trailers = False  # the head is complete: what the parser calls a header is a trailer
        self.refused: str | None = None  # why the request being parsed is refused
        self.in_body = False  # the head being read was accepted: its body is being read
        self.lingering = False  # closed for writing, reading what the client still sends
        self.linger_timer: asyncio.TimerHandle | None = None
        self.discarded = 0  # body bytes of a request already answered, read and dropped
        # Serving a pipelined request: its answer, if given at once, comes back to `_next`.
        self.serving = False
        self.answered = False
        # The refusal to send once the requests before it are answered.
        self.failed: bytes | None = None
        # What the timer checks (loop time): since when a head is being read, or the
        # connection has been idle.
        self.head_since: float | None = None
        self.idle_since: float | None = None
        self.body_since: float | None = None  # the app waits for body bytes (Cycle.receive)
        self.send_since: float | None = None  # a slow reader holds our writes back
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    # -- the connection

    def connection_made(self, transport: Any) -> None:
        self.connections.add(self)
        # Every write to the client waits for the end of the loop iteration (gateway.http.batch),
        # held by one flusher for all the server's connections.
        flusher = getattr(self.server_state, "flusher", None)
        if flusher is None or flusher.loop is not self.loop:
            flusher = self.server_state.flusher = Flusher(self.loop)
        self.transport = ClientTransport(transport, flusher, self)
        self.flow = FlowControl(transport)
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        self.head_since = self.loop.time()
        self._ensure_timer(self.head_since + self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._disarm()
        if self.linger_timer is not None:
            self.linger_timer.cancel()
        for cycle in (self.cycle, *self.pipeline):
            if cycle is not None and cycle.reading:
                cycle.gone()
        if self.flow is not None:
            self.flow.resume_writing()
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass  # the transport closes itself

    def linger(self) -> None:
        """Close the connection once what is written is sent: for writing at once (the client
        sees the end of the last answer), then whole when the client closes too, or after
        ``LINGER_SECONDS``, or past ``DISCARD_BYTES`` read meanwhile."""
        transport = self.transport
        if self.lingering or transport.is_closing():
            return
        transport.flush()
        raw = transport.transport
        self.lingering = True
        self.failed = b""  # nothing after this is parsed
        self.discarded = 0
        self._disarm()
        if not raw.can_write_eof():  # TLS: no half-close
            raw.close()
            return
        try:
            raw.write_eof()
        except OSError:  # the client is gone already (reset)
            raw.close()
            return
        self.linger_timer = self.loop.call_later(LINGER_SECONDS, raw.close)

    def close_now(self) -> None:
        """Close without lingering (nothing of an answer is left to lose)."""
        self.transport.flush()
        self.transport.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.failed is not None:
            # The parser has failed, or the connection lingers: what comes now is dropped.
            if self.lingering:
                self.discarded += len(data)
                if self.discarded > DISCARD_BYTES:
                    self.transport.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self.upgrade is not None:
                self._hand_over(data[upgrade.args[0] :])
            else:
                self._serve_plainly()
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, Refused):
                self.send_400_response()
            else:
                # A fault of ours in a callback, not the client's: a 500, with its traceback.
                log.error("unhandled error reading a request", exc_info=exc.__context__)
                self._fail_with(internal_error())
        except httptools.HttpParserError:
            self.send_400_response()

    def pause_writing(self) -> None:
        self.flow.pause_writing()
        self.send_since = self.loop.time()
        self._ensure_timer(self.send_since + self.send_timeout)

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        self.send_since = None

    def body_read(self) -> None:
        """The cycle's: the body its app read on after the response is whole; the connection
        idles from now (`_next` did not arm the keep-alive while it was read)."""
        if self.cycle is not None and self.cycle.response_complete and not self.pipeline:
            self.flow.resume_reading()  # paused if its last bytes came over the high-water mark
            self.idle_since = self.loop.time()
            self._ensure_timer(self.idle_since + self.keep_alive_timeout)

    def body_wait(self, since: float | None) -> None:
        """The cycle's: the app waits for body bytes since ``since`` (None: it stopped)."""
        self.body_since = since
        if since is not None:
            self._ensure_timer(since + self.body_timeout)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: an idle connection closes now, a busy one after its
        response."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.close_now()
        else:
            cycle.keep_alive = False

    # -- the parser's callbacks

    def on_message_begin(self) -> None:
        self.idle_since = None  # a request is being read: the head timer holds it
        self.discarded = 0
        self.in_body = False
        self.url = b""
        self.headers = []
        self.hosts = []
        self.expect_continue = False
        self.head_bytes = 0
        self.trailers = False
        if self.head_since is None:
            self.head_since = self.loop.time()
            self._ensure_timer(self.head_since + self.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # A trailer section counts toward the head's bound too: dropped, but read.
        self._count(len(name) + len(value) + 4)
        if self.trailers:
            return
        name = name.lower()
        if name == b"host":
            self.hosts.append(value)
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_since = None
        self.trailers = True
        self._check_host()
        parser = self.parser
        websocket = False
        if parser.should_upgrade():
            websocket = self._websocket()
            if websocket and (
                self.pipeline or not (self.cycle is None or self.cycle.response_complete)
            ):
                self._refuse("upgrade_pipelined")
            # A body on an upgrade, WebSocket or not (a handshake is a GET without one, RFC
            # 6455 §4.1): once switched, its bytes would be read as the new protocol's.
            framed = any(
                (name == b"content-length" and value.strip() not in (b"", b"0"))
                or name == b"transfer-encoding"
                for name, value in self.headers
            )
            if framed:
                self._refuse("upgrade_with_body")
        version = parser.get_http_version()
        target = httptools.parse_url(self.url)
        raw_path = target.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
            "method": parser.get_method().decode("ascii"),
            "path": self.root_path + path,
            "raw_path": self.root_path.encode("ascii") + raw_path,
            "query_string": target.query or b"",
        }
        if websocket:
            scope["type"] = "websocket"
            scope["scheme"] = "wss" if self.scheme == "https" else "ws"
            self.upgrade = scope
            return  # data_received hands the connection over when the parser stops
        keep_alive = version != "1.0" and parser.should_keep_alive()
        cycle = Cycle(
            scope,
            self.transport,
            self.flow,
            self.loop,
            keep_alive,
            self.expect_continue,
            self,
        )
        current = self.cycle
        self.in_body = True
        if current is None or current.response_complete:
            self.cycle = cycle
            self._serve(cycle)
        else:
            # Pipelined behind a request still being answered: read no more until it is.
            self.flow.pause_reading()
            self.pipeline.append(cycle)

    def on_body(self, body: bytes) -> None:
        cycle = self.pipeline[-1] if self.pipeline else self.cycle
        if cycle is None or (cycle.response_complete and not cycle.reading_on):
            # The body of a request answered already (a refusal before it was read): dropped,
            # up to a bound, as nginx's lingering close; the keep-alive timer runs meanwhile.
            self.discarded += len(body)
            if self.discarded > DISCARD_BYTES:
                self.failed = b""
                self.transport.close()
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        self.in_body = False
        cycle = self.pipeline[-1] if self.pipeline else self.cycle
        if cycle is None or (cycle.response_complete and not cycle.reading_on):
            return
        cycle.more_body = False
        cycle.wake()

    # -- requests

    def _serve(self, cycle: Cycle) -> None:
        try:
            if self.by_callbacks is not None:
                if self.proxy_headers is not None:
                    self._believe_proxy(cycle.scope)
                # Served by callbacks where it can be; what cannot comes back through _start.
                self.by_callbacks(cycle.scope, cycle, self._start)
            else:
                self._start(cycle, self.app(cycle.scope, cycle.receive, cycle.send))
        except Exception:
            # A fault of the app's (or of ours) while deciding: a 500, never the client's 400.
            log.exception("unhandled error serving %s", cycle.scope.get("method"))
            if not cycle.response_complete:
                cycle.fail()

    def _start(self, cycle: Cycle, work: Coroutine[Any, Any, None]) -> None:
        self.tasks.add(self.loop.create_task(cycle.run(work, self.tasks)))

    def _believe_proxy(self, scope: dict[str, Any]) -> None:
        """uvicorn's proxy-headers middleware on ``scope``, run to its end at once: it sets the
        client and the scheme from a trusted peer's X-Forwarded-For and -Proto, then calls an
        app that awaits nothing (uvicorn's own rules, whatever its version, not a copy)."""
        assert self.proxy_headers is not None
        rewrite = self.proxy_headers(cast(Any, scope), cast(Any, _nothing), cast(Any, _nothing))
        try:
            rewrite.send(None)
        except StopIteration:
            return
        rewrite.close()
        raise RuntimeError("uvicorn's proxy-headers middleware waited on something")

    def on_response_complete(self) -> None:
        """The cycle's: its response is complete."""
        self.server_state.total_requests += 1
        if self.serving:
            self.answered = True  # answered at once: `_next`'s loop goes on
            return
        cycle = self.cycle
        if not self.pipeline and self.failed is None and cycle is not None and not cycle.reading_on:
            # The common case, inline: nothing queued, the connection idles.
            if not self.transport.is_closing():
                self.flow.resume_reading()
                self.idle_since = self.loop.time()
                self._ensure_timer(self.idle_since + self.keep_alive_timeout)
            return
        self._next()

    def _next(self) -> None:
        """Serve the pipelined requests in order. One answered at once is followed by the next
        in this loop, not from inside its answer: a deep pipeline of refusals would recurse."""
        while True:
            if self.failed is not None and not self.pipeline:
                self._send_failure()
                return
            if self.transport.is_closing():
                return
            self.flow.resume_reading()
            if not self.pipeline:
                if self.cycle is not None and self.cycle.reading_on:
                    return  # its body is still read: the body timer holds it (`body_read`)
                self.idle_since = self.loop.time()
                self._ensure_timer(self.idle_since + self.keep_alive_timeout)
                return
            cycle = self.cycle = self.pipeline.popleft()
            if cycle.ended is not None:  # its body broke before its turn came
                cycle.refuse_ended()
                return
            self.serving, self.answered = True, False
            try:
                self._serve(cycle)
            finally:
                self.serving = False
            if not self.answered:
                return  # answered later: on_response_complete comes back

    def _check_host(self) -> None:
        hosts = self.hosts
        if len(hosts) > 1 or (not hosts and self.parser.get_http_version() == "1.1"):
            self._refuse("bad_host")
        if hosts and hosts[0] != self.valid_host:
            # A client sends the same Host on each request of a connection: checked once.
            if not AUTHORITY.fullmatch(hosts[0]):
                self._refuse("bad_host")
            self.valid_host = hosts[0]
        if self.url[:1] not in (b"/", b"*"):  # absolute-form (RFC 9112 §3.2.2)
            try:
                target = httptools.parse_url(self.url)
            except httptools.HttpParserInvalidURLError:
                self._refuse("malformed_request")
            authority = target.host + (b":%d" % target.port if target.port else b"")
            if not hosts or hosts[0].lower() != authority.lower():
                self._refuse("bad_host")

    def _count(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD_BYTES:
            self._refuse("headers_too_large")

    def _refuse(self, reason: str) -> None:
        self.refused = reason
        raise Refused(reason)

    # -- upgrades

    def _websocket(self) -> bool:
        """An upgrade to WebSocket (RFC 6455 §4.1) on a listener that serves them (the proxy's)."""
        if self.take_websocket is None or self.parser.get_method() != b"GET":
            return False
        if self.parser.get_http_version() != "1.1":
            return False
        connection: list[bytes] = []
        upgrade = None
        for name, value in self.headers:
            if name == b"connection":
                connection = [token.strip().lower() for token in value.split(b",")]
            elif name == b"upgrade":
                upgrade = value.lower()
        return b"upgrade" in connection and upgrade == b"websocket"

    def _hand_over(self, early: bytes) -> None:
        """The connection becomes the app's (``take_websocket``), with what was read after the
        head: the timers stop, what is held for the client is written, nothing more is parsed.
        Behind uvicorn's proxy-headers middleware, the scope is rewritten as a request's is."""
        scope, self.upgrade = self.upgrade, None
        assert scope is not None and self.take_websocket is not None
        self._disarm()
        self.connections.discard(self)
        self.failed = b""  # nothing more is parsed here
        self.transport.flush()
        transport = self.transport.transport
        try:
            if self.proxy_headers is not None:
                self._believe_proxy(scope)
            self.take_websocket(Upgraded(scope, transport, early, self.connections))
        except Exception:
            # A fault of the app's: the client hears nothing more (there is no request to
            # answer any longer: the connection is no longer HTTP's).
            log.exception("unhandled error taking a WebSocket")
            transport.abort()

    def _serve_plainly(self) -> None:
        """The parser stopped at the head of an Upgrade request without a body: serve it as a
        plain request, then close the connection (what follows the head is not HTTP/1.1)."""
        cycle = self.pipeline[-1] if self.pipeline else self.cycle
        if cycle is None:
            return
        cycle.keep_alive = False
        cycle.more_body = False  # no body: one was refused in on_headers_complete
        cycle.wake()

    # -- the timer

    def _ensure_timer(self, deadline: float) -> None:
        if self.timer is not None and self.timer_at <= deadline:
            return  # it fires first and sets itself again for what is left
        self._disarm()
        self.timer_at = deadline
        self.timer = self.loop.call_at(deadline, self._tick)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _tick(self) -> None:
        self.timer = None
        if self.lingering or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.send_since is not None:
            deadline = self.send_since + self.send_timeout
            if now >= deadline:
                # A reader that took nothing for that long: what we hold for it is dropped
                # (close would wait to send it), the exchange ends (Cycle.gone).
                self.transport.abort()
                return
            self._ensure_timer(deadline)
        if self.body_since is not None and self.cycle is not None:
            deadline = self.body_since + self.body_timeout
            if now >= deadline:
                self.body_since = None
                self.failed = b""  # nothing after it is read: the connection closes
                self.flow.pause_reading()
                self.cycle.end(refusal("body_timeout"))
                return
            self._ensure_timer(deadline)
        if self.head_since is not None and self.header_timeout:
            deadline = self.head_since + self.header_timeout
            if now >= deadline:
                self.refused = "header_timeout"
                self.send_400_response()
                return
            self._ensure_timer(deadline)
        if self.idle_since is not None:
            deadline = self.idle_since + self.keep_alive_timeout
            if now >= deadline:
                self.close_now()  # idle: nothing unread
                return
            self._ensure_timer(deadline)

    # -- refusals

    def send_400_response(self) -> None:
        reason = self.refused or "malformed_request"
        if reason == "malformed_request":
            log.info("refused a malformed request from %s", self.client and self.client[0])
        self._fail_with(refusal(reason))

    def _fail_with(self, failure: bytes) -> None:
        """The request being read cannot be: ``failure`` is its answer, after those before it,
        and the connection is closed after it. A request whose head was read and whose body
        broke gets it as its only answer (`Cycle.end`): its app may have sent the head
        upstream already, and hears the client is gone."""
        self._disarm()
        self.head_since = self.idle_since = self.body_since = None
        cycle = self.pipeline[-1] if self.pipeline else self.cycle
        if self.in_body and cycle is not None:  # the head was accepted: its body broke
            self.failed = b""  # nothing more to say after its own answer
            if not cycle.reading:
                self.transport.close()  # answered already: one response, then the close
            elif cycle is self.cycle:
                cycle.end(failure)
            else:
                cycle.ended = failure  # answered when its turn comes (`_next`)
            return
        self.failed = failure
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            # Requests before this one are in flight or queued: answer them first, in order.
            self.flow.pause_reading()
            return
        self._send_failure()

    def _send_failure(self) -> None:
        assert self.failed is not None
        if not self.transport.is_closing():
            self.transport.write(self.failed)
            self.transport.close()


async def _as_is(scope: Any, receive: Any, send: Any) -> None:
    """The app behind `_believe_proxy`'s middleware: the scope, rewritten in place, is all."""


async def _nothing() -> Any:
    raise AssertionError("not called")


assert issubclass(httptools.HttpParserCallbackError, httptools.HttpParserError)
