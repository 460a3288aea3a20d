"""The admin REST API: a Starlette app on its own listener, every route under ``/v1``.

Handlers only translate HTTP to the service functions (``admin.service``, ``admin.directory``),
which decide who may do what, exactly as for the CLI. Request bodies and query parameters are
checked against their declarations in ``admin.fields``, the same the OpenAPI document is made of.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from admin import api_billing, console, directory, fields, keylife_api, service, usage
from admin.access import require_manager
from admin.http import EXCEPTION_HANDLERS, AdminContext, RequestIds, authenticate, context, queries
from admin.openapi import document
from admin.serialize import (
    application_json,
    audit_json,
    key_json,
    project_json,
    user_json,
)
from core.assertion_keys import JWKS_PATH
from core.errors import readiness_json
from core.identity import Authenticator
from core.store import Database
from core.store import audit as store_audit
from core.store.keys import KeyFilter
from core.tokens import SecretFormat
from core.verification import KeyChecker

SERIALIZERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "project": project_json,
    "user": user_json,
    "application": application_json,
}
PLURAL = {"project": "projects", "user": "users", "application": "applications"}


async def whoami(request: Request) -> Response:
    actor = await authenticate(request)
    queries(request)
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
            "is_manager": actor.is_manager,
            "access_key": actor.access_key,
        }
    )


# -- API keys ------------------------------------------------------------------------------------


async def api_keys(request: Request) -> Response:
    actor = await authenticate(request)
    res = context(request)
    if request.method == "POST":
        queries(request)
        body = fields.CREATE_KEY.parse(await request.body())
        new = await service.create_key(
            res.db,
            actor,
            res.secret_format,
            user_id=body.get("user_id"),
            application_id=body.get("application_id"),
            description=body.get("description", ""),
            default_project_id=body.get("default_project_id"),
            expires_at=body.get("expires_at"),
            mode=body.get("mode", "live"),
            rate_limits=body.get("rate_limits", ()),
            allowed_ips=body.get("allowed_ips", ()),
            permissions=body.get("permissions"),
            metadata=body.get("metadata"),
            plan_id=body.get("plan_id"),
            credits=body.get("credits"),
        )
        return JSONResponse({**key_json(new.key), "secret_key": new.secret_key}, 201)
    given = queries(request, fields.LIST_KEYS_QUERY)
    expired, order_by = given.pop("expired"), given.pop("order_by")
    page, page_size = given.pop("page"), given.pop("page_size")
    keys, total = await service.list_keys(
        res.db,
        actor,
        KeyFilter(
            organization_id=actor.organization_id or "",
            **given,
            expired=None if expired is None else expired == "true",
            order_by=order_by or "created_at_asc",
            page=page or 1,
            page_size=page_size or 20,
        ),
    )
    return JSONResponse({"api_keys": [key_json(k) for k in keys], "total_count": total})


async def api_key(request: Request) -> Response:
    actor = await authenticate(request)
    queries(request)
    res = context(request)
    access_key = request.path_params["access_key"]
    if request.method == "GET":
        return JSONResponse(key_json(await service.get_key(res.db, actor, access_key)))
    if request.method == "DELETE":
        await service.revoke_key(res.db, actor, access_key)
        return Response(status_code=204)
    body = fields.UPDATE_KEY.parse(await request.body())
    key = await service.update_key(
        res.db,
        actor,
        access_key,
        description=body.get("description"),
        default_project_id=body.get("default_project_id"),
        expires_at=body.get("expires_at"),
        clear_expiry="expires_at" in body and body["expires_at"] is None,
        rate_limits=body.get("rate_limits"),
        allowed_ips=body.get("allowed_ips"),
        permissions=body.get("permissions"),
        disabled=body.get("disabled"),
        metadata=body.get("metadata"),
        plan_id=body.get("plan_id"),
        clear_plan="plan_id" in body and body["plan_id"] is None,
        credits=body.get("credits"),
        clear_credits="credits" in body and body["credits"] is None,
    )
    return JSONResponse(key_json(key))


async def api_key_usage(request: Request) -> Response:
    actor = await authenticate(request)
    queries(request)
    res = context(request)
    return JSONResponse(await usage.key_usage(res.db, actor, request.path_params["access_key"]))


async def roll(request: Request) -> Response:
    actor = await authenticate(request)
    queries(request)
    res = context(request)
    body = fields.ROLL_KEY.parse(await request.body())
    new = await service.roll_key(
        res.db,
        actor,
        res.secret_format,
        request.path_params["access_key"],
        body.get("expire_current_in_seconds", 0),
        body.get("expires_at"),
    )
    return JSONResponse({**key_json(new.key), "secret_key": new.secret_key})


# -- projects, users, applications ----------------------------------------------------------------


def collection(kind: str) -> Any:
    async def handler(request: Request) -> Response:
        actor = await authenticate(request)
        queries(request)
        db = context(request).db
        if request.method == "GET":
            found = await directory.list_of(db, actor, kind)
            return JSONResponse(
                {PLURAL[kind]: [SERIALIZERS[kind](x) for x in found], "total_count": len(found)}
            )
        body = fields.CREATE[kind].parse(await request.body())
        created: Any
        if kind == "project":
            created = await directory.create_project(db, actor, body["name"])
        elif kind == "user":
            created = await directory.create_user(
                db, actor, body["email"], body.get("permission_sets", ())
            )
        else:
            created = await directory.create_application(
                db, actor, body["name"], body.get("permission_sets", ())
            )
        return JSONResponse(SERIALIZERS[kind](created), 201)

    return handler


def item(kind: str) -> Any:
    async def handler(request: Request) -> Response:
        actor = await authenticate(request)
        queries(request)
        db = context(request).db
        object_id = request.path_params["id"]
        if request.method == "GET":
            return JSONResponse(SERIALIZERS[kind](await directory.get(db, actor, kind, object_id)))
        if request.method == "DELETE":
            await directory.delete(db, actor, kind, object_id)
            return Response(status_code=204)
        body = fields.UPDATE[kind].parse(await request.body())
        return JSONResponse(
            SERIALIZERS[kind](await directory.update(db, actor, kind, object_id, body))
        )

    return handler


# -- audit ----------------------------------------------------------------------------------------


async def audit_events(request: Request) -> Response:
    actor = await authenticate(request)
    require_manager(actor, "reading the audit log")
    given = queries(request, fields.AUDIT_QUERY)
    page, page_size = given.pop("page"), given.pop("page_size")
    events, total = await store_audit.search(
        context(request).db,
        store_audit.AuditFilter(
            organization_id=actor.organization_id or "",
            **given,
            page=page or 1,
            page_size=page_size or 50,
        ),
    )
    return JSONResponse({"audit_events": [audit_json(e) for e in events], "total_count": total})


# -- probes -------------------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    """The process answers: for a liveness probe (restart me if this fails)."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Whether this process should get traffic: 503 with the reason when draining, when the
    store does not answer, or when the key feed has not been read lately."""
    reason = await context(request).readiness()
    state = request.scope.get("state") or {}
    status, body = readiness_json(reason, state.get("request_id", ""))
    return Response(
        body, status, media_type="application/json", headers={"Cache-Control": "no-store"}
    )


# The Prometheus text exposition format, version 0.0.4.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def prometheus(request: Request) -> Response:
    """The gateway's counts for Prometheus (every worker's, added up): unauthenticated, like the
    probes, for the scraper; keep the admin listener on a network only operators reach."""
    scrape = context(request).metrics
    assert scrape is not None  # the route exists only when metrics are on
    return Response(await scrape(), media_type=METRICS_CONTENT_TYPE)


async def jwks_document(request: Request) -> Response:
    """The public keys of identity assertions (RFC 7517), for upstreams: unauthenticated, since
    they are public. A verifier should fetch them again when it meets an unknown ``kid`` (a
    rotation signs with the new key at once)."""
    keys = context(request).jwks
    assert keys is not None  # the route exists only when the composition hands them in
    return Response(keys(), media_type="application/json", headers={"Cache-Control": "max-age=60"})


async def openapi(request: Request) -> Response:
    return JSONResponse(document())


def make_admin_app(
    db: Database,
    secret_format: SecretFormat,
    authenticator: Authenticator,
    readiness: Callable[[], Awaitable[str | None]],
    metrics: Callable[[], Awaitable[bytes]] | None = None,
    jwks: Callable[[], bytes] | None = None,
    verify: KeyChecker | None = None,
) -> RequestIds:
    """The admin app; ``metrics`` (the Prometheus text of the whole gateway) adds /metrics,
    ``jwks`` (the assertion keys' JWKS) adds /.well-known/jwks.json, ``verify`` (the data
    plane's gate) adds POST /v1/keys/verify."""
    routes = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/v1/whoami", whoami),
        Route("/v1/api-keys", api_keys, methods=["GET", "POST"]),
        Route("/v1/api-keys/{access_key}", api_key, methods=["GET", "PATCH", "DELETE"]),
        Route("/v1/api-keys/{access_key}/roll", roll, methods=["POST"]),
        Route("/v1/api-keys/{access_key}/usage", api_key_usage),
        Route("/v1/audit-events", audit_events),
        Route("/v1/openapi.json", openapi),
    ]
    for kind, plural in PLURAL.items():
        routes.append(Route(f"/v1/{plural}", collection(kind), methods=["GET", "POST"]))
        routes.append(Route(f"/v1/{plural}/{{id}}", item(kind), methods=["GET", "PATCH", "DELETE"]))
    routes.extend(keylife_api.routes())
    if metrics is not None:
        routes.append(Route("/metrics", prometheus))
    if jwks is not None:
        routes.append(Route(JWKS_PATH, jwks_document, methods=["GET", "HEAD"]))
    routes.extend(api_billing.routes(verify is not None))
    routes.extend(console.routes())
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    app.state.context = AdminContext(
        db, secret_format, authenticator, readiness, metrics, jwks, verify
    )
    return RequestIds(app)
