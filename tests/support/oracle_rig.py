"""The gateway built in-process between the two h11 sides of the oracle, the requests a test
draws (`Ask`) and the process at rest: open fds, the gateway loop's tasks and the in-flight
gauge back to where they were before each example (the rules: ``oracle_rules``)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h11

from tests.support import Gateway, LoopThread, Running, build_gateway, free_socket
from tests.support.oracle import OracleUpstream, Plan, compact, filler
from tests.support.oracle_client import serialise

# Bodies that turn out malformed after the head was forwarded (``{}``: the body's bytes), and a
# framing no server can read (RFC 9112 §6.3): the client must get exactly one answer.
MALFORMED = {
    "0x-size": b"0x3\r\n{}\r\n0\r\n\r\n",
    "bare-lf": b"3\n{}\n0\n\n",
    "size-overflow": b"fffffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
    "length-trailer": b"3\r\n{}\r\n0\r\ncontent-length: 5\r\n\r\n",
    "gzip": b"{}",
}
PREFIXES = {"open": "/o", "keyed": "/k", "nokey": "/k", "unknown": "/nowhere"}
REFUSED = {"nokey": 401, "unknown": 404}
UPSTREAM_FAILED = (502, 504)
IDEMPOTENT = ("GET", "HEAD", "PUT", "DELETE")


@dataclass(frozen=True, repr=False)
class Ask:
    """One client request: its route, its body and framing, and the upstream's plan for it."""

    method: str = "GET"
    route: str = "open"  # "open" (auth none), "keyed", "nokey" (401) or "unknown" (404)
    size: int | None = None  # body bytes; None: no body
    chunks: tuple[int, ...] | None = None  # chunked, in chunks of these sizes (the rest last)
    trailers: bool = False  # a chunked body ends with trailer fields
    expect: bool = False  # Expect: 100-continue
    close: bool = False  # Connection: close
    plan: Plan = field(default_factory=Plan)
    malformed: str | None = None  # a key of MALFORMED: the chunked body (or framing) is broken

    __repr__ = compact

    @property
    def admitted(self) -> bool:
        return self.route in ("open", "keyed")

    @property
    def length(self) -> int:
        return self.size or 0


class Rig:
    """The gateway built in-process over the h11 upstream (routes /o with auth "none", /k with
    a key), with what the process holds at rest measured before each example."""

    def __init__(self, gateway: Gateway, upstream: OracleUpstream, loop: LoopThread) -> None:
        self.gateway = gateway
        self.upstream = upstream
        self.loop = loop
        host, port = gateway.url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.markers = itertools.count(1)
        self.tracebacks: list[str] = []
        self.baseline = (0, 0)  # open fds of the process, tasks on the gateway's loop
        self.gauge = 0  # the in-flight gauge at rest
        self.resting: list[str] = []
        self.first_rss = resident()  # the process's memory before the first example

    def rebase(self) -> None:
        """What the process holds at rest, measured before an example: what an example before
        it leaked is not blamed again on this one."""
        self.baseline, self.gauge = self.measure(), self.in_flight()
        self.resting = self.tasks()

    def marker(self) -> str:
        return f"mk{next(self.markers):05d}z"

    def events(self, ask: Ask, marker: str) -> list[h11.Event]:
        headers = [("host", "127.0.0.1"), ("x-marker", marker)]
        if ask.route == "keyed":
            headers.append(("x-auth-token", self.gateway.secret_key))
        body = filler(marker, ask.length)
        parts: list[bytes] = []
        if ask.size is not None:
            if ask.chunks is not None:
                headers.append(("transfer-encoding", "chunked"))
                start = 0
                for size in (*ask.chunks, len(body)):
                    parts.append(body[start : start + size])
                    start += len(parts[-1])
            else:
                headers.append(("content-length", str(ask.size)))
                parts.append(body)
        if ask.expect and ask.size is not None:
            headers.append(("expect", "100-continue"))
        if ask.close:
            headers.append(("connection", "close"))
        trailers = [("x-trailer", marker)] if ask.trailers and ask.chunks is not None else []
        target = f"{PREFIXES[ask.route]}/{marker}?m={marker}"
        events: list[h11.Event] = [h11.Request(method=ask.method, target=target, headers=headers)]
        events += [h11.Data(data=part) for part in parts if part]
        events.append(h11.EndOfMessage(headers=trailers))
        return events

    def wire(self, ask: Ask, marker: str, events: list[h11.Event]) -> bytes:
        """The request's bytes: h11's framing of ``events``, or the head and a broken body."""
        if ask.malformed is None:
            return serialise(events)
        head = h11.Connection(h11.CLIENT).send(events[0]) or b""
        if ask.malformed == "gzip":
            head = head.replace(b"transfer-encoding: chunked", b"transfer-encoding: gzip")
        return head + MALFORMED[ask.malformed].replace(b"{}", filler(marker, 3))

    # -- the process at rest

    def measure(self) -> tuple[int, int]:
        return len(os.listdir("/proc/self/fd")), len(self.tasks())

    def leaked_tasks(self) -> list[str]:
        """Tasks of the gateway's loop that were not there at rest; the store's wait for its
        next invalidation poll comes and goes on its own."""
        extra = collections.Counter(self.tasks()) - collections.Counter(self.resting)
        extra -= collections.Counter({"Event.wait": 1})
        return sorted(extra.elements())

    def tasks(self) -> list[str]:
        """The gateway loop's tasks, each named by the coroutine it runs."""

        async def names() -> list[str]:
            return sorted(task.get_coro().__qualname__ for task in asyncio.all_tasks())  # type: ignore[union-attr]

        return self.gateway.loop.run(names())

    def in_flight(self) -> int:
        metrics = self.gateway.resources.metrics
        return 0 if metrics is None else metrics.in_flight

    def forget(self) -> bool:
        """Close the gateway's kept-alive upstream connections."""

        async def close() -> None:
            for pool in self.gateway.resources.upstream.pools.values():
                pool.close()

        self.gateway.loop.run(close())
        return True

    def at_rest(self) -> bool:
        return len(os.listdir("/proc/self/fd")) <= self.baseline[0] and not self.leaked_tasks()

    def settle(self) -> list[str]:
        """Wait (bounded) for the exchanges to end, drop the kept-alive upstream connections,
        and say what did not return to its baseline."""
        problems = []
        if not poll(lambda: self.upstream.busy == 0 and self.in_flight() <= self.gauge):
            problems.append(
                f"still busy after {SETTLE} s: {self.upstream.busy} upstream exchanges, "
                f"in-flight gauge {self.in_flight()}"
            )

        # Kept-alive connections are dropped again on each look: one an exchange put back
        # after the first drop is pooled, not leaked.
        if not poll(lambda: self.forget() and not self.upstream.open and self.at_rest()):
            problems.append(
                f"not back to baseline: fds {self.measure()[0]} (at rest {self.baseline[0]}), "
                f"upstream connections still open {sorted(self.upstream.open)}, tasks left "
                f"{self.leaked_tasks()}"
            )
        if self.in_flight() > self.gauge:
            problems.append(f"in-flight gauge {self.in_flight()}, {self.gauge} before")
        # Memory does not go back to the byte (the allocator keeps what it freed), but what an
        # example holds on to adds up: bounded over the whole run.
        if (grown := resident() - self.first_rss) > RSS_GROWTH:
            problems.append(f"the process's memory grew {grown >> 20} MiB since the first example")
        problems += self.tracebacks
        self.tracebacks.clear()
        return problems


SETTLE = 5.0
RSS_GROWTH = 64 << 20  # bytes of resident memory the examples of a run may add, all told


def resident() -> int:
    """The process's resident memory (bytes), from /proc."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def poll(predicate: Callable[[], bool], timeout: float = SETTLE) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class _Tracebacks(logging.Handler):
    """A traceback in the gateway's log is a bug, whatever the client did."""

    def __init__(self, rig: Rig) -> None:
        super().__init__(logging.ERROR)
        self.rig = rig

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None:
            self.rig.tracebacks.append(f"logged a traceback: {record.getMessage()}")


@contextlib.contextmanager
def oracle_rig(directory: Path) -> Iterator[Rig]:
    upstream = OracleUpstream()
    loop = LoopThread()
    sock = free_socket()
    server = loop.run(asyncio.start_server(upstream.serve, sock=sock))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    extra = f"""
[[routes]]
prefix = "/o"
upstream = "{url}"
auth = "none"
timeout_seconds = 2

[[routes]]
prefix = "/k"
upstream = "{url}"
auth = "required"
timeout_seconds = 2
"""
    gateway, running = build_gateway(directory, url, extra)
    rig = Rig(gateway, upstream, loop)
    handler = _Tracebacks(rig)
    loggers = [logging.getLogger(name) for name in ("gateway", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield rig
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        stop(running, server, loop)


def stop(running: Running, server: asyncio.Server, loop: LoopThread) -> None:
    running.stop()

    async def finish() -> None:
        server.close()
        serving = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in serving:
            task.cancel()
        await asyncio.gather(*serving, return_exceptions=True)

    loop.run(finish())
    loop.close()
