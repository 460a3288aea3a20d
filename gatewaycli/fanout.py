"""One LISTEN per node: with ``serve --workers N`` the parent's store connection listens for key
changes, and the parent passes each signal on to its workers, one byte on a socket pair each.

A worker's follower then reads the feed at once, as it would on a NOTIFY of its own, and its
store holds no listening connection (``core.store.make_store(listens=False)``): a node costs
PostgreSQL one listening connection, not one per process (docs/fleet.md). A reconnect of the
parent's listener is a signal too, so the workers also catch up on what it missed. When the
parent cannot tell them (its listener is down), each worker's poll every
``invalidation_interval_seconds`` still holds the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from core.store import Database


class Fanout:
    """The parent's side: one socket per worker, written without waiting. A byte already unread
    in a worker's socket is as good as ten, so a full buffer is left as it is."""

    def __init__(self, socks: list[socket.socket]) -> None:
        self.socks = socks
        for sock in socks:
            sock.setblocking(False)

    def tell(self) -> None:
        for sock in self.socks:
            with contextlib.suppress(BlockingIOError, OSError):
                sock.send(b"!")

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


async def follow_parent(sock: socket.socket, db: Database) -> None:
    """A worker's side: every byte from the parent is a key change to read the feed for; ends
    when the parent closes its end (the worker then stops on its own: ``outlive_no_parent``)."""
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        while await reader.read(4096):
            db.signal()
    except OSError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await writer.wait_closed()
