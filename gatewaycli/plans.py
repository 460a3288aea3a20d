"""`gateway plans ...` and `gateway usage export`: plans (rate limits, credits and metadata that
keys and bearers take by name) and usage per day for billing, as the local operator through the
service functions the admin API calls (``admin.plans``, ``admin.usage_export``).

A plan is named by its id or its name; a plan's ``--refill`` names only the interval, since a
plan's budgets always go back to its ``--credits`` amount (a key's own credits may refill to
another amount: ``keys create --credits 10 --refill 100/monthly``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from admin import names, plans, usage_export
from admin.access import LOCAL_OPERATOR as OPERATOR
from admin.access import Invalid
from admin.serialize import plan_json
from core import plans as core_plans
from core.config import Config
from core.policies import PolicyError
from core.store import Database
from core.store.records import Plan
from gatewaycli import billing, options
from gatewaycli.output import emit, table
from gatewaycli.registry import group

commands = group("plans", "manage plans: rate limits, credits and metadata keys take by name")


def _plan_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: its id or name")


def _plan_options(parser: argparse.ArgumentParser, editing: bool) -> None:
    again = " (repeat for more" + ("; replaces the plan's list)" if editing else ")")
    limits = parser.add_mutually_exclusive_group() if editing else parser
    limits.add_argument(
        "--rate-limit",
        action="append",
        type=options.rate_limit,
        metavar="N/WINDOW",
        help="at most N requests in any WINDOW for each key on the plan, or for all of a "
        "bearer's keys when the bearer is on it (100/60s)" + again,
    )
    credits = parser.add_mutually_exclusive_group() if editing else parser
    credits.add_argument(
        "--credits",
        type=int,
        metavar="N",
        help="each budget on the plan starts at N credits (default: unlimited)",
    )
    parser.add_argument(
        "--refill",
        choices=core_plans.INTERVALS,
        help="with --credits: back to N at each UTC day or month (default: never)",
    )
    billing.metadata_option(parser, "the plan's" + (" new" if editing else ""))
    if editing:
        limits.add_argument("--no-rate-limits", action="store_true", help="remove its limits")
        credits.add_argument("--no-credits", action="store_true", help="unlimited credits")


def _create_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the new plan's name (unique)")
    _plan_options(parser, editing=False)


def _edit_options(parser: argparse.ArgumentParser) -> None:
    _plan_argument(parser)
    parser.add_argument("--name", dest="new_name", help="the plan's new name")
    _plan_options(parser, editing=True)


async def _find(args: argparse.Namespace, db: Database) -> Plan:
    """The plan PLAN names: its id, or its name (``admin.names``: exact, else ignoring case)."""
    return await plans.get_plan(
        db, OPERATOR, await names.resolve(db, OPERATOR, "plan", args.plan, "plan")
    )


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """What was given, as ``admin.plans.update_plan`` fields."""
    fields: dict[str, Any] = {}
    if args.rate_limit is not None or getattr(args, "no_rate_limits", False):
        fields["rate_limits"] = tuple(args.rate_limit or ())
    if args.credits is not None:
        try:
            fields["credits"] = core_plans.plan_credits(
                {"amount": args.credits, "refill": args.refill}
            )
        except PolicyError as exc:
            raise Invalid(str(exc), "credits") from None
    elif args.refill is not None:
        raise Invalid("--refill goes with --credits N", "refill")
    elif getattr(args, "no_credits", False):
        fields["credits"] = None
    if args.metadata is not None:
        fields["metadata"] = args.metadata
    return fields


def plan_text(plan: dict[str, Any]) -> str:
    limits = ", ".join(f"{r['limit']}/{r['window_seconds']}s" for r in plan["rate_limits"])
    credits = plan["credits"]
    shown = (
        "(unlimited)"
        if credits is None
        else f"{credits['amount']}, refill {credits['refill'] or 'never'}"
    )
    return "\n".join(
        [
            f"id                  {plan['id']}",
            f"name                {plan['name']}",
            f"rate_limits         {limits or '(none)'}",
            f"credits             {shown}",
            f"metadata            {json.dumps(plan['metadata'])}",
        ]
    )


@commands.command("create", "a new plan", _create_options)
async def create(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    fields = _fields(args)
    made = await plans.create_plan(
        db,
        OPERATOR,
        args.name,
        fields.get("rate_limits", ()),
        fields.get("credits"),
        fields.get("metadata"),
    )
    plan = plan_json(made)
    emit(args, plan, plan_text(plan))


@commands.command("list", "every plan of the organization")
async def list_all(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    rows = [plan_json(p) for p in await plans.list_plans(db, OPERATOR)]
    shown = [
        {
            **row,
            "rate_limits": [f"{r['limit']}/{r['window_seconds']}s" for r in row["rate_limits"]],
            "credits": "-"
            if row["credits"] is None
            else f"{row['credits']['amount']}/{row['credits']['refill'] or 'never'}",
        }
        for row in rows
    ]
    emit(args, {"plans": rows}, table(shown, ["id", "name", "rate_limits", "credits"]))


@commands.command("show", "one plan", _plan_argument)
async def show(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    plan = plan_json(await _find(args, db))
    emit(args, plan, plan_text(plan))


@commands.command(
    "edit",
    "change a plan; every key on it follows within the revocation bound",
    _edit_options,
)
async def edit(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    found = await _find(args, db)
    fields = _fields(args)
    if args.new_name is not None:
        fields["name"] = args.new_name
    if not fields:
        raise Invalid(
            "nothing to change: give --name, --rate-limit, --no-rate-limits, --credits, "
            "--no-credits or --metadata",
            "plan",
        )
    plan = plan_json(await plans.update_plan(db, OPERATOR, found.id, fields))
    bound = cfg.cache.revocation_bound_seconds
    emit(args, plan, plan_text(plan) + f"\nEvery key on it follows within {bound:g} s.")


@commands.command("delete", "delete a plan nothing uses any more", _plan_argument)
async def delete(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    found = await _find(args, db)
    await plans.delete_plan(db, OPERATOR, found.id)
    emit(args, {"id": found.id, "deleted": True}, f"Deleted plan {found.name} ({found.id}).")


usage = group("usage", "usage per day, for billing")


def _export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from", dest="start", required=True, metavar="YYYY-MM-DD", help="the first day (UTC)"
    )
    parser.add_argument(
        "--to", dest="end", required=True, metavar="YYYY-MM-DD", help="the last day (UTC), kept"
    )
    parser.add_argument(
        "--group-by",
        choices=usage_export.GROUPS,
        default="key",
        help="one row per day and key (default), bearer or plan",
    )
    parser.add_argument(
        "--format",
        choices=usage_export.FORMATS,
        help="csv (default) or json (the default with --json)",
    )


@usage.command(
    "export",
    "allowed, denied, rate-limited requests and credits spent per day",
    _export_options,
)
async def export(args: argparse.Namespace, cfg: Config, db: Database) -> None:
    fmt = args.format or ("json" if args.json else "csv")
    body, _ = await usage_export.export(db, OPERATOR, args.start, args.end, args.group_by, fmt)
    sys.stdout.write(body if body.endswith("\n") else body + "\n")
