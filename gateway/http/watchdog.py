"""One timer for every upstream exchange in flight, instead of aiohttp's timers.

aiohttp's ``ClientTimeout(connect=..., sock_read=...)`` arms a timer per request and re-arms one
on every chunk read: removing them saved 3-5 µs of the ~140-160 µs of CPU a proxied request costs
on this machine (CPU time per request under wrk, several runs; `bench/run.py`); this
watchdog costs ~1 µs a request. Here each exchange is a small record (the task, its timeout,
when the upstream last made progress) and one ticker task, alive only while exchanges are in
flight, cancels those that waited on the upstream for longer than their route's
``timeout_seconds``.

What counts as waiting on the upstream: connecting, sending it the request (it must accept
bytes), and waiting for its next bytes. Time spent waiting on the *client* (a slow upload, a slow
reader of a download) is not counted: the exchange is marked "not waiting" around those waits.
Expiry is detected within one tick (a tenth of the smallest timeout seen, 5-100 ms) after the bound.

The watchdog times out an exchange by cancelling its task, so the exchange must tell its own
cancellation from anyone else's: :meth:`Watchdog.ours` withdraws the requests it made (the way
``asyncio.timeout`` compares ``uncancel()`` with the ``cancelling()`` count it saw on entry) and
says whether any other is left. A shutdown or a client's task group cancelling the same task at the
same moment as a timeout is then re-raised, never swallowed as an upstream timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

from gateway.http.loop import RunningLoop

log = logging.getLogger("gateway.http.watchdog")


class Watch:
    """One exchange: ``last`` is when the upstream last made progress (``inf``: not waiting);
    ``cancelling`` is how many cancel requests its task had pending when the watch began. An
    exchange run by callbacks (``gateway.relay``) has no task: ``expiry`` is called instead."""

    __slots__ = ("cancelling", "expired", "expiry", "last", "task", "timeout")

    def __init__(
        self,
        task: asyncio.Task[object] | None,
        timeout: float,
        now: float,
        expiry: Callable[[], None] | None = None,
    ) -> None:
        self.task = task
        self.timeout = timeout
        self.last = now
        self.expired = False
        self.cancelling = task.cancelling() if task is not None else 0
        self.expiry = expiry


class Watchdog:
    def __init__(self) -> None:
        self._active: dict[int, Watch] = {}
        self._ticker: asyncio.Task[None] | None = None
        self.tick = 0.1
        self._loop = RunningLoop()

    def watch(self, timeout: float, expiry: Callable[[], None] | None = None) -> Watch:
        """Watch the exchange of the running task, or (``expiry``) one run by callbacks."""
        loop = self._loop()
        if expiry is None:
            # current_task(loop), not current_task(): without its loop it asks
            # get_running_loop(), a system call (gateway.http.loop).
            watch = Watch(asyncio.current_task(loop), timeout, loop.time())
        else:
            watch = Watch(None, timeout, loop.time(), expiry)
        self._active[id(watch)] = watch
        if timeout / 10 < self.tick:
            self.tick = max(0.005, timeout / 10)
        if self._ticker is None:
            self._ticker = loop.create_task(self._run())
        return watch

    def progress(self, watch: Watch) -> None:
        assert self._loop.loop is not None
        watch.last = self._loop.loop.time()

    @staticmethod
    def pause(watch: Watch) -> None:
        """Waiting on the client now, not on the upstream."""
        watch.last = math.inf

    def done(self, watch: Watch) -> None:
        self._active.pop(id(watch), None)

    @staticmethod
    def ours(watch: Watch, others: int = 0) -> bool:
        """Called on a CancelledError inside the exchange: withdraw the watchdog's cancel request
        (if it made one) and ``others`` more that the caller made itself; True when no request
        from anyone else is left, so the cancellation is ours to handle; False when it must
        propagate."""
        task = watch.task
        own = int(watch.expired) + others
        if task is None or own == 0:
            return False
        pending = task.cancelling()
        for _ in range(own):
            pending = task.uncancel()
        return pending <= watch.cancelling

    def expire(self, now: float) -> int:
        """Cancel every exchange that has waited on its upstream past its timeout at ``now``."""
        expired = 0
        for key, watch in list(self._active.items()):
            if now - watch.last > watch.timeout:
                del self._active[key]
                watch.expired = True
                expired += 1
                if watch.task is not None:
                    watch.task.cancel()
                elif watch.expiry is not None:
                    try:
                        watch.expiry()
                    except Exception:  # one exchange's failure must not stop every timeout
                        log.exception("an exchange's timeout failed")
        return expired

    async def _run(self) -> None:
        loop = self._loop()
        try:
            while self._active:
                await asyncio.sleep(self.tick)
                self.expire(loop.time())
        finally:
            self._ticker = None

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
