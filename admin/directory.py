"""Projects, users and applications of an organization: the service functions over them.

Listing projects is open to every bearer of the organization (a key names one); everything else
needs a manager (Owner, IAMManager, OrganizationManager), except that a bearer may read itself.
Deleting a user or an application revokes its keys first (each with its ``key_events`` row);
a project that is some key's default cannot be deleted (409 naming the keys).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from admin.access import (
    Actor,
    Conflict,
    Invalid,
    NotFound,
    audited,
    organization_of,
    record,
    require_manager,
)
from admin.fields import EMAIL, NAME, PERMISSION_SET_NAMES, UPDATE, strip_white_space
from admin.plans import (
    budget_of,
    check_plan,
    check_rate_limits,
    follow_budget,
    plan_of,
    set_credits,
)
from core.store import Database, Writer
from core.store import directory as store_dir
from core.store import keys as store_keys
from core.store import plans as store_plans
from core.store.records import Application, Project, User

Entity = Project | User | Application
KINDS = ("project", "user", "application")


def _check_name(value: Any) -> str:
    checked: str = NAME.parse("name", value)
    return strip_white_space(checked)


def _check_permission_sets(sets: Any) -> tuple[str, ...]:
    checked: tuple[str, ...] = PERMISSION_SET_NAMES.parse("permission_sets", sets)
    return checked


def _check_email(value: Any) -> str:
    checked: str = EMAIL.parse("email", value)
    return strip_white_space(checked)


async def _check_unique_project(
    db: Database, org_id: str, name: str, itself: str | None = None
) -> None:
    if any(p.name == name and p.id != itself for p in await store_dir.list_projects(db, org_id)):
        raise Conflict(f"a project named {name!r} already exists", "name")


async def create_project(db: Database, actor: Actor, name: str) -> Project:
    async with audited(db, actor, "project.create", "project", None):
        require_manager(actor, "creating projects")
    name = _check_name(name)
    org_id = await organization_of(db, actor)
    await _check_unique_project(db, org_id, name)
    now = time.time()
    project = Project(str(uuid.uuid4()), org_id, name, now, now)
    async with db.transaction() as w:
        await store_dir.insert_project(w, project)
        await record(w, actor, org_id, "project.create", "project", project.id)
    return project


async def create_user(
    db: Database, actor: Actor, email: str, permission_sets: tuple[str, ...] = ()
) -> User:
    async with audited(db, actor, "user.create", "user", None):
        require_manager(actor, "creating users")
    email = _check_email(email)
    sets = _check_permission_sets(list(permission_sets))
    org_id = await organization_of(db, actor)
    if any(u.email == email for u in await store_dir.list_users(db, org_id)):
        raise Conflict(f"a user with email {email!r} already exists", "email")
    now = time.time()
    user = User(str(uuid.uuid4()), org_id, email, sets, False, now, now)
    async with db.transaction() as w:
        await store_dir.insert_user(w, user)
        await record(w, actor, org_id, "user.create", "user", user.id)
    return user


async def create_application(
    db: Database, actor: Actor, name: str, permission_sets: tuple[str, ...] = ()
) -> Application:
    async with audited(db, actor, "application.create", "application", None):
        require_manager(actor, "creating applications")
    org_id = await organization_of(db, actor)
    now = time.time()
    app = Application(
        str(uuid.uuid4()),
        org_id,
        _check_name(name),
        _check_permission_sets(list(permission_sets)),
        now,
        now,
    )
    async with db.transaction() as w:
        await store_dir.insert_application(w, app)
        await record(w, actor, org_id, "application.create", "application", app.id)
    return app


async def list_of(db: Database, actor: Actor, kind: str) -> list[Any]:
    org_id = await organization_of(db, actor)
    if kind == "project":
        return await store_dir.list_projects(db, org_id)
    require_manager(actor, f"listing {kind}s")
    if kind == "user":
        return await store_dir.list_users(db, org_id)
    return await store_dir.list_applications(db, org_id)


async def get(db: Database, actor: Actor, kind: str, object_id: str) -> Any:
    """The object if it is in the actor's organization and the actor may read it."""
    found: Entity | None
    if kind == "project":
        found = await store_dir.get_project(db, object_id)
    elif kind == "user":
        found = await store_dir.get_user(db, object_id)
    else:
        found = await store_dir.get_application(db, object_id)
    org_id = await organization_of(db, actor)
    itself = actor.kind == kind and actor.id == object_id
    if (
        found is None
        or found.organization_id != org_id
        or not (kind == "project" or actor.is_manager or itself)
    ):
        raise NotFound(f"{kind} {object_id!r} does not exist", "id")
    return found


async def update(
    db: Database, actor: Actor, kind: str, object_id: str, fields: dict[str, Any]
) -> Any:
    allowed = UPDATE[kind].fields
    for name in fields:
        if name not in allowed:
            raise Invalid(
                f"{name} cannot be changed; changeable: {', '.join(sorted(allowed))}", name
            )
    async with audited(db, actor, f"{kind}.update", kind, object_id):
        found = await get(db, actor, kind, object_id)
        require_manager(actor, f"changing a {kind}")
    changes: dict[str, Any] = {}
    if "name" in fields:
        changes["name"] = _check_name(fields["name"])
        if kind == "project":
            await _check_unique_project(db, found.organization_id, changes["name"], object_id)
    if "permission_sets" in fields:
        changes["permission_sets"] = _check_permission_sets(fields["permission_sets"])
    budget = await _budget(db, found.organization_id, fields)
    # A bearer moved to another plan, or whose own credits are taken away: its balance follows.
    moved = kind != "project" and budget.get("credits") is None
    moved = moved and ("plan_id" in budget or ("credits" in budget and found.credits is not None))
    if moved:
        before = budget_of(found.credits, await plan_of(db, found.plan_id))
        after = budget_of(
            None if "credits" in budget else found.credits,
            await plan_of(db, budget.get("plan_id", found.plan_id)),
        )
    if changes or budget:
        now = time.time()
        async with db.transaction() as w:
            if changes:
                await store_dir.update(w, kind, object_id, changes, now)
            if budget:
                await _set_budget(w, kind, object_id, budget, now)
            if moved:
                await follow_budget(w, f"{kind}:{object_id}", before, after, now)
            changes.update(budget)
            await record(
                w,
                actor,
                found.organization_id,
                f"{kind}.update",
                kind,
                object_id,
                ", ".join(sorted(changes)),
            )
    return await get(db, actor, kind, object_id)


async def _budget(db: Database, org_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A bearer's plan, rate limits and credits, as given: one budget for all its keys."""
    budget: dict[str, Any] = {}
    if "plan_id" in fields:
        plan_id = fields["plan_id"]
        budget["plan_id"] = None if plan_id is None else await check_plan(db, org_id, plan_id)
    if "rate_limits" in fields:
        budget["rate_limits"] = check_rate_limits(fields["rate_limits"])
    if "credits" in fields:
        budget["credits"] = fields["credits"]
    return budget


async def _set_budget(
    w: Writer, kind: str, bearer_id: str, budget: dict[str, Any], now: float
) -> None:
    await store_plans.update_bearer(w, kind, bearer_id, budget, now)
    await set_credits(w, f"{kind}:{bearer_id}", budget.get("credits"), now)


async def delete(db: Database, actor: Actor, kind: str, object_id: str) -> list[str]:
    """Delete it; returns the access keys revoked with it (a user's or an application's)."""
    async with audited(db, actor, f"{kind}.delete", kind, object_id):
        found = await get(db, actor, kind, object_id)
        require_manager(actor, f"deleting a {kind}")
    if kind == "user" and getattr(found, "is_owner", False):
        raise Conflict("the organization's owner cannot be deleted", "id")
    if kind == "project":
        keys = await store_dir.keys_of(db, "default_project_id", object_id)
        org = await store_dir.get_organization(db, found.organization_id)
        if keys:
            raise Conflict(
                f"project {object_id!r} is the default project of API keys "
                f"{', '.join(keys)}; move or delete them first",
                "id",
            )
        if org is not None and org.default_project_id == object_id:
            raise Conflict("the organization's default project cannot be deleted", "id")
    now = time.time()
    revoked: list[str] = []
    async with db.transaction() as w:
        if kind != "project":
            revoked = await store_dir.keys_of(w, f"{kind}_id", object_id)
            for access_key in revoked:
                await store_keys.delete(w, access_key, now)
                await record(
                    w,
                    actor,
                    found.organization_id,
                    "api_key.delete",
                    "api_key",
                    access_key,
                    f"{kind} {object_id} deleted",
                )
        await store_dir.delete(w, kind, object_id)
        await record(w, actor, found.organization_id, f"{kind}.delete", kind, object_id)
    return revoked
