"""Counting the tasks a gateway's loop makes: the fast path (gateway.relay) makes none for a
request, so a test can tell it was taken."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from tests.support import LoopThread


@contextlib.contextmanager
def tasks_made(loop: LoopThread) -> Iterator[list[str]]:
    """The qualified names of the coroutines of every task ``loop`` makes meanwhile."""
    made: list[str] = []

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def factory(on: bool) -> None:
        asyncio.get_running_loop().set_task_factory(counting if on else None)

    loop.run(factory(True))
    try:
        yield made
    finally:
        loop.run(factory(False))
