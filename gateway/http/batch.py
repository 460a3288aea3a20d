"""Writes held to the end of the event loop's iteration, then sent together.

On loopback, and more so in a virtual machine, a write that makes a sleeping process's socket
readable pays for waking that process: the kernel runs the receiver's side of TCP in the
writer's system call and, when the reader (the client, the upstream) sleeps on another CPU,
sends it an inter-processor interrupt, which a virtual CPU pays for with an exit to the
hypervisor. Profiled with ``perf record -e cpu-clock -g`` on row 5 of ``make bench``: 23% of the
gateway's CPU time was in ``_raw_spin_unlock_irqrestore`` under ``sock_def_readable``, the
wake-up, inside ``write``. Written one by one, as each response or request head is ready, the
writes of one iteration are spread over its tens of microseconds of Python, and the reader has
gone back to sleep between two of them; written together at the end of the iteration, one
wake-up serves them all. Measured: docs/architecture.md, "Writes held to the end of the
iteration".

A ``Batched`` stands in for a transport: every write to it is held (in order) until its
``Flusher`` runs, once per iteration of the loop, or until ``LIMIT`` bytes are held; closing it
sends what it holds first. Everything else is the transport's own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("gateway.http")
LIMIT = 64 * 1024  # held for one transport before it is written at once


class Flusher:
    """The transports with writes held, written at the end of this loop iteration. One per
    owner of connections: the server's connections (``gateway.http.server``), each upstream pool."""

    __slots__ = ("loop", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: list[Batched] = []

    def hold(self, batched: Batched) -> None:
        if not self.waiting:
            # Runs after the callbacks of this iteration's events: what they wrote goes in one
            # burst.
            self.loop.call_soon(self.flush)
        self.waiting.append(batched)

    def flush(self) -> None:
        waiting, self.waiting = self.waiting, []
        for batched in waiting:
            try:
                batched.flush()
            except Exception:  # one connection's failure must not hold back the others' writes
                log.exception("a held write failed")
                batched.abort()


class Batched:
    """A transport whose writes wait for the end of the loop iteration."""

    __slots__ = (
        "flusher",
        "get_extra_info",
        "is_closing",
        "out",
        "pause_reading",
        "resume_reading",
        "size",
        "transport",
    )

    def __init__(self, transport: Any, flusher: Flusher) -> None:
        self.transport = transport
        self.flusher = flusher
        self.out: list[bytes] = []
        self.size = 0
        # The transport's own, bound once: no Python frame in between.
        self.is_closing = transport.is_closing
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading
        self.get_extra_info = transport.get_extra_info

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self.out:
            self.flusher.hold(self)
        self.out.append(data)
        self.size += len(data)
        if self.size >= LIMIT:
            self.flush()

    def writelines(self, parts: Any) -> None:
        for data in parts:
            self.write(data)

    def flush(self) -> None:
        """Write what is held (a transport closing drops it, as its own buffer would)."""
        out = self.out
        if not out:
            return
        self.out = []
        self.size = 0
        transport = self.transport
        if transport.is_closing():
            return
        try:
            if len(out) == 1:
                transport.write(out[0])
            else:
                transport.write(b"".join(out))
        except RuntimeError:
            pass  # closed for writing already (a lingering close): a late write is dropped

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self.out = []
        self.size = 0
        self.transport.abort()
