"""`gateway store copy` (SQLite to PostgreSQL and back) and `gateway store backup`."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from core.config import StoreConfig
from core.store import make_store
from core.store.copy import TABLES
from tests.support import run_cli, write_config


def cli_json(cfg: Path, *args: str) -> Any:
    return json.loads(run_cli("--config", str(cfg), *args, "--json").stdout)


def everything(target: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every copied table of a store, rows sorted, for comparing two stores."""

    async def read() -> dict[str, list[tuple[Any, ...]]]:
        db = await make_store(StoreConfig().pointing_at(target)).open(create=False)
        try:
            return {
                table: sorted(
                    (tuple(bytes(v) if isinstance(v, memoryview) else v for v in row))
                    for row in await db.fetchall(f"SELECT {columns} FROM {table}")
                )
                for table, columns in TABLES
            }
        finally:
            await db.close()

    return asyncio.run(read())


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    cfg = write_config(tmp_path, "http://127.0.0.1:9")
    init = cli_json(cfg, "init")
    cli_json(cfg, "projects", "create", "staging")
    app = cli_json(cfg, "applications", "create", "billing", "--permission-set", "IAMManager")
    cli_json(cfg, "keys", "create", "--application", app["id"], "--description", "nightly")
    doomed = cli_json(cfg, "keys", "create", "--user", init["user_id"], "--expires-in", "7d")
    cli_json(cfg, "keys", "roll", doomed["access_key"], "--grace", "1h")
    cli_json(cfg, "keys", "revoke", doomed["access_key"])
    return cfg


def test_copy_to_postgresql_and_back_keeps_everything(
    filled: Path, tmp_path: Path, database_url: str
) -> None:
    source = str(filled.parent / "store.db")
    copied = cli_json(filled, "store", "copy", "--to", database_url)
    assert copied["rows"]["audit_events"] >= 6 and copied["rows"]["revoked_keys"] == 1
    assert everything(database_url) == everything(source)
    back = str(tmp_path / "back.db")
    run_cli("--config", str(filled), "--store", database_url, "store", "copy", "--to", back)
    assert everything(back) == everything(source)
    # The copied store works: the owner key verifies, and new audit events number on.
    listed = cli_json(filled, "--store", database_url, "keys", "list")
    assert listed["total_count"] == 2
    cli_json(filled, "--store", database_url, "projects", "create", "after-copy")


def test_copy_into_a_store_that_is_not_empty_is_refused(filled: Path, database_url: str) -> None:
    cli_json(filled, "store", "copy", "--to", database_url)
    before = everything(database_url)
    again = run_cli("--config", str(filled), "store", "copy", "--to", database_url, check=False)
    assert again.returncode == 2 and "already holds a store" in again.stderr
    assert "Traceback" not in again.stderr
    assert everything(database_url) == before


def test_backup_is_consistent_and_private(filled: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    cli_json(filled, "store", "backup", str(backup))
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    with sqlite3.connect(backup) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert everything(str(backup)) == everything(str(filled.parent / "store.db"))
    again = run_cli("--config", str(filled), "store", "backup", str(backup), check=False)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_backup_of_postgresql_points_at_pg_dump(filled: Path, database_url: str) -> None:
    cli_json(filled, "store", "copy", "--to", database_url)
    result = run_cli(
        "--config", str(filled), "--store", database_url, "store", "backup", "x.db", check=False
    )
    assert result.returncode == 2 and "pg_dump" in result.stderr
