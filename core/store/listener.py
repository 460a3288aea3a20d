"""The one connection that ``LISTEN``s for key changes (``core.store.postgres``).

Every insert into ``key_events`` notifies ``gateway_key_events`` in its own transaction (a
trigger). One process per node holds this connection: `gateway serve` alone, or the parent of
``--workers N``, which passes each wake-up on to its workers (``gatewaycli.fanout``), so a node
costs PostgreSQL one listening connection whatever its worker count.

It connects to ``[store] listen_url`` when set, else to ``url``: a pooler in transaction mode
(PgBouncer) cannot carry a ``LISTEN``, which belongs to a session. Notifications sent while it
is down are lost (asyncpg #421): on every reconnect it LISTENs first, then signals a change, so
the followers read the feed where they left off (the feed, not the notifications, is what is
complete: ``core.store.keys.read_feed``). With a multi-host URL it follows the primary, as the
pool does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

CHANNEL = "gateway_key_events"
# Seconds between two probes of a quiet connection: a half-open TCP connection (a server that
# vanished without a reset) notices nothing until something is sent on it.
PROBE_SECONDS = 1.0
RETRY_SECONDS = 0.5


def _settle(future: asyncio.Future[None], *_: object) -> None:
    if not future.done():
        future.set_result(None)


async def listen(
    connect: Callable[..., Awaitable[asyncpg.Connection]],
    settings: dict[str, str],
    changed: Callable[[], None],
    errors: tuple[type[BaseException], ...],
) -> None:
    """Keep one LISTENing connection until cancelled (``connect``: to the server at
    ``listen_url``, ``core.store.hosts``); ``changed()`` at every notification and after every
    reconnect (not the first connect: the follower reads the feed at start)."""
    first = True
    while True:
        try:
            conn = await connect(server_settings=settings)
        except (*errors, asyncpg.PostgresError):
            await asyncio.sleep(RETRY_SECONDS)
            continue
        lost = asyncio.get_running_loop().create_future()

        def notified(*_: Any) -> None:
            changed()

        try:
            conn.add_termination_listener(functools.partial(_settle, lost))
            await conn.add_listener(CHANNEL, notified)
            if not first:
                changed()  # what was notified while it was away is lost: read the feed now
            first = False
            while not lost.done() and not conn.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(lost), PROBE_SECONDS)
                if not lost.done():
                    try:
                        await conn.fetchval("SELECT 1", timeout=2)
                    except (*errors, asyncpg.PostgresError):
                        break
        except (*errors, asyncpg.PostgresError):
            pass
        finally:
            conn.terminate()  # closes the socket at once, whatever state it is in
        await asyncio.sleep(0.2)
