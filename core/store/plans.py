"""SQL for plans and for the budgets of bearers (a user's or an application's plan, rate limits
and credits). A change to either appends a ``key_events`` row for every key it reaches, in the
same transaction, so every gateway drops what it cached of them within the revocation bound,
as for an edit of the key itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from core import plans
from core.store.database import Database, Writer
from core.store.keys import policy_json, rate_limits_of
from core.store.records import Plan

_PLAN = (
    "SELECT id, organization_id, name, rate_limits, credits, metadata, created_at, updated_at "
    "FROM plans"
)


def _plan(row: tuple[Any, ...]) -> Plan:
    return Plan(
        row[0],
        row[1],
        row[2],
        rate_limits_of(row[3]),
        plans.plan_credits_from_column(row[4]),
        json.loads(row[5]),
        row[6],
        row[7],
    )


def _assignments(
    changes: dict[str, Any], credits_column: Callable[[Any], str | None]
) -> tuple[str, list[Any]]:
    """``name = ?, ...`` and the values, as the columns hold them (lists and objects as JSON;
    credits in the form of a plan's or of a key's, as ``credits_column`` writes them)."""
    values: list[Any] = []
    for name, value in changes.items():
        if name == "rate_limits":
            values.append(policy_json(value))
        elif name == "credits":
            values.append(credits_column(value))
        elif name == "metadata":
            values.append(json.dumps(value))
        else:
            values.append(value)
    return ", ".join(f"{name} = ?" for name in changes), values


async def insert(w: Writer, plan: Plan) -> None:
    await w.execute(
        "INSERT INTO plans (id, organization_id, name, rate_limits, credits, metadata, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            plan.id,
            plan.organization_id,
            plan.name,
            policy_json(plan.rate_limits),
            plans.plan_credits_column(plan.credits),
            json.dumps(plan.metadata),
            plan.created_at,
            plan.updated_at,
        ),
    )


async def get(db: Database | Writer, plan_id: str) -> Plan | None:
    row = await db.fetchone(f"{_PLAN} WHERE id = ?", (plan_id,))
    return _plan(row) if row else None


async def list_plans(db: Database | Writer, org_id: str) -> list[Plan]:
    rows = await db.fetchall(
        f"{_PLAN} WHERE organization_id = ? ORDER BY created_at, id", (org_id,)
    )
    return [_plan(r) for r in rows]


async def update(w: Writer, plan_id: str, changes: dict[str, Any], now: float) -> None:
    """Change the named fields; every key on the plan (directly or through its bearer) is
    named in the key feed."""
    sets, values = _assignments(changes, plans.plan_credits_column)
    await w.execute(
        f"UPDATE plans SET {sets}, updated_at = ? WHERE id = ?", [*values, now, plan_id]
    )
    await keys_changed(w, plan_id, now)


async def delete(w: Writer, plan_id: str) -> None:
    await w.execute("DELETE FROM plans WHERE id = ?", (plan_id,))


async def users_of(db: Database | Writer, plan_id: str) -> int:
    """How many keys, users and applications are on the plan."""
    row = await db.fetchone(
        "SELECT (SELECT count(*) FROM api_keys WHERE plan_id = ?1) + "
        "(SELECT count(*) FROM users WHERE plan_id = ?1) + "
        "(SELECT count(*) FROM applications WHERE plan_id = ?1)",
        (plan_id,),
    )
    return int(row[0]) if row else 0


async def budget_owners(w: Writer, plan_id: str) -> list[str]:
    """Whose balances are budgets on the plan: its keys and bearers without credits of their
    own (``key:AK``, ``user:ID``, ``application:ID``), in the order balances are locked."""
    rows = await w.fetchall(
        "SELECT 'key:' || access_key FROM api_keys WHERE plan_id = ?1 AND credits IS NULL "
        "UNION ALL SELECT 'user:' || id FROM users WHERE plan_id = ?1 AND credits IS NULL "
        "UNION ALL SELECT 'application:' || id FROM applications "
        "WHERE plan_id = ?1 AND credits IS NULL",
        (plan_id,),
    )
    return sorted(str(row[0]) for row in rows)


async def keys_changed(w: Writer, plan_id: str, now: float) -> None:
    """A key_events row for every key on the plan, directly or through its bearer."""
    await w.execute(
        "INSERT INTO key_events (access_key, action, created_at) "
        "SELECT access_key, 'plan', ?1 FROM api_keys WHERE plan_id = ?2 "
        "OR user_id IN (SELECT id FROM users WHERE plan_id = ?2) "
        "OR application_id IN (SELECT id FROM applications WHERE plan_id = ?2)",
        (now, plan_id),
    )


# -- a bearer's budget -----------------------------------------------------------------------

_BEARERS = {"user": "users", "application": "applications"}


async def update_bearer(
    w: Writer, kind: str, bearer_id: str, changes: dict[str, Any], now: float
) -> None:
    """A user's or an application's plan_id, rate_limits or credits; each of its keys is named
    in the key feed."""
    sets, values = _assignments(changes, plans.credits_column)
    await w.execute(
        f"UPDATE {_BEARERS[kind]} SET {sets}, updated_at = ? WHERE id = ?",
        [*values, now, bearer_id],
    )
    await w.execute(
        "INSERT INTO key_events (access_key, action, created_at) "
        f"SELECT access_key, 'bearer', ? FROM api_keys WHERE {kind}_id = ?",
        (now, bearer_id),
    )
