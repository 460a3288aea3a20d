"""The commands that work on the store: init, projects, users, applications, keys, store.

They act as the local operator (``cli``) through the same service functions the admin API calls
(``admin.service``, ``admin.directory``), so one place decides what may be done and audits it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from admin import access, directory, service, usage
from admin.serialize import application_json, key_json, project_json, rfc3339, user_json
from core.config import Config
from core.store import Database, StoreUnavailable, make_store
from core.store.copy import TargetNotEmpty, backup_sqlite, copy_store
from core.store.keys import KeyFilter
from core.tokens import SecretFormat
from gatewaycli.assertion_key import first_key
from gatewaycli.keylife_commands import cmd_audit_policy, cmd_import, cmd_policy, cmd_webhooks

OPERATOR = access.LOCAL_OPERATOR


# -- output -------------------------------------------------------------------------------------


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _shown(name: str, value: Any) -> str:
    if name == "permissions" and value is None:
        return "(not restricted)"
    if value is None or value == []:
        return "-" if value is None else "(anywhere)" if name == "allowed_ips" else "(none)"
    if name == "rate_limits":
        return ", ".join(f"{r['limit']}/{r['window_seconds']}s" for r in value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def key_text(key: dict[str, Any], secret: str | None = None) -> str:
    lines = [f"{name:<19} {_shown(name, value)}" for name, value in key.items()]
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
    if action == "audit-policy":
        await cmd_audit_policy(args, cfg, db)
    elif action == "import":
        await cmd_import(args, cfg, db)
    elif action == "create":
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
            rate_limits=args.rate_limit or (),
            allowed_ips=args.allow_ip or (),
            permissions=args.permission or ([] if args.restricted else None),
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
    elif action == "usage":
        found = await usage.key_usage(db, OPERATOR, args.access_key)
        columns = ["start", "allowed", "denied", "rate_limited"]
        text = "\n\n".join(
            [
                "per hour, last 24 hours (UTC):",
                table(found["hourly"], columns),
                "per day, last 30 days (UTC):",
                table(found["daily"], columns),
            ]
        )
        emit(args, found, text)
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
                rate_limits=() if args.no_rate_limits else args.rate_limit,
                allowed_ips=() if args.no_allowed_ips else args.allow_ip,
                permissions=[] if args.no_permissions else args.permission,
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


STORE_COMMANDS: dict[str, StoreCommand] = {
    "init": cmd_init,
    "projects": cmd_projects,
    "users": cmd_users,
    "applications": cmd_applications,
    "keys": cmd_keys,
    "store": cmd_store,
    "webhooks": cmd_webhooks,
    "policy": cmd_policy,
}
