"""The SQLite store, the embedded default, one machine. The one owner of the file: connections,
pragmas, migrations, the write transaction.

- WAL mode with a busy timeout; ``synchronous=FULL`` so a write acknowledged to a caller survives a
  crash or power loss; foreign keys on.
- Two aiosqlite connections: a reader (cache misses, the invalidation follower, admin reads) and
  a writer behind an ``asyncio.Lock`` (one writer; ``BEGIN IMMEDIATE`` so a write never fails on
  a lock upgrade halfway through).
- The file is created with mode 0600 (SQLite gives its -wal and -shm files the same mode).
- After creation the file is only ever opened with ``mode=rw``: if it is removed or replaced
  while we run, every call checks the file's identity first and raises
  :class:`StoreUnavailable` (or reopens on the new file) instead of reading a deleted inode or
  creating an empty store.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosqlite

from core.store.database import (
    Database,
    Params,
    StoreConflict,
    StoreMissing,
    StoreUnavailable,
    Writer,
)
from core.store.migrations import SQLITE_MIGRATIONS as MIGRATIONS


class SQLiteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path, busy_timeout_ms: int = 5000) -> None:
        super().__init__()
        self.path = path
        self.description = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._reader: aiosqlite.Connection | None = None
        self._writer: aiosqlite.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._write_lock = asyncio.Lock()
        self._reopen_lock = asyncio.Lock()

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self, create: bool = True) -> SQLiteDatabase:
        """Open (creating and migrating the file if ``create``); raises StoreUnavailable."""
        if create:
            self.create_file()
        await self._connect()
        assert self._writer is not None
        try:
            await migrate(self._writer)
        except sqlite3.DatabaseError as exc:
            await self.close()
            raise StoreUnavailable(f"{self.path}: cannot be migrated ({exc})") from None
        return self

    def create_file(self) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return
        except PermissionError:
            raise StoreUnavailable(
                f"{self.path}: cannot create the store: permission denied on the directory "
                f"{folder}; run as a user who may write there, or set [store] path to a "
                "directory of the gateway's user"
            ) from None
        except OSError as exc:
            raise StoreUnavailable(
                f"{self.path}: cannot create the store: {exc.strerror}"
            ) from None
        os.close(fd)

    def _check_access(self) -> os.stat_result:
        """The file's identity, after checking that it is there and readable: one sentence for
        each problem, naming the path."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise StoreMissing(f"{self.path}: there is no store here") from None
        except PermissionError:
            raise StoreUnavailable(
                f"{self.path}: permission denied: a directory on the way to the store cannot be "
                "searched by the gateway's user"
            ) from None
        except OSError as exc:
            raise StoreUnavailable(f"{self.path}: {exc.strerror}") from None
        if not os.access(self.path, os.R_OK):
            raise StoreUnavailable(
                f"{self.path}: permission denied: the gateway's user (uid {os.getuid()}) cannot "
                f"read this file (owner uid {stat.st_uid}, mode {stat.st_mode & 0o777:04o}); "
                "run the gateway as its owner"
            )
        return stat

    def _why_not_opened(self, exc: sqlite3.Error) -> StoreUnavailable:
        """SQLite says only "unable to open database file": say which permission is missing."""
        if not os.access(self.path.parent, os.W_OK | os.X_OK):
            return StoreUnavailable(
                f"{self.path}: permission denied on the directory {self.path.parent}: SQLite "
                "creates the store's -wal and -shm files there, so the gateway's user must be "
                "able to write it"
            )
        return StoreUnavailable(f"{self.path}: cannot be opened ({exc})")

    async def _connect(self) -> None:
        stat = self._check_access()
        uri = f"file:{quote(str(self.path.resolve()))}?mode=rw"
        try:
            writer = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            try:
                await self._configure(writer)
                reader = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            except BaseException:
                await writer.close()
                raise
            try:
                await self._configure(reader)
                await reader.execute("PRAGMA query_only = ON")
            except BaseException:
                await reader.close()
                await writer.close()
                raise
        except sqlite3.Error as exc:
            raise self._why_not_opened(exc) from None
        self._reader, self._writer = reader, writer
        self._identity = (stat.st_dev, stat.st_ino)
        self.connections_opened += 1

    async def _configure(self, conn: aiosqlite.Connection) -> None:
        await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    # -- file identity ------------------------------------------------------------------------

    async def _ensure_file(self) -> None:
        """Raise StoreUnavailable if the file is gone; reconnect if it was replaced."""
        try:
            stat = os.stat(self.path)
        except OSError:
            raise StoreUnavailable(f"{self.path}: the store file is missing") from None
        if self._reader is not None and self._identity == (stat.st_dev, stat.st_ino):
            return
        async with self._reopen_lock:
            if self._reader is not None and self._identity == (stat.st_dev, stat.st_ino):
                return
            async with self._write_lock:
                await self.close()
                await self._connect()

    # -- reads and writes ---------------------------------------------------------------------

    async def _fetchall(self, sql: str, params: Params) -> list[tuple[Any, ...]]:
        await self._ensure_file()
        assert self._reader is not None
        try:
            rows = await self._reader.execute_fetchall(sql, params)
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
                raise
            raise StoreUnavailable(f"{self.path}: cannot be read ({exc})") from None
        return list(rows)  # type: ignore[arg-type]

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Writer]:
        await self._ensure_file()
        async with self._write_lock:
            conn = self._writer
            assert conn is not None
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise StoreUnavailable(f"{self.path}: cannot be written ({exc})") from None
            try:
                yield SQLiteWriter(conn)
            except BaseException as exc:
                await _rollback(conn)
                if isinstance(exc, sqlite3.OperationalError):  # I/O error, read-only, locked
                    raise StoreUnavailable(f"{self.path}: cannot be written ({exc})") from None
                if isinstance(exc, sqlite3.IntegrityError):
                    raise StoreConflict(str(exc)) from None
                raise
            try:
                await conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                await _rollback(conn)
                raise StoreUnavailable(f"{self.path}: cannot be written ({exc})") from None


async def _rollback(conn: aiosqlite.Connection) -> None:
    """Roll back if a transaction is still open: after an I/O error on COMMIT, SQLite has
    already rolled back on its own, and a second ROLLBACK would raise over the real error."""
    if conn.in_transaction:
        await conn.execute("ROLLBACK")


class SQLiteWriter(Writer):
    """The statements available inside a write transaction."""

    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows changed."""
        cursor = await self._conn.execute(sql, params)
        count = cursor.rowcount
        await cursor.close()
        return count

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return list(await self._conn.execute_fetchall(sql, params))  # type: ignore[arg-type]

    async def fetchone(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


async def migrate(conn: aiosqlite.Connection) -> None:
    """Apply the numbered migrations not yet applied (``PRAGMA user_version`` counts them)."""
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        raise sqlite3.DatabaseError(
            f"store schema version {version} is newer than this gateway knows ({len(MIGRATIONS)})"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";\n"):
                if statement.strip():
                    await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
