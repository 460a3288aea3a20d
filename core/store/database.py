"""One store interface, two implementations: SQLite (``core.store.sqlite``, the embedded default,
one machine) and PostgreSQL (``core.store.postgres``, any number of gateway nodes).

Everything above the store (verifier, admin service, CLI, API, console) talks to a
:class:`Database`: reads with :meth:`Database.fetchall` / :meth:`Database.fetchone`, writes inside
:meth:`Database.transaction`. The SQL of ``core.store.keys``, ``.audit`` and ``.directory`` is
written once, in the subset both engines speak, with ``?`` placeholders (``?1``, ``?2`` where a
value is used twice); the PostgreSQL implementation numbers them. Where the engines differ, the
statement asks :attr:`Database.dialect`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

Params = Sequence[Any]
Row = tuple[Any, ...]


class StoreUnavailable(Exception):
    """The store cannot be read or written now (file gone, locked, corrupt, server away)."""


class StoreMissing(StoreUnavailable):
    """There is no store there yet: `gateway init` creates one, after ``before_init`` (what the
    operator must do first, such as creating a PostgreSQL database), said once by the CLI."""

    def __init__(self, message: str, before_init: str = "") -> None:
        super().__init__(message)
        self.before_init = before_init


class StoreConflict(Exception):
    """A write broke a uniqueness or reference rule: another change got there first (two
    projects given one name at the same moment). Nothing was written."""


# Rows of a batch write sent to SQLite as one JSON parameter per statement (`json_batches`).
JSON_BATCH_ROWS = 1000


def json_batches(rows: Sequence[Params]) -> Iterator[str]:
    """A batch of rows as JSON arrays of ``JSON_BATCH_ROWS`` rows, each for one SQLite statement
    over ``json_each``. Why not ``executemany``: it steps the statement once per row, and the
    store's thread releases the GIL around each step and must take it back from the event loop
    after, which a busy loop hands over only every switch interval (5 ms): 10,000 last-used
    times and usage counts every housekeeping round kept the loop handing the GIL over
    continuously (bench row 6, 10,000 keys: 71 against 52 us of CPU a request without the
    flushes). One statement per thousand rows is a handful of hand-overs, and the encoding of
    a thousand rows (under 1 ms) is the longest the loop waits for it."""
    for start in range(0, len(rows), JSON_BATCH_ROWS):
        yield json.dumps(rows[start : start + JSON_BATCH_ROWS])


class Writer:
    """The statements available inside a write transaction."""

    dialect = ""  # the Database's: "sqlite" or "postgresql"

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows changed."""
        raise NotImplementedError

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        raise NotImplementedError

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        raise NotImplementedError

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


class Database:
    dialect = ""  # "sqlite" or "postgresql"

    def __init__(self) -> None:
        self.description = ""  # where the store is, for messages: a path, or a URL sans password
        # Bumped when the store may be another one than before (a SQLite file replaced): a
        # follower then drops what it cached and starts afresh.
        self.connections_opened = 0
        # Set when the store says a key changed (PostgreSQL's NOTIFY); SQLite has no such signal.
        self.changed = asyncio.Event()
        # Told of every such signal too: the parent of `serve --workers N` passes it on to its
        # workers, so a node LISTENs once (``gatewaycli.fanout``).
        self.on_signal: list[Callable[[], None]] = []
        # Counted for the metrics: reads, write transactions, and those the store failed.
        self.reads = self.writes = self.errors = 0

    async def open(self, create: bool = True) -> Database:
        """Connect (creating the store if ``create``) and apply the migrations not yet applied;
        raises StoreMissing when there is no store and ``create`` is false, StoreUnavailable."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        self.reads += 1
        try:
            return await self._fetchall(sql, params)
        except StoreUnavailable:
            self.errors += 1
            raise

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Writer]:
        """One write transaction: committed on success, rolled back on any exception. Raises
        StoreUnavailable when the store cannot be written, StoreConflict on a broken rule."""
        self.writes += 1
        try:
            async with self._transaction() as writer:
                yield writer
        except StoreUnavailable:
            self.errors += 1
            raise

    # What each engine implements.

    async def _fetchall(self, sql: str, params: Params) -> list[Row]:
        raise NotImplementedError

    def _transaction(self) -> AbstractAsyncContextManager[Writer]:
        raise NotImplementedError

    def signal(self) -> None:
        """A key may have changed: wake the follower (and whoever else listens) now."""
        self.changed.set()
        for told in self.on_signal:
            told()

    async def wait_for_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the store to say a key changed; True if it did."""
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except TimeoutError:
            return False
        self.changed.clear()
        return True
