"""Row 5w: the gateway with a webhook receiver that never answers.

A listening socket nobody accepts on: the kernel completes each connection and takes what is
sent, and nothing ever answers, so every delivery attempt waits out its timeout. The store is
given a webhook to it and ``events`` pending events, each of another key (events of one key go
one at a time), so the gateway of that row has ``concurrency`` attempts hanging all through the
run while it serves row 5's requests.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from admin import webhooks
from admin.access import LOCAL_OPERATOR, organization_of
from core.store import webhooks as store_webhooks
from core.store.sqlite import SQLiteDatabase


def silent_receiver() -> tuple[socket.socket, str]:
    """The socket (keep it open for the run) and its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def add_pending_events(store: Path, url: str, events: int) -> None:
    async def run() -> None:
        db = await SQLiteDatabase(store).open()
        try:
            await webhooks.create(db, LOCAL_OPERATOR, url, ["key.rate_limited"])
            org = await organization_of(db, LOCAL_OPERATOR)
            now = time.time()
            async with db.transaction() as w:
                for n in range(events):
                    data = {"access_key": f"GWKBENCH{n:012d}", "bench": True}
                    await store_webhooks.event(
                        w, org, "key.rate_limited", data["access_key"], data, now
                    )
        finally:
            await db.close()

    asyncio.run(run())
