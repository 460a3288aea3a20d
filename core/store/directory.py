"""SQL for the directory: organizations, projects, users and applications."""

from __future__ import annotations

import json
from typing import Any

from core import plans
from core.store.database import Database, Writer
from core.store.keys import rate_limits_of
from core.store.records import Application, Organization, Project, User


def _sets(raw: str) -> tuple[str, ...]:
    return tuple(json.loads(raw))


async def first_organization(db: Database | Writer) -> Organization | None:
    row = await db.fetchone(
        "SELECT id, name, default_project_id, created_at FROM organizations "
        "ORDER BY created_at, id LIMIT 1"
    )
    return Organization(*row) if row else None


async def get_organization(db: Database | Writer, org_id: str) -> Organization | None:
    row = await db.fetchone(
        "SELECT id, name, default_project_id, created_at FROM organizations WHERE id = ?",
        (org_id,),
    )
    return Organization(*row) if row else None


async def insert_organization(w: Writer, org: Organization) -> None:
    await w.execute(
        "INSERT INTO organizations (id, name, default_project_id, created_at) VALUES (?, ?, ?, ?)",
        (org.id, org.name, org.default_project_id, org.created_at),
    )


async def set_default_project(w: Writer, org_id: str, project_id: str) -> None:
    await w.execute(
        "UPDATE organizations SET default_project_id = ? WHERE id = ?", (project_id, org_id)
    )


# -- projects ----------------------------------------------------------------------------------

_PROJECT = "SELECT id, organization_id, name, created_at, updated_at FROM projects"


async def insert_project(w: Writer, project: Project) -> None:
    await w.execute(
        "INSERT INTO projects (id, organization_id, name, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (project.id, project.organization_id, project.name, project.created_at, project.updated_at),
    )


async def get_project(db: Database | Writer, project_id: str) -> Project | None:
    row = await db.fetchone(f"{_PROJECT} WHERE id = ?", (project_id,))
    return Project(*row) if row else None


async def list_projects(db: Database, org_id: str) -> list[Project]:
    rows = await db.fetchall(
        f"{_PROJECT} WHERE organization_id = ? ORDER BY created_at, id", (org_id,)
    )
    return [Project(*r) for r in rows]


# -- users and applications ----------------------------------------------------------------------

_USER = (
    "SELECT id, organization_id, email, permission_sets, is_owner, created_at, updated_at, "
    "plan_id, rate_limits, credits FROM users"
)
_APPLICATION = (
    "SELECT id, organization_id, name, permission_sets, created_at, updated_at, "
    "plan_id, rate_limits, credits FROM applications"
)


def _budget(row: tuple[Any, ...]) -> dict[str, Any]:
    plan_id, limits, credits = row
    return {
        "plan_id": plan_id,
        "rate_limits": rate_limits_of(limits),
        "credits": plans.credits_from_column(credits),
    }


def _user(row: tuple[Any, ...]) -> User:
    return User(
        row[0], row[1], row[2], _sets(row[3]), bool(row[4]), row[5], row[6], **_budget(row[7:])
    )


def _application(row: tuple[Any, ...]) -> Application:
    return Application(row[0], row[1], row[2], _sets(row[3]), row[4], row[5], **_budget(row[6:]))


async def insert_user(w: Writer, user: User) -> None:
    await w.execute(
        "INSERT INTO users (id, organization_id, email, permission_sets, is_owner, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            user.id,
            user.organization_id,
            user.email,
            json.dumps(list(user.permission_sets)),
            int(user.is_owner),
            user.created_at,
            user.updated_at,
        ),
    )


async def get_user(db: Database | Writer, user_id: str) -> User | None:
    row = await db.fetchone(f"{_USER} WHERE id = ?", (user_id,))
    return _user(row) if row else None


async def owner_of(db: Database | Writer, org_id: str) -> User | None:
    row = await db.fetchone(
        f"{_USER} WHERE organization_id = ? AND is_owner = 1 ORDER BY created_at LIMIT 1", (org_id,)
    )
    return _user(row) if row else None


async def list_users(db: Database, org_id: str) -> list[User]:
    rows = await db.fetchall(
        f"{_USER} WHERE organization_id = ? ORDER BY created_at, id", (org_id,)
    )
    return [_user(r) for r in rows]


async def insert_application(w: Writer, app: Application) -> None:
    await w.execute(
        "INSERT INTO applications (id, organization_id, name, permission_sets, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        (
            app.id,
            app.organization_id,
            app.name,
            json.dumps(list(app.permission_sets)),
            app.created_at,
            app.updated_at,
        ),
    )


async def get_application(db: Database | Writer, app_id: str) -> Application | None:
    row = await db.fetchone(f"{_APPLICATION} WHERE id = ?", (app_id,))
    return _application(row) if row else None


async def list_applications(db: Database, org_id: str) -> list[Application]:
    rows = await db.fetchall(
        f"{_APPLICATION} WHERE organization_id = ? ORDER BY created_at, id", (org_id,)
    )
    return [_application(r) for r in rows]


# -- changes ---------------------------------------------------------------------------------------

_TABLES = {"project": "projects", "user": "users", "application": "applications"}
_EDITABLE = {
    "projects": ("name",),
    "users": ("permission_sets",),
    "applications": ("name", "permission_sets"),
}


async def update(w: Writer, kind: str, object_id: str, changes: dict[str, Any], now: float) -> None:
    table = _TABLES[kind]
    columns = [c for c in _EDITABLE[table] if c in changes]
    values = [
        json.dumps(list(changes[c])) if c == "permission_sets" else changes[c] for c in columns
    ]
    sets = "".join(f"{c} = ?, " for c in columns)
    await w.execute(
        f"UPDATE {table} SET {sets}updated_at = ? WHERE id = ?", [*values, now, object_id]
    )


async def delete(w: Writer, kind: str, object_id: str) -> None:
    await w.execute(f"DELETE FROM {_TABLES[kind]} WHERE id = ?", (object_id,))


async def keys_of(db: Database | Writer, column: str, value: str) -> list[str]:
    """Access keys whose `user_id`, `application_id` or `default_project_id` is `value`."""
    assert column in ("user_id", "application_id", "default_project_id")
    rows = await db.fetchall(
        f"SELECT access_key FROM api_keys WHERE {column} = ? ORDER BY access_key", (value,)
    )
    return [str(r[0]) for r in rows]
