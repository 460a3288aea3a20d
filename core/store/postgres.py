"""The PostgreSQL store: any number of gateway nodes on one database.

- One asyncpg pool per process (``[store] pool_min_size`` .. ``pool_max_size``); asyncpg
  prepares each statement once per connection, so a cache miss is one round trip.
- Every connection runs with ``statement_timeout`` and ``idle_in_transaction_session_timeout``
  (``[store] statement_timeout_ms``): no transaction stays open longer, which bounds how late an
  event of the key feed can commit (the followers rely on it, ``gateway.verifier``).
- One more connection, outside the pool, ``LISTEN``s on ``gateway_key_events``: every insert into
  ``key_events`` notifies in its own transaction (a trigger), and the notification sets
  :attr:`Database.changed`, so followers read the feed at once instead of at their next poll.
  Notifications sent while that connection is down are lost (asyncpg #421): on every reconnect
  it LISTENs first, then wakes the follower, which catches up from the feed where it left off
  (the feed, not the notifications, is what is complete: ``core.store.keys.read_feed``).
- Migrations run under an advisory lock, so nodes starting together apply each one once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg

from core.config import redact
from core.store.database import (
    Database,
    Params,
    Row,
    StoreConflict,
    StoreMissing,
    StoreUnavailable,
    Writer,
)
from core.store.migrations import POSTGRES_MIGRATIONS

log = logging.getLogger("gateway.store")
# The pool retries its connections by itself and logs each failed try with a traceback, every
# second while the server is away; the store says once per outage what is wrong (the follower's
# and the request path's warnings), so only the pool's errors are shown.
logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)

CHANNEL = "gateway_key_events"
MIGRATION_LOCK = 0x6761746577617931  # "gateway1": the advisory lock taken while migrating
# The server is away, restarting or refusing: retry later.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.QueryCanceledError,
    asyncpg.InsufficientResourcesError,
    asyncpg.ReadOnlySQLTransactionError,
)


@lru_cache(maxsize=1024)
def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...``; ``?N`` as ``$N``."""
    counter = 0

    def number(match: re.Match[str]) -> str:
        nonlocal counter
        if match.group(1):
            return "$" + match.group(1)
        counter += 1
        return f"${counter}"

    return re.sub(r"\?(\d*)", number, sql)


def _settle(future: asyncio.Future[None], *_: object) -> None:
    if not future.done():
        future.set_result(None)


def _count(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresWriter(Writer):
    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        return _count(await self._conn.execute(numbered(sql), *params))

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._conn.executemany(numbered(sql), list(rows))

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return [tuple(r) for r in await self._conn.fetch(numbered(sql), *params)]


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(
        self, url: str, min_size: int = 2, max_size: int = 10, statement_timeout_ms: int = 5000
    ) -> None:
        super().__init__()
        self.url = url
        self.description = redact(url)
        self.min_size, self.max_size = min_size, max_size
        self.timeout_ms = statement_timeout_ms
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncio.Task[None] | None = None

    def _settings(self) -> dict[str, str]:
        return {
            "statement_timeout": str(self.timeout_ms),
            "idle_in_transaction_session_timeout": str(self.timeout_ms),
            "application_name": "gateway",
        }

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self, create: bool = True) -> PostgresDatabase:
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                server_settings=self._settings(),
                timeout=10,
            )
        except asyncpg.InvalidCatalogNameError:
            raise StoreMissing(
                f"{self.description}: the database does not exist",
                before_init="create the database (createdb)",
            ) from None
        except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
            raise StoreUnavailable(f"{self.description}: cannot connect ({exc})") from None
        try:
            await self._migrate(create)
        except BaseException:
            await self.close()
            raise
        self.connections_opened += 1
        self._listener = asyncio.create_task(self._listen(), name="store-listener")
        return self

    async def _migrate(self, create: bool) -> None:
        assert self._pool is not None
        try:
            async with self._pool.acquire() as conn:
                await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
                try:
                    await migrate(conn, create, self.description)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"{self.description}: cannot be migrated ({exc})") from None

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5)
            except (*UNAVAILABLE, asyncpg.PostgresError, asyncpg.InternalClientError):
                pool.terminate()  # a connection was mid-query or the server is gone

    async def _listen(self) -> None:
        """Keep one LISTENing connection; after every reconnect, LISTEN first, then tell the
        follower to catch up from the feed (what was notified meanwhile is lost)."""
        first = True
        while True:
            try:
                conn = await asyncpg.connect(self.url, server_settings=self._settings(), timeout=10)
            except (*UNAVAILABLE, asyncpg.PostgresError):
                await asyncio.sleep(0.5)
                continue
            lost = asyncio.get_running_loop().create_future()
            try:
                conn.add_termination_listener(functools.partial(_settle, lost))
                await conn.add_listener(CHANNEL, self._notified)
                if not first:
                    # Notifications sent while it was away are lost: read the feed now. The
                    # follower goes on from its cursor, so it catches up on every event.
                    self.changed.set()
                first = False
                while not lost.done() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(lost), 1.0)
                    if not lost.done():
                        try:  # a half-open TCP connection notices nothing without a probe
                            await conn.fetchval("SELECT 1", timeout=2)
                        except (*UNAVAILABLE, asyncpg.PostgresError):
                            break
            except (*UNAVAILABLE, asyncpg.PostgresError):
                pass
            finally:
                conn.terminate()  # closes the socket at once, whatever state it is in
            await asyncio.sleep(0.2)

    def _notified(self, *_: Any) -> None:
        self.changed.set()

    # -- reads and writes ---------------------------------------------------------------------

    def _ready(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable(f"{self.description}: the store is not open")
        return self._pool

    async def _fetchall(self, sql: str, params: Params) -> list[Row]:
        pool = self._ready()
        for attempt in (1, 2):
            try:
                rows = await pool.fetch(numbered(sql), *params)
                break
            except UNAVAILABLE as exc:
                # After the server restarted, the pool still holds connections to the old one:
                # have them all replaced, and read once more (a read is safe to repeat).
                await pool.expire_connections()
                if attempt == 2:
                    raise StoreUnavailable(f"{self.description}: cannot be read ({exc})") from None
        return [tuple(r) for r in rows]

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Writer]:
        try:
            async with self._ready().acquire() as conn, conn.transaction():
                yield PostgresWriter(conn)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise StoreConflict(str(exc)) from None
        except UNAVAILABLE as exc:
            if self._pool is not None:
                await self._pool.expire_connections()  # replace what the server dropped
            raise StoreUnavailable(f"{self.description}: cannot be written ({exc})") from None


async def migrate(conn: asyncpg.Connection, create: bool, where: str) -> None:
    """Apply the numbered migrations not yet applied, each in its own transaction."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        if create
        else "SELECT 1"
    )
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        raise StoreMissing(f"{where}: there is no store in this database yet")
    version = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))
    if version == 0 and not create:
        raise StoreMissing(f"{where}: there is no store in this database yet")
    if version > len(POSTGRES_MIGRATIONS):
        raise StoreUnavailable(
            f"{where}: store schema version {version} is newer than this gateway knows "
            f"({len(POSTGRES_MIGRATIONS)})"
        )
    for number, script in enumerate(POSTGRES_MIGRATIONS[version:], start=version + 1):
        async with conn.transaction():
            await conn.execute(script)
            await conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) "
                "VALUES ($1, extract(epoch FROM now()))",
                number,
            )
