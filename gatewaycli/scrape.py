"""/metrics with several workers: the process that serves the admin listener asks every worker
for its counts when it is scraped, and adds them up.

Each worker keeps its counts in plain ints on its own event loop (``gateway.metrics``), so the
request path pays no lock and no shared memory. At a scrape, the parent writes one byte on each
worker's socket pair; the worker answers from its loop with its snapshot; the parent merges
them with its own. Counts are exact at the moment of the scrape, not a second behind (as files
written periodically would be). A worker that does not answer within ``Scraper.timeout`` is
left out from then on (its socket closed, so a late answer cannot be taken for the next one);
``gateway_processes_reporting`` then says how many were added up.

The wire format is ``marshal``: the snapshot is plain dicts, lists, tuples and numbers, and both
ends are this program on a socket pair no one else holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import socket
from collections.abc import Callable

from gateway.metrics import Snapshot, merge

log = logging.getLogger("gateway")


async def answer(sock: socket.socket, snapshot: Callable[[], Snapshot]) -> None:
    """A worker's side: answer every request byte with a snapshot, until the parent closes."""
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        while await reader.read(1):
            payload = marshal.dumps(snapshot())
            writer.write(len(payload).to_bytes(4, "big") + payload)
            await writer.drain()
    except OSError:
        pass  # the parent is gone: the worker stops on its own (outlive_no_parent)
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await writer.wait_closed()


class Scraper:
    """The parent's side: its own snapshot plus every worker's that answers."""

    def __init__(self, own: Callable[[], Snapshot], socks: list[socket.socket]) -> None:
        self.own = own
        self.socks: list[socket.socket | None] = list(socks)
        self.streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = [
            None for _ in socks
        ]
        self.lock = asyncio.Lock()  # one scrape at a time: answers come back in order
        # Seconds a worker gets to answer: its loop answers between two requests, so anything
        # near this is a stalled worker (Prometheus's own scrape timeout is 10 s by default).
        self.timeout = 2.0

    async def collect(self) -> Snapshot:
        async with self.lock:
            answers = await asyncio.gather(*(self._ask(n) for n in range(len(self.socks))))
        return merge([self.own(), *(a for a in answers if a is not None)])

    async def _ask(self, n: int) -> Snapshot | None:
        sock = self.socks[n]
        if sock is None:
            return None
        try:
            async with asyncio.timeout(self.timeout):
                streams = self.streams[n]
                if streams is None:
                    streams = self.streams[n] = await asyncio.open_connection(sock=sock)
                reader, writer = streams
                writer.write(b"?")
                await writer.drain()
                size = int.from_bytes(await reader.readexactly(4), "big")
                found: Snapshot = marshal.loads(await reader.readexactly(size))  # noqa: S302
                return found
        except (TimeoutError, OSError, asyncio.IncompleteReadError, EOFError, ValueError) as exc:
            log.warning(
                "metrics: worker %d did not answer (%s); left out of scrapes from now", n, exc
            )
            await self.close(n)
            return None

    async def close(self, n: int | None = None) -> None:
        """Close one worker's socket, or (no ``n``) all of them: on the loop that used them."""
        for i in range(len(self.socks)) if n is None else (n,):
            streams, sock = self.streams[i], self.socks[i]
            self.streams[i], self.socks[i] = None, None
            if streams is not None:
                streams[1].close()
                with contextlib.suppress(OSError):
                    await streams[1].wait_closed()
            elif sock is not None:
                sock.close()
