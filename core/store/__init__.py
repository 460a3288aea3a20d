"""The store: the schema, its migrations and every SQL statement of the project."""

from core.store.database import Database, StoreUnavailable, Writer

__all__ = ["Database", "StoreUnavailable", "Writer"]
