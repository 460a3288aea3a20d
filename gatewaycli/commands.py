"""The whole-store commands: ``init``, ``store copy`` and ``store backup``, and how a command
gets its store (``with_store``).

They act as the local operator (``cli``) through the same service functions the admin API calls
(``admin.service``), so one place decides what may be done and audits it. The commands on keys
and on projects, users and applications are in ``gatewaycli.keys`` and ``gatewaycli.entities``;
how a command is declared is in ``gatewaycli.registry``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from admin import access, service
from core.config import Config
from core.store import Database, StoreUnavailable, make_store
from core.store.copy import TargetNotEmpty, backup_sqlite, copy_store
from core.tokens import SecretFormat
from gatewaycli.assertion_key import first_key
from gatewaycli.output import command_prefix, emit
from gatewaycli.registry import StoreRun, command, group

# -- commands -----------------------------------------------------------------------------------


@command("init", "create the store, the owner user and the owner key (once)")
async def cmd_init(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    result = await service.init(db, SecretFormat(cfg.key_prefix))
    # The key that signs identity assertions, if there is none yet (an older store too).
    assertion, assertion_text = first_key(cfg, time.time())
    data = {
        "created": result.created,
        "organization_id": result.organization.id,
        "project_id": result.project.id,
        "user_id": result.user.id,
        "access_key": result.key.access_key if result.key else None,
        "secret_key": result.secret_key,
        "store": cfg.store.description,
        "assertion_key": assertion,
    }
    if result.created:
        text = (
            f"Created the store {cfg.store.description}\n"
            f"organization_id     {result.organization.id}\n"
            f"project_id          {result.project.id}\n"
            f"user_id             {result.user.id} (owner)\n"
            f"access_key          {data['access_key']}\n"
            f"secret_key          {result.secret_key}\n"
            "  (shown once: store it now; only its hash is kept)\n"
            f"{assertion_text}"
        )
    else:
        # The owner key's secret was shown once, at creation; a new key is how to get one.
        data["new_owner_key"] = f"{command_prefix(args)} keys create --user {result.user.id}"
        text = (
            f"The store {cfg.store.description} is already initialised; nothing changed.\n"
            f"organization_id     {result.organization.id}\n"
            f"project_id          {result.project.id}\n"
            f"user_id             {result.user.id} (owner)\n"
            f"{assertion_text}\n"
            "The owner key's secret was shown once, when the store was created. For a new key "
            f"for the owner:\n  {data['new_owner_key']}"
        )
    emit(args, data, text)


store = group("store", "copy or back up the whole store")


def _backup_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="the backup file to write (must not exist)")


@store.command("backup", "online backup of a SQLite store (mode 0600)", _backup_options)
async def backup(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    if db.dialect != "sqlite" or cfg.store.path is None:
        raise access.Invalid(
            "gateway store backup is for SQLite stores; back up PostgreSQL with pg_dump "
            "(docs/operations.md)",
            "store",
        )
    try:
        await backup_sqlite(cfg.store.path, Path(args.path))
    except FileExistsError as exc:
        raise access.Invalid(str(exc), "path") from None
    except OSError as exc:
        raise StoreUnavailable(f"{args.path}: cannot write the backup ({exc})") from None
    emit(args, {"backup": args.path}, f"Backed up {cfg.store.description} to {args.path}")


def _copy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--to", required=True, metavar="TARGET", help="postgresql://... URL or SQLite path"
    )


@store.command("copy", "copy everything into an empty store (SQLite or PostgreSQL)", _copy_options)
async def copy(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    target = make_store(cfg.store.pointing_at(args.to))
    await target.open(create=True)
    try:
        counts = await copy_store(db, target)
    except TargetNotEmpty as exc:
        raise access.Invalid(str(exc), "to") from None
    finally:
        await target.close()
    rows = ", ".join(f"{n} {table}" for table, n in counts.items())
    emit(
        args,
        {"copied_to": target.description, "rows": counts},
        f"Copied {cfg.store.description} to {target.description}: {rows}",
    )


async def with_store(run: StoreRun, args: argparse.Namespace, cfg: Config) -> None:
    db = make_store(cfg.store)
    await db.open(create=args.command == "init")
    try:
        await run(args, cfg, db)
    finally:
        await db.close()
