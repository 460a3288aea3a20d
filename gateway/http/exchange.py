"""One exchange with an upstream: a request and its response on one connection, each direction a
state machine with named states, as h11 has it.

The request (what the gateway sends)::

    SEND_BODY ──(the last byte of its framing written)──► DONE
        └──(the upload stopped short: answered early, client gone, timeout)──► MUST_CLOSE

The response (what the upstream sends)::

    SEND_HEAD ──(final head)──► SEND_BODY ──(framing complete, keep-alive)──► DONE
        │                           └──(complete, but delimited by the close, or
        │                               Connection: close, or bytes after it)──► MUST_CLOSE
        └── any state but DONE and MUST_CLOSE ──(malformed, head too large, closed early)──► ERROR

The connection goes back to the pool only when both directions are ``DONE`` (`reusable`):
never after a request whose upload stopped short (the upstream would read the next request as
its body), never after a response followed by bytes nobody asked for (two responses in one
segment), never after a failure. Interim 1xx answers are skipped (RFC 9110 §15.2); trailer
fields are dropped, never merged into the headers (RFC 9110 §6.5.1 lets a recipient discard
them); the head, trailers included, is bounded by ``MAX_HEAD_BYTES``.

It is told the bytes (`feed`) and the end of the connection (`lost`) and does no I/O of its
own, so every transition can be driven by feeding bytes (tests/test_upstream_exchange.py). An
exchange is awaited (``head``, `read`) by the task path, or tells a ``Listener`` (the relay)
once the parser has returned.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Protocol

import httptools

if TYPE_CHECKING:
    import asyncio

HIGH_WATER = 256 * 1024  # response bytes held for a slow client before reading stops
MAX_HEAD_BYTES = 64 * 1024  # the response's status line and headers (and its trailers)

# The states (strings: compared by identity, printed by name).
SEND_HEAD = "SEND_HEAD"
SEND_BODY = "SEND_BODY"
DONE = "DONE"
MUST_CLOSE = "MUST_CLOSE"
ERROR = "ERROR"

# Every transition a direction may make; anything else is a bug, raised as one.
REQUEST_TRANSITIONS = {
    SEND_BODY: frozenset({DONE, MUST_CLOSE}),
    DONE: frozenset(),
    MUST_CLOSE: frozenset(),
}
RESPONSE_TRANSITIONS = {
    SEND_HEAD: frozenset({SEND_BODY, DONE, MUST_CLOSE, ERROR}),
    SEND_BODY: frozenset({DONE, MUST_CLOSE, ERROR}),
    DONE: frozenset({MUST_CLOSE}),  # bytes after a complete response
    MUST_CLOSE: frozenset(),
    ERROR: frozenset(),
}


class UpstreamClosed(ConnectionError):
    """The connection ended before a byte of the response arrived."""


class UpstreamBroken(ConnectionError):
    """The response was malformed, too large in its head, or ended before its framing said."""


class _Stop(Exception):
    """Raised inside the parser's callbacks to stop it: what follows is not this response's."""


class Listener(Protocol):
    """Told of an exchange's progress instead of awaiting it (``gateway.relay``): each once,
    and never from inside the parser (the listener may put the connection back in the pool)."""

    def on_head(self) -> None: ...  # the final head, the body still to come

    def on_done(self) -> None: ...  # the whole response has arrived

    def on_error(self, error: Exception) -> None: ...  # it failed (UpstreamClosed, ...)


class Channel(Protocol):
    """What an exchange needs of its connection: reading paused and resumed."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class UpstreamExchange:
    """One request and its response on one connection (the module docstring has the states)."""

    __slots__ = (
        "buffered",
        "channel",
        "chunks",
        "error",
        "framed",
        "head",
        "head_bytes",
        "head_only",
        "headers",
        "interim",
        "keep_alive",
        "listener",
        "loop",
        "parser",
        "paused",
        "received",
        "request",
        "response",
        "status",
        "told",
        "waiter",
    )

    def __init__(
        self,
        channel: Channel,
        loop: asyncio.AbstractEventLoop,
        head_only: bool,
        listener: Listener | None,
        body: bool,
    ) -> None:
        self.channel = channel
        self.loop = loop
        self.head_only = head_only  # a HEAD request: the response has no body
        self.listener = listener
        self.request = SEND_BODY if body else DONE
        self.response = SEND_HEAD
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.framed = False  # Content-Length or chunked: an early close is a broken body
        self.keep_alive = False
        self.interim = False
        self.received = False  # a byte of the response arrived
        self.told = False  # the listener knows of the head
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        # Reading stopped for a slow consumer: undone whenever the buffer is taken, complete or
        # not, or the connection would go back to the pool deaf to its next response.
        self.paused = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        # Awaited for the final head; a listener is called instead (the relay).
        self.head: asyncio.Future[None] | None = None if listener else loop.create_future()
        self.parser: Any = httptools.HttpResponseParser(self)

    # -- the states

    @property
    def complete(self) -> bool:
        """The whole response has arrived."""
        return self.response is DONE or self.response is MUST_CLOSE

    @property
    def reusable(self) -> bool:
        """Both directions are done and the connection may carry another exchange."""
        return self.request is DONE and self.response is DONE and not self.chunks

    def _respond(self, state: str) -> None:
        if state not in RESPONSE_TRANSITIONS[self.response]:
            raise RuntimeError(f"response {self.response} -> {state} is not a transition")
        self.response = state

    def sent(self) -> None:
        """The last byte of the request's framing is written."""
        if self.request is SEND_BODY:
            self.request = DONE

    def abandon(self) -> None:
        """The upload stopped before its end: the connection cannot carry another request."""
        if self.request is SEND_BODY:
            self.request = MUST_CLOSE

    # -- what the connection tells

    def feed(self, data: bytes) -> None:
        """Bytes from the upstream."""
        self.received = True
        if self.complete or self.response is ERROR:
            # Bytes nobody asked for: the stream is out of step.
            if self.response is DONE:
                self._respond(MUST_CLOSE)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(UpstreamBroken("the upstream switched protocols unasked"))
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Stop):
                self.fail(UpstreamBroken(f"malformed response: {exc.__context__ or exc}"))
        except httptools.HttpParserError as exc:
            if self.complete:  # a HEAD's answer, then what the parser took for its body
                if self.response is DONE:
                    self._respond(MUST_CLOSE)
            else:
                self.fail(UpstreamBroken(f"malformed response: {exc}"))
        self.tell()

    def lost(self, clean: bool = True) -> None:
        """The connection ended (``clean``: by the upstream's FIN, not a reset or an error)."""
        if self.complete or self.response is ERROR:
            return
        if self.response is SEND_BODY and not self.framed and clean:
            self._complete(MUST_CLOSE)  # a body delimited by the close (RFC 9112 §6.3, rule 8)
        elif not self.received:
            self.fail(UpstreamClosed("the upstream closed the connection"))
        else:
            self.fail(UpstreamBroken("the upstream closed the connection mid-response"))
        self.tell()

    def fail(self, error: Exception) -> None:
        if self.complete or self.response is ERROR:
            return
        self._respond(ERROR)
        self.error = error
        self.parser = None
        head = self.head
        if head is not None and not head.done():
            head.set_exception(error)
            head.exception()  # retrieved: the caller may be gone already
        self._wake()

    # -- httptools callbacks

    def _out_of_step(self) -> None:
        """Bytes after the whole response: the connection cannot carry another exchange."""
        if self.response is DONE:
            self._respond(MUST_CLOSE)
        raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        # Counted here, not in a method of its own: a call per header is a measurable part of
        # the relay's few microseconds.
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD_BYTES:
            self._too_large()
        if self.response is not SEND_HEAD:
            return  # a trailer field: dropped
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        if self.response is not SEND_HEAD:
            # A second response in the same bytes (its fields were taken for trailers): never
            # this exchange's. (No on_message_begin to see it sooner: a call per response.)
            self._out_of_step()
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints: the answer comes after
            self.interim, self.headers, self.framed, self.head_bytes = True, [], False, 0
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.response = SEND_BODY  # from SEND_HEAD (checked above): in the table, and hot
        head = self.head
        if head is not None and not head.done():
            head.set_result(None)
        if self.head_only:
            # A HEAD answer has no body, whatever its framing says (RFC 9110 §9.3.2); the parser
            # does not know the request was a HEAD, so what it reads next as a body (`on_body`)
            # or cannot read (`feed`) is bytes nobody asked for.
            self._respond(DONE if self.keep_alive else MUST_CLOSE)
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self.head_only or self.response is not SEND_BODY:
            self._out_of_step()
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused:
            self.paused = True
            self.channel.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.head_only:  # complete since its head
            self.parser = None
            return
        # From SEND_BODY (on_body and on_headers_complete make sure of it): in the table.
        self.response = DONE if self.keep_alive else MUST_CLOSE
        self.parser = None
        self._wake()

    def _too_large(self) -> None:
        self.fail(UpstreamBroken(f"the response head exceeds {MAX_HEAD_BYTES} bytes"))
        raise _Stop

    # -- the exchange's progress

    def _complete(self, state: str) -> None:
        self._respond(state)
        self.parser = None
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def tell(self) -> None:
        """The listener hears what happened, once the parser has returned."""
        listener = self.listener
        if listener is None:
            return
        if self.complete:
            self.listener = None
            listener.on_done()
        elif self.error is not None:
            self.listener = None
            listener.on_error(self.error)
        elif self.response is SEND_BODY and not self.told:
            self.told = True
            listener.on_head()

    async def read(self) -> bytes:
        """What has arrived of the body since the last read; b"" once it is complete."""
        while True:
            if self.chunks:
                chunks = self.chunks
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self.buffered = 0
                if self.paused:
                    self._resume()
                return data
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            self.waiter = self.loop.create_future()
            await self.waiter

    def take_body(self) -> bytes:
        """The whole body, once complete (the relay's)."""
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.paused:
            self._resume()
        return body

    def _resume(self) -> None:
        self.paused = False
        self.channel.resume_reading()
