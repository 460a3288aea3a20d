"""Key management service: the one place that decides who may do what to which key.

The CLI (as the local operator), the admin API and the console all call these functions. Each one
takes the acting :class:`Actor`, checks permission (rules in ``admin.access``), validates, and
writes in one transaction with its ``key_events`` row (so running gateways see the change within
the invalidation bound) and its audit event. Nobody creates a key for another user through the
API; the local operator may.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from admin import lifetimes
from admin.access import (
    LOCAL_OPERATOR,
    MANAGERS_ONLY,
    Actor,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Unprocessable,
    audited,
    organization_of,
    record,
)
from admin.fields import (
    ALLOWED_IPS,
    DESCRIPTION,
    GRACE,
    MODE,
    ORDER_BY,
    PAGE,
    PAGE_SIZE,
    PERMISSIONS,
    RATE_LIMITS,
)
from admin.plans import (
    budget_of,
    check_metadata,
    check_plan,
    follow_budget,
    plan_of,
    set_credits,
)
from admin.serialize import rfc3339
from core import policies
from core.plans import Credits
from core.policies import PolicyError, RateLimit
from core.store import Database
from core.store import directory as store_dir
from core.store import keys as store_keys
from core.store import leaks as store_leaks
from core.store.records import ApiKey, Organization, Project, RevokedKey, User
from core.tokens import (
    RESTRICTED,
    SECRET_PREFIX_SHOWN,
    SecretFormat,
    generate_access_key,
    hash_secret,
    is_access_key,
)


@dataclass(frozen=True)
class InitResult:
    created: bool
    organization: Organization
    project: Project
    user: User
    key: ApiKey | None = None
    secret_key: str | None = None


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret_key: str = field(repr=False)  # shown once; never in a repr that could reach a log


def _new_id() -> str:
    return str(uuid.uuid4())


async def init(db: Database, fmt: SecretFormat, owner_email: str = "owner@localhost") -> InitResult:
    """Create the default organization, project, owner user and owner key, once."""
    existing = await store_dir.first_organization(db)
    if existing is not None:
        project = await store_dir.get_project(db, existing.default_project_id or "")
        owner = await store_dir.owner_of(db, existing.id)
        assert project is not None and owner is not None
        return InitResult(False, existing, project, owner)
    now = time.time()
    org = Organization(_new_id(), "default", None, now)
    project = Project(_new_id(), org.id, "default", now, now)
    user = User(_new_id(), org.id, owner_email, (), True, now, now)
    secret = fmt.generate("live")
    key = _key_record(
        org.id,
        user.id,
        None,
        project.id,
        "owner key (gateway init)",
        "live",
        None,
        None,
        secret,
        now,
    )
    async with db.transaction() as w:
        await store_dir.insert_organization(w, org)
        await store_dir.insert_project(w, project)
        await store_dir.set_default_project(w, org.id, project.id)
        await store_dir.insert_user(w, user)
        await store_keys.insert(w, key, hash_secret(secret))
        await record(w, LOCAL_OPERATOR, org.id, "organization.init", "organization", org.id)
        await record(w, LOCAL_OPERATOR, org.id, "api_key.create", "api_key", key.access_key)
    return InitResult(True, replace(org, default_project_id=project.id), project, user, key, secret)


# -- keys -----------------------------------------------------------------------------------------


def _key_record(
    org_id: str,
    user_id: str | None,
    application_id: str | None,
    project_id: str,
    description: str,
    mode: str,
    expires_at: float | None,
    creation_ip: str | None,
    secret: str,
    now: float,
) -> ApiKey:
    return ApiKey(
        access_key=generate_access_key(),
        organization_id=org_id,
        user_id=user_id,
        application_id=application_id,
        default_project_id=project_id,
        description=description,
        mode=mode,
        created_at=now,
        updated_at=now,
        expires_at=expires_at,
        last_used_at=None,
        creation_ip=creation_ip,
        secret_prefix=shown(secret, False),
    )


def shown(secret: str, restricted: bool) -> str:
    """The start of a secret kept for recognition: a restricted key's shows as many characters
    past its ``rk_`` mark as any other key's."""
    return secret[: SECRET_PREFIX_SHOWN + (len(RESTRICTED) + 1 if restricted else 0)]


def _check_description(value: str) -> str:
    checked: str = DESCRIPTION.parse("description", value)
    return checked


def _check_expiry(value: float | None, now: float) -> float | None:
    if value is not None and value <= now:
        raise Unprocessable("expires_at must be in the future", "expires_at")
    return value


def _may_set_policies(actor: Actor) -> None:
    """A key's policies are set by who manages the organization: a bearer who could loosen its
    own key's limits would make them pointless. So are its plan, credits and metadata (which
    the upstream trusts), and whether it is disabled (an unpaid invoice is not the bearer's to
    waive)."""
    if not actor.is_manager:
        raise Forbidden(
            "setting a key's rate_limits, allowed_ips, permissions, plan_id, credits, metadata "
            f"or disabled {MANAGERS_ONLY}"
        )


def _check_rate_limits(values: Sequence[RateLimit]) -> tuple[RateLimit, ...]:
    RATE_LIMITS.parse("rate_limits", [r.to_json() for r in values])  # the API's own limits
    try:
        return policies.rate_limits(list(values))
    except PolicyError as exc:
        raise Unprocessable(str(exc), "rate_limits") from None


def _check_allowed_ips(values: Sequence[str]) -> tuple[str, ...]:
    ALLOWED_IPS.parse("allowed_ips", list(values))
    try:
        return policies.allowed_ips(list(values))
    except PolicyError as exc:
        raise Unprocessable(str(exc), "allowed_ips") from None


def _check_permissions(values: Sequence[str]) -> tuple[str, ...]:
    PERMISSIONS.parse("permissions", list(values))
    try:
        return policies.permissions(list(values))
    except PolicyError as exc:
        raise Unprocessable(str(exc), "permissions") from None


async def _check_project(db: Database, org_id: str, project_id: str) -> str:
    project = await store_dir.get_project(db, project_id)
    if project is None or project.organization_id != org_id:
        raise NotFound(f"project {project_id!r} does not exist", "default_project_id")
    return project_id


async def create_key(
    db: Database,
    actor: Actor,
    fmt: SecretFormat,
    *,
    user_id: str | None = None,
    application_id: str | None = None,
    description: str = "",
    default_project_id: str | None = None,
    expires_at: float | None = None,
    mode: str = "live",
    rate_limits: Sequence[RateLimit] = (),
    allowed_ips: Sequence[str] = (),
    permissions: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    plan_id: str | None = None,
    credits: Credits | None = None,
) -> NewKey:
    """A new key; with ``permissions`` (even none), a restricted key, whose secret says so."""
    async with audited(db, actor, "api_key.create", "api_key", None):
        extras = metadata or plan_id is not None or credits is not None
        if rate_limits or allowed_ips or permissions is not None or extras:
            _may_set_policies(actor)
    extra = {
        "metadata": check_metadata(metadata or {}),
        "plan_id": (
            None
            if plan_id is None
            else await check_plan(db, await organization_of(db, actor), plan_id)
        ),
        "credits": credits,
    }
    return await _create_key(
        db,
        actor,
        fmt,
        user_id,
        application_id,
        description,
        default_project_id,
        expires_at,
        mode,
        _check_rate_limits(rate_limits),
        _check_allowed_ips(allowed_ips),
        None if permissions is None else _check_permissions(permissions),
        extra,
    )


async def _create_key(
    db: Database,
    actor: Actor,
    fmt: SecretFormat,
    user_id: str | None,
    application_id: str | None,
    description: str,
    default_project_id: str | None,
    expires_at: float | None,
    mode: str,
    rate_limits: tuple[RateLimit, ...],
    allowed_ips: tuple[str, ...],
    permissions: tuple[str, ...] | None,
    extra: dict[str, Any],
) -> NewKey:
    if user_id is not None and application_id is not None:
        raise Invalid("give user_id or application_id, not both", "application_id")
    if user_id is None and application_id is None:
        if actor.kind == "cli":
            raise Invalid(
                "the local operator must name the bearer: --user or --application", "user_id"
            )
        user_id, application_id = (actor.id, None) if actor.kind == "user" else (None, actor.id)
    org_id = await organization_of(db, actor)
    if user_id is not None:
        user = await store_dir.get_user(db, user_id)
        if user is None or user.organization_id != org_id:
            raise NotFound(f"user {user_id!r} does not exist", "user_id")
        if actor.kind != "cli" and not (actor.kind == "user" and actor.id == user_id):
            raise Forbidden("keys can only be created for yourself or for an application")
    else:
        assert application_id is not None
        app = await store_dir.get_application(db, application_id)
        if app is None or app.organization_id != org_id:
            raise NotFound(f"application {application_id!r} does not exist", "application_id")
        own = actor.kind == "application" and actor.id == application_id
        if not (actor.is_manager or own):
            raise Forbidden(f"keys for applications {MANAGERS_ONLY}")
    MODE.parse("mode", mode)
    now = time.time()
    await lifetimes.check_expiry(db, org_id, _check_expiry(expires_at, now), now)
    if default_project_id is None:
        org = await store_dir.get_organization(db, org_id)
        assert org is not None and org.default_project_id is not None
        default_project_id = org.default_project_id
    secret = fmt.generate(mode, restricted=permissions is not None)
    key = replace(
        _key_record(
            org_id,
            user_id,
            application_id,
            await _check_project(db, org_id, default_project_id),
            _check_description(description),
            mode,
            _check_expiry(expires_at, now),
            actor.ip,
            secret,
            now,
        ),
        rate_limits=rate_limits,
        allowed_ips=allowed_ips,
        permissions=permissions,
        secret_prefix=shown(secret, permissions is not None),
        **extra,
    )
    async with db.transaction() as w:
        await store_keys.insert(w, key, hash_secret(secret))
        await set_credits(w, f"key:{key.access_key}", key.credits, now)
        await record(w, actor, org_id, "api_key.create", "api_key", key.access_key)
    return NewKey(key, secret)


# Any key's secret, whatever its prefix: <prefix>_[rk_]live|test_...
_SECRET_SHAPE = re.compile(rf"[a-z][a-z0-9]{{0,15}}_(?:{RESTRICTED}_)?(?:live|test)_")


def check_access_key(value: str) -> str:
    """A key is named by its access key. A secret given instead is refused without being
    repeated, in the answer or the audit log (checked before anything is audited)."""
    if not is_access_key(value) and _SECRET_SHAPE.search(value):
        raise Invalid(
            "that is a secret key, not an access key: name a key by its access key (GWK "
            "followed by 17 letters and digits, as `keys list` shows); the secret is not repeated "
            "or recorded",
            "access_key",
            reason="secret_given",
        )
    return value


async def get_key(db: Database, actor: Actor, access_key: str) -> ApiKey:
    """The key if the actor may see it; otherwise NotFound, never revealing that it exists (a
    revoked key the actor could see is said to be revoked, and when)."""
    check_access_key(access_key)
    key = await store_keys.get(db, access_key)
    if key is None or not _visible(actor, key):
        gone = await _revoked(db, actor, access_key)
        if gone is not None:
            leak = await store_leaks.last_of(db, access_key)
            leaked = f", reported leaked at {leak.url or leak.source}" if leak else ""
            raise NotFound(
                f"API key {access_key!r} was revoked at {rfc3339(gone.revoked_at)}{leaked}",
                "access_key",
                reason="revoked",
            )
        raise NotFound(f"API key {access_key!r} does not exist", "access_key")
    return key


async def _revoked(db: Database, actor: Actor, access_key: str) -> RevokedKey | None:
    gone = await store_keys.revoked(db, access_key)
    return gone if gone is not None and _visible(actor, gone) else None


def _visible(actor: Actor, key: ApiKey | RevokedKey) -> bool:
    if actor.kind == "cli":
        return True
    if key.organization_id != actor.organization_id:
        return False
    if actor.is_manager:
        return True
    own_id = key.user_id if actor.kind == "user" else key.application_id
    return own_id == actor.id


async def list_keys(
    db: Database, actor: Actor, f: store_keys.KeyFilter
) -> tuple[list[ApiKey], int]:
    ORDER_BY.parse("order_by", f.order_by)
    PAGE_SIZE.parse("page_size", f.page_size)
    PAGE.parse("page", f.page)
    return await store_keys.search(db, _own_only(actor, f), time.time())


def _own_only(actor: Actor, f: store_keys.KeyFilter) -> store_keys.KeyFilter:
    """A plain bearer sees only its own keys, whatever it asks for."""
    if actor.is_manager:
        return f
    if actor.kind == "user":
        return replace(f, user_id=actor.id, application_id=None, bearer_type=None)
    return replace(f, application_id=actor.id, user_id=None, bearer_type=None)


async def update_key(
    db: Database,
    actor: Actor,
    access_key: str,
    *,
    description: str | None = None,
    default_project_id: str | None = None,
    expires_at: float | None = None,
    clear_expiry: bool = False,
    rate_limits: Sequence[RateLimit] | None = None,
    allowed_ips: Sequence[str] | None = None,
    permissions: Sequence[str] | None = None,
    disabled: bool | None = None,
    metadata: dict[str, Any] | None = None,
    plan_id: str | None = None,
    clear_plan: bool = False,
    credits: Credits | None = None,
    clear_credits: bool = False,
) -> ApiKey:
    """Change what is given (None: unchanged; an empty list of policies removes them). A policy
    change reaches every gateway within the revocation bound, like a revocation; so does
    disabling a key (403 key_disabled), which enabling undoes with the same secret."""
    check_access_key(access_key)
    given = (rate_limits, allowed_ips, permissions, disabled, metadata, plan_id, credits)
    action = "api_key.update"
    if disabled is not None:
        action = "api_key.disable" if disabled else "api_key.enable"
    async with audited(db, actor, action, "api_key", access_key):
        key = await get_key(db, actor, access_key)
        if any(v is not None for v in given) or clear_plan or clear_credits:
            _may_set_policies(actor)
    now = time.time()
    changes: dict[str, object] = {}
    if description is not None:
        changes["description"] = _check_description(description)
    if default_project_id is not None:
        changes["default_project_id"] = await _check_project(
            db, key.organization_id, default_project_id
        )
    if expires_at is not None:
        changes["expires_at"] = _check_expiry(expires_at, now)
    elif clear_expiry:
        changes["expires_at"] = None
    if "expires_at" in changes:
        expiry = changes["expires_at"]
        assert expiry is None or isinstance(expiry, float | int)
        await lifetimes.check_expiry(db, key.organization_id, expiry, now)
    if rate_limits is not None:
        changes["rate_limits"] = _check_rate_limits(rate_limits)
    if allowed_ips is not None:
        changes["allowed_ips"] = _check_allowed_ips(allowed_ips)
    if permissions is not None:
        if not key.restricted:
            # Its secret says it is unrestricted (no rk_ mark): it stays so.
            raise Unprocessable(
                f"API key {access_key!r} is not restricted, so it has no permissions to change; "
                "create a restricted key (with permissions) instead",
                "permissions",
            )
        changes["permissions"] = _check_permissions(permissions)
    if disabled is not None:
        changes["disabled"] = disabled
    if metadata is not None:
        changes["metadata"] = check_metadata(metadata)
    if plan_id is not None:
        changes["plan_id"] = await check_plan(db, key.organization_id, plan_id)
    elif clear_plan:
        changes["plan_id"] = None
    if credits is not None or clear_credits:
        changes["credits"] = credits
    moved = credits is None and ("plan_id" in changes or clear_credits)
    if moved:  # its balance follows (`follow_budget`): read before the transaction
        before = budget_of(key.credits, await plan_of(db, key.plan_id))
        now_on = changes.get("plan_id", key.plan_id)
        assert now_on is None or isinstance(now_on, str)
        after = budget_of(None if clear_credits else key.credits, await plan_of(db, now_on))
    if changes:
        async with db.transaction() as w:
            await store_keys.update(w, access_key, changes, now)
            if credits is not None:
                await set_credits(w, f"key:{access_key}", credits, now)
            elif moved:
                await follow_budget(w, f"key:{access_key}", before, after, now)
            await record(
                w,
                actor,
                key.organization_id,
                action,
                "api_key",
                access_key,
                ", ".join(sorted(changes)),
            )
    return await get_key(db, actor, access_key)


async def revoke_key(db: Database, actor: Actor, access_key: str) -> None:
    """Revoke for good. Revoking a key that is already revoked changes nothing and says so (409
    ``already_revoked``, not audited: nothing was attempted that the rules refused)."""
    check_access_key(access_key)
    gone = await _revoked(db, actor, access_key)
    if gone is not None:
        raise Conflict(
            f"API key {access_key!r} was already revoked at {rfc3339(gone.revoked_at)}; "
            "nothing changed",
            "access_key",
            reason="already_revoked",
        )
    async with audited(db, actor, "api_key.delete", "api_key", access_key):
        key = await get_key(db, actor, access_key)
        async with db.transaction() as w:
            if not await store_keys.delete(w, access_key, time.time()):
                raise NotFound(f"API key {access_key!r} does not exist", "access_key")
            await record(w, actor, key.organization_id, "api_key.delete", "api_key", access_key)


async def roll_key(
    db: Database,
    actor: Actor,
    fmt: SecretFormat,
    access_key: str,
    grace_seconds: float = 0,
    expires_at: float | None = None,
) -> NewKey:
    """A new secret for the same access key; older secrets keep working ``grace_seconds``.

    A roll always gives a usable key. ``expires_at`` (if given) is the key's new expiry. A key
    that has expired is renewed for the lifetime it was created with (``expires_at`` minus
    ``created_at``, cut to the organization's ``max_key_lifetime_days``) unless a new expiry is
    given, which that limit holds as it holds an edit; its previous secrets stop at once, grace or
    not: nothing can have been using them, and a grace would bring them back to life. A key that
    has not expired keeps its expiry."""
    try:
        GRACE.parse("expire_current_in_seconds", grace_seconds)
    except Invalid:
        raise Invalid(
            f"the grace period must be between 0 and {GRACE.maximum} seconds (7 days)",
            "expire_current_in_seconds",
        ) from None
    check_access_key(access_key)
    async with audited(db, actor, "api_key.roll", "api_key", access_key):
        key = await get_key(db, actor, access_key)
    now = time.time()
    new_expiry = _check_expiry(expires_at, now)
    if new_expiry is not None:  # an edit of the expiry: held to the organization's limit
        await lifetimes.check_expiry(db, key.organization_id, new_expiry, now)
    expired = key.expires_at is not None and key.expires_at <= now
    if expired:
        grace_seconds = 0
        if new_expiry is None:
            assert key.expires_at is not None
            new_expiry = now + max(key.expires_at - key.created_at, 1.0)
            # A key made before the limit renews within it: a roll always gives a usable key.
            latest = await lifetimes.latest_expiry(db, key.organization_id, now)
            if latest is not None:
                new_expiry = min(new_expiry, latest)
    secret = fmt.generate(key.mode, restricted=key.restricted)
    detail = f"previous secret expires in {grace_seconds:g} s"
    if new_expiry is not None:
        detail += f"; the key now expires at {rfc3339(new_expiry)}"
    async with db.transaction() as w:
        await store_keys.roll(
            w, access_key, hash_secret(secret), shown(secret, key.restricted), now, grace_seconds
        )
        if new_expiry is not None:
            await store_keys.update(w, access_key, {"expires_at": new_expiry}, now)
        await record(w, actor, key.organization_id, "api_key.roll", "api_key", access_key, detail)
    return NewKey(await get_key(db, actor, access_key), secret)


async def list_revoked_keys(
    db: Database, actor: Actor, f: store_keys.KeyFilter
) -> tuple[list[RevokedKey], int]:
    """The revoked keys the actor may see (a plain bearer: its own), newest first."""
    PAGE_SIZE.parse("page_size", f.page_size)
    PAGE.parse("page", f.page)
    return await store_keys.search_revoked(db, _own_only(actor, f))
