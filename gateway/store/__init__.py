"""The store: the schema, its migrations and every SQL statement of the project."""

from gateway.store.database import Database, StoreUnavailable, Writer

__all__ = ["Database", "StoreUnavailable", "Writer"]
