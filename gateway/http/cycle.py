"""One request on a connection of ``gateway.http.server``: the ASGI ``receive`` and ``send`` of an
HTTP/1.1 exchange, and the task that runs the app for it.

What makes it cheaper than uvicorn's cycle, which it replaces (issue figures in
docs/architecture.md, "The server side"):
- **One write per small response**: the head is held until the body's first message, or until
  the end of the loop iteration that started it, so a response sent as start + body (the proxy's
  small-response path, Starlette's responses) leaves in one ``write``, where uvicorn made two
  system calls.
- **One check per head, not two regular expressions per header**: the header block is checked
  once for what could split a response (a control character, CR or LF inside a name or value).
- **No event object per request**: ``receive`` makes a future only when it has to wait.

Every wait on the client is bounded by the connection's one timer (``gateway.http.server``): a
``receive`` that waits for body bytes tells it when it began (`Connection.body_wait`); a body
that turns out malformed, or late, ends the request with the refusal it calls for (`end`): the
app sees the client as gone, and the refusal is the answer when the app has not started one.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from uvicorn.protocols.http.flow_control import FlowControl

from gateway.http.batch import Batched
from gateway.http.refusals import internal_error

log = logging.getLogger("gateway.http")

STATUS_LINE = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("ascii"))
    for status in http.HTTPStatus
}
# No control character but HTAB in a field (RFC 9110 §5.5), and so no CR or LF but a line's end
# (response splitting): with every other byte deleted, what is left of the head must be the CRLF
# that ends each of its lines, nothing more. One ``translate``, 0.3 us for nginx's 265-byte
# head, where a regular expression's character class and three counts took 1.4 us (and one
# expression with lookarounds for bare CR and LF, 7.1 us: 6.8% of row 5 under py-spy).
PLAIN = bytes(byte for byte in range(256) if byte == 9 or 32 <= byte != 127)
SMALL_WRITE = 16 * 1024  # joined into one bytes object below this; written as a vector above
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Connection(Protocol):
    """What a cycle tells its connection (``gateway.http.server``)."""

    def on_response_complete(self) -> None: ...

    # `receive` waits for body bytes since then (None: it stopped waiting).
    def body_wait(self, since: float | None) -> None: ...

    # The body of a request answered already was read to its end.
    def body_read(self) -> None: ...


class Cycle:
    """One request and its response on ``connection``, told once the response is complete."""

    __slots__ = (
        "body",
        "chunked",
        "connection",
        "delivered",
        "disconnected",
        "ended",
        "flow",
        "head",
        "head_only",
        "http10",
        "keep_alive",
        "loop",
        "more_body",
        "on_disconnect",
        "reading_on",
        "remaining",
        "response_complete",
        "response_started",
        "scope",
        "transport",
        "waiter",
        "waiting_for_continue",
    )

    def __init__(
        self,
        scope: dict[str, Any],
        transport: Batched,
        flow: FlowControl,
        loop: asyncio.AbstractEventLoop,
        keep_alive: bool,
        expect_continue: bool,
        connection: Connection,
    ) -> None:
        self.scope = scope
        self.transport = transport
        self.flow = flow
        self.loop = loop
        self.keep_alive = keep_alive
        self.http10 = scope["http_version"] == "1.0"
        # RFC 9110 §10.1.1: an HTTP/1.0 client cannot be sent a 1xx answer.
        self.waiting_for_continue = expect_continue and not self.http10
        self.connection: Connection | None = connection
        self.head_only = scope["method"] == "HEAD"
        # The request body: what arrived and was not handed over yet.
        self.body = bytearray()
        self.more_body = True
        self.delivered = False  # the last of the body was handed over
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        # The refusal that ended the request while its body was read (malformed, late).
        self.ended: bytes | None = None
        # Called once if the client goes away before the response is complete: whoever runs
        # the exchange (the relay, the engine) closes its upstream connection at once.
        self.on_disconnect: Callable[[], None] | None = None
        # The app goes on reading the body after its response (`read_after_response`).
        self.reading_on = False
        # The response.
        self.response_started = False
        self.response_complete = False
        self.head: bytes | None = None  # a head not written yet
        self.chunked = False
        self.remaining: int | None = None  # Content-Length not sent yet

    @property
    def reading(self) -> bool:
        """Whether the app may still read the body: its response is not complete, or it said it
        reads on after it."""
        return not self.response_complete or self.reading_on

    def read_after_response(self) -> None:
        """The app will read the rest of the body after its response is complete (the engine,
        whose upstream answered early and reads on, RFC 9112 §9.3): ``receive`` goes on
        handing it over instead of saying the client is gone."""
        if self.more_body or not self.delivered:
            self.reading_on = True

    def left_over(self) -> bool:
        """Body bytes (or its end) that arrived before the client left, not handed over yet:
        handed over all the same, unless the body broke."""
        return self.ended is None and (
            bool(self.body) or (not self.more_body and not self.delivered)
        )

    def gone(self) -> None:
        """The connection was lost before the response was complete."""
        self.disconnected = True
        self.wake()
        if self.reading_on and self.ended is None and not self.more_body:
            return  # answered, and the whole body is here: the app reads it to its end
        hook, self.on_disconnect = self.on_disconnect, None
        if hook is not None:
            hook()

    def end(self, refusal: bytes) -> None:
        """The body turned out malformed or late: the app hears the client is gone, and
        ``refusal`` is the answer if it has not started one (else the connection is closed)."""
        self.ended = refusal
        self.gone()

    def wake(self) -> None:
        """Something ``receive`` waits for happened: body bytes, its end, a disconnect, or the
        response is complete."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, work: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]) -> None:
        """Run the app for this request (``work``: the app called with this cycle's scope,
        ``receive`` and ``send``, or what it handed over to a task); ``tasks`` is the server's
        set of request tasks (the drain waits for it), which this one leaves when it ends: a
        done callback would cost a handle on the loop per request."""
        try:
            await work
        except asyncio.CancelledError:
            # A shutdown past its grace: not an error of the app's, and not to be swallowed; the
            # connection is dropped at once (no lingering: the loop is about to stop).
            self.transport.abort()
            raise
        except Exception:
            log.exception("unhandled error answering %s", self.scope.get("method"))
            if not self.response_started:
                self.fail()
            else:
                self.transport.close()
        else:
            if self.ended is not None:
                self.refuse_ended()
            elif not self.response_started and not self.disconnected:
                log.error("the application returned without starting a response")
                self.fail()
            elif not self.response_complete and not self.disconnected:
                log.error("the application returned without completing its response")
                self.flush()
                self.transport.close()
        finally:
            self.connection = None
            self.on_disconnect = None
            task = asyncio.current_task(self.loop)
            if task is not None:
                tasks.discard(task)

    def refuse_ended(self) -> None:
        """The refusal of a request whose body broke: its answer if none started, then the
        connection closed (where the next request would start is not known)."""
        if not self.transport.is_closing():
            if not self.response_started and self.ended:
                self.transport.write(self.ended)
            self.transport.close()
        self.response_started = self.response_complete = True

    def fail(self) -> None:
        """A 500 when the app failed before answering, and the connection closed."""
        if not self.transport.is_closing():
            self.transport.write(internal_error())
            self.transport.close()
        self.response_started = self.response_complete = True

    # -- ASGI

    async def receive(self) -> dict[str, Any]:
        if self.waiting_for_continue and not self.transport.is_closing():
            # RFC 9110 §10.1.1: the client waits for this before sending the body; sent when the
            # app first asks for the body, so a request refused on its head never gets it.
            self.transport.write(CONTINUE)
            self.waiting_for_continue = False
        reading = not self.response_complete or self.reading_on
        if not self.disconnected and reading:
            self.flow.resume_reading()
            if self.delivered or (self.more_body and not self.body):
                self.waiter = self.loop.create_future()
                connection = self.connection if self.more_body else None
                if connection is not None:
                    connection.body_wait(self.loop.time())
                try:
                    await self.waiter
                finally:
                    self.waiter = None
                    if connection is not None:
                        connection.body_wait(None)
                reading = not self.response_complete or self.reading_on  # as it is now
        if not reading or (self.disconnected and not self.left_over()):
            return {"type": "http.disconnect"}
        self.delivered = not self.more_body
        if self.delivered and self.reading_on:
            self.reading_on = False
            if not self.keep_alive:
                self.transport.close()
            elif self.connection is not None:
                self.connection.body_read()
        message = {"type": "http.request", "body": bytes(self.body), "more_body": self.more_body}
        self.body.clear()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {kind!r}")
            # Built before the response counts as started: a head that cannot be sent leaves
            # the 500 of ``run`` to be sent instead.
            self.head = self.head_of(message["status"], message.get("headers", ()))
            self.response_started = True
            self.waiting_for_continue = False
            # Held for the body's first message; written at the end of this loop iteration if
            # none comes in it (a streamed response's head must not wait for its first byte).
            self.loop.call_soon(self.flush)
        elif not self.response_complete:
            if kind != "http.response.body":
                raise RuntimeError(f"expected http.response.body, got {kind!r}")
            self.body_part(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"{kind!r} sent after the response was complete")

    # -- the response

    def answer(self, status: int, headers: Any, body: bytes) -> None:
        """A whole response at once, as `send` makes it of a start and one body message: one
        write (``gateway.relay``, and refusals answered by callbacks). Nothing when the client
        is gone; a header that is not valid HTTP raises RuntimeError, as in `send`."""
        if self.disconnected:
            return
        self.head = self.head_of(status, headers)
        self.response_started = True
        self.waiting_for_continue = False
        self.body_part(body, False)

    def head_of(self, status: int, headers: Any) -> bytes:
        lines = [STATUS_LINE.get(status) or b"HTTP/1.1 %d \r\n" % status]
        close = False
        fields = 0
        for name, value in headers:
            fields += 1
            name = name.lower()
            if name == b"content-length":
                if self.remaining is None and not self.chunked:
                    self.remaining = int(value)
            elif name == b"transfer-encoding":
                self.chunked = value.lower() == b"chunked"
                self.remaining = None
            elif name == b"connection" and b"close" in (
                token.strip().lower() for token in value.split(b",")
            ):
                self.keep_alive = False
                close = True
            lines += (name, b": ", value, b"\r\n")
        bodiless = self.head_only or status in (204, 304) or status < 200
        if self.remaining is None and not self.chunked and not bodiless:
            if self.http10:
                self.keep_alive = False  # HTTP/1.0 has no chunked coding: the close delimits
            else:
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive and not close:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        head = b"".join(lines)
        ends = len(lines) - 3 * fields  # a header is four parts of ``lines`` and one line
        if len(head.translate(None, PLAIN)) != 2 * ends:
            raise RuntimeError("a response header's name or value is not valid HTTP")
        if bodiless:
            self.remaining = None
            self.chunked = False
        return head

    def flush(self) -> None:
        head = self.head
        if head is not None and not self.disconnected:
            self.head = None
            self.transport.write(head)

    def body_part(self, body: bytes, more: bool) -> None:
        parts: list[bytes] = []
        if self.head is not None:
            parts.append(self.head)
            self.head = None
        if self.head_only:
            pass
        elif self.chunked:
            if body:
                parts += (b"%x\r\n" % len(body), body, b"\r\n")
            if not more:
                parts.append(b"0\r\n\r\n")
        elif body:
            if self.remaining is not None:
                self.remaining -= len(body)
                if self.remaining < 0:
                    raise RuntimeError("response body longer than its Content-Length")
            parts.append(body)
        if len(parts) == 1:
            self.transport.write(parts[0])
        elif parts:
            if sum(map(len, parts)) < SMALL_WRITE:
                self.transport.write(b"".join(parts))
            else:
                self.transport.writelines(parts)
        if not more:
            if self.remaining and not self.head_only:
                raise RuntimeError("response body shorter than its Content-Length")
            self.response_complete = True
            self.wake()
            self.on_disconnect = None
            if not self.keep_alive and not self.reading_on:
                self.transport.close()  # (one read on after its answer is closed at its end)
            if self.connection is not None:
                self.connection.on_response_complete()
