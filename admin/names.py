"""Naming a project, user, application or plan the way a person does: by id, email or name.

The CLI takes ``--user alice@example.com``, ``--application billing-job``, ``--project shop`` and
``--plan starter`` as readily as ids; the rules are here, in the service layer, so every caller
reads a name alike:

- an id of that kind in the actor's organization is that one;
- else a user's email, or a project's, application's or plan's name, matched exactly, then
  ignoring case;
- several matches are refused with the candidates (names of applications need not be unique,
  and those of plans are unique only as written: ``Pro`` and ``pro`` may both exist);
- none is "not found" saying what was looked for. Nothing is audited: a lookup is not an attempt
  at anything, so a typo leaves no bogus denial in the audit log.

An actor that may not list users or applications (a plain bearer) finds only itself among them;
plans every bearer of the organization may read.
"""

from __future__ import annotations

from collections.abc import Sequence

from admin.access import Actor, Invalid, NotFound, organization_of
from admin.directory import Entity
from core.store import Database
from core.store import directory as store_dir
from core.store import plans as store_plans
from core.store.records import Plan

# What each kind is named by, besides its id.
NAMED_BY = {"project": "name", "user": "email", "application": "name", "plan": "name"}


async def candidates(db: Database, actor: Actor, kind: str) -> list[Entity | Plan]:
    """The objects of ``kind`` the actor may name."""
    org_id = await organization_of(db, actor)
    found: list[Entity | Plan]
    if kind == "plan":
        found = list(await store_plans.list_plans(db, org_id))
    elif kind == "project":
        found = list(await store_dir.list_projects(db, org_id))
    elif kind == "user":
        found = list(await store_dir.list_users(db, org_id))
    else:
        found = list(await store_dir.list_applications(db, org_id))
    if kind != "project" and not actor.is_manager:
        found = [x for x in found if actor.kind == kind and x.id == actor.id]
    return found


def label(entity: Entity | Plan) -> str:
    """How a person recognises one: its name or email."""
    return str(getattr(entity, "email", None) or getattr(entity, "name", ""))


async def resolve(db: Database, actor: Actor, kind: str, ref: str, field: str | None = None) -> str:
    """The id of the ``kind`` that ``ref`` names (an id, an email or a name); raises NotFound or
    Invalid (ambiguous, with the candidates) on ``field`` (default ``<kind>_id``)."""
    return match(await candidates(db, actor, kind), kind, ref, field)


def match(found: Sequence[Entity | Plan], kind: str, ref: str, field: str | None = None) -> str:
    """The id of the one of ``found`` (objects of ``kind``) that ``ref`` names, by the rules
    above; raises NotFound or Invalid (ambiguous). For a caller naming many at once (an
    import), over objects it read once."""
    assert kind in NAMED_BY
    field = field or f"{kind}_id"
    ref = ref.strip()
    for entity in found:
        if entity.id == ref:
            return entity.id
    attribute = NAMED_BY[kind]
    matches = [e for e in found if label(e) == ref]
    if not matches:
        matches = [e for e in found if label(e).casefold() == ref.casefold()]
    if len(matches) == 1:
        return matches[0].id
    if matches:
        listed = "; ".join(f"{e.id} ({label(e)})" for e in matches)
        raise Invalid(
            f"{len(matches)} {kind}s have the {attribute} {ref!r}: {listed}; give the id",
            field,
            reason="ambiguous",
        )
    raise NotFound(f"no {kind} has the id or {attribute} {ref!r}", field)
