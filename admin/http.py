"""HTTP plumbing of the admin API: who is calling, JSON errors, strict request parsing.

Callers authenticate with ``X-Auth-Token`` through the gateway's own verifier (same cache, same
revocation feed): the caller is the key's bearer. Every error is JSON; validation errors are
``400 {"type": "invalid_arguments", "message", "details": [{"field", "message"}]}``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from admin.access import Actor, ServiceError
from core import errors
from core.credentials import bearer_secret, pick
from core.errors import MISSING
from core.identity import Authenticator
from core.store import Database, StoreUnavailable
from core.store import directory as store_dir
from core.tokens import SecretFormat

log = logging.getLogger("admin")


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(body.get("message", ""))
        self.status, self.body, self.headers = status, body, headers


def invalid(field: str, message: str) -> ApiError:
    return ApiError(
        400,
        {
            "type": "invalid_arguments",
            "message": f"{field}: {message}",
            "details": [{"field": field, "message": message}],
        },
    )


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


def context(request: Request) -> AdminContext:
    found: AdminContext = request.app.state.context
    return found


async def authenticate(request: Request) -> Actor:
    """The caller, from its key: read from the same carriers, the same way, as on the proxy."""
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
    return Actor(
        kind=result.bearer_type,
        id=result.bearer_id,
        organization_id=result.organization_id,
        permission_sets=frozenset(bearer.permission_sets),
        is_owner=bool(getattr(bearer, "is_owner", False)),
        access_key=result.access_key,
        ip=request.client.host if request.client else None,
    )


async def json_body(request: Request, allowed: set[str]) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid("body", "is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    for name in body:
        if name not in allowed:
            raise invalid(name, f"is not accepted here (accepted: {', '.join(sorted(allowed))})")
    return body


def string(body: dict[str, Any], name: str, *, nullable: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if name in body and not nullable:
            raise invalid(name, "must be a string, not null")
        return None
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    return value


def timestamp(value: Any, name: str) -> float | None:
    """An RFC 3339 time (``2030-01-01T00:00:00Z``) as epoch seconds; None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(name, "must be an RFC 3339 time such as 2030-01-01T00:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(name, "must be an RFC 3339 time such as 2030-01-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        raise invalid(name, "must carry a time zone, e.g. a trailing Z for UTC")
    return parsed.astimezone(UTC).timestamp()


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise invalid(name, f"must be a whole number from {low} to {high}")
    return int(raw)


def query_choice(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query_params.get(name)
    if raw is not None and raw not in choices:
        raise invalid(name, f"must be one of {', '.join(choices)}")
    return raw


# -- exception handlers -------------------------------------------------------------------------


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body, exc.status, headers=exc.headers)


async def on_service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    body: dict[str, Any] = {"type": exc.type, "message": exc.message}
    if exc.status == 400:
        body["details"] = [{"field": exc.field or "body", "message": exc.message}]
    return JSONResponse(body, exc.status)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    return JSONResponse(
        {"type": kind, "message": str(exc.detail)}, exc.status_code, headers=exc.headers
    )


async def on_store_error(request: Request, exc: Exception) -> Response:
    log.warning("admin request failed on the store: %s", exc)
    return JSONResponse(
        {"type": "store_unavailable", "message": errors.MESSAGES["store_unavailable"]}, 503
    )


async def on_crash(request: Request, exc: Exception) -> Response:
    log.error(
        "admin %s %s failed: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc
    )
    return JSONResponse(
        {"type": "internal_error", "message": errors.MESSAGES["internal_error"]}, 500
    )


EXCEPTION_HANDLERS = {
    ApiError: on_api_error,
    ServiceError: on_service_error,
    HTTPException: on_http_error,
    StoreUnavailable: on_store_error,
    Exception: on_crash,
}
