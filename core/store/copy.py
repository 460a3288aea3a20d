"""Whole-store operations: copy a store into an empty one (SQLite to PostgreSQL and back), and a
consistent online backup of a SQLite store.

The copy takes every table but the change feed (a new store starts its own; nothing follows the
old one's), in an order that keeps references whole, in one transaction on the target: a copy
that fails half-way leaves the target as it was. Audit events keep their ids and times.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from core.store.database import Database

# (table, columns), parents before children.
TABLES = (
    ("organizations", "id, name, default_project_id, created_at"),
    ("projects", "id, organization_id, name, created_at, updated_at"),
    (
        "plans",
        "id, organization_id, name, rate_limits, credits, metadata, created_at, updated_at",
    ),
    (
        "users",
        "id, organization_id, email, permission_sets, is_owner, created_at, updated_at, "
        "plan_id, rate_limits, credits",
    ),
    (
        "applications",
        "id, organization_id, name, permission_sets, created_at, updated_at, plan_id, "
        "rate_limits, credits",
    ),
    (
        "api_keys",
        "access_key, organization_id, user_id, application_id, default_project_id, description, "
        "mode, created_at, updated_at, expires_at, last_used_at, creation_ip, rate_limits, "
        "allowed_ips, permissions, disabled, metadata, plan_id, credits, imported, enabled_at",
    ),
    ("key_secrets", "secret_hash, access_key, secret_prefix, created_at, expires_at"),
    ("revoked_keys", "access_key, organization_id, user_id, application_id, revoked_at"),
    ("key_usage", "access_key, hour, allowed, denied, limited, credits"),
    # Balances as they stand; reservations are a running gateway's and are not copied.
    ("credit_balances", "owner, period, remaining, epoch, updated_at, debt"),
    # Webhooks, with their signing secrets; their outbox is not copied (what was not yet
    # delivered is delivered by the old store's gateways, or not at all).
    (
        "webhooks",
        "id, organization_id, url, events, description, secret, created_at, updated_at",
    ),
    (
        "audit_events",
        "id, created_at, organization_id, actor_type, actor_id, actor_access_key, action, "
        "target_type, target_id, source_ip, outcome, detail",
    ),
)
BATCH = 1000


class TargetNotEmpty(Exception):
    """The target already holds a store: a copy never merges into one."""


async def copy_store(source: Database, target: Database) -> dict[str, int]:
    """Copy every table of ``source`` into ``target`` (open, migrated, empty); returns how many
    rows each table had. Raises TargetNotEmpty."""
    for table, _ in TABLES:
        row = await target.fetchone(f"SELECT count(*) FROM {table}")
        if row and int(row[0]):
            raise TargetNotEmpty(
                f"{target.description} already holds a store ({int(row[0])} rows in {table}); "
                "copy only into an empty one"
            )
    counts: dict[str, int] = {}
    async with target.transaction() as w:
        for table, columns in TABLES:
            rows = await source.fetchall(f"SELECT {columns} FROM {table}")
            marks = ", ".join("?" * len(columns.split(",")))
            insert = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
            for start in range(0, len(rows), BATCH):
                await w.executemany(insert, rows[start : start + BATCH])
            counts[table] = len(rows)
        if target.dialect == "postgresql" and counts["audit_events"]:
            # The copied ids were given explicitly: new events must number on from the last.
            await w.execute(
                "SELECT setval(pg_get_serial_sequence('audit_events', 'id'), "
                "(SELECT max(id) FROM audit_events))"
            )
    return counts


async def backup_sqlite(source: Path, destination: Path) -> None:
    """A consistent copy of a live SQLite store (the online backup API), created mode 0600."""
    if destination.exists():
        raise FileExistsError(f"{destination} already exists; choose a new path")
    fd = os.open(destination, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)

    def run() -> None:
        src, dst = sqlite3.connect(source), sqlite3.connect(destination)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()

    try:
        await asyncio.to_thread(run)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
