"""`gateway webhooks ...`: the local operator's webhook tools, through the same service functions
as the admin API (``admin.webhooks``): create (the secret shown once), list, show, edit, delete,
test and the delivery log."""

from __future__ import annotations

import argparse

from admin import access, webhooks
from admin.serialize import delivery_json, webhook_json
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
