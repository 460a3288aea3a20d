"""The admin API's routes of what happens around a key: ``/v1/webhooks`` and what hangs under
it, ``/v1/leaks`` (the keys reported leaked, and where) and an organization's lifetime policy.
Handlers only translate HTTP to the service functions (``admin.webhooks``, ``admin.lifetimes``),
which decide who may do what, as for the CLI."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from admin import fields, lifetimes, webhooks
from admin.access import organization_of, require_manager
from admin.http import authenticate, context, queries
from admin.serialize import delivery_json, leak_json, policy_json, webhook_json
from core.store import leaks as store_leaks


async def collection(request: Request) -> Response:
    actor = await authenticate(request)
    queries(request)
    db = context(request).db
    if request.method == "GET":
        found = await webhooks.list_of(db, actor)
        return JSONResponse(
            {"webhooks": [webhook_json(h) for h in found], "total_count": len(found)}
        )
    body = fields.CREATE_WEBHOOK.parse(await request.body())
    new = await webhooks.create(db, actor, body["url"], body["events"], body.get("description", ""))
    return JSONResponse({**webhook_json(new.webhook), "secret": new.secret}, 201)


async def item(request: Request) -> Response:
    actor = await authenticate(request)
    queries(request)
    db = context(request).db
    webhook_id = request.path_params["id"]
    if request.method == "GET":
        return JSONResponse(webhook_json(await webhooks.get(db, actor, webhook_id)))
    if request.method == "DELETE":
        await webhooks.delete(db, actor, webhook_id)
        return Response(status_code=204)
    body = fields.UPDATE_WEBHOOK.parse(await request.body())
    return JSONResponse(webhook_json(await webhooks.update(db, actor, webhook_id, body)))


async def test(request: Request) -> Response:
    actor = await authenticate(request)
    queries(request)
    message_id = await webhooks.send_test(context(request).db, actor, request.path_params["id"])
    return JSONResponse({"message_id": message_id, "status": "pending"}, 202)


async def deliveries(request: Request) -> Response:
    actor = await authenticate(request)
    given = queries(request, fields.DELIVERIES_QUERY)
    found = await webhooks.deliveries(
        context(request).db,
        actor,
        request.path_params["id"],
        given["status"],
        given["limit"] or 50,
    )
    return JSONResponse({"deliveries": [delivery_json(d) for d in found]})


async def leaks(request: Request) -> Response:
    actor = await authenticate(request)
    queries(request)
    require_manager(actor, "reading the leak reports")
    db = context(request).db
    found = await store_leaks.list_of(db, await organization_of(db, actor))
    return JSONResponse({"leaks": [leak_json(leak) for leak in found]})


async def policy(request: Request) -> Response:
    actor = await authenticate(request)
    queries(request)
    db = context(request).db
    org_id = request.path_params["id"]
    if request.method == "GET":
        return JSONResponse(policy_json(await lifetimes.get(db, actor, org_id)))
    body = fields.UPDATE_POLICY.parse(await request.body())
    return JSONResponse(policy_json(await lifetimes.update(db, actor, org_id, body)))


async def policy_violations(request: Request) -> Response:
    actor = await authenticate(request)
    queries(request)
    found = await lifetimes.violations(context(request).db, actor, request.path_params["id"])
    return JSONResponse(
        {
            "violations": [
                {"access_key": v.access_key, "reason": v.reason, "detail": v.detail} for v in found
            ]
        }
    )


def routes() -> list[Route]:
    return [
        Route("/v1/webhooks", collection, methods=["GET", "POST"]),
        Route("/v1/webhooks/{id}", item, methods=["GET", "PATCH", "DELETE"]),
        Route("/v1/webhooks/{id}/test", test, methods=["POST"]),
        Route("/v1/webhooks/{id}/deliveries", deliveries),
        Route("/v1/leaks", leaks),
        Route("/v1/organizations/{id}/policy", policy, methods=["GET", "PATCH"]),
        Route("/v1/organizations/{id}/policy/violations", policy_violations),
    ]
