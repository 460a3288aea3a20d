"""The store: the schema, its migrations and every SQL statement of the project."""

from core.store.database import Database, StoreConflict, StoreMissing, StoreUnavailable, Writer

__all__ = ["Database", "StoreConflict", "StoreMissing", "StoreUnavailable", "Writer"]
