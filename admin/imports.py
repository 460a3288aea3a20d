"""Importing keys from another gateway (``gateway keys import``): the local operator's tool.

The file is read into candidates (``admin.import_formats``), each held to the rules a key of ours
is: a bearer of the organization (a user must exist; an application named so is found, or
created, as Kong consumers and Unkey owners become applications), a project of it, an expiry not
past, and a secret hash the store does not hold yet (nor the file twice). A dry run (the default)
says what would be taken and what refused, and why, and writes nothing; ``apply`` writes all that
is taken in one transaction (with each key's ``key.created`` event and audit event), or nothing.

Imported keys keep their old secrets: stored by SHA-256 (ours is the same hash), marked
``imported``, found by hash alone where ``[keys] accept_imported = true``, until rolled into our
format. The organization's lifetime policy does not refuse them (they exist already); those that
break it are listed by ``gateway keys audit-policy`` like any other.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from admin import names
from admin.access import LOCAL_OPERATOR, Invalid, NotFound, organization_of, record
from admin.directory import Entity
from admin.fields import NAME, checked_time
from admin.import_formats import Candidate
from core.store import Database, Writer
from core.store import directory as store_dir
from core.store import keys as store_keys
from core.store.records import ApiKey, Application
from core.tokens import generate_access_key


@dataclass(frozen=True)
class Report:
    applied: bool
    taken: list[tuple[str, str]] = field(default_factory=list)  # (where in the file, access key)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    applications_created: list[str] = field(default_factory=list)


async def _known_hashes(db: Database, hashes: Sequence[bytes]) -> set[bytes]:
    found = await store_keys.lookup_many(db, list(hashes))
    return set(found)


async def run(
    db: Database,
    candidates: Sequence[Candidate],
    source: str,
    *,
    apply: bool = False,
    default_project: str | None = None,
    default_bearer: tuple[str, str] | None = None,
) -> Report:
    org_id = await organization_of(db, LOCAL_OPERATOR)
    org = await store_dir.get_organization(db, org_id)
    assert org is not None and org.default_project_id is not None
    projects = list(await store_dir.list_projects(db, org_id))
    users = list(await store_dir.list_users(db, org_id))
    applications: list[Entity] = list(await store_dir.list_applications(db, org_id))
    known = await _known_hashes(db, [c.secret_hash for c in candidates if c.secret_hash])
    now = time.time()
    report = Report(apply)
    new_applications: dict[str, Application] = {}
    keys: list[tuple[str, ApiKey, bytes]] = []
    seen: set[bytes] = set()
    for candidate in candidates:
        why = candidate.refused
        if why is None and candidate.expires_in is not None:
            try:
                candidate = replace(
                    candidate, expires_at=checked_time(now + max(candidate.expires_in, 0.0))
                )
            except ValueError:
                why = "ttl is not a number of seconds"
        bearer = candidate.bearer or default_bearer
        project_ref = candidate.project or default_project
        project_id: str | None = org.default_project_id
        ambiguous: str | None = None
        if project_ref is not None:
            project_id, ambiguous = _named(projects, "project", project_ref)
        if why is None and candidate.secret_hash in known:
            why = "the store holds this secret already"
        elif why is None and candidate.secret_hash in seen:
            why = "the same secret is earlier in the file"
        elif why is None and bearer is None:
            why = "names no bearer: give --bearer user:EMAIL or application:NAME"
        elif why is None and project_id is None:
            why = ambiguous or f"project {project_ref!r} does not exist"
        elif why is None and candidate.expires_at is not None and candidate.expires_at <= now:
            why = "expired already"
        user_id = application_id = None
        if why is None and bearer is not None:
            kind, who = bearer
            if kind == "user":
                user_id, ambiguous = _named(users, "user", who)
                if user_id is None:
                    why = ambiguous or f"user {who!r} does not exist: create it first"
            else:
                application_id, why = _named(applications, "application", who)
                if application_id is None and why is None:
                    try:  # a name the API would take, or no application
                        NAME.parse("name", who)
                    except Invalid as exc:
                        report.refused.append((candidate.ref, f"the application's {exc.message}"))
                        continue
                    made = Application(str(uuid.uuid4()), org_id, who, (), now, now)
                    new_applications[made.name] = made
                    applications.append(made)
                    application_id = made.id
        if why is not None or candidate.secret_hash is None or project_id is None:
            report.refused.append((candidate.ref, why or "no secret"))
            continue
        seen.add(candidate.secret_hash)
        key = ApiKey(
            access_key=generate_access_key(),
            organization_id=org_id,
            user_id=user_id,
            application_id=application_id,
            default_project_id=project_id,
            description=candidate.description[:200],
            mode="live",
            created_at=now,
            updated_at=now,
            expires_at=candidate.expires_at,
            last_used_at=None,
            creation_ip=None,
            secret_prefix=candidate.shown,
            imported=True,
        )
        keys.append((candidate.ref, key, candidate.secret_hash))
        report.taken.append((candidate.ref, key.access_key))
    report = replace(report, applications_created=sorted(new_applications))
    if apply and keys:
        async with db.transaction() as w:
            await _write(w, org_id, list(new_applications.values()), keys, source)
    return report


def _named(found: Sequence[Entity], kind: str, ref: str) -> tuple[str | None, str | None]:
    """(the id ``ref`` names, None), (None, None) when it names none, or (None, why) when it
    names several: named as every command names them (``admin.names``)."""
    try:
        return names.match(found, kind, ref), None
    except NotFound:
        return None, None
    except Invalid as exc:
        return None, exc.message


async def _write(
    w: Writer,
    org_id: str,
    applications: list[Application],
    keys: list[tuple[str, ApiKey, bytes]],
    source: str,
) -> None:
    for app in applications:
        await store_dir.insert_application(w, app)
        await record(
            w, LOCAL_OPERATOR, org_id, "application.create", "application", app.id, "import"
        )
    for ref, key, secret_hash in keys:
        await store_keys.insert(w, key, secret_hash)
        await record(
            w,
            LOCAL_OPERATOR,
            org_id,
            "api_key.create",
            "api_key",
            key.access_key,
            f"imported from {source} ({ref})",
        )
