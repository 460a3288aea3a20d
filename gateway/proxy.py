"""The upstream client: one exchange with an upstream, on the engine of ``gateway.http.upstream``.

One ``Upstream`` per process, owned by ``Resources``: the pools of kept-alive connections, one per
origin. What a proxy must not do, it does not: no cookies, no redirects followed, bodies passed
through as they are (compressed or not), no proxy from the environment, no header of its own
but ``Host`` (the upstream's) and the body's framing; header bytes go upstream as received.

Bodies stream both ways with bounded memory. The route timeout bounds every wait on the upstream
(connecting, sending, each read), not the whole exchange, so a long download that keeps flowing is
fine, and a slow client is never blamed on the upstream. It is enforced by one shared watchdog
(``gateway.http.watchdog``), not a timer per request and per read (its docstring has the
measurement).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

from core.config import Route
from gateway.exchange import Exchange
from gateway.headers import filter_response
from gateway.http.upstream import IDEMPOTENT, Connection, Pool, UpstreamClosed
from gateway.http.watchdog import Watch, Watchdog

Scope = dict[str, Any]
Message = dict[str, Any]
SMALL_BODY = 64 * 1024  # responses up to this size (known length) are sent in one message


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


class UpstreamError(Exception):
    """The upstream refused, broke or timed out before a response started."""

    def __init__(self, timeout: bool, detail: str) -> None:
        super().__init__(detail)
        self.timeout = timeout


class RequestBody:
    """The client's body as an async iterator, counted against the route's limit."""

    def __init__(self, receive: Any, limit: int) -> None:
        self.receive = receive
        self.limit = limit
        self.received = 0
        self.done = False
        self.too_large = False
        self.client_gone = False
        self.timer: tuple[Watchdog, Watch] | None = None  # set by Upstream.forward

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self.done:
            if self.timer is not None:
                Watchdog.pause(self.timer[1])  # waiting on the client, not the upstream
            message = await self.receive()
            if self.timer is not None:
                self.timer[0].progress(self.timer[1])
            if message["type"] == "http.disconnect":
                self.client_gone = True
                raise ClientGone
            chunk = message.get("body", b"")
            self.received += len(chunk)
            if self.received > self.limit:
                self.too_large = True
                raise BodyTooLarge
            self.done = not message.get("more_body", False)
            if chunk:
                yield chunk


class Origin(NamedTuple):
    """Where a route's requests go: a pool each. ``host`` is the Host header's value."""

    host: str
    port: int
    tls: bool
    ca_file: str | None
    authority: bytes


def origin(route: Route) -> Origin:
    scheme, _, netloc = route.upstream.partition("://")
    host, port = netloc, 443 if scheme == "https" else 80
    if netloc.startswith("["):  # an IPv6 literal
        end = netloc.index("]")
        host = netloc[1:end]
        if netloc[end + 1 :].startswith(":"):
            port = int(netloc[end + 2 :])
    elif ":" in netloc:
        host, _, number = netloc.rpartition(":")
        port = int(number)
    ca_file = route.ca_file
    return Origin(host, port, scheme == "https", ca_file, netloc.encode("ascii"))


def head_of(
    method: str, target: bytes, authority: bytes, headers: list[tuple[bytes, bytes]]
) -> bytes:
    """The request head as one bytes object (RFC 9112 §3): Host first, as §3.2 asks."""
    lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\nhost: ", authority, b"\r\n"]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class Upstream:
    def __init__(self) -> None:
        self.pools: dict[Origin, Pool] = {}
        self.contexts: dict[str | None, ssl.SSLContext] = {}
        self.watchdog = Watchdog()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="upstream-pool-sweeper")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(5)
            for pool in self.pools.values():
                pool.sweep()

    async def close(self) -> None:
        await self.watchdog.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()

    def context(self, ca_file: str | None) -> ssl.SSLContext:
        """The TLS context for https upstreams (and wss, gateway.websocket): verification on,
        against the system's CAs or the route's own (``ca_file``); one per CA file."""
        found = self.contexts.get(ca_file)
        if found is None:
            found = self.contexts[ca_file] = ssl.create_default_context(cafile=ca_file)
        return found

    def pool(self, where: Origin) -> Pool:
        found = self.pools.get(where)
        if found is None:
            context = self.context(where.ca_file) if where.tls else None
            found = self.pools[where] = Pool(where.host, where.port, context)
        return found

    async def forward(
        self,
        *,
        method: str,
        where: Origin,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: RequestBody | None,
        chunked: bool,
        timeout: float,
        response_headers: list[tuple[bytes, bytes]],
        receive: Any,
        send: Any,
        exchange: Exchange | None = None,
        sent: Connection | None = None,
        fresh: bool = False,
    ) -> None:
        """Send the request upstream and stream the answer to the client.

        Raises UpstreamError (nothing sent to the client yet), BodyTooLarge or ClientGone.
        After the response has started, an upstream failure aborts the client stream instead.
        ``chunked``: the client's body had no length; it goes upstream chunked. ``exchange``
        has the status and the bytes answered noted as they are sent. ``sent``: the request
        was sent on this connection already and its response head has arrived (a relay's
        hand-over, ``gateway.relay``); ``fresh``: not on a kept-alive connection.
        """
        dog = self.watchdog
        timer = dog.watch(timeout)
        if body is not None:
            body.timer = (dog, timer)
        pool = self.pool(where)
        head = head_of(method, target, where.authority, headers)
        if chunked:
            head = head[:-2] + b"transfer-encoding: chunked\r\n\r\n"
        held: list[Connection] = []  # the connection to close if the exchange fails
        try:
            if sent is None:
                connection = await _send(pool, method, head, body, chunked, dog, timer, held, fresh)
            else:
                connection = sent
                held.append(connection)
            dog.progress(timer)
            start = {
                "type": "http.response.start",
                "status": connection.status,
                "headers": filter_response(connection.headers) + response_headers,
            }
            if small(connection):
                # Read before starting, so a failure here can still be a clean 502.
                parts = []
                while part := await connection.read():
                    dog.progress(timer)
                    parts.append(part)
                dog.pause(timer)
                held.clear()
                connection.release()
                whole = b"".join(parts)
                if exchange is not None:
                    exchange.status, exchange.response_bytes = connection.status, len(whole)
                await send(start)
                await send({"type": "http.response.body", "body": whole})
                return
            dog.pause(timer)
            if exchange is not None:
                exchange.status = connection.status
            await send(start)
            watch = body is None or body.done
            if await _stream(connection, receive, send, watch, dog, timer, exchange):
                held.clear()
                connection.release()
        except asyncio.CancelledError:
            if not dog.ours(timer):
                raise
            raise UpstreamError(True, "timed out waiting on the upstream") from None
        except (BodyTooLarge, ClientGone):
            raise
        except (ConnectionError, TimeoutError, OSError) as exc:
            if body is not None and body.too_large:
                raise BodyTooLarge from None
            if body is not None and body.client_gone:
                raise ClientGone from None
            detail = str(exc) or type(exc).__name__
            raise UpstreamError(isinstance(exc, TimeoutError), detail) from None
        finally:
            dog.done(timer)
            for connection in held:
                connection.abort()


async def _send(
    pool: Pool,
    method: str,
    head: bytes,
    body: RequestBody | None,
    chunked: bool,
    dog: Watchdog,
    timer: Watch,
    held: list[Connection],
    fresh: bool,
) -> Connection:
    """The request sent and its response head read, on a pooled connection or a new one
    (``fresh``: a new one)."""
    while True:
        connection, reused = await pool.acquire(fresh)
        held[:] = [connection]
        dog.progress(timer)
        connection.begin(method == "HEAD")
        connection.write(head)
        try:
            if body is None:
                await connection.head
            else:
                await _send_body(connection, body, chunked, dog, timer)
            return connection
        except UpstreamClosed:
            # The keep-alive race (gateway.http.upstream): tried again on a new connection only
            # where that is safe; a new connection that closes at once is the upstream's answer.
            if not reused or body is not None or method not in IDEMPOTENT:
                raise
            connection.abort()
            fresh = True


def small(connection: Connection) -> bool:
    """Whether the body is small enough to read whole before answering: all arrived already,
    or a Content-Length of at most ``SMALL_BODY``."""
    if connection.complete:
        return connection.buffered <= SMALL_BODY
    for name, value in connection.headers:
        if name.lower() == b"content-length":
            return value.isdigit() and int(value) <= SMALL_BODY
    return False


async def _send_body(
    connection: Connection, body: RequestBody, chunked: bool, dog: Watchdog, timer: Watch
) -> None:
    """Stream the client's body upstream while the response head is awaited: an upstream may
    answer (413, 401) before it has read everything."""

    async def upload() -> None:
        async for chunk in body:
            connection.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await connection.drain()
            dog.progress(timer)
        if chunked:
            connection.write(b"0\r\n\r\n")

    sending = asyncio.ensure_future(upload())
    try:
        await asyncio.wait((sending, connection.head), return_when=asyncio.FIRST_COMPLETED)
        if sending.done():
            sending.result()  # BodyTooLarge, ClientGone or a broken connection
            await connection.head
        elif not body.done:
            # Answered before the body was all sent: the connection cannot carry another.
            connection.keep_alive = False
    finally:
        if not sending.done():
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)


async def _stream(
    connection: Connection,
    receive: Any,
    send: Any,
    watch: bool,
    dog: Watchdog,
    timer: Watch,
    exchange: Exchange | None,
) -> bool:
    """Copy the upstream body to the client; stop at once if the client goes away or the
    upstream stalls past the route timeout (the stream is then cut short). True when the body
    was copied whole."""
    task = timer.task  # the exchange's task (Watchdog.watch)
    watcher: asyncio.Future[None] | None = None
    gone = False
    if watch and task is not None:
        # uvicorn drops sends to a vanished client silently, so watch receive() for the
        # disconnect and cancel the copy: that closes the upstream connection instead of
        # reading a long body nobody wants.
        async def watch_disconnect() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        watcher = asyncio.ensure_future(watch_disconnect())
    try:
        dog.progress(timer)
        while chunk := await connection.read():
            dog.pause(timer)  # a slow reader is the client's business, not the upstream's
            if exchange is not None:
                exchange.response_bytes += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            dog.progress(timer)
        dog.pause(timer)
        await send({"type": "http.response.body", "body": b""})
        return True
    except asyncio.CancelledError:
        # Our own cancellations (the client left, the upstream stalled) end the stream here;
        # anyone else's (shutdown) propagates.
        if not dog.ours(timer, others=int(gone)):
            raise
        return False
    except (ConnectionError, OSError):
        # The response has started: all we can do is end the stream uncleanly, which the
        # server does when we return without completing the body.
        return False
    finally:
        if watcher is not None:
            watcher.cancel()
