"""The upstream client: one exchange with an upstream, awaited, on the connections of
``gateway.http.upstream``.

One ``Upstream`` per process, owned by ``Resources``: the pools of kept-alive connections, one per
origin. What a proxy must not do, it does not: no cookies, no redirects followed, bodies passed
through as they are (compressed or not), no proxy from the environment, no header of its own
but ``Host`` (the upstream's) and the body's framing; header bytes go upstream as received.

Bodies stream both ways with bounded memory, and at once: the upload goes on while the
response streams back (full duplex: an upstream may answer as it reads, RFC 9112 §9.3), and
stops only when the response is complete, or says it closes the connection; a request whose
upload stopped short leaves its connection unusable (``UpstreamExchange.reusable``). The route
timeout bounds every wait on the upstream (connecting, sending, each read), not the whole
exchange, so a long download that keeps flowing is fine, and a slow client is never blamed on
the upstream: the waits on the client are the server's to bound (``[server]
body_timeout_seconds``, ``send_timeout_seconds``). It is enforced by one shared watchdog
(``gateway.http.watchdog``). A client that goes away ends the exchange at once, its upstream
connection closed (``Cycle.on_disconnect``).

The relay (``gateway.relay``) carries a request without a body by callbacks on the same
``UpstreamExchange``; what it hands over comes here with the connection it has (``sent``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple, Protocol

from gateway.http.cycle import Cycle
from gateway.http.exchange import DONE, UpstreamClosed, UpstreamExchange
from gateway.http.refusals import status_and_reason
from gateway.http.upstream import KEEPALIVE_SECONDS, Connection, Pool, may_send_again
from gateway.http.watchdog import Watch, Watchdog

log = logging.getLogger("gateway.upstream")
SMALL_BODY = 64 * 1024  # responses up to this size (known length) are sent in one message
Headers = list[tuple[bytes, bytes]]


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The client went away, or its body cannot be read (malformed, or late): nothing more can
    be said to it on this request. ``answer``: the server's own refusal that ended it (status,
    reason), for the access log."""

    def __init__(self, answer: tuple[int, str] | None = None) -> None:
        super().__init__()
        self.answer = answer


class UpstreamError(Exception):
    """The upstream refused, broke or timed out before a response started."""

    def __init__(self, timeout: bool, detail: str) -> None:
        super().__init__(detail)
        self.timeout = timeout

    @property
    def answer(self) -> tuple[int, str]:
        """What the client is told (status, reason), whichever way the request was carried:
        504 for an upstream silent past the route timeout, 502 for every other failure."""
        return (504, "upstream_timeout") if self.timeout else (502, "upstream_unreachable")


class Tally(Protocol):
    """Where the status and the bytes answered are noted as they are sent."""

    status: int | None
    response_bytes: int


class RequestBody:
    """The client's body as an async iterator, counted against the route's limit."""

    def __init__(self, receive: Any, limit: int) -> None:
        self.receive = receive
        self.limit = limit
        self.received = 0
        self.done = False
        self.too_large = False
        self.timer: tuple[Watchdog, Watch] | None = None  # set by Upstream.forward

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self.done:
            if self.timer is not None:
                Watchdog.pause(self.timer[1])  # waiting on the client, not the upstream
            message = await self.receive()
            if self.timer is not None:
                self.timer[0].progress(self.timer[1])
            if message["type"] == "http.disconnect":
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
    """Where requests go: a pool each. ``authority`` is the Host header's value; ``keepalive``
    how long a connection may stay idle in the pool."""

    host: str
    port: int
    tls: bool
    ca_file: str | None
    authority: bytes
    keepalive: float = KEEPALIVE_SECONDS


def head_of(method: str, target: bytes, authority: bytes, headers: Headers) -> bytes:
    """The request head as one bytes object (RFC 9112 §3): Host first, as §3.2 asks."""
    lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\nhost: ", authority, b"\r\n"]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def read_whole_first(exchange: UpstreamExchange) -> bool:
    """Whether the body is small enough to read whole before answering: all arrived already,
    or a Content-Length of at most ``SMALL_BODY``."""
    if exchange.complete:
        return exchange.buffered <= SMALL_BODY
    for name, value in exchange.headers:
        if name.lower() == b"content-length":
            return value.isdigit() and int(value) <= SMALL_BODY
    return False


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
            await asyncio.sleep(1)
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
            found = self.pools[where] = Pool(where.host, where.port, context, where.keepalive)
        return found

    async def forward(
        self,
        *,
        method: str,
        where: Origin,
        target: bytes,
        headers: Headers,
        body: RequestBody | None,
        chunked: bool,
        timeout: float,
        shape: Callable[[Headers], Headers],
        receive: Any,
        send: Any,
        tally: Tally | None = None,
        sent: Connection | None = None,
        fresh: bool = False,
    ) -> None:
        """Send the request upstream and stream the answer to the client.

        Raises UpstreamError (nothing sent to the client yet), BodyTooLarge (nothing sent yet)
        or ClientGone (the client cannot be answered: gone, or its body broken or late). After
        the response has started, a failure ends the client's stream short instead.
        ``shape`` makes the client's response headers of the upstream's. ``chunked``: the
        client's body had no length; it goes upstream chunked. ``sent``: the request was sent
        on this connection already and its response head has arrived (a relay's hand-over);
        ``fresh``: not on a kept-alive connection.
        """
        run = _Run(self.watchdog, timeout, body, receive)
        pool = self.pool(where)
        head = head_of(method, target, where.authority, headers)
        if chunked:
            head = head[:-2] + b"transfer-encoding: chunked\r\n\r\n"
        try:
            if run.cycle is not None and run.cycle.disconnected:
                raise ClientGone  # gone while the request was decided (a key's lookup)
            if sent is None:
                await run.send(pool, method, head, chunked, fresh)
            else:
                run.connection = sent
            await run.respond(shape, send, tally)
        except asyncio.CancelledError:
            failure = run.ours()
            if failure is None:
                raise
            raise failure from None
        except (BodyTooLarge, ClientGone):
            raise
        except (ConnectionError, TimeoutError, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            raise UpstreamError(isinstance(exc, TimeoutError), detail) from None
        finally:
            run.end()


class _Run:
    """One awaited exchange: its connection, its upload, the watch on its upstream waits, and
    what ends it early (a client gone or whose body broke, an upload refused as too large)."""

    def __init__(
        self, watchdog: Watchdog, timeout: float, body: RequestBody | None, receive: Any
    ) -> None:
        self.watchdog = watchdog
        self.timer = watchdog.watch(timeout)
        self.body = body
        if body is not None:
            body.timer = (watchdog, self.timer)
        self.connection: Connection | None = None
        self.upload: asyncio.Task[None] | None = None
        self.started = False  # the response's head went to the client
        # Why this exchange's task was cancelled by itself: an exception to raise instead.
        self.failure: Exception | None = None
        self.cancels = 0
        self.task = asyncio.current_task()
        self.receive = receive
        self.cycle: Cycle | None = getattr(receive, "__self__", None)
        if not isinstance(self.cycle, Cycle):
            self.cycle = None  # another ASGI server's: its disconnect is seen by the upload
        elif self.task is not None:
            self.cycle.on_disconnect = self.client_gone

    # -- ends

    def stop(self, failure: Exception) -> None:
        """End the exchange's task with ``failure`` (once)."""
        if self.failure is None and self.task is not None and not self.task.done():
            self.failure = failure
            self.cancels += 1
            self.task.cancel()

    def client_gone(self) -> None:
        ended = self.cycle.ended if self.cycle is not None else None
        self.stop(ClientGone(status_and_reason(ended) if ended else None))

    def ours(self) -> Exception | None:
        """On a CancelledError: the exception to raise when the cancellation was this
        exchange's own (a timeout, a client gone, an upload refused), None when it must
        propagate (a shutdown)."""
        if not self.watchdog.ours(self.timer, others=self.cancels):
            return None
        if self.failure is not None:
            return self.failure
        if self.started:  # the answer has begun: it can only be cut short
            self.cut_short("fell silent past the route timeout")
            return ClientGone()
        return UpstreamError(True, "timed out waiting on the upstream")

    def end(self) -> None:
        self.task = None  # a late callback (an upload that failed as it ended) stops nothing
        self.watchdog.done(self.timer)
        if self.cycle is not None:
            self.cycle.on_disconnect = None
        if self.upload is not None and not self.upload.done():
            self.upload.cancel()
        if self.connection is not None:
            self.connection.abort()  # released already when it could carry another

    # -- the request

    async def send(self, pool: Pool, method: str, head: bytes, chunked: bool, fresh: bool) -> None:
        """The request sent and its response head read, on a pooled connection or a new one
        (``fresh``: a new one); the upload (if any) goes on in its own task."""
        watchdog, timer, body = self.watchdog, self.timer, self.body
        while True:
            connection, reused = await pool.acquire(fresh)
            self.connection = connection
            watchdog.progress(timer)
            exchange = connection.begin(method == "HEAD", None, body is not None)
            connection.write(head)
            if body is not None:
                self.upload = asyncio.ensure_future(_upload(connection, exchange, body, chunked))
                self.upload.add_done_callback(self._uploaded)
            assert exchange.head is not None
            try:
                await exchange.head
                return
            except UpstreamClosed as error:
                # The keep-alive race: a new connection that closes at once is the upstream's
                # answer.
                if not may_send_again(error, method, reused, body is not None):
                    raise
                connection.abort()
                fresh = True

    def _uploaded(self, upload: asyncio.Task[None]) -> None:
        """The upload ended: a failure of the client's side ends the exchange; a write the
        upstream refused leaves the response to say what happened."""
        if upload.cancelled():
            return
        error = upload.exception()
        if isinstance(error, (BodyTooLarge, ClientGone)):
            self.stop(ClientGone() if self.started else error)

    # -- the response

    async def respond(
        self, shape: Callable[[Headers], Headers], send: Any, tally: Tally | None
    ) -> None:
        connection = self.connection
        assert connection is not None and connection.exchange is not None
        exchange = connection.exchange
        watchdog, timer = self.watchdog, self.timer
        watchdog.progress(timer)
        if not exchange.keep_alive:
            self._stop_upload()  # RFC 9112 §9.3: the upstream will close; stop sending
        start = {
            "type": "http.response.start",
            "status": exchange.status,
            "headers": shape(exchange.headers),
        }
        if read_whole_first(exchange):
            # Read before starting, so a failure here can still be a clean 502.
            parts = []
            while part := await exchange.read():
                watchdog.progress(timer)
                parts.append(part)
            watchdog.pause(timer)
            whole = b"".join(parts)
            if tally is not None:
                tally.status, tally.response_bytes = exchange.status, len(whole)
            self.started = True
            reads_on = self._reads_on()
            await send(start)
            await send({"type": "http.response.body", "body": whole})
            await self._finish(reads_on)
            return
        watchdog.pause(timer)
        if tally is not None:
            tally.status = exchange.status
        self.started = True
        await send(start)
        if self.cycle is None and (self.upload is None or self.upload.done()):
            watcher = asyncio.ensure_future(self._watch_disconnect())
        else:
            watcher = None
        try:
            watchdog.progress(timer)
            while chunk := await exchange.read():
                watchdog.pause(timer)  # a slow reader is the client's business, not the upstream's
                if tally is not None:
                    tally.response_bytes += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                watchdog.progress(timer)
            watchdog.pause(timer)
        except (ConnectionError, OSError) as error:
            # The response has started: all we can do is end the stream short, which the
            # server does when the app returns without completing the body.
            self.cut_short(str(error) or type(error).__name__)
            return
        finally:
            if watcher is not None:
                watcher.cancel()
        reads_on = self._reads_on()
        await send({"type": "http.response.body", "body": b""})
        await self._finish(reads_on)

    def cut_short(self, why: str) -> None:
        """The upstream failed mid-answer: one warning, and the client's connection closed
        without the answer's end (our server's cycle is told it is on purpose, not an app that
        forgot to finish)."""
        log.warning("the upstream %s mid-answer; the client's answer is cut short", why)
        if self.cycle is not None and self.cycle.ended is None:
            self.cycle.ended = b""

    async def _watch_disconnect(self) -> None:
        """Under another ASGI server (no ``Cycle``), the disconnect is a receive() message."""
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.client_gone()

    def _stop_upload(self) -> None:
        upload = self.upload
        if upload is not None and not upload.done():
            upload.cancel()
            assert self.connection is not None and self.connection.exchange is not None
            self.connection.exchange.abandon()

    def _reads_on(self) -> bool:
        """The response is whole, the upload still going: whether it goes on. It does when the
        upstream keeps the connection (it means to read the rest, RFC 9112 §9.3) and the client
        can be read after its answer (our server's ``Cycle``); else it stops, and the
        connection is closed."""
        upload = self.upload
        if upload is None or upload.done():
            return False
        connection = self.connection
        assert connection is not None and connection.exchange is not None
        if self.cycle is None or connection.exchange.response is not DONE:
            self._stop_upload()
            return False
        self.cycle.read_after_response()
        return True

    async def _finish(self, reads_on: bool) -> None:
        """After the response: the upload's end awaited where it goes on, then the connection
        back to the pool if both directions are done (else closed)."""
        if reads_on and self.upload is not None:
            await asyncio.shield(self.upload)
        connection = self.connection
        assert connection is not None
        self.connection = None
        connection.release()


async def _upload(
    connection: Connection, exchange: UpstreamExchange, body: RequestBody, chunked: bool
) -> None:
    """Stream the client's body upstream, while the response is awaited and read: an upstream
    may answer (413, 401) before it has read everything, or as it reads (an echo)."""
    assert body.timer is not None
    watchdog, timer = body.timer
    try:
        async for chunk in body:
            connection.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await connection.drain()
            watchdog.progress(timer)
        if chunked:
            connection.write(b"0\r\n\r\n")
        exchange.sent()
    except (ConnectionError, OSError):
        exchange.abandon()  # the upstream stopped reading: its response says what happened
    except BaseException:
        exchange.abandon()
        raise
