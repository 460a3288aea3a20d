"""uvicorn's httptools protocol, held to what a security boundary needs of its HTTP/1.1 server.

- **A bounded head**: uvicorn keeps every header it is sent (no limit), so a client could grow a
  worker's memory without end. The request line and headers are counted as the parser hands them
  over, and past ``MAX_HEAD_BYTES`` the connection gets 431 (RFC 6585 §5) and is closed.
- **A head on time**: it must arrive whole within ``header_timeout`` seconds of the connection
  or of its first byte (`[server] header_timeout_seconds`), or the connection gets 408 and is
  closed: one byte then silence held a connection for as long as the client liked.
- **Trailers are never headers**: uvicorn appended a chunked body's trailer fields to the list
  the app reads as the request's headers, so a trailer could add a Host or a key, depending on
  how TCP split the bytes. They are dropped (RFC 9110 §6.5.1 lets a recipient discard them).
- **Host** (RFC 9112 §3.2): an HTTP/1.1 request without one, with two, or with one that is not a
  valid authority is 400; so is an absolute-form target whose authority differs from Host.
- **A pipeline with a malformed request**: the requests before it are answered, in order, then
  the 400, then the connection is closed (uvicorn wrote the 400 at once and closed, so a request
  already forwarded upstream was never answered).
- **An Upgrade the gateway does not perform**: the parser stops at the head, so a body would never
  be read and the request hung with its upstream connection held. Without a body the request is
  served as a plain one and the connection closed after it; with a body it is 400.

Errors are answered with the same JSON error shape as everything else the gateway says.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
# RFC 3986 §3.2.2-3: an IP literal, or a reg-name (unreserved, sub-delims, pct-encoded), then an
# optional port. An "http" URI's host is never empty (RFC 9110 §4.2.1).
AUTHORITY = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)(?::[0-9]*)?"
)
# Statuses and messages of the requests refused here.
REFUSALS = {
    "headers_too_large": (
        b"431 Request Header Fields Too Large",
        f"The request line and headers exceed {MAX_HEAD_BYTES} bytes.",
    ),
    "malformed_request": (
        b"400 Bad Request",
        "The request is not valid HTTP/1.1 (framing, header syntax or encoding).",
    ),
    "bad_host": (
        b"400 Bad Request",
        "An HTTP/1.1 request needs exactly one Host header naming a valid authority, the one of "
        "its target if that is absolute (RFC 9112 §3.2).",
    ),
    "upgrade_with_body": (
        b"400 Bad Request",
        "This server does not switch protocols for this request, and an Upgrade request with a "
        "body cannot be served as a plain one; send it without Upgrade.",
    ),
    "header_timeout": (
        b"408 Request Timeout",
        "The request line and headers did not arrive in time.",
    ),
}


class _Refused(Exception):
    """A request refused while it is parsed (httptools turns it into an HttpParserError)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GatewayHttpProtocol(HttpToolsProtocol):
    header_timeout = 10.0  # set per listener by gatewaycli.listeners.uvicorn_config
    _head_bytes = 0
    _refused: str | None = None  # why the request being parsed is refused
    _trailers = False  # the head is complete: what the parser calls a header now is a trailer
    _failed: bytes | None = None  # the refusal to send once the requests before it are answered
    _head_timer: asyncio.TimerHandle | None = None
    # When the head being read began (None: none is being read). One timer per connection, not
    # one per request: it checks this when it fires and sets itself again if need be.
    _head_since: float | None = None
    _hosts: list[bytes] | None = None  # the Host values of the head being read

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._head_since = self.loop.time()
        self._arm_head_timer(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._failed is not None:
            return  # the parser has failed: nothing after the bad request is read
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._trailers = False
        self._hosts = []
        if self._head_since is None:
            self._head_since = self.loop.time()
        if self._head_timer is None:
            self._arm_head_timer(self.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._trailers:
            return
        self._count(len(name) + len(value) + 4)
        if len(name) == 4 and name.lower() == b"host" and self._hosts is not None:
            self._hosts.append(value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_since = None
        self._trailers = True
        self._check_host()
        if self.parser.should_upgrade() and not self._should_upgrade():
            framed = any(
                (name == b"content-length" and value.strip() not in (b"", b"0"))
                or name == b"transfer-encoding"
                for name, value in self.headers
            )
            if framed:
                self._refuse("upgrade_with_body")
        super().on_headers_complete()

    def _check_host(self) -> None:
        hosts = self._hosts or []
        if len(hosts) > 1 or (not hosts and self.parser.get_http_version() == "1.1"):
            self._refuse("bad_host")
        if hosts and not AUTHORITY.fullmatch(hosts[0]):
            self._refuse("bad_host")
        if self.url[:1] not in (b"/", b"*"):  # absolute-form (RFC 9112 §3.2.2)
            try:
                target = httptools.parse_url(self.url)
            except httptools.HttpParserInvalidURLError:
                self._refuse("malformed_request")
            authority = target.host + (b":%d" % target.port if target.port else b"")
            if not hosts or hosts[0].lower() != authority.lower():
                self._refuse("bad_host")

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse("headers_too_large")

    def _refuse(self, reason: str) -> None:
        self._refused = reason
        raise _Refused(reason)

    # -- timers

    def _arm_head_timer(self, delay: float) -> None:
        if self.header_timeout:
            self._head_timer = self.loop.call_later(delay, self._head_late)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        since = self._head_since
        if since is None or self.transport.is_closing():
            return  # no head being read: the next one sets the timer again
        waited = self.loop.time() - since
        if waited < self.header_timeout:
            self._arm_head_timer(self.header_timeout - waited)
            return
        self._refused = "header_timeout"
        self.send_400_response("header timeout")

    # -- upgrades the gateway does not perform

    def _unsupported_upgrade_warning(self) -> None:
        """The parser stopped at the head of an Upgrade request without a body: serve it as a
        plain request, then close the connection."""
        cycle = self.cycle
        if cycle is None:
            return
        cycle.keep_alive = False  # what follows the head on this connection is not HTTP/1.1
        cycle.more_body = False  # no body: one was refused in on_headers_complete
        cycle.message_event.set()

    # -- refusals

    def send_400_response(self, msg: str) -> None:
        reason = self._refused or "malformed_request"
        status, message = REFUSALS[reason]
        body = json.dumps(
            {
                "type": "bad_request" if status.startswith(b"4") else "request_timeout",
                "reason": reason,
                "message": message,
                "request_id": f"{random.getrandbits(128):032x}",
            }
        ).encode()
        self._failed = (
            b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self._disarm_head_timer()
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            # Requests before this one are in flight or queued: answer them first, in order.
            self.flow.pause_reading()
            return
        self._send_failure()

    def _send_failure(self) -> None:
        assert self._failed is not None
        if not self.transport.is_closing():
            self.transport.write(self._failed)
            self.transport.close()

    def on_response_complete(self) -> None:
        if self._failed is not None and not self.pipeline:
            self.server_state.total_requests += 1
            self._send_failure()
            return
        super().on_response_complete()


assert issubclass(httptools.HttpParserCallbackError, httptools.HttpParserError)
