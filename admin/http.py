"""HTTP plumbing of the admin API: who is calling, request ids, JSON errors.

Callers authenticate with their key, read from the same carriers and the same way as on the proxy
(``core.credentials``), through the proxy's own verifier (same cache, same revocation feed): the
caller is the key's bearer. Every error is JSON with the request's id, as on the proxy:
``{"type", "message", "request_id"}``, plus ``reason`` for a refused key and ``details``
(``[{"field", "message"}]``) for a refused value (400, or 422 for a well-formed value the API
cannot act on now).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from admin.access import Actor, Invalid, ServiceError
from admin.fields import Field
from core import errors
from core.credentials import bearer_secret, pick
from core.errors import MISSING
from core.identity import Authenticator
from core.policies import allows
from core.store import Database, StoreConflict, StoreUnavailable
from core.store import directory as store_dir
from core.tokens import SecretFormat
from core.verification import KeyChecker

log = logging.getLogger("admin")
ASGIApp = Any


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(body.get("message", ""))
        self.status, self.body, self.headers = status, body, headers


def denied(reason: str) -> ApiError:
    return ApiError(
        401,
        {"type": "denied_authentication", "reason": reason, "message": errors.MESSAGES[reason]},
        {"WWW-Authenticate": "X-Auth-Token"},
    )


@dataclass(frozen=True)
class AdminContext:
    """What the admin app is handed by the composition: the store, the key format, and the
    verifier callers are authenticated by (the proxy's own, so one cache and one feed)."""

    db: Database
    secret_format: SecretFormat
    authenticator: Authenticator
    # Why this process should not get traffic, or None: the process's own check (draining,
    # store, key feed), handed in by the composition.
    readiness: Callable[[], Awaitable[str | None]]
    # The Prometheus text of the whole gateway, or None when metrics are off.
    metrics: Callable[[], Awaitable[bytes]] | None = None
    # The JWKS of identity assertions (gateway.assertions), or None where none is served.
    jwks: Callable[[], bytes] | None = None
    # The data plane's answer to POST /v1/keys/verify, or None where it is not served.
    verify: KeyChecker | None = None


def context(request: Request) -> AdminContext:
    found: AdminContext = request.app.state.context
    return found


async def authenticate(request: Request, restricted_may: str | None = None) -> Actor:
    """The caller, from its key: read from the same carriers, the same way, as on the proxy.
    A restricted key is refused, unless it holds ``restricted_may`` (the one permission a
    request takes from restricted keys: ``keys:verify``)."""
    res = context(request)
    values = [v for k, v in request.scope["headers"] if k == b"x-auth-token"]
    for name, value in request.scope["headers"]:
        if name == b"authorization":
            secret = bearer_secret(value, res.secret_format.marks)
            if secret is not None:
                values.append(secret)
    token, refused = pick(values)
    if refused is not None:
        raise denied(refused)
    if token is None:
        raise denied(MISSING)
    try:
        result = await res.authenticator.verify(token)
        if isinstance(result, str):
            raise denied(result)
        if result.bearer_type == "user":
            bearer: Any = await store_dir.get_user(res.db, result.bearer_id)
        else:
            bearer = await store_dir.get_application(res.db, result.bearer_id)
    except StoreUnavailable:
        raise ApiError(
            503, {"type": "store_unavailable", "message": errors.MESSAGES["store_unavailable"]}
        ) from None
    if bearer is None:  # deleted a moment ago; its keys are being revoked
        raise denied("invalid_token")
    if result.disabled:
        # As on the proxy: a key switched off (an unpaid invoice, a leak report, unused) may
        # not manage keys, verify them, or enable itself.
        raise ApiError(
            403,
            {
                "type": "permission_denied",
                "reason": "key_disabled",
                "message": errors.MESSAGES["key_disabled"],
            },
        )
    if result.permissions is not None and (
        restricted_may is None or restricted_may not in result.permissions
    ):
        raise ApiError(
            403,
            {
                "type": "permission_denied",
                "reason": "restricted_key",
                "message": errors.MESSAGES["restricted_key"].format(
                    prefix=res.secret_format.prefix
                ),
            },
        )
    client = request.client.host if request.client else "unknown"
    if result.allowed_networks and not allows(result.allowed_networks, client):
        # A key kept to some networks is kept to them here too: a leaked admin key is no more
        # use elsewhere than a leaked proxy key.
        message = (
            f"This key may not be used from {client}: it is limited to the networks in its "
            "allowed_ips."
        )
        raise ApiError(
            403, {"type": "permission_denied", "reason": "ip_not_allowed", "message": message}
        )
    return Actor(
        kind=result.bearer_type,
        id=result.bearer_id,
        organization_id=result.organization_id,
        permission_sets=frozenset(bearer.permission_sets),
        is_owner=bool(getattr(bearer, "is_owner", False)),
        access_key=result.access_key,
        ip=request.client.host if request.client else None,
        key_permissions=result.permissions,
    )


def queries(request: Request, declared: Mapping[str, Field] | None = None) -> dict[str, Any]:
    """The query parameters, each checked against its declaration (absent ones are None); a
    parameter the request does not declare is refused, as the OpenAPI document says."""
    declared = declared or {}
    for name in request.query_params:
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise Invalid(f"{name} is not a parameter of this request (known: {known})", name)
    return {
        name: field.parse_query(name, request.query_params.get(name))
        for name, field in declared.items()
    }


# -- request ids ----------------------------------------------------------------------------------


class RequestIds:
    """Gives every admin request an id (the client's X-Request-ID if it is sane, as on the proxy),
    returned in the X-Request-ID response header and in every error body. Outermost, so even a
    500 from Starlette's own error middleware carries it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = errors.request_id_of(sent)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


def error(
    request: Request,
    status: int,
    body: dict[str, Any],
    headers: Mapping[str, str] | None = None,
) -> Response:
    state = request.scope.get("state") or {}
    request_id = state.get("request_id") or errors.new_request_id()
    return JSONResponse({**body, "request_id": request_id}, status, headers=headers)


# -- exception handlers -------------------------------------------------------------------------


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error(request, exc.status, exc.body, exc.headers)


async def on_service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    body: dict[str, Any] = {"type": exc.type, "message": exc.message}
    if exc.reason is not None:
        body["reason"] = exc.reason
    if exc.status in (400, 422):
        body["details"] = [{"field": exc.field or "body", "message": exc.message}]
    return error(request, exc.status, body)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    return error(
        request,
        exc.status_code,
        {"type": kind, "message": str(exc.detail)},
        headers=exc.headers,
    )


async def on_store_error(request: Request, exc: Exception) -> Response:
    log.warning("admin request failed on the store: %s", exc)
    return error(
        request, 503, {"type": "store_unavailable", "message": errors.MESSAGES["store_unavailable"]}
    )


async def on_store_conflict(request: Request, exc: Exception) -> Response:
    log.info("admin write refused by the store: %s", exc)
    message = "Another change to the same thing was made at the same moment; nothing was changed."
    return error(request, 409, {"type": "conflict", "message": message})


async def on_crash(request: Request, exc: Exception) -> Response:
    log.error(
        "admin %s %s failed: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc
    )
    return error(
        request, 500, {"type": "internal_error", "message": errors.MESSAGES["internal_error"]}
    )


EXCEPTION_HANDLERS = {
    ApiError: on_api_error,
    ServiceError: on_service_error,
    HTTPException: on_http_error,
    StoreUnavailable: on_store_error,
    StoreConflict: on_store_conflict,
    Exception: on_crash,
}
