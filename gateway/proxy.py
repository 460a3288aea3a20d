"""The upstream client: one ``aiohttp.ClientSession`` per process, owned by ``Resources``.

aiohttp rather than httpx: httpx's pool collapses under concurrency (encode/httpx#3215). The
session is set up as a proxy's must be: no cookie jar shared between clients, no redirects
followed, bodies passed through compressed as they are, no proxy from the environment, and none of
the client's default headers added.

Bodies stream both ways with bounded memory. The route timeout bounds every wait on the upstream
(connecting, sending, each read), not the whole exchange, so a long download that keeps flowing is
fine, and a slow client is never blamed on the upstream. It is enforced by one shared watchdog
(``gateway.watchdog``), not aiohttp's per-request and per-read timers (its docstring has the
measurement).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from yarl import URL

from gateway.headers import filter_response
from gateway.watchdog import Watch, Watchdog

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


def new_session() -> aiohttp.ClientSession:
    """The upstream session as a proxy needs it (see the module docstring); bench/bare_proxy.py
    uses it too, so the benchmark's floor pays what the gateway pays."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=60),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=None),
    )


class Upstream:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.watchdog = Watchdog()

    async def start(self) -> None:
        self._session = new_session()

    async def close(self) -> None:
        await self.watchdog.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(
        self,
        *,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: RequestBody | None,
        timeout: float,
        response_headers: list[tuple[bytes, bytes]],
        receive: Any,
        send: Any,
    ) -> None:
        """Send the request upstream and stream the answer to the client.

        Raises UpstreamError (nothing sent to the client yet), BodyTooLarge or ClientGone.
        After the response has started, an upstream failure aborts the client stream instead.
        """
        assert self._session is not None, "Upstream.start() was not awaited (Resources.start)"
        dog = self.watchdog
        timer = dog.watch(timeout)
        if body is not None:
            body.timer = (dog, timer)
        try:
            context = self._session.request(
                method,
                URL(url, encoded=True),
                headers=headers,
                data=body.__aiter__() if body is not None else None,
                allow_redirects=False,
            )
            async with context as response:
                dog.progress(timer)
                start = {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": filter_response(response.raw_headers) + response_headers,
                }
                length = response.content_length
                if length is not None and length <= SMALL_BODY:
                    # Read before starting, so a failure here can still be a clean 502.
                    content = await response.read()
                    dog.pause(timer)
                    await send(start)
                    await send({"type": "http.response.body", "body": content})
                    return
                dog.pause(timer)
                await send(start)
                await _stream(response, receive, send, body is None or body.done, dog, timer)
        except asyncio.CancelledError:
            if not dog.ours(timer):
                raise
            raise UpstreamError(True, "timed out waiting on the upstream") from None
        except (BodyTooLarge, ClientGone):
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if body is not None and body.too_large:
                raise BodyTooLarge from None
            if body is not None and body.client_gone:
                raise ClientGone from None
            raise UpstreamError(isinstance(exc, TimeoutError), type(exc).__name__) from None
        finally:
            dog.done(timer)


async def _stream(
    response: aiohttp.ClientResponse,
    receive: Any,
    send: Any,
    watch: bool,
    dog: Watchdog,
    timer: Watch,
) -> None:
    """Copy the upstream body to the client; stop at once if the client goes away or the
    upstream stalls past the route timeout (the stream is then cut short)."""
    task = asyncio.current_task()
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
        async for chunk in response.content.iter_any():
            dog.pause(timer)  # a slow reader is the client's business, not the upstream's
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            dog.progress(timer)
        dog.pause(timer)
        await send({"type": "http.response.body", "body": b""})
    except asyncio.CancelledError:
        # Our own cancellations (the client left, the upstream stalled) end the stream here;
        # anyone else's (shutdown) propagates.
        if not dog.ours(timer, others=int(gone)):
            raise
        response.close()
    except (aiohttp.ClientError, TimeoutError, OSError):
        # The response has started: all we can do is end the stream uncleanly, which the
        # server does when we return without completing the body.
        response.close()
    finally:
        if watcher is not None:
            watcher.cancel()
