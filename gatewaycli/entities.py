"""`gateway projects|users|applications ...`: create, list, show, edit and delete them, through
the service functions the admin API calls (``admin.directory``). Each is named by its id, a user
also by email, a project or an application by name (``admin.names``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from admin import access, directory, names
from admin.serialize import application_json, project_json, user_json
from core.config import Config
from core.store import Database
from gatewaycli import billing
from gatewaycli.output import emit, fields_text, table
from gatewaycli.registry import Group, group

OPERATOR = access.LOCAL_OPERATOR
SERIALIZERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "project": project_json,
    "user": user_json,
    "application": application_json,
}
COLUMNS = {
    "project": ["id", "name", "created_at"],
    "user": ["id", "email", "permission_sets", "is_owner"],
    "application": ["id", "name", "permission_sets"],
}
SETS_HELP = (
    f"a permission set ({', '.join(sorted(access.PERMISSION_SETS))}): it may manage the "
    "organization"
)


def _ref_argument(kind: str) -> Callable[[argparse.ArgumentParser], None]:
    by = names.NAMED_BY[kind]

    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(kind, metavar=kind.upper(), help=f"the {kind}: its id or {by}")

    return add


def _declare(kind: str, plural: str, help: str) -> Group:
    """The five actions of one kind; what differs between kinds is in the option functions."""
    commands = group(plural, help)
    by = names.NAMED_BY[kind]
    ref = _ref_argument(kind)

    def create_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(by, metavar=by.upper(), help=f"the new {kind}'s {by}")
        if kind != "project":
            _sets_options(parser, editing=False)

    def edit_options(parser: argparse.ArgumentParser) -> None:
        ref(parser)
        if kind != "user":  # a user is their email, which is how they sign in elsewhere
            parser.add_argument("--name", help=f"the {kind}'s new name")
        if kind != "project":
            _sets_options(parser, editing=True)
            billing.bearer_options(parser, kind)

    @commands.command("create", f"a new {kind}", create_options)
    async def create(args: argparse.Namespace, cfg: Config, db: Database) -> None:
        created: Any
        if kind == "project":
            created = await directory.create_project(db, OPERATOR, args.name)
        elif kind == "user":
            created = await directory.create_user(
                db, OPERATOR, args.email, tuple(args.permission_set)
            )
        else:
            created = await directory.create_application(
                db, OPERATOR, args.name, tuple(args.permission_set)
            )
        data = SERIALIZERS[kind](created)
        emit(args, data, f"Created {kind} {names.label(created)}: {created.id}")

    @commands.command("list", f"every {kind} of the organization")
    async def list_all(args: argparse.Namespace, cfg: Config, db: Database) -> None:
        rows = [SERIALIZERS[kind](x) for x in await directory.list_of(db, OPERATOR, kind)]
        emit(args, {plural: rows}, table(rows, COLUMNS[kind]))

    @commands.command("show", f"one {kind}", ref)
    async def show(args: argparse.Namespace, cfg: Config, db: Database) -> None:
        object_id = await names.resolve(db, OPERATOR, kind, getattr(args, kind), "id")
        data = SERIALIZERS[kind](await directory.get(db, OPERATOR, kind, object_id))
        emit(args, data, fields_text(data))

    edit_help = f"change a {kind}" + ("" if kind == "project" else "'s permissions, plan or budget")

    @commands.command("edit", edit_help, edit_options)
    async def edit(args: argparse.Namespace, cfg: Config, db: Database) -> None:
        object_id = await names.resolve(db, OPERATOR, kind, getattr(args, kind), "id")
        changes: dict[str, Any] = {}
        if getattr(args, "name", None) is not None:
            changes["name"] = args.name
        if getattr(args, "no_permission_sets", False):
            changes["permission_sets"] = []
        elif getattr(args, "permission_set", None):
            changes["permission_sets"] = args.permission_set
        if kind != "project":
            changes.update(await billing.bearer_changes(args, db))
        if not changes:
            raise access.Invalid(f"nothing to change: give {_what_changes(kind)}", kind)
        data = SERIALIZERS[kind](await directory.update(db, OPERATOR, kind, object_id, changes))
        emit(args, data, fields_text(data))

    @commands.command(
        "delete",
        f"delete a {kind}" + ("" if kind == "project" else f" and revoke the {kind}'s keys"),
        ref,
    )
    async def delete(args: argparse.Namespace, cfg: Config, db: Database) -> None:
        object_id = await names.resolve(db, OPERATOR, kind, getattr(args, kind), "id")
        revoked = await directory.delete(db, OPERATOR, kind, object_id)
        text = f"Deleted {kind} {getattr(args, kind)} ({object_id})"
        if revoked:
            text += f"; revoked its keys {', '.join(revoked)}"
        emit(args, {"deleted": object_id, "kind": kind, "revoked_keys": revoked}, text + ".")

    return commands


def _what_changes(kind: str) -> str:
    return {
        "project": "--name",
        "user": f"--permission-set, --no-permission-sets, {billing.BEARER_CHANGES}",
        "application": f"--name, --permission-set, --no-permission-sets, {billing.BEARER_CHANGES}",
    }[kind]


def _sets_options(parser: argparse.ArgumentParser, editing: bool) -> None:
    sets = parser.add_mutually_exclusive_group() if editing else parser
    sets.add_argument(
        "--permission-set",
        action="append",
        default=[],
        choices=sorted(access.PERMISSION_SETS),
        help=SETS_HELP + (" (repeat for more; replaces the list)" if editing else ""),
    )
    if editing:
        sets.add_argument(
            "--no-permission-sets", action="store_true", help="no permission set: a plain bearer"
        )


projects = _declare("project", "projects", "manage projects (a key's default project)")
users = _declare("user", "users", "manage users (people who bear keys)")
applications = _declare(
    "application", "applications", "manage applications (services that bear keys)"
)
