"""The admin REST API: a Starlette app on its own listener, every route under ``/v1``.

Handlers only translate HTTP to the service functions (``admin.service``, ``admin.directory``),
which decide who may do what, exactly as for the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from admin import console, directory, service
from admin.access import require_manager
from admin.http import (
    EXCEPTION_HANDLERS,
    AdminContext,
    authenticate,
    context,
    invalid,
    json_body,
    query_choice,
    query_int,
    string,
    timestamp,
)
from admin.openapi import document
from admin.serialize import application_json, audit_json, key_json, project_json, user_json
from core.identity import Authenticator
from core.store import Database
from core.store import audit as store_audit
from core.store.keys import ORDERS, KeyFilter
from core.tokens import SecretFormat

SERIALIZERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "project": project_json,
    "user": user_json,
    "application": application_json,
}
PLURAL = {"project": "projects", "user": "users", "application": "applications"}


async def whoami(request: Request) -> Response:
    actor = await authenticate(request)
    assert actor.id is not None  # API callers are always a user or an application
    bearer = await directory.get(context(request).db, actor, actor.kind, actor.id)
    return JSONResponse(
        {
            "bearer_type": actor.kind,
            "name": bearer.email if actor.kind == "user" else bearer.name,
            "bearer_id": actor.id,
            "organization_id": actor.organization_id,
            "permission_sets": sorted(actor.permission_sets),
            "is_owner": actor.is_owner,
            "access_key": actor.access_key,
        }
    )


# -- API keys ------------------------------------------------------------------------------------


async def api_keys(request: Request) -> Response:
    actor = await authenticate(request)
    res = context(request)
    if request.method == "POST":
        body = await json_body(
            request,
            {
                "user_id",
                "application_id",
                "description",
                "default_project_id",
                "expires_at",
                "mode",
            },
        )
        new = await service.create_key(
            res.db,
            actor,
            res.secret_format,
            user_id=string(body, "user_id", nullable=True),
            application_id=string(body, "application_id", nullable=True),
            description=string(body, "description") or "",
            default_project_id=string(body, "default_project_id", nullable=True),
            expires_at=timestamp(body.get("expires_at"), "expires_at"),
            mode=string(body, "mode") or "live",
        )
        return JSONResponse({**key_json(new.key), "secret_key": new.secret_key}, 201)
    expired = query_choice(request, "expired", ("true", "false"))
    keys, total = await service.list_keys(
        res.db,
        actor,
        KeyFilter(
            organization_id=actor.organization_id or "",
            user_id=request.query_params.get("user_id"),
            application_id=request.query_params.get("application_id"),
            bearer_type=query_choice(request, "bearer_type", ("user", "application")),
            project_id=request.query_params.get("project_id"),
            mode=query_choice(request, "mode", ("live", "test")),
            expired=None if expired is None else expired == "true",
            order_by=query_choice(request, "order_by", tuple(ORDERS)) or "created_at_asc",
            page=query_int(request, "page", 1, 1, 1_000_000),
            page_size=query_int(request, "page_size", 20, 1, 100),
        ),
    )
    return JSONResponse({"api_keys": [key_json(k) for k in keys], "total_count": total})


async def api_key(request: Request) -> Response:
    actor = await authenticate(request)
    res = context(request)
    access_key = request.path_params["access_key"]
    if request.method == "GET":
        return JSONResponse(key_json(await service.get_key(res.db, actor, access_key)))
    if request.method == "DELETE":
        await service.revoke_key(res.db, actor, access_key)
        return Response(status_code=204)
    body = await json_body(request, {"description", "default_project_id", "expires_at"})
    key = await service.update_key(
        res.db,
        actor,
        access_key,
        description=string(body, "description"),
        default_project_id=string(body, "default_project_id"),
        expires_at=timestamp(body.get("expires_at"), "expires_at"),
        clear_expiry="expires_at" in body and body["expires_at"] is None,
    )
    return JSONResponse(key_json(key))


async def roll(request: Request) -> Response:
    actor = await authenticate(request)
    res = context(request)
    body = await json_body(request, {"expire_current_in_seconds"})
    grace = body.get("expire_current_in_seconds", 0)
    if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= 604800:
        raise invalid("expire_current_in_seconds", "must be a whole number from 0 to 604800")
    new = await service.roll_key(
        res.db, actor, res.secret_format, request.path_params["access_key"], grace
    )
    return JSONResponse({**key_json(new.key), "secret_key": new.secret_key})


# -- projects, users, applications ----------------------------------------------------------------


def collection(kind: str) -> Any:
    accepted = {
        "project": {"name"},
        "user": {"email", "permission_sets"},
        "application": {"name", "permission_sets"},
    }[kind]

    async def handler(request: Request) -> Response:
        actor = await authenticate(request)
        db = context(request).db
        if request.method == "GET":
            found = await directory.list_of(db, actor, kind)
            return JSONResponse(
                {PLURAL[kind]: [SERIALIZERS[kind](x) for x in found], "total_count": len(found)}
            )
        body = await json_body(request, accepted)
        sets = body.get("permission_sets", [])
        if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
            raise invalid("permission_sets", "must be a list of permission set names")
        created: Any
        if kind == "project":
            created = await directory.create_project(db, actor, string(body, "name") or "")
        elif kind == "user":
            created = await directory.create_user(
                db, actor, string(body, "email") or "", tuple(sets)
            )
        else:
            created = await directory.create_application(
                db, actor, string(body, "name") or "", tuple(sets)
            )
        return JSONResponse(SERIALIZERS[kind](created), 201)

    return handler


def item(kind: str) -> Any:
    editable = {
        "project": {"name"},
        "user": {"permission_sets"},
        "application": {"name", "permission_sets"},
    }[kind]

    async def handler(request: Request) -> Response:
        actor = await authenticate(request)
        db = context(request).db
        object_id = request.path_params["id"]
        if request.method == "GET":
            return JSONResponse(SERIALIZERS[kind](await directory.get(db, actor, kind, object_id)))
        if request.method == "DELETE":
            await directory.delete(db, actor, kind, object_id)
            return Response(status_code=204)
        body = await json_body(request, editable)
        return JSONResponse(
            SERIALIZERS[kind](await directory.update(db, actor, kind, object_id, body))
        )

    return handler


# -- audit ----------------------------------------------------------------------------------------


async def audit_events(request: Request) -> Response:
    actor = await authenticate(request)
    require_manager(actor, "reading the audit log")
    query = request.query_params
    events, total = await store_audit.search(
        context(request).db,
        store_audit.AuditFilter(
            organization_id=actor.organization_id or "",
            actor_id=query.get("actor_id"),
            access_key=query.get("access_key"),
            action=query.get("action"),
            since=timestamp(query.get("since"), "since"),
            until=timestamp(query.get("until"), "until"),
            page=query_int(request, "page", 1, 1, 1_000_000),
            page_size=query_int(request, "page_size", 50, 1, 100),
        ),
    )
    return JSONResponse({"audit_events": [audit_json(e) for e in events], "total_count": total})


async def openapi(request: Request) -> Response:
    return JSONResponse(document())


def make_admin_app(
    db: Database, secret_format: SecretFormat, authenticator: Authenticator
) -> Starlette:
    routes = [
        Route("/v1/whoami", whoami),
        Route("/v1/api-keys", api_keys, methods=["GET", "POST"]),
        Route("/v1/api-keys/{access_key}", api_key, methods=["GET", "PATCH", "DELETE"]),
        Route("/v1/api-keys/{access_key}/roll", roll, methods=["POST"]),
        Route("/v1/audit-events", audit_events),
        Route("/v1/openapi.json", openapi),
    ]
    for kind, plural in PLURAL.items():
        routes.append(Route(f"/v1/{plural}", collection(kind), methods=["GET", "POST"]))
        routes.append(Route(f"/v1/{plural}/{{id}}", item(kind), methods=["GET", "PATCH", "DELETE"]))
    routes.extend(console.routes())
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    app.state.context = AdminContext(db, secret_format, authenticator)
    return app
