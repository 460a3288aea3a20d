"""The PostgreSQL store: any number of gateway nodes on one database (docs/fleet.md).

- One asyncpg pool per process (``[store] pool_min_size`` .. ``pool_max_size``); asyncpg
  prepares each statement once per connection, so a cache miss is one round trip.
- Every connection runs with ``statement_timeout`` and ``idle_in_transaction_session_timeout``
  (``[store] statement_timeout_ms``): no transaction stays open longer, which bounds how late an
  event of the key feed can commit (the followers rely on it, ``gateway.verifier``).
- One connection per node, outside the pool, ``LISTEN``s for key changes
  (``core.store.listener``); a process opened with ``listens=False`` (a worker of `serve
  --workers N`) is told of them by its parent instead.
- Behind a pooler in transaction mode (``[store] transaction_pooler``, PgBouncer): no statement
  is kept prepared (asyncpg's cache off; its unnamed statement is parsed and executed in one
  exchange, a Flush and not a Sync between them, so the pooler keeps both on one server
  connection), the timeouts are set per write transaction (``SET LOCAL``: a pooler refuses them
  as startup parameters, and a session ``SET`` would leak to other clients), and the LISTEN
  and the migrations (a session's advisory lock) go straight to the server at ``listen_url``.
- Every statement is bounded on this side too (asyncpg's ``command_timeout``, the same
  ``statement_timeout_ms``): a server that hangs answers nothing, its own timeout included.
- Migrations run under an advisory lock, so nodes starting together apply each one once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg

from core.config import redact
from core.store import listener
from core.store.database import (
    Database,
    Params,
    Row,
    StoreConflict,
    StoreMissing,
    StoreUnavailable,
    Writer,
)
from core.store.hosts import Hosts
from core.store.migrations import POSTGRES_MIGRATIONS

log = logging.getLogger("gateway.store")
# The pool retries its connections by itself and logs each failed try with a traceback, every
# second while the server is away; the store says once per outage what is wrong (the follower's
# and the request path's warnings), so only the pool's errors are shown.
logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)

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
    # A multi-host URL during a failover: no host is the read-write primary yet.
    asyncpg.TargetServerAttributeNotMatched,
)


def _why(exc: BaseException) -> str:
    """An error's words for a log line: a timeout has none of its own."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no answer in time"
    return str(exc) or type(exc).__name__


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


@contextlib.contextmanager
def _connect_errors(where: str) -> Iterator[None]:
    """A failed connect as the store's errors: no such database, or no server to reach."""
    try:
        yield
    except asyncpg.InvalidCatalogNameError:
        raise StoreMissing(
            f"{where}: the database does not exist",
            before_init="create the database (createdb)",
        ) from None
    except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
        raise StoreUnavailable(f"{where}: cannot connect ({_why(exc)})") from None


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection going back to the pool must undo: only a transaction a cancelled caller
    left open. The pool's connections never hold session state (no SET, LISTEN, advisory lock
    or cursor: the listener and the migrations have connections of their own), so asyncpg's
    own reset, four statements after every query (``UNLISTEN *``, ``CLOSE ALL``,
    ``pg_advisory_unlock_all()``, ``RESET ALL``), was a round trip for nothing, and most of what
    an idle node asked the database (docs/fleet.md). Behind a pooler it would also land on
    whichever server connection the pooler chose."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


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
        self,
        url: str,
        min_size: int = 1,
        max_size: int = 4,
        statement_timeout_ms: int = 5000,
        *,
        idle_seconds: float = 30.0,
        listen_url: str | None = None,
        transaction_pooler: bool = False,
        listens: bool = True,
    ) -> None:
        super().__init__()
        self.url = url
        self.listen_url = listen_url or url
        # A multi-host URL is tried one host at a time (``core.store.hosts``).
        self._hosts = Hosts.of(url)
        self._listen_hosts = Hosts.of(self.listen_url)
        self.description = redact(url)
        self.min_size, self.max_size = min_size, max_size
        self.timeout_ms = statement_timeout_ms
        self.idle_seconds = idle_seconds
        self.pooled = transaction_pooler
        self.listens = listens
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncio.Task[None] | None = None

    def _settings(self, role: str = "gateway") -> dict[str, str]:
        """The session's settings, sent at connect; ``role`` names the connection in
        ``pg_stat_activity`` (``gateway``, the pool; ``gateway-listen``, the listener)."""
        return {
            "statement_timeout": str(self.timeout_ms),
            "idle_in_transaction_session_timeout": str(self.timeout_ms),
            "application_name": role,
        }

    @staticmethod
    def _pooled_settings() -> dict[str, str]:
        """Behind a pooler: the startup parameters it accepts. client_encoding as the server
        spells it: asyncpg's own ``'utf-8'`` differs from the server's ``UTF8`` as a string,
        so PgBouncer sent a ``SET client_encoding`` before every transaction (counted by
        ``bench/fleet.py --pgbouncer``)."""
        return {"application_name": "gateway", "client_encoding": "UTF8"}

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self, create: bool = True) -> PostgresDatabase:
        await self._migrate(create)
        pooled: dict[str, Any] = {}
        if self.pooled:
            pooled = {"statement_cache_size": 0}  # no statement outlives its exchange
        with _connect_errors(self.description):
            self._pool = await asyncpg.create_pool(
                self.url,
                connect=self._hosts.connect,
                min_size=self.min_size,
                max_size=self.max_size,
                server_settings=self._pooled_settings() if self.pooled else self._settings(),
                timeout=10,
                max_inactive_connection_lifetime=self.idle_seconds,
                # Every statement bounded here too, not only by the server's statement_timeout
                # (which a pooler refuses, and which a server that hangs never applies), and
                # with it asyncpg's cancel request, which a hung server never answers either.
                command_timeout=self.timeout_ms / 1000,
                reset=_reset,
                **pooled,
            )
        self.connections_opened += 1
        if self.listens:
            self._listener = asyncio.create_task(
                listener.listen(
                    self._listen_hosts.connect,
                    self._settings("gateway-listen"),
                    self.signal,
                    UNAVAILABLE,
                ),
                name="store-listener",
            )
        return self

    async def _migrate(self, create: bool) -> None:
        """On a connection of its own, straight to the server (``listen_url``): the advisory
        lock belongs to a session, which a pooler in transaction mode does not keep."""
        with _connect_errors(self.description):
            conn = await self._listen_hosts.connect(
                server_settings=self._settings("gateway-migrate")
            )
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await migrate(conn, create, self.description)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(
                f"{self.description}: cannot be migrated ({_why(exc)})"
            ) from None
        finally:
            conn.terminate()

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

    # -- reads and writes ---------------------------------------------------------------------

    def _ready(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable(f"{self.description}: the store is not open")
        return self._pool

    async def _fetchall(self, sql: str, params: Params) -> list[Row]:
        pool = self._ready()
        for attempt in (1, 2):
            try:
                async with pool.acquire() as conn:
                    try:
                        rows = await conn.fetch(numbered(sql), *params)
                    except TimeoutError:
                        # No answer within the statement timeout: closed now, so the pool does
                        # not wait on it (for the cancel request) before giving up on it.
                        conn.terminate()
                        raise
                break
            except UNAVAILABLE as exc:
                # After the server restarted, the pool still holds connections to the old one:
                # have them all replaced, and read once more (a read is safe to repeat), unless
                # the server did not answer at all: then once is as long as a read may wait.
                await pool.expire_connections()
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise StoreUnavailable(
                        f"{self.description}: cannot be read ({_why(exc)})"
                    ) from None
        return [tuple(r) for r in rows]

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Writer]:
        try:
            async with self._ready().acquire() as conn, conn.transaction():
                if self.pooled:  # the session's settings, for this transaction only
                    ms = self.timeout_ms
                    await conn.execute(
                        f"SET LOCAL statement_timeout = {ms}; "
                        f"SET LOCAL idle_in_transaction_session_timeout = {ms}"
                    )
                yield PostgresWriter(conn)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise StoreConflict(str(exc)) from None
        except UNAVAILABLE as exc:
            if self._pool is not None:
                await self._pool.expire_connections()  # replace what the server dropped
            raise StoreUnavailable(f"{self.description}: cannot be written ({_why(exc)})") from None


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
