"""The connections to the upstreams: HTTP/1.1 over asyncio Protocols, parsed by httptools.

Why not aiohttp: measured here (one process each, wrk -c32, nginx upstream), a bare uvicorn +
aiohttp proxy served 6,800-7,300 req/s and the same ASGI app with this kind of client
22,200-23,500: aiohttp builds a request object, a response object, a multidict of headers and a
stream reader per exchange. Here the request head is one bytes object written at once, and each
exchange is one ``gateway.http.exchange.UpstreamExchange``, the state machine that decides
whether the connection may carry another.

- **Pools**: one per origin (scheme, host, port, CA file, keep-alive), last in first out. An
  idle connection is closed after the route's ``upstream_keepalive_seconds`` (4 s by default:
  below the 5 s of uvicorn and Node, gunicorn's 2 s needs less; a request sent on a connection
  the upstream is closing meets the keep-alive race, which a POST cannot survive), or as soon
  as the upstream closes it (the loop tells the protocol).
- **Reuse**: a connection goes back to the pool only when its exchange's both directions are
  ``DONE`` (`Connection.release`).
- **Flow control** both ways: reading stops while more than ``HIGH_WATER`` bytes of response wait
  for the client (``pause_reading``) and resumes when they are read; writing waits while the
  transport's buffer is over its high-water mark (``pause_writing``/``resume_writing``).
- **The keep-alive race**: a pooled connection the upstream closed just as we wrote to it fails
  with nothing received. The request is sent again once on a new connection only when that is
  safe: it came from the pool, no byte of a response arrived, it has no body, and its method is
  idempotent (RFC 9110 §9.2.2; RFC 9112 §9.3.1).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from gateway.http.batch import Batched, Flusher
from gateway.http.exchange import DONE, MUST_CLOSE, Listener, UpstreamClosed, UpstreamExchange

KEEPALIVE_SECONDS = 4.0
MAX_IDLE = 512  # kept-alive connections per origin
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def may_send_again(error: Exception, method: str, reused: bool, body: bool) -> bool:
    """The keep-alive race: whether a request whose exchange failed with ``error`` may be sent
    again, once, on a new connection. Only when the connection came from the pool, no byte of
    a response arrived (`UpstreamClosed`), the request has no body and its method is idempotent
    (RFC 9110 §9.2.2; RFC 9112 §9.3.1). One rule for both ways of carrying a request."""
    return isinstance(error, UpstreamClosed) and reused and not body and method in IDEMPOTENT


class Connection(asyncio.Protocol):
    """One connection to an upstream, carrying one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: Batched | None = None
        self.closed = False
        self.idle_since = 0.0
        self.exchange: UpstreamExchange | None = None
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None

    def begin(
        self, head_only: bool, listener: Listener | None = None, body: bool = False
    ) -> UpstreamExchange:
        """A new exchange on this connection (``head_only``: the request is a HEAD; ``body``:
        one follows the head, and the exchange is told when it is sent), awaited through its
        ``head`` and ``read``, or told to ``listener``."""
        exchange = self.exchange = UpstreamExchange(self, self.loop, head_only, listener, body)
        return exchange

    # -- asyncio.Protocol

    def connection_made(self, transport: Any) -> None:
        # Request heads and bodies wait for the end of the loop iteration (gateway.http.batch).
        self.transport = Batched(transport, self.pool.flusher)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            self._close()  # bytes on an idle connection: the stream is out of step
            return
        exchange.feed(data)

    def eof_received(self) -> bool:
        self._lost()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc is None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # --

    def _lost(self, clean: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        if self.exchange is not None:
            self.exchange.lost(clean)
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

    def release(self) -> None:
        """The exchange is over: back to the pool only when both its directions are done
        (``UpstreamExchange.reusable``), else closed."""
        exchange = self.exchange
        # `UpstreamExchange.reusable`, inline: this runs once per exchange.
        if (
            exchange is not None
            and exchange.request is DONE
            and exchange.response is DONE
            and not exchange.chunks
            and not self.closed
        ):
            self.exchange = None
            self.pool.put(self)
        else:
            self.abort()

    def abort(self) -> None:
        """Closed whatever its exchange's state (a failure, a timeout, a client gone). With a
        request cut short, what is not yet sent of it is dropped (a reset): a close would keep
        it queued, and the connection open, for an upstream that may never read it."""
        exchange = self.exchange
        if exchange is not None:
            exchange.listener = None
            exchange.abandon()
            if exchange.request is MUST_CLOSE and self.transport is not None:
                self.transport.abort()
        self._close()


class Pool:
    """The kept-alive connections to one origin."""

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        self.host, self.port, self.context = host, port, context
        self.keepalive = keepalive
        self.loop = asyncio.get_running_loop()
        self.idle: list[Connection] = []
        self.flusher = Flusher(self.loop)

    def take(self) -> Connection | None:
        """A kept-alive connection from an earlier exchange, if one is idle."""
        now = self.loop.time()
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed and now - connection.idle_since < self.keepalive:
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
        connection.idle_since = self.loop.time()
        self.idle.append(connection)

    def forget(self, connection: Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)

    def sweep(self) -> None:
        """Close connections idle for longer than the pool's keep-alive."""
        now = self.loop.time()
        for connection in [c for c in self.idle if now - c.idle_since >= self.keepalive]:
            connection.abort()

    def close(self) -> None:
        for connection in list(self.idle):
            connection.abort()
        self.idle.clear()
