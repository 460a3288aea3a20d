"""A webhook receiver on loopback: records every delivery as it came (headers and body) and
answers as a test scripts it: the statuses of the first requests, or no answer at all."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support import LoopThread, free_socket


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int | None  # None: never answered

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)  # answers of the next requests, in order
    hang: bool = False  # hold every request unanswered until `release`
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: asyncio.Event | None = None

    def delivered(self) -> list[Received]:
        """What was answered 2xx, in the order it came."""
        with self.lock:
            return [r for r in self.received if r.answered is not None and r.answered < 300]

    def types(self) -> list[str]:
        return [r.event["type"] for r in self.delivered()]


@contextmanager
def run_receiver(loop: LoopThread) -> Iterator[Receiver]:
    sock = free_socket()
    receiver = Receiver(f"http://127.0.0.1:{sock.getsockname()[1]}/hook")

    async def make_event() -> None:
        receiver.released = asyncio.Event()

    loop.run(make_event())

    async def hook(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        entry = Received(dict(request.headers), body, None)
        with receiver.lock:
            receiver.received.append(entry)
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            hang = receiver.hang
        if hang:
            assert receiver.released is not None
            await receiver.released.wait()
            raise web.HTTPServiceUnavailable()  # the sender is long gone
        entry.answered = status
        return web.Response(status=status, text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1)
    loop.run(runner.setup())
    loop.run(web.SockSite(runner, sock).start())
    try:
        yield receiver
    finally:

        async def release() -> None:
            assert receiver.released is not None
            receiver.released.set()

        loop.run(release())
        loop.run(runner.cleanup())
        sock.close()
