"""`gateway keys ...`: API keys, as the local operator, through the admin API's service functions.

Bearers and projects are named by id, email or name (``admin.names``); a key by its access key.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from admin import access, directory, names, service, usage
from admin.serialize import key_json, rfc3339
from core.config import Config
from core.policies import unknown_resources
from core.store import Database
from core.store.keys import KeyFilter
from core.tokens import SecretFormat
from gatewaycli import billing, options
from gatewaycli.output import emit, key_text, table, warn
from gatewaycli.registry import group

OPERATOR = access.LOCAL_OPERATOR
keys = group(
    "keys",
    "manage API keys: create, list, show, edit, roll, disable, enable, revoke, usage, "
    "audit-policy, import",
)


async def _bearer(args: argparse.Namespace, db: Database) -> tuple[str | None, str | None]:
    """(user_id, application_id) of --user / --application, whichever was given."""
    user = await names.resolve(db, OPERATOR, "user", args.user) if args.user else None
    app = (
        await names.resolve(db, OPERATOR, "application", args.application)
        if args.application
        else None
    )
    return user, app


async def _project(args: argparse.Namespace, db: Database) -> str | None:
    if args.project is None:
        return None
    return await names.resolve(db, OPERATOR, "project", args.project, "default_project_id")


def _check_resources(args: argparse.Namespace, cfg: Config, data: dict[str, Any]) -> None:
    """A permission no route of this config names grants nothing: most often a typo. Warned
    about, not refused: the routes may be added later, or be in another gateway's config."""
    unknown = unknown_resources(args.permission or (), (r.resource or "" for r in cfg.routes))
    if unknown:
        known = sorted({r.resource for r in cfg.routes if r.resource}) or ["(none)"]
        message = (
            f"no route in {cfg.source} names the resource of {', '.join(unknown)}, so it grants "
            f"nothing until one does (resources of its routes: {', '.join(known)})"
        )
        data["warnings"] = [message]
        warn(args, message)


def _create_options(parser: argparse.ArgumentParser) -> None:
    options.bearer_options(parser, required=True)
    options.project_option(parser, "the key's default project (default: the organization's)")
    parser.add_argument("--description", default="", help="what the key is for (at most 200)")
    parser.add_argument(
        "--expires-in",
        type=options.lifetime,
        metavar="DURATION",
        help=f"the key stops working after this long; {options.DURATION_HELP} (default: never)",
    )
    parser.add_argument(
        "--mode", choices=["live", "test"], default="live", help="live (default) or test secret"
    )
    options.policy_options(parser)
    billing.key_options(parser)


@keys.command(
    "create", "a new key for a user or an application; its secret is shown once", _create_options
)
async def create(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    user_id, application_id = await _bearer(args, db)
    new = await service.create_key(
        db,
        OPERATOR,
        SecretFormat(cfg.key_prefix),
        user_id=user_id,
        application_id=application_id,
        description=args.description,
        default_project_id=await _project(args, db),
        expires_at=time.time() + args.expires_in if args.expires_in is not None else None,
        mode=args.mode,
        rate_limits=args.rate_limit or (),
        allowed_ips=args.allow_ip or (),
        permissions=args.permission or ([] if args.restricted else None),
        **await billing.key_extras(args, db),
    )
    data = {**key_json(new.key), "secret_key": new.secret_key}
    _check_resources(args, cfg, data)
    emit(args, data, key_text(key_json(new.key), new.secret_key))


def _list_options(parser: argparse.ArgumentParser) -> None:
    options.bearer_options(parser, required=False)
    options.project_option(parser, "only the keys whose default project is this one")
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--expired", action="store_true", help="only the keys that have expired")
    state.add_argument(
        "--revoked", action="store_true", help="the revoked keys instead, newest first"
    )
    parser.add_argument("--page", type=int, default=1, help="which page of 100 (default: 1)")


@keys.command("list", "the keys (100 a page), or the revoked ones", _list_options)
async def list_keys(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    user_id, application_id = await _bearer(args, db)
    found = KeyFilter(
        organization_id=await access.organization_of(db, OPERATOR),
        user_id=user_id,
        application_id=application_id,
        project_id=await _project(args, db),
        expired=True if args.expired else None,
        page_size=100,
        page=args.page,
    )
    labels = {u.id: u.email for u in await directory.list_of(db, OPERATOR, "user")}
    labels.update({a.id: a.name for a in await directory.list_of(db, OPERATOR, "application")})
    if args.revoked:
        if found.project_id is not None:
            raise access.Invalid(
                "a revoked key keeps no project: list revoked keys by --user or --application",
                "project",
            )
        gone, total = await service.list_revoked_keys(db, OPERATOR, found)
        rows = [
            {
                "access_key": k.access_key,
                "bearer_type": "user" if k.user_id else "application" if k.application_id else None,
                "user_id": k.user_id,
                "application_id": k.application_id,
                "revoked_at": rfc3339(k.revoked_at),
            }
            for k in gone
        ]
        shown = [_with_bearer(row, labels) for row in rows]
        text = table(shown, ["access_key", "bearer", "revoked_at"])
        emit(args, {"revoked_keys": rows, "total_count": total}, text)
        return
    keys_found, total = await service.list_keys(db, OPERATOR, found)
    rows = [key_json(k) for k in keys_found]
    columns = ["access_key", "bearer", "mode", "description", "expires_at", "last_used_at"]
    text = table([_with_bearer(row, labels) for row in rows], columns)
    emit(args, {"api_keys": rows, "total_count": total}, text)


def _with_bearer(row: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    bearer_id = row["user_id"] or row["application_id"]
    if bearer_id is None:  # revoked before its bearer was remembered
        return {**row, "bearer": "-"}
    return {**row, "bearer": f"{row['bearer_type']} {labels.get(bearer_id, bearer_id)}"}


@keys.command("show", "one key, without its secret", options.access_key_argument)
async def show(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    key = key_json(await service.get_key(db, OPERATOR, args.access_key))
    emit(args, key, key_text(key))


@keys.command(
    "usage", "a key's requests per hour (24 h) and per day (30 days)", options.access_key_argument
)
async def key_usage(args: argparse.Namespace, cfg: Config, db: Database) -> None:
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


def _edit_options(parser: argparse.ArgumentParser) -> None:
    options.access_key_argument(parser)
    parser.add_argument("--description", help="a new description")
    options.project_option(parser, "a new default project")
    parser.add_argument(
        "--expires-in",
        type=options.lifetime_or_never,
        metavar="DURATION|never",
        help=f"a new expiry, counted from now ({options.DURATION_HELP}), or never",
    )
    options.policy_options(parser, editing=True)
    billing.key_options(parser, editing=True)


@keys.command(
    "edit", "change a key's description, project, expiry, policies or budget", _edit_options
)
async def edit(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    expiry = args.expires_in
    key = key_json(
        await service.update_key(
            db,
            OPERATOR,
            args.access_key,
            description=args.description,
            default_project_id=await _project(args, db),
            expires_at=time.time() + expiry if isinstance(expiry, float | int) else None,
            clear_expiry=expiry == "never",
            rate_limits=() if args.no_rate_limits else args.rate_limit,
            allowed_ips=() if args.no_allowed_ips else args.allow_ip,
            permissions=[] if args.no_permissions else args.permission,
            **await billing.edit_extras(args, db),
        )
    )
    _check_resources(args, cfg, key)
    emit(args, key, key_text(key))


@keys.command("enable", "make a disabled key work again, same secret", options.access_key_argument)
@keys.command(
    "disable", "refuse a key (403 key_disabled) until enabled again", options.access_key_argument
)
async def switch(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    disabled = args.action == "disable"
    key = key_json(await service.update_key(db, OPERATOR, args.access_key, disabled=disabled))
    bound = cfg.cache.revocation_bound_seconds
    emit(
        args,
        key,
        f"{'Disabled' if disabled else 'Enabled'} {args.access_key}: running gateways "
        f"{'refuse' if disabled else 'accept'} it within {bound:g} s.",
    )


@keys.command(
    "revoke", "revoke a key for good (its secrets stop working)", options.access_key_argument
)
async def revoke(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    await service.revoke_key(db, OPERATOR, args.access_key)
    emit(
        args,
        {"access_key": args.access_key, "revoked": True},
        f"Revoked {args.access_key}: running gateways refuse it within "
        f"{cfg.cache.revocation_bound_seconds:g} s.",
    )


def _roll_options(parser: argparse.ArgumentParser) -> None:
    options.access_key_argument(parser)
    parser.add_argument(
        "--grace",
        type=options.parse_duration,
        default=0.0,
        metavar="DURATION",
        help="how long the previous secret keeps working (default: 0; none for an expired key)",
    )
    parser.add_argument(
        "--expires-in",
        type=options.lifetime,
        metavar="DURATION",
        help="a new expiry, counted from now (default: unchanged; an expired key is renewed "
        "for the lifetime it was created with)",
    )


@keys.command(
    "roll",
    "a new secret for the same access key; an expired key is renewed",
    _roll_options,
)
async def roll(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    before = await service.get_key(db, OPERATOR, args.access_key)
    now = time.time()
    new = await service.roll_key(
        db,
        OPERATOR,
        SecretFormat(cfg.key_prefix),
        args.access_key,
        args.grace,
        now + args.expires_in if args.expires_in is not None else None,
    )
    had_expired = before.expires_at is not None and before.expires_at <= now
    grace = 0.0 if had_expired else args.grace
    data = {
        **key_json(new.key),
        "secret_key": new.secret_key,
        "previous_secret_expires_at": rfc3339(now + grace),
    }
    text = key_text(key_json(new.key), new.secret_key)
    if had_expired:
        text += (
            f"\nThe key had expired at {rfc3339(before.expires_at)}; it now expires at "
            f"{data['expires_at']}. Its previous secret no longer works."
        )
    elif grace:
        text += f"\nThe previous secret keeps working until {data['previous_secret_expires_at']}."
    else:
        text += "\nThe previous secret no longer works."
    emit(args, data, text)
