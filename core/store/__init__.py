"""The store: one interface (``Database``), two engines (SQLite, PostgreSQL), the schema's
numbered migrations in each dialect, and every SQL statement of the project."""

from __future__ import annotations

from core.config import StoreConfig
from core.store.database import (
    Database,
    StoreConflict,
    StoreMissing,
    StoreUnavailable,
    Writer,
)

__all__ = [
    "Database",
    "StoreConflict",
    "StoreMissing",
    "StoreUnavailable",
    "Writer",
    "make_store",
]


def make_store(config: StoreConfig, listens: bool = True) -> Database:
    """The store the config names (not yet opened): PostgreSQL for ``url``, else SQLite.
    ``listens=False``: this process is told of key changes by another (a worker, by its
    parent), so it holds no LISTEN connection of its own."""
    if config.url is not None:
        from core.store.postgres import PostgresDatabase  # asyncpg only where it is used

        return PostgresDatabase(
            config.url,
            config.pool_min_size,
            config.pool_max_size,
            config.statement_timeout_ms,
            idle_seconds=config.pool_idle_seconds,
            listen_url=config.listen_url,
            transaction_pooler=config.transaction_pooler,
            listens=listens,
        )
    from core.store.sqlite import SQLiteDatabase

    assert config.path is not None
    return SQLiteDatabase(config.path, config.busy_timeout_ms)
