"""The local operator's tools for what happens around keys, through the same service functions
as the admin API: ``gateway webhooks ...`` (``admin.webhooks``: create, the secret shown once,
list, show, edit, delete, test, the delivery log), ``gateway policy show|set`` and ``gateway keys
audit-policy`` (``admin.lifetimes``), ``gateway keys import`` (``admin.imports``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from admin import access, imports, lifetimes, webhooks
from admin.import_formats import FORMATS, READERS, FormatError
from admin.serialize import delivery_json, policy_json, webhook_json
from core.config import Config
from core.store import Database
from core.store.webhooks import EVENT_TYPES

OPERATOR = access.LOCAL_OPERATOR


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("webhooks", parents=[common], help="manage webhooks of key events")
    actions = group.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[common], help="the secret is shown once")
    create.add_argument("url")
    create.add_argument(
        "--event",
        action="append",
        required=True,
        choices=EVENT_TYPES,
        help="an event to send (repeat for more)",
    )
    create.add_argument("--description", default="")
    actions.add_parser("list", parents=[common])
    for name in ("show", "delete", "test"):
        actions.add_parser(name, parents=[common]).add_argument("id")
    edit = actions.add_parser("edit", parents=[common])
    edit.add_argument("id")
    edit.add_argument("--url")
    edit.add_argument("--event", action="append", choices=EVENT_TYPES, help="replaces the list")
    edit.add_argument("--description")
    log = actions.add_parser("deliveries", parents=[common], help="the delivery log")
    log.add_argument("id")
    log.add_argument("--status", choices=["pending", "delivered", "failed"])
    log.add_argument("--limit", type=int, default=50)


def add_policy_parser(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    group = sub.add_parser("policy", parents=[common], help="the organization's key lifetimes")
    actions = group.add_subparsers(dest="action", required=True)
    actions.add_parser("show", parents=[common])
    change = actions.add_parser("set", parents=[common], help="0 removes a limit")
    change.add_argument("--max-key-lifetime-days", type=int, metavar="DAYS")
    change.add_argument("--disable-unused-after-days", type=int, metavar="DAYS")


def _policy_text(policy: dict[str, object]) -> str:
    return "\n".join(
        f"{name:<26} {value if value is not None else '-'}" for name, value in policy.items()
    )


async def cmd_policy(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    from gatewaycli.commands import emit

    org_id = await access.organization_of(db, OPERATOR)
    if args.action == "set":
        body = {
            name: (None if value == 0 else value)
            for name, value in (
                ("max_key_lifetime_days", args.max_key_lifetime_days),
                ("disable_unused_after_days", args.disable_unused_after_days),
            )
            if value is not None
        }
        policy = policy_json(await lifetimes.update(db, OPERATOR, org_id, body))
    else:
        policy = policy_json(await lifetimes.get(db, OPERATOR, org_id))
    emit(args, policy, _policy_text(policy))


async def cmd_audit_policy(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    """`gateway keys audit-policy`: the keys that break the organization's lifetime policy."""
    from gatewaycli.commands import emit, table

    org_id = await access.organization_of(db, OPERATOR)
    policy = policy_json(await lifetimes.get(db, OPERATOR, org_id))
    rows = [
        {"access_key": v.access_key, "reason": v.reason, "detail": v.detail}
        for v in await lifetimes.violations(db, OPERATOR, org_id)
    ]
    emit(
        args,
        {"policy": policy, "violations": rows},
        _policy_text(policy) + "\n\n" + table(rows, ["access_key", "reason", "detail"]),
    )


def add_import_parser(actions: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    imported = actions.add_parser(
        "import", parents=[common], help="keys of another gateway, keeping their secrets"
    )
    imported.add_argument("--from", dest="source", required=True, choices=FORMATS)
    imported.add_argument("file", metavar="FILE")
    imported.add_argument(
        "--apply", action="store_true", help="write them (default: a dry run that only reports)"
    )
    imported.add_argument("--project", metavar="NAME|ID", help="for entries that name none")
    imported.add_argument(
        "--bearer", metavar="user:EMAIL|application:NAME", help="for entries that name none"
    )


async def cmd_import(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    from gatewaycli.commands import emit, table

    bearer = None
    if args.bearer:
        kind, _, who = args.bearer.partition(":")
        if kind not in ("user", "application") or not who:
            raise access.Invalid("--bearer must be user:EMAIL or application:NAME", "bearer")
        bearer = (kind, who)
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise access.Invalid(f"{args.file}: cannot be read ({exc})", "file") from None
    try:
        candidates = READERS[args.source](text)
    except FormatError as exc:
        raise access.Invalid(f"{args.file}: {exc}", "file") from None
    report = await imports.run(
        db,
        candidates,
        args.source,
        apply=args.apply,
        default_project=args.project,
        default_bearer=bearer,
    )
    taken = [{"ref": ref, "access_key": key} for ref, key in report.taken]
    refused = [{"ref": ref, "reason": why} for ref, why in report.refused]
    verb = "Took" if report.applied else "Dry run: would take"
    text_out = (
        f"{verb} {len(taken)} key(s), refused {len(refused)}"
        + (
            f"; new applications: {', '.join(report.applications_created)}"
            if report.applications_created
            else ""
        )
        + "\n\n"
        + table(taken, ["ref", "access_key"])
        + "\n\nrefused:\n"
        + table(refused, ["ref", "reason"])
    )
    if not report.applied:
        text_out += "\n\nNothing was written: run again with --apply to import."
    emit(
        args,
        {
            "applied": report.applied,
            "taken": taken,
            "refused": refused,
            "applications_created": report.applications_created,
        },
        text_out,
    )


def _text(hook: dict[str, object]) -> str:
    return "\n".join(
        f"{name:<15} {', '.join(v) if isinstance(v, list) else v}" for name, v in hook.items()
    )


async def cmd_webhooks(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    from gatewaycli.commands import emit, table

    action = args.action
    if action == "create":
        new = await webhooks.create(db, OPERATOR, args.url, args.event, args.description)
        data = {**webhook_json(new.webhook), "secret": new.secret}
        emit(
            args,
            data,
            _text(webhook_json(new.webhook)) + f"\n\nsecret          {new.secret}\n"
            "  (shown once: give it to the receiver now, to check signatures with)",
        )
    elif action == "list":
        rows = [webhook_json(h) for h in await webhooks.list_of(db, OPERATOR)]
        emit(args, {"webhooks": rows}, table(rows, ["id", "url", "events", "description"]))
    elif action == "show":
        hook = webhook_json(await webhooks.get(db, OPERATOR, args.id))
        emit(args, hook, _text(hook))
    elif action == "edit":
        body = {"url": args.url, "events": args.event, "description": args.description}
        hook = webhook_json(await webhooks.update(db, OPERATOR, args.id, body))
        emit(args, hook, _text(hook))
    elif action == "delete":
        await webhooks.delete(db, OPERATOR, args.id)
        emit(args, {"id": args.id, "deleted": True}, f"Deleted webhook {args.id}.")
    elif action == "test":
        message_id = await webhooks.send_test(db, OPERATOR, args.id)
        emit(
            args,
            {"message_id": message_id, "status": "pending"},
            f"Queued a webhook.test event ({message_id}); a serving gateway sends it.",
        )
    else:
        if not 1 <= args.limit <= 500:
            raise access.Invalid("--limit must be from 1 to 500", "limit")
        rows = [
            delivery_json(d)
            for d in await webhooks.deliveries(db, OPERATOR, args.id, args.status, args.limit)
        ]
        emit(
            args,
            {"deliveries": rows},
            table(
                rows,
                [
                    "created_at",
                    "event_type",
                    "access_key",
                    "status",
                    "attempts",
                    "last_status_code",
                ],
            ),
        )
