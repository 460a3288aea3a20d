"""The CLI of plans, credits and billing: ``gateway plans ...``, ``gateway usage export``,
``gateway keys disable|enable``, and the plan, credits and metadata options of ``keys create``
and ``keys edit``, and of ``users edit`` / ``applications edit`` (a bearer's budget). They act as
the local operator through the service functions the admin API calls."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from admin import directory, plans, service
from admin.access import LOCAL_OPERATOR as OPERATOR
from admin.access import Invalid
from admin.serialize import key_json, plan_json
from admin.usage_export import export
from core import plans as core_plans
from core.config import Config
from core.policies import PolicyError, RateLimit
from core.store import Database


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not JSON: write a JSON object such as {{"tier": "gold"}}'
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("metadata must be a JSON object")
    return value


def _refill(text: str) -> tuple[int, str]:
    amount, _, interval = text.partition("/")
    if not amount.isdigit() or interval not in core_plans.INTERVALS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a refill like 1000/monthly or 50/daily")
    return int(amount), interval


def _rate_limit(text: str) -> RateLimit:
    try:
        return RateLimit.parse(text)
    except PolicyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def budget_options(parser: argparse.ArgumentParser, what: str) -> None:
    """--plan, --credits N, --refill N/INTERVAL (and --no-plan, --no-credits when editing)."""
    parser.add_argument("--plan", metavar="ID|NAME", help=f"put {what} on this plan")
    parser.add_argument("--no-plan", action="store_true", help=f"take {what} off its plan")
    parser.add_argument("--credits", type=int, metavar="N", help="credits it may spend")
    parser.add_argument(
        "--refill", type=_refill, metavar="N/daily|monthly", help="back to N each UTC day/month"
    )
    parser.add_argument("--no-credits", action="store_true", help="no credits of its own")


def key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metadata", type=_json_object, metavar="JSON", help="a JSON object")
    budget_options(parser, "the key")


def _credits(args: argparse.Namespace) -> core_plans.Credits | None:
    if args.credits is None:
        if args.refill is not None:
            raise Invalid("--refill goes with --credits N", "refill")
        return None
    refill = None if args.refill is None else core_plans.Refill(*args.refill)
    try:
        return core_plans.key_credits(
            {
                "remaining": args.credits,
                "refill": None
                if refill is None
                else {"amount": refill.amount, "interval": refill.interval},
            }
        )
    except PolicyError as exc:
        raise Invalid(str(exc), "credits") from None


async def key_extras(args: argparse.Namespace, db: Database) -> dict[str, Any]:
    """The plan, credits and metadata of `keys create` / `keys edit`, as service arguments."""
    extras: dict[str, Any] = {"metadata": args.metadata, "credits": _credits(args)}
    if args.plan is not None:
        extras["plan_id"] = (await plans.find_plan(db, OPERATOR, args.plan)).id
    return extras


async def edit_extras(args: argparse.Namespace, db: Database) -> dict[str, Any]:
    extras = await key_extras(args, db)
    extras["clear_plan"], extras["clear_credits"] = args.no_plan, args.no_credits
    return extras


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """`gateway plans ...`, `gateway usage export`, and `users|applications edit`."""
    group = sub.add_parser("plans", parents=[common], help="manage plans (limits, credits)")
    actions = group.add_subparsers(dest="action", required=True)
    for name in ("create", "edit"):
        action = actions.add_parser(name, parents=[common])
        action.add_argument("name" if name == "create" else "plan", metavar="NAME|ID")
        if name == "edit":
            action.add_argument("--name", dest="new_name", help="a new name")
        action.add_argument("--rate-limit", action="append", type=_rate_limit, metavar="N/WINDOW")
        action.add_argument("--credits", type=int, metavar="N", help="each budget starts at N")
        action.add_argument("--refill", choices=core_plans.INTERVALS, help="back to N each ...")
        action.add_argument("--metadata", type=_json_object, metavar="JSON")
    actions.add_parser("list", parents=[common])
    for name in ("show", "delete"):
        actions.add_parser(name, parents=[common]).add_argument("plan", metavar="NAME|ID")

    usage = sub.add_parser("usage", parents=[common], help="usage per day, for billing")
    usage_actions = usage.add_subparsers(dest="action", required=True)
    exported = usage_actions.add_parser("export", parents=[common])
    exported.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD")
    exported.add_argument("--to", dest="end", required=True, metavar="YYYY-MM-DD")
    exported.add_argument("--group-by", choices=("key", "bearer", "plan"), default="key")
    exported.add_argument("--format", choices=("json", "csv"), default="csv")


def add_bearer_edit(actions: Any, common: argparse.ArgumentParser, kind: str) -> None:
    edit = actions.add_parser("edit", parents=[common], help=f"the {kind}'s plan and budget")
    edit.add_argument("id")
    edit.add_argument(
        "--rate-limit",
        action="append",
        type=_rate_limit,
        metavar="N/WINDOW",
        help="shared by all its keys (repeat for more; replaces its list)",
    )
    edit.add_argument("--no-rate-limits", action="store_true")
    budget_options(edit, f"the {kind}")


async def cmd_bearer_edit(args: argparse.Namespace, db: Database, kind: str) -> Any:
    fields: dict[str, Any] = {}
    if args.plan is not None:
        fields["plan_id"] = (await plans.find_plan(db, OPERATOR, args.plan)).id
    elif args.no_plan:
        fields["plan_id"] = None
    if args.rate_limit or args.no_rate_limits:
        fields["rate_limits"] = tuple(args.rate_limit or ())
    credits = _credits(args)
    if credits is not None or args.no_credits:
        fields["credits"] = credits
    return await directory.update(db, OPERATOR, kind, args.id, fields)


def _plan_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if args.rate_limit is not None:
        fields["rate_limits"] = tuple(args.rate_limit)
    if args.credits is not None:
        fields["credits"] = core_plans.Credits(
            args.credits,
            None if args.refill is None else core_plans.Refill(args.credits, args.refill),
        )
    elif args.refill is not None:
        raise Invalid("--refill goes with --credits N", "refill")
    if args.metadata is not None:
        fields["metadata"] = args.metadata
    return fields


def plan_text(plan: dict[str, Any]) -> str:
    limits = ", ".join(f"{r['limit']}/{r['window_seconds']}s" for r in plan["rate_limits"])
    credits = plan["credits"]
    return "\n".join(
        [
            f"id                  {plan['id']}",
            f"name                {plan['name']}",
            f"rate_limits         {limits or '(none)'}",
            "credits             "
            + (
                "(unlimited)"
                if credits is None
                else f"{credits['amount']}, refill {credits['refill'] or 'never'}"
            ),
            f"metadata            {json.dumps(plan['metadata'])}",
        ]
    )


async def cmd_plans(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    data, text = await _plans(args, cfg, db)
    print(json.dumps(data, indent=2) if args.json else text)


async def _plans(args: argparse.Namespace, cfg: Config, db: Database) -> tuple[Any, str]:
    if args.action == "create":
        fields = _plan_fields(args)
        plan = plan_json(
            await plans.create_plan(
                db,
                OPERATOR,
                args.name,
                fields.get("rate_limits", ()),
                fields.get("credits"),
                fields.get("metadata"),
            )
        )
        return plan, plan_text(plan)
    if args.action == "list":
        rows = [plan_json(p) for p in await plans.list_plans(db, OPERATOR)]
        text = "\n".join(f"{p['id']}  {p['name']}" for p in rows) or "(none)"
        return {"plans": rows}, text
    found = await plans.find_plan(db, OPERATOR, args.plan)
    if args.action == "show":
        plan = plan_json(found)
        return plan, plan_text(plan)
    if args.action == "delete":
        await plans.delete_plan(db, OPERATOR, found.id)
        return {"id": found.id, "deleted": True}, f"Deleted plan {found.name}"
    fields = _plan_fields(args)
    if args.new_name is not None:
        fields["name"] = args.new_name
    plan = plan_json(await plans.update_plan(db, OPERATOR, found.id, fields))
    bound = cfg.cache.revocation_bound_seconds
    return plan, plan_text(plan) + f"\nEvery key on it follows within {bound:g} s."


async def cmd_key_switch(args: argparse.Namespace, db: Database) -> tuple[Any, str]:
    """`keys disable|enable ACCESS_KEY`."""
    disabled = args.action == "disable"
    key = key_json(await service.update_key(db, OPERATOR, args.access_key, disabled=disabled))
    word = "Disabled" if disabled else "Enabled"
    return key, f"{word} {args.access_key}."


async def cmd_usage(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    body, _ = await export(db, OPERATOR, args.start, args.end, args.group_by, args.format)
    sys.stdout.write(body)
