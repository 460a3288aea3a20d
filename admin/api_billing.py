"""The admin API of plans, usage export and key verification: handlers that translate HTTP to
the service functions (``admin.plans``, ``admin.usage_export``) and to the data plane's gate
(``POST /v1/keys/verify``, handed in by the composition as a ``KeyChecker``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from admin import fields, plans
from admin.access import Forbidden, Invalid
from admin.http import authenticate, context, queries
from admin.serialize import plan_json
from admin.usage_export import export
from core.policies import VERIFY
from core.verification import VerifyAnswer, VerifyQuery


async def plan_collection(request: Request) -> Response:
    actor = await authenticate(request)
    queries(request)
    db = context(request).db
    if request.method == "GET":
        found = await plans.list_plans(db, actor)
        return JSONResponse({"plans": [plan_json(p) for p in found], "total_count": len(found)})
    body = fields.CREATE_PLAN.parse(await request.body())
    created = await plans.create_plan(
        db,
        actor,
        body["name"],
        body.get("rate_limits", ()),
        body.get("credits"),
        body.get("metadata"),
    )
    return JSONResponse(plan_json(created), 201)


async def plan_item(request: Request) -> Response:
    actor = await authenticate(request)
    queries(request)
    db = context(request).db
    plan_id = request.path_params["id"]
    if request.method == "GET":
        return JSONResponse(plan_json(await plans.get_plan(db, actor, plan_id)))
    if request.method == "DELETE":
        await plans.delete_plan(db, actor, plan_id)
        return Response(status_code=204)
    body = fields.UPDATE_PLAN.parse(await request.body())
    return JSONResponse(plan_json(await plans.update_plan(db, actor, plan_id, body)))


async def usage_export(request: Request) -> Response:
    actor = await authenticate(request)
    given = queries(request, fields.USAGE_QUERY)
    if given["from"] is None or given["to"] is None:
        raise Invalid("from and to are required (days such as 2026-12-01)", "from")
    body, media_type = await export(
        context(request).db,
        actor,
        given["from"],
        given["to"],
        given["group_by"] or "key",
        given["format"] or "json",
    )
    return Response(body, media_type=media_type)


def answer_json(answer: VerifyAnswer) -> dict[str, Any]:
    found: dict[str, Any] = {
        "valid": answer.code == "valid",
        "code": answer.code,
        "access_key": None,
        "project_id": None,
        "organization_id": None,
        "bearer": None,
        "plan": None,
        "metadata": None,
        "credits_remaining": answer.credits_remaining,
        "rate_limit": answer.rate_limit,
        "retry_after": answer.retry_after,
    }
    identity = answer.identity
    if identity is not None:
        found.update(
            access_key=identity.access_key,
            project_id=identity.project_id,
            organization_id=identity.organization_id,
            bearer={"type": identity.bearer_type, "id": identity.bearer_id},
            plan=identity.plan,
            metadata=identity.metadata,
        )
    return found


async def verify_key(request: Request) -> Response:
    """Whether a key is good for a use, and may spend ``cost`` credits: 200 with a code for
    every outcome. For a restricted key holding ``keys:verify`` (or a manager's key)."""
    actor = await authenticate(request, restricted_may=VERIFY)
    queries(request)
    held = actor.key_permissions
    if not (actor.is_manager or (held is not None and VERIFY in held)):
        raise Forbidden(f"verifying keys needs a key with the {VERIFY} permission")
    body = fields.VERIFY_KEY.parse(await request.body())
    checker = context(request).verify
    assert checker is not None  # the route exists only when the composition hands one in
    answer = await checker(
        VerifyQuery(
            body["secret_key"],
            body.get("resource"),
            body.get("method", "GET"),
            body.get("cost", 0),
            body.get("ip"),
        )
    )
    return JSONResponse(answer_json(answer))


def routes(verify: bool) -> list[Route]:
    found = [
        Route("/v1/plans", plan_collection, methods=["GET", "POST"]),
        Route("/v1/plans/{id}", plan_item, methods=["GET", "PATCH", "DELETE"]),
        Route("/v1/usage", usage_export),
    ]
    if verify:
        found.append(Route("/v1/keys/verify", verify_key, methods=["POST"]))
    return found
