"""Plans: rate limits, credits and metadata that keys and bearers take by name.

Any bearer of the organization may list and read plans (a key names one, as it names a
project); creating, changing and deleting one needs a manager. A change reaches every key on
the plan, directly or through its bearer, within the revocation bound (``core.store.plans``
names each in the key feed). A plan still in use cannot be deleted (409 saying how many use it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from admin.access import (
    Actor,
    Conflict,
    NotFound,
    Unprocessable,
    audited,
    organization_of,
    record,
    require_manager,
)
from admin.fields import PLAN_NAME, RATE_LIMITS, strip_white_space
from core import plans, policies
from core.plans import Credits
from core.policies import PolicyError, RateLimit
from core.store import Database, Writer
from core.store import credits as store_credits
from core.store import plans as store_plans
from core.store.records import Plan


def check_rate_limits(values: Sequence[RateLimit]) -> tuple[RateLimit, ...]:
    RATE_LIMITS.parse("rate_limits", [r.to_json() for r in values])
    try:
        return policies.rate_limits(list(values))
    except PolicyError as exc:
        raise Unprocessable(str(exc), "rate_limits") from None


def check_metadata(value: Any) -> dict[str, Any]:
    try:
        return plans.metadata(value)
    except PolicyError as exc:
        raise Unprocessable(str(exc), "metadata") from None


def _check_name(value: Any) -> str:
    checked: str = PLAN_NAME.parse("name", value)
    return strip_white_space(checked)


async def _unique(db: Database, org_id: str, name: str, itself: str | None = None) -> None:
    if any(p.name == name and p.id != itself for p in await store_plans.list_plans(db, org_id)):
        raise Conflict(f"a plan named {name!r} already exists", "name")


async def check_plan(db: Database, org_id: str, plan_id: str, field: str = "plan_id") -> str:
    plan = await store_plans.get(db, plan_id)
    if plan is None or plan.organization_id != org_id:
        raise NotFound(f"plan {plan_id!r} does not exist", field)
    return plan_id


async def create_plan(
    db: Database,
    actor: Actor,
    name: str,
    rate_limits: Sequence[RateLimit] = (),
    credits: Credits | None = None,
    metadata: dict[str, Any] | None = None,
) -> Plan:
    async with audited(db, actor, "plan.create", "plan", None):
        require_manager(actor, "creating plans")
    name = _check_name(name)
    org_id = await organization_of(db, actor)
    await _unique(db, org_id, name)
    now = time.time()
    plan = Plan(
        str(uuid.uuid4()),
        org_id,
        name,
        check_rate_limits(rate_limits),
        credits,
        check_metadata(metadata or {}),
        now,
        now,
    )
    async with db.transaction() as w:
        await store_plans.insert(w, plan)
        await record(w, actor, org_id, "plan.create", "plan", plan.id)
    return plan


async def list_plans(db: Database, actor: Actor) -> list[Plan]:
    return await store_plans.list_plans(db, await organization_of(db, actor))


async def get_plan(db: Database, actor: Actor, plan_id: str) -> Plan:
    plan = await store_plans.get(db, plan_id)
    if plan is None or plan.organization_id != await organization_of(db, actor):
        raise NotFound(f"plan {plan_id!r} does not exist", "id")
    return plan


async def update_plan(db: Database, actor: Actor, plan_id: str, fields: dict[str, Any]) -> Plan:
    """Change what ``fields`` names (name, rate_limits, credits, metadata); every key on the
    plan follows within the revocation bound."""
    async with audited(db, actor, "plan.update", "plan", plan_id):
        plan = await get_plan(db, actor, plan_id)
        require_manager(actor, "changing a plan")
    changes: dict[str, Any] = {}
    if "name" in fields:
        changes["name"] = _check_name(fields["name"])
        await _unique(db, plan.organization_id, changes["name"], plan_id)
    if "rate_limits" in fields:
        changes["rate_limits"] = check_rate_limits(fields["rate_limits"])
    if "credits" in fields:
        changes["credits"] = fields["credits"]
    if "metadata" in fields:
        changes["metadata"] = check_metadata(fields["metadata"])
    if changes:
        now = time.time()
        async with db.transaction() as w:
            await store_plans.update(w, plan_id, changes, now)
            if "credits" in changes:  # every balance on the plan follows
                before = None if plan.credits is None else ("plan", plan.credits)
                after = None if changes["credits"] is None else ("plan", changes["credits"])
                for owner in await store_plans.budget_owners(w, plan_id):
                    await follow_budget(w, owner, before, after, now)
            await record(
                w,
                actor,
                plan.organization_id,
                "plan.update",
                "plan",
                plan_id,
                ", ".join(sorted(changes)),
            )
    return await get_plan(db, actor, plan_id)


async def delete_plan(db: Database, actor: Actor, plan_id: str) -> None:
    async with audited(db, actor, "plan.delete", "plan", plan_id):
        plan = await get_plan(db, actor, plan_id)
        require_manager(actor, "deleting a plan")
    used = await store_plans.users_of(db, plan_id)
    if used:
        raise Conflict(
            f"plan {plan.name!r} is used by {used} key(s), user(s) or application(s); move "
            "them to another plan first",
            "id",
        )
    async with db.transaction() as w:
        await store_plans.delete(w, plan_id)
        await record(w, actor, plan.organization_id, "plan.delete", "plan", plan_id)


Budget = tuple[str, Credits]  # ("own" | "plan", the credits): what an owner's balance is for


def budget_of(credits: Credits | None, plan: Plan | None) -> Budget | None:
    """The budget a key's (or a bearer's) balance holds, from its own inputs: its own credits,
    else its plan's (``core.plans.resolve`` says which of a key's and its bearer's applies)."""
    if credits is not None:
        return ("own", credits)
    if plan is not None and plan.credits is not None:
        return ("plan", plan.credits)
    return None


async def plan_of(db: Database, plan_id: str | None) -> Plan | None:
    return None if plan_id is None else await store_plans.get(db, plan_id)


async def follow_budget(
    w: Writer, owner: str, before: Budget | None, after: Budget | None, now: float
) -> None:
    """A balance whose budget changed by a move (another plan, or its own credits taken away)
    or by its plan's edit; setting its own credits is `set_credits`. From one plan's amount to
    another's, what was spent this period stays spent and the rest moves by the difference;
    a budget that was its own credits, or none, starts at the plan's amount."""
    if after is None or after == before or after[0] == "own":
        return
    credits = after[1]
    if before is None or before[0] == "own":
        interval = credits.refill.interval if credits.refill is not None else None
        await store_credits.set_balance(
            w, owner, credits.remaining, plans.period(interval, now), now
        )
        return
    await store_credits.rebase(w, owner, credits.remaining - before[1].remaining, now)


async def set_credits(w: Writer, owner: str, credits: Credits | None, now: float) -> None:
    """A budget's own credits set: its balance starts again at ``remaining`` (the
    reservations held against the old balance end)."""
    if credits is not None:
        interval = credits.refill.interval if credits.refill is not None else None
        await store_credits.set_balance(
            w, owner, credits.remaining, plans.period(interval, now), now
        )
