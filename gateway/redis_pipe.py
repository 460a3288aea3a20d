"""One pipelined connection to Redis, for the rate limits (``gateway.redis_limits.RedisLimiter``).

The commands asked for in one iteration of the event loop leave in one write, and their answers
come back in order on the same connection: the checks of every request that arrived together
cost one round trip, not one each (and not one pooled connection each, as a general client
takes). hiredis packs the commands and parses the answers.

Every command must be answered within ``timeout`` seconds. Answers come in order, so a late
one means every command behind it is late too: the connection is dropped, every command on it
fails with ``TimeoutError``, and the next command connects again.

``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) and
``unix://[[user]:password@]/path[?db=N]`` are understood, as redis-py understands them.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any, cast

import hiredis


def pack(args: tuple[bytes | str | int, ...]) -> bytes:
    """A command in RESP, packed in C."""
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]  # its stub: a 1-tuple
    return packed


class RedisReplyError(Exception):
    """Redis answered a command with an error (``NOSCRIPT ...``, ``WRONGTYPE ...``)."""


@dataclass(frozen=True)
class Target:
    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""  # a Unix socket, for unix://
    tls: bool = False
    username: str = ""
    password: str = ""
    db: int = 0


def target(url: str) -> Target:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    db = query.get("db", [parts.path.strip("/") if parts.scheme != "unix" else ""])[0]
    return Target(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        path=parts.path if parts.scheme == "unix" else "",
        tls=parts.scheme == "rediss",
        username=urllib.parse.unquote(parts.username or ""),
        password=urllib.parse.unquote(parts.password or ""),
        db=int(db or 0),
    )


class RedisPipe(asyncio.Protocol):
    """Owned by the limiter that made it; ``close`` ends it."""

    def __init__(self, url: str, timeout: float) -> None:
        self.target = target(url)
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.connecting: asyncio.Future[None] | None = None
        self.reader = hiredis.Reader()
        self.outgoing: list[bytes] = []  # packed in this loop iteration, written at its end
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def call(self, *args: bytes | str | int) -> Any:
        """One command's answer (a Redis error: ``RedisReplyError``; no answer in time or no
        connection: ``TimeoutError`` or ``OSError``)."""
        if self.transport is None:
            await self.connect()
        return await self.send(pack(args))

    def send(self, command: bytes) -> asyncio.Future[Any]:
        loop = self.loop
        assert loop is not None
        answer = loop.create_future()
        if not self.outgoing:
            loop.call_soon(self.flush)
        self.outgoing.append(command)
        self.waiting.append((answer, loop.time() + self.timeout))
        if self.timer is None:
            self.timer = loop.call_at(self.waiting[0][1], self.check_late)
        return answer

    def flush(self) -> None:
        commands, self.outgoing = self.outgoing, []
        if commands and self.transport is not None:
            self.transport.write(b"".join(commands))

    async def connect(self) -> None:
        if self.connecting is None:
            self.connecting = asyncio.ensure_future(self._connect())
        connecting = self.connecting
        try:
            await asyncio.shield(connecting)
        finally:
            if connecting.done() and self.connecting is connecting:
                self.connecting = None

    async def _connect(self) -> None:
        self.loop = loop = asyncio.get_running_loop()
        where = self.target
        async with asyncio.timeout(self.timeout):
            if where.path:
                await loop.create_unix_connection(lambda: self, where.path)
            else:
                context = ssl.create_default_context() if where.tls else None
                await loop.create_connection(lambda: self, where.host, where.port, ssl=context)
            hello: list[asyncio.Future[Any]] = []
            if where.password:
                user = (where.username,) if where.username else ()
                hello.append(self.send(pack(("AUTH", *user, where.password))))
            if where.db:
                hello.append(self.send(pack(("SELECT", where.db))))
            await asyncio.gather(*hello)

    def check_late(self) -> None:
        """The timer: the oldest command unanswered past its bound drops the connection."""
        self.timer = None
        if not self.waiting:
            return
        loop = self.loop
        assert loop is not None
        deadline = self.waiting[0][1]
        if loop.time() >= deadline:
            self.drop(TimeoutError(f"Redis did not answer within {self.timeout:g} s"))
        else:
            self.timer = loop.call_at(deadline, self.check_late)

    def drop(self, exc: BaseException) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()
        self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        self.reader = hiredis.Reader()
        self.outgoing = []
        waiting, self.waiting = self.waiting, collections.deque()
        for answer, _ in waiting:
            if not answer.done():
                answer.set_exception(exc)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        reply = self.reader.gets()
        while reply is not False:
            if not self.waiting:  # an answer nobody asked for: the stream is out of step
                self.drop(ConnectionError("Redis sent an answer nobody asked for"))
                return
            answer, _ = self.waiting.popleft()
            if not answer.done():
                if isinstance(reply, hiredis.ReplyError):
                    answer.set_exception(RedisReplyError(str(reply)))
                else:
                    answer.set_result(reply)
            reply = self.reader.gets()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None
        self.fail(exc or ConnectionError("Redis closed the connection"))

    async def close(self) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.fail(ConnectionError("closed"))
