"""The upstream engine: HTTP/1.1 to the upstreams over asyncio Protocols, parsed by httptools.

Why not aiohttp: measured here (one process each, wrk -c32, nginx upstream), a bare uvicorn +
aiohttp proxy served 6,800-7,300 req/s and the same ASGI app with this kind of client
22,200-23,500: aiohttp builds a request object, a response object, a multidict of headers and a
stream reader per exchange. Here an exchange is a few attributes of a kept-alive connection: the
request head is one bytes object written at once, the response head a list of the byte pairs
httptools hands us, the body chunks bytes queued as they arrive.

- **Pools**: one per origin (scheme, host, port, CA file), last in first out, idle connections
  closed after ``IDLE_SECONDS`` (under the 60-75 s most servers keep them) or as soon as the
  upstream closes them (the loop tells the protocol).
- **Flow control** both ways: reading stops while more than ``HIGH_WATER`` bytes of response wait
  for the client (``pause_reading``) and resumes below ``LOW_WATER``; writing waits while the
  transport's buffer is over its high-water mark (``pause_writing``/``resume_writing``).
- **Framing**: the response's own (Content-Length, chunked, or until close, which is never kept
  alive); HEAD answers, 204 and 304 have no body; interim 1xx answers are skipped (RFC 9110 §15.2).
- **The keep-alive race**: a pooled connection the upstream closed just as we wrote to it fails
  with nothing received. The request is sent again once on a new connection only when that is
  safe: it came from the pool, no byte of a response arrived, it has no body, and its method is
  idempotent (RFC 9110 §9.2.2; RFC 9112 §9.3.1).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any, Protocol

import httptools

from gateway.http.batch import Batched, Flusher

HIGH_WATER = 256 * 1024  # response bytes held for a slow client before reading stops
LOW_WATER = 64 * 1024
IDLE_SECONDS = 30.0
MAX_IDLE = 512  # kept-alive connections per origin
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class UpstreamClosed(ConnectionError):
    """The connection ended before a byte of the response arrived."""


class UpstreamBroken(ConnectionError):
    """The response was malformed, or ended before its framing said it would."""


class Listener(Protocol):
    """Told of an exchange's progress instead of awaiting it (``gateway.relay``): each once,
    and never from inside the parser (the listener may put the connection back in the pool)."""

    def on_head(self) -> None: ...  # the final head, the body still to come

    def on_done(self) -> None: ...  # the whole response has arrived

    def on_error(self, error: Exception) -> None: ...  # it failed (UpstreamClosed, ...)


class Connection(asyncio.Protocol):
    """One connection to an upstream, carrying one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: Batched | None = None
        self.closed = False
        self.idle_since = 0.0
        self.parser: Any = None  # httptools.HttpResponseParser, one per exchange
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self.feeding = False  # in the parser's callbacks: a listener is told after them
        self._begin(False, None)

    def _begin(self, head_only: bool, listener: Listener | None) -> None:
        self.head_only = head_only
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.framed = False  # Content-Length or chunked: an early close is a broken body
        self.interim = False
        self.received = False
        self.headed = False  # the final head has arrived
        self.listener = listener
        self.told = False  # the listener knows of the head
        if listener is None:  # awaited; a listener is called instead
            self.head: asyncio.Future[None] = self.loop.create_future()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    def begin(self, head_only: bool, listener: Listener | None = None) -> None:
        """A new exchange on this connection (``head_only``: the request is a HEAD), awaited
        through ``head`` and `read`, or told to ``listener``."""
        self._begin(head_only, listener)
        self.parser = httptools.HttpResponseParser(self)

    # -- asyncio.Protocol

    def connection_made(self, transport: Any) -> None:
        # Request heads and bodies wait for the end of the loop iteration (gateway.http.batch).
        self.transport = Batched(transport, self.pool.flusher)

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.parser is None or self.complete:
            # Bytes nobody asked for (a pooled connection): the stream is out of step.
            self._close()
            return
        self.feeding = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamBroken("the upstream switched protocols unasked"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamBroken(f"malformed response: {exc}"))
        finally:
            self.feeding = False
        if self.listener is not None:
            self._tell()

    def eof_received(self) -> bool:
        self._lost()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints: the answer comes after
            self.interim, self.headers, self.framed = True, [], False
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.headed = True
        if self.listener is None and not self.head.done():
            self.head.set_result(None)
        if self.head_only:
            self._done()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self._done()

    # -- the exchange

    def _done(self) -> None:
        self.complete = True
        self.parser = None
        self._wake()
        self._tell()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self.complete or self.error is not None:
            return
        self.error = error
        if self.listener is None and not self.head.done():
            self.head.set_exception(error)
            self.head.exception()  # retrieved: the caller may be gone already
        self._wake()
        self._close()
        self._tell()

    def _tell(self) -> None:
        """The listener hears what happened, once the parser has returned."""
        listener = self.listener
        if listener is None or self.feeding:
            return
        if self.complete:
            self.listener = None
            listener.on_done()
        elif self.error is not None:
            self.listener = None
            listener.on_error(self.error)
        elif self.headed and not self.told:
            self.told = True
            listener.on_head()

    def _lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.parser is not None and not self.complete:
            if self.headed and not self.framed:
                self._done()  # a body delimited by the close (RFC 9112 §6.3, rule 8)
            elif not self.received:
                self._fail(UpstreamClosed("the upstream closed the connection"))
            else:
                self._fail(UpstreamBroken("the upstream closed the connection mid-response"))
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(UpstreamClosed("the upstream closed the connection"))
            self._drain.exception()
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self._lost()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if self.closed:
            raise UpstreamClosed("the upstream closed the connection")
        if self.write_paused:
            self._drain = self.loop.create_future()
            await self._drain

    async def read(self) -> bytes:
        """What has arrived of the body since the last read; b"" once it is complete."""
        while True:
            if self.chunks:
                data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
                self.chunks.clear()
                self.buffered = 0
                if self.transport is not None and not self.closed:
                    self.transport.resume_reading()
                return data
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            self._waiter = self.loop.create_future()
            await self._waiter

    def release(self) -> None:
        """The exchange is over: back to the pool if the connection can carry another."""
        if self.complete and self.keep_alive and not self.closed and not self.chunks:
            self.pool.put(self)
        else:
            self.abort()

    def abort(self) -> None:
        self.parser = None
        self._close()


class Pool:
    """The kept-alive connections to one origin."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None) -> None:
        self.host, self.port, self.context = host, port, context
        self.loop = asyncio.get_running_loop()
        self.idle: list[Connection] = []
        self.flusher = Flusher(self.loop)

    def take(self) -> Connection | None:
        """A kept-alive connection from an earlier exchange, if one is idle."""
        now = self.loop.time()
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.abort()
        return None

    async def acquire(self, fresh: bool = False) -> tuple[Connection, bool]:
        """A connection, and whether it was kept alive from an earlier exchange (``fresh``:
        a new one whatever the pool holds)."""
        if not fresh and (kept := self.take()) is not None:
            return kept, True
        _, connection = await self.loop.create_connection(
            lambda: Connection(self),
            self.host,
            self.port,
            ssl=self.context,
            server_hostname=self.host if self.context is not None else None,
        )
        return connection, False

    def put(self, connection: Connection) -> None:
        if len(self.idle) >= MAX_IDLE:
            connection.abort()
            return
        connection.parser = None
        connection.idle_since = self.loop.time()
        self.idle.append(connection)

    def forget(self, connection: Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)

    def sweep(self) -> None:
        """Close connections idle for longer than ``IDLE_SECONDS``."""
        now = self.loop.time()
        for connection in [c for c in self.idle if now - c.idle_since >= IDLE_SECONDS]:
            connection.abort()

    def close(self) -> None:
        for connection in list(self.idle):
            connection.abort()
        self.idle.clear()
