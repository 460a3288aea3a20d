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


def make_store(config: StoreConfig) -> Database:
    """The store the config names (not yet opened): PostgreSQL for ``url``, else SQLite."""
    if config.url is not None:
        from core.store.postgres import PostgresDatabase  # asyncpg only where it is used

        return PostgresDatabase(
            config.url, config.pool_min_size, config.pool_max_size, config.statement_timeout_ms
        )
    from core.store.sqlite import SQLiteDatabase

    assert config.path is not None
    return SQLiteDatabase(config.path, config.busy_timeout_ms)
