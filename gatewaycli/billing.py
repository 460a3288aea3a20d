"""The budget options of the key and bearer commands: a plan, credits and metadata on `keys
create|edit`, and a plan, shared rate limits and credits on `users|applications edit`, read into
the arguments of the service functions the admin API calls. The commands on plans themselves and
the usage export are in ``gatewaycli.plans``.

A plan is named by its id or name, read as a project's is (``admin.names``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from admin import names
from admin.access import LOCAL_OPERATOR as OPERATOR
from admin.access import Invalid
from core import plans as core_plans
from core.policies import PolicyError
from core.store import Database
from gatewaycli import options

INTERVALS = "|".join(core_plans.INTERVALS)


def json_object(text: str) -> dict[str, Any]:
    shown = text if len(text) <= 60 else text[:57] + "..."
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{shown!r} is not JSON: write a JSON object such as {{"tier": "gold"}}'
        ) from None
    except RecursionError:
        raise argparse.ArgumentTypeError(
            f"{shown!r} nests arrays or objects too deeply: write a flat JSON object"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f'{shown!r} is not a JSON object: write one such as {{"tier": "gold"}}'
        )
    return value


def _refill(text: str) -> tuple[int, str]:
    amount, _, interval = text.partition("/")
    if not amount.isdigit() or interval not in core_plans.INTERVALS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a refill like 1000/monthly or 50/daily")
    return int(amount), interval


def metadata_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--metadata",
        type=json_object,
        metavar="JSON",
        help=f'{what} metadata, a JSON object of at most 1 KB such as \'{{"tier": "gold"}}\' '
        "(sent upstream in X-Auth-Key-Metadata)",
    )


def budget_options(parser: argparse.ArgumentParser, what: str, editing: bool) -> None:
    """--plan, --credits N, --refill N/INTERVAL; when editing, --no-plan and --no-credits."""
    plan = parser.add_mutually_exclusive_group() if editing else parser
    plan.add_argument("--plan", metavar="PLAN", help=f"put {what} on this plan: its id or name")
    credits = parser.add_mutually_exclusive_group() if editing else parser
    credits.add_argument(
        "--credits",
        type=int,
        metavar="N",
        help=f"credits of {what}'s own: each request spends its route's cost; at 0, 429"
        + (" (starts again at N)" if editing else ""),
    )
    parser.add_argument(
        "--refill",
        type=_refill,
        metavar=f"N/{INTERVALS}",
        help="with --credits: back to N at each UTC day or month (default: never)",
    )
    if editing:
        plan.add_argument("--no-plan", action="store_true", help=f"take {what} off its plan")
        credits.add_argument(
            "--no-credits",
            action="store_true",
            help=f"no credits of {what}'s own (its plan's apply, else unlimited)",
        )


def key_options(parser: argparse.ArgumentParser, editing: bool = False) -> None:
    metadata_option(parser, "the key's" + (" new" if editing else ""))
    budget_options(parser, "the key", editing)


def bearer_options(parser: argparse.ArgumentParser, kind: str) -> None:
    """What `users|applications edit` change of a bearer's budget, one for all its keys."""
    limits = parser.add_mutually_exclusive_group()
    limits.add_argument(
        "--rate-limit",
        action="append",
        type=options.rate_limit,
        metavar="N/WINDOW",
        help=f"at most N requests in any WINDOW for all the {kind}'s keys together (100/60s; "
        "repeat for more; replaces its list)",
    )
    limits.add_argument(
        "--no-rate-limits", action="store_true", help=f"remove the {kind}'s own limits"
    )
    budget_options(parser, f"the {kind}", editing=True)


def _credits(args: argparse.Namespace) -> core_plans.Credits | None:
    if args.credits is None:
        if args.refill is not None:
            raise Invalid("--refill goes with --credits N", "refill")
        return None
    refill = None if args.refill is None else {"amount": args.refill[0], "interval": args.refill[1]}
    try:
        return core_plans.key_credits({"remaining": args.credits, "refill": refill})
    except PolicyError as exc:
        raise Invalid(str(exc), "credits") from None


async def _plan_id(args: argparse.Namespace, db: Database) -> str | None:
    if args.plan is None:
        return None
    return await names.resolve(db, OPERATOR, "plan", args.plan, "plan_id")


async def key_extras(args: argparse.Namespace, db: Database) -> dict[str, Any]:
    """The plan, credits and metadata of `keys create`, as service arguments."""
    return {
        "metadata": args.metadata,
        "credits": _credits(args),
        "plan_id": await _plan_id(args, db),
    }


async def edit_extras(args: argparse.Namespace, db: Database) -> dict[str, Any]:
    """The same for `keys edit`, which may also take a key off its plan or its credits."""
    extras = await key_extras(args, db)
    extras["clear_plan"], extras["clear_credits"] = args.no_plan, args.no_credits
    return extras


async def bearer_changes(args: argparse.Namespace, db: Database) -> dict[str, Any]:
    """The budget fields of ``admin.directory.update`` that `users|applications edit` gave."""
    fields: dict[str, Any] = {}
    if args.plan is not None:
        fields["plan_id"] = await _plan_id(args, db)
    elif args.no_plan:
        fields["plan_id"] = None
    if args.rate_limit or args.no_rate_limits:
        fields["rate_limits"] = tuple(args.rate_limit or ())
    credits = _credits(args)
    if credits is not None or args.no_credits:
        fields["credits"] = credits
    return fields


BEARER_CHANGES = "--plan, --no-plan, --rate-limit, --no-rate-limits, --credits or --no-credits"
