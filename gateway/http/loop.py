"""The running event loop, held by whatever asks for it per request.

``asyncio.get_running_loop()`` (and what calls it: ``current_task()`` and ``ensure_future()``
without a loop, ``asyncio.Future()``) checks on Python 3.11 that the process has not forked since
the loop started: a ``getpid()`` system call every time. Asked once per request it was 4.5% of
the event loop's time in row 5 (the watchdog) and one system call per cache miss in row 7 (the
verifier's lookup), under py-spy and ``strace -c``.
"""

from __future__ import annotations

import asyncio


class RunningLoop:
    """The loop taken once, and again when the one held is no longer running (tests run one
    gateway object on several loops in turn)."""

    __slots__ = ("loop",)

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> asyncio.AbstractEventLoop:
        loop = self.loop
        if loop is None or not loop.is_running():
            loop = self.loop = asyncio.get_running_loop()
        return loop
