"""The ``gateway`` command: the composition root, and the local operator's key tools.

Key and directory commands work on the store directly through ``admin.service``, the same
functions the admin API calls, acting as the local operator (``cli``). Every command takes
``--json``; errors go to stderr as one sentence (or a JSON object with ``--json``), exit status 2
for a usage, configuration or validation problem and 1 when the store cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from admin import access, directory, service
from admin.serialize import application_json, key_json, project_json, rfc3339, user_json
from core import config as config_module
from core.config import Config, ConfigError
from core.store import Database, StoreMissing, StoreUnavailable, make_store
from core.store.copy import TargetNotEmpty, backup_sqlite, copy_store
from core.store.keys import KeyFilter
from core.tokens import SecretFormat

OPERATOR = access.LOCAL_OPERATOR
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``7d``, ``2w`` -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 1h, 7d or 2w")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _expiry(text: str) -> float | str:
    return "never" if text == "never" else parse_duration(text)


# -- output -------------------------------------------------------------------------------------


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def key_text(key: dict[str, Any], secret: str | None = None) -> str:
    lines = [f"{name:<19} {value if value is not None else '-'}" for name, value in key.items()]
    if secret is not None:
        lines += [
            "",
            f"secret_key          {secret}",
            "  (shown once: store it now; only its hash is kept)",
        ]
    return "\n".join(lines)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(r.get(c) if r.get(c) is not None else "-") for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, *body])


def command_prefix(args: argparse.Namespace) -> str:
    """How this command was pointed at its store, for the commands we suggest."""
    words = ["gateway"]
    if getattr(args, "config", None):
        words += ["--config", args.config]
    if getattr(args, "store", None):
        words += ["--store", args.store]
    return " ".join(words)


# -- commands -----------------------------------------------------------------------------------


async def cmd_init(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    result = await service.init(db, SecretFormat(cfg.key_prefix))
    data = {
        "created": result.created,
        "organization_id": result.organization.id,
        "project_id": result.project.id,
        "user_id": result.user.id,
        "access_key": result.key.access_key if result.key else None,
        "secret_key": result.secret_key,
        "store": cfg.store.description,
    }
    if result.created:
        text = (
            f"Created the store {cfg.store.description}\n"
            f"organization_id     {result.organization.id}\n"
            f"project_id          {result.project.id}\n"
            f"user_id             {result.user.id} (owner)\n"
            f"access_key          {data['access_key']}\n"
            f"secret_key          {result.secret_key}\n"
            "  (shown once: store it now; only its hash is kept)"
        )
    else:
        # The owner key's secret was shown once, at creation; a new key is how to get one.
        data["new_owner_key"] = f"{command_prefix(args)} keys create --user {result.user.id}"
        text = (
            f"The store {cfg.store.description} is already initialised; nothing changed.\n"
            f"organization_id     {result.organization.id}\n"
            f"project_id          {result.project.id}\n"
            f"user_id             {result.user.id} (owner)\n"
            "The owner key's secret was shown once, when the store was created. For a new key "
            f"for the owner:\n  {data['new_owner_key']}"
        )
    emit(args, data, text)


async def cmd_projects(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    if args.action == "create":
        project = project_json(await directory.create_project(db, OPERATOR, args.name))
        emit(args, project, f"Created project {project['name']}: {project['id']}")
    else:
        rows = [project_json(p) for p in await directory.list_of(db, OPERATOR, "project")]
        emit(args, {"projects": rows}, table(rows, ["id", "name", "created_at"]))


async def cmd_users(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    if args.action == "create":
        user = user_json(
            await directory.create_user(db, OPERATOR, args.email, tuple(args.permission_set))
        )
        emit(args, user, f"Created user {user['email']}: {user['id']}")
    else:
        rows = [user_json(u) for u in await directory.list_of(db, OPERATOR, "user")]
        emit(args, {"users": rows}, table(rows, ["id", "email", "permission_sets", "is_owner"]))


async def cmd_applications(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    if args.action == "create":
        app = application_json(
            await directory.create_application(db, OPERATOR, args.name, tuple(args.permission_set))
        )
        emit(args, app, f"Created application {app['name']}: {app['id']}")
    else:
        rows = [application_json(a) for a in await directory.list_of(db, OPERATOR, "application")]
        emit(args, {"applications": rows}, table(rows, ["id", "name", "permission_sets"]))


async def cmd_keys(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    fmt = SecretFormat(cfg.key_prefix)
    action = args.action
    if action == "create":
        new = await service.create_key(
            db,
            OPERATOR,
            fmt,
            user_id=args.user,
            application_id=args.application,
            description=args.description,
            default_project_id=args.project,
            expires_at=time.time() + args.expires_in if args.expires_in else None,
            mode=args.mode,
        )
        data = {**key_json(new.key), "secret_key": new.secret_key}
        emit(args, data, key_text(key_json(new.key), new.secret_key))
    elif action == "list":
        keys, total = await service.list_keys(
            db,
            OPERATOR,
            KeyFilter(
                organization_id=await access.organization_of(db, OPERATOR),
                page_size=100,
                page=args.page,
            ),
        )
        rows = [key_json(k) for k in keys]
        names = {u.id: u.email for u in await directory.list_of(db, OPERATOR, "user")}
        names.update({a.id: a.name for a in await directory.list_of(db, OPERATOR, "application")})
        shown = [
            {**row, "bearer": f"{row['bearer_type']} {names.get(key.bearer_id, key.bearer_id)}"}
            for row, key in zip(rows, keys, strict=True)
        ]
        emit(
            args,
            {"api_keys": rows, "total_count": total},
            table(
                shown,
                ["access_key", "bearer", "mode", "description", "expires_at", "last_used_at"],
            ),
        )
    elif action == "show":
        key = key_json(await service.get_key(db, OPERATOR, args.access_key))
        emit(args, key, key_text(key))
    elif action == "edit":
        expiry = args.expires_in
        key = key_json(
            await service.update_key(
                db,
                OPERATOR,
                args.access_key,
                description=args.description,
                default_project_id=args.project,
                expires_at=time.time() + expiry if isinstance(expiry, float | int) else None,
                clear_expiry=expiry == "never",
            )
        )
        emit(args, key, key_text(key))
    elif action == "revoke":
        await service.revoke_key(db, OPERATOR, args.access_key)
        emit(
            args,
            {"access_key": args.access_key, "revoked": True},
            f"Revoked {args.access_key}: running gateways refuse it within "
            f"{cfg.cache.revocation_bound_seconds:g} s.",
        )
    elif action == "roll":
        new = await service.roll_key(db, OPERATOR, fmt, args.access_key, args.grace)
        data = {
            **key_json(new.key),
            "secret_key": new.secret_key,
            "previous_secret_expires_at": rfc3339(time.time() + args.grace),
        }
        text = key_text(key_json(new.key), new.secret_key)
        text += (
            f"\nThe previous secret keeps working until {data['previous_secret_expires_at']}."
            if args.grace
            else "\nThe previous secret no longer works."
        )
        emit(args, data, text)


async def cmd_store(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    """Whole-store operations: ``copy --to TARGET`` (into an empty store, SQLite or PostgreSQL)
    and ``backup PATH`` (a SQLite store, online, mode 0600)."""
    if args.action == "backup":
        if db.dialect != "sqlite" or cfg.store.path is None:
            raise access.Invalid(
                "gateway store backup is for SQLite stores; back up PostgreSQL with pg_dump "
                "(see the README)",
                "store",
            )
        try:
            await backup_sqlite(cfg.store.path, Path(args.path))
        except FileExistsError as exc:
            raise access.Invalid(str(exc), "path") from None
        except OSError as exc:
            raise StoreUnavailable(f"{args.path}: cannot write the backup ({exc})") from None
        emit(args, {"backup": args.path}, f"Backed up {cfg.store.description} to {args.path}")
        return
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


StoreCommand = Callable[[argparse.Namespace, Config, Database], Awaitable[None]]


async def with_store(command: StoreCommand, args: argparse.Namespace, cfg: Config) -> None:
    db = make_store(cfg.store)
    await db.open(create=args.command == "init")
    try:
        await command(args, cfg, db)
    finally:
        await db.close()


def cmd_serve(args: argparse.Namespace, cfg: Config) -> None:
    from gatewaycli import server

    server.setup_logging(args.log_level.upper())
    server.serve(cfg, args.workers or cfg.workers)


def cmd_demo(args: argparse.Namespace, cfg: Config) -> None:
    from gatewaycli import demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    demo.run_demo(cfg)


# -- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="config file (default: $GATEWAY_CONFIG, else ./gateway.toml)",
    )
    common.add_argument(
        "--store",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="the store file to use instead of the config's [store] path",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser = argparse.ArgumentParser(
        prog="gateway", parents=[common], description="API-key authentication gateway"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("init", parents=[common], help="create the store and the owner key (once)")
    serve = sub.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument("--workers", type=int, help="worker processes (default: [server] workers)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub.add_parser("demo", parents=[common], help="echo upstream + gateway + a fresh key")

    for name, extra in (("projects", "name"), ("users", "email"), ("applications", "name")):
        group = sub.add_parser(name, parents=[common], help=f"manage {name}")
        actions = group.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", parents=[common])
        create.add_argument(extra)
        if name != "projects":
            create.add_argument(
                "--permission-set",
                action="append",
                default=[],
                choices=sorted(access.PERMISSION_SETS),
            )
        actions.add_parser("list", parents=[common])

    store = sub.add_parser("store", parents=[common], help="copy or back up the whole store")
    store_actions = store.add_subparsers(dest="action", required=True)
    copy = store_actions.add_parser(
        "copy", parents=[common], help="copy everything into an empty store"
    )
    copy.add_argument(
        "--to", required=True, metavar="TARGET", help="postgresql://... URL or SQLite path"
    )
    backup = store_actions.add_parser(
        "backup", parents=[common], help="online backup of a SQLite store"
    )
    backup.add_argument("path", metavar="PATH")

    keys = sub.add_parser("keys", parents=[common], help="manage API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[common])
    bearer = create.add_mutually_exclusive_group(required=True)
    bearer.add_argument("--user", metavar="ID")
    bearer.add_argument("--application", metavar="ID")
    create.add_argument("--project", metavar="ID")
    create.add_argument("--description", default="")
    create.add_argument("--expires-in", type=parse_duration, metavar="DURATION")
    create.add_argument("--mode", choices=["live", "test"], default="live")
    listing = actions.add_parser("list", parents=[common])
    listing.add_argument("--page", type=int, default=1)
    for name in ("show", "revoke"):
        actions.add_parser(name, parents=[common]).add_argument("access_key")
    edit = actions.add_parser("edit", parents=[common])
    edit.add_argument("access_key")
    edit.add_argument("--description")
    edit.add_argument("--project", metavar="ID")
    edit.add_argument("--expires-in", type=_expiry, metavar="DURATION|never")
    roll = actions.add_parser("roll", parents=[common])
    roll.add_argument("access_key")
    roll.add_argument(
        "--grace",
        type=parse_duration,
        default=0.0,
        metavar="DURATION",
        help="how long the previous secret keeps working (default: 0)",
    )
    return parser


STORE_COMMANDS: dict[str, StoreCommand] = {
    "init": cmd_init,
    "projects": cmd_projects,
    "users": cmd_users,
    "applications": cmd_applications,
    "keys": cmd_keys,
    "store": cmd_store,
}


def fail(
    args: argparse.Namespace, status: int, kind: str, message: str, field: str | None = None
) -> int:
    if getattr(args, "json", False):
        error: dict[str, Any] = {"type": kind, "message": message}
        if field:
            error["field"] = field
        print(json.dumps({"error": error}), file=sys.stderr)
    else:
        print(f"gateway: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    cfg_path = getattr(args, "config", None)
    try:
        cfg = config_module.load(config_module.resolve_path(cfg_path))
        if getattr(args, "store", None):
            cfg = dataclasses.replace(cfg, store=cfg.store.pointing_at(args.store))
        if args.command == "serve":
            cmd_serve(args, cfg)
        elif args.command == "demo":
            cmd_demo(args, cfg)
        else:
            asyncio.run(with_store(STORE_COMMANDS[args.command], args, cfg))
    except ConfigError as exc:
        return fail(args, 2, "invalid_config", str(exc))
    except access.ServiceError as exc:
        return fail(args, 2, exc.type, exc.message, exc.field)
    except StoreMissing as exc:
        init = f"gateway --config {cfg_path} init" if cfg_path else "gateway init"
        return fail(args, 1, "store_missing", f"{exc}; create it with `{init}`")
    except StoreUnavailable as exc:
        return fail(args, 1, "store_unavailable", str(exc))
    except KeyboardInterrupt:
        return 130
    return 0
