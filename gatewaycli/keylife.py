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
from gatewaycli.keys import keys
from gatewaycli.output import emit, table
from gatewaycli.registry import group

OPERATOR = access.LOCAL_OPERATOR
hooks = group(
    "webhooks", "manage webhooks of key events: create, list, show, edit, delete, test, deliveries"
)
policy = group("policy", "the organization's key lifetime policy: show, set")


def _id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="the webhook's id")


def _create_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="where events are POSTed: an http:// or https:// URL")
    parser.add_argument(
        "--event",
        action="append",
        required=True,
        choices=EVENT_TYPES,
        help="an event to send (repeat for more)",
    )
    parser.add_argument("--description", default="", help="a note for people")


def _edit_options(parser: argparse.ArgumentParser) -> None:
    _id(parser)
    parser.add_argument("--url", help="the new URL")
    parser.add_argument(
        "--event", action="append", choices=EVENT_TYPES, help="replaces the list (repeat for more)"
    )
    parser.add_argument("--description", help="the new note")


def _deliveries_options(parser: argparse.ArgumentParser) -> None:
    _id(parser)
    parser.add_argument(
        "--status", choices=["pending", "delivered", "failed"], help="only these deliveries"
    )
    parser.add_argument("--limit", type=int, default=50, help="at most this many (1-500)")


def _policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-key-lifetime-days",
        type=int,
        metavar="DAYS",
        help="new keys and edits must expire within this (0: no limit)",
    )
    parser.add_argument(
        "--disable-unused-after-days",
        type=int,
        metavar="DAYS",
        help="housekeeping disables keys unused this long (0: never)",
    )


def _import_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from", dest="source", required=True, choices=FORMATS, help="the file's format"
    )
    parser.add_argument("file", metavar="FILE", help="a deck dump, an Unkey export or a CSV")
    parser.add_argument(
        "--apply", action="store_true", help="write them (default: a dry run that only reports)"
    )
    parser.add_argument("--project", metavar="NAME|ID", help="for entries that name none")
    parser.add_argument(
        "--bearer", metavar="user:EMAIL|application:NAME", help="for entries that name none"
    )


def _policy_text(found: dict[str, object]) -> str:
    return "\n".join(
        f"{name:<26} {value if value is not None else '-'}" for name, value in found.items()
    )


@policy.command("show", "the organization's key lifetime policy")
async def policy_show(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    org_id = await access.organization_of(db, OPERATOR)
    found = policy_json(await lifetimes.get(db, OPERATOR, org_id))
    emit(args, found, _policy_text(found))


@policy.command("set", "change the policy (0 removes a limit)", _policy_options)
async def policy_set(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    org_id = await access.organization_of(db, OPERATOR)
    body = {
        name: (None if value == 0 else value)
        for name, value in (
            ("max_key_lifetime_days", args.max_key_lifetime_days),
            ("disable_unused_after_days", args.disable_unused_after_days),
        )
        if value is not None
    }
    found = policy_json(await lifetimes.update(db, OPERATOR, org_id, body))
    emit(args, found, _policy_text(found))


@keys.command("audit-policy", "keys that break the organization's key policy")
async def audit_policy(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    org_id = await access.organization_of(db, OPERATOR)
    found = policy_json(await lifetimes.get(db, OPERATOR, org_id))
    rows = [
        {"access_key": v.access_key, "reason": v.reason, "detail": v.detail}
        for v in await lifetimes.violations(db, OPERATOR, org_id)
    ]
    emit(
        args,
        {"policy": found, "violations": rows},
        _policy_text(found) + "\n\n" + table(rows, ["access_key", "reason", "detail"]),
    )


@keys.command(
    "import", "keys of another gateway, keeping their secrets (a dry run)", _import_options
)
async def import_keys(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    bearer = None
    if args.bearer:
        kind, _, who = args.bearer.partition(":")
        if kind not in ("user", "application") or not who:
            raise access.Invalid("--bearer must be user:EMAIL or application:NAME", "bearer")
        bearer = (kind, who)
    try:
        # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte order mark, not a column.
        text = Path(args.file).read_text(encoding="utf-8-sig")
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


@hooks.command("create", "a webhook for key events; its secret is shown once", _create_options)
async def webhook_create(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    new = await webhooks.create(db, OPERATOR, args.url, args.event, args.description)
    data = {**webhook_json(new.webhook), "secret": new.secret}
    emit(
        args,
        data,
        _text(webhook_json(new.webhook)) + f"\n\nsecret          {new.secret}\n"
        "  (shown once: give it to the receiver now, to check signatures with)",
    )


@hooks.command("list", "the organization's webhooks")
async def webhook_list(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    rows = [webhook_json(h) for h in await webhooks.list_of(db, OPERATOR)]
    emit(args, {"webhooks": rows}, table(rows, ["id", "url", "events", "description"]))


@hooks.command("show", "one webhook", _id)
async def webhook_show(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    hook = webhook_json(await webhooks.get(db, OPERATOR, args.id))
    emit(args, hook, _text(hook))


@hooks.command("edit", "change a webhook's URL, events or description", _edit_options)
async def webhook_edit(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    body = {"url": args.url, "events": args.event, "description": args.description}
    hook = webhook_json(await webhooks.update(db, OPERATOR, args.id, body))
    emit(args, hook, _text(hook))


@hooks.command("delete", "delete a webhook and its delivery log", _id)
async def webhook_delete(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    await webhooks.delete(db, OPERATOR, args.id)
    emit(args, {"id": args.id, "deleted": True}, f"Deleted webhook {args.id}.")


@hooks.command("test", "queue a webhook.test event to it", _id)
async def webhook_test(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    message_id = await webhooks.send_test(db, OPERATOR, args.id)
    emit(
        args,
        {"message_id": message_id, "status": "pending"},
        f"Queued a webhook.test event ({message_id}); a serving gateway sends it.",
    )


@hooks.command("deliveries", "the delivery log", _deliveries_options)
async def webhook_deliveries(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    if not 1 <= args.limit <= 500:
        raise access.Invalid("--limit must be from 1 to 500", "limit")
    rows = [
        delivery_json(d)
        for d in await webhooks.deliveries(db, OPERATOR, args.id, args.status, args.limit)
    ]
    columns = ["created_at", "event_type", "access_key", "status", "attempts", "last_status_code"]
    emit(args, {"deliveries": rows}, table(rows, columns))
