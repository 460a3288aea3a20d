"""JSON error responses: ``{"type", "reason", "message", "request_id"}``, never a stack trace."""

from __future__ import annotations

import json
from typing import Any

# type for each status the gateway itself answers with (issue #2).
TYPES = {
    400: "bad_request",
    401: "denied_authentication",
    403: "permission_denied",
    404: "not_found",
    413: "payload_too_large",
    500: "internal_error",
    502: "upstream_error",
    503: "store_unavailable",
    504: "upstream_error",
}

MESSAGES = {
    "missing_token": "This route needs an API key: send its secret in the X-Auth-Token header.",
    "malformed_token": "The X-Auth-Token value is not a well-formed secret key; check for a typo "
    "or a truncated copy.",
    "invalid_token": "The secret key is not known: it may have been revoked or rolled.",
    "expired_token": "The secret key has expired; create a new key or roll this one.",
    "duplicate_token": "The request carries more than one X-Auth-Token value; send exactly one.",
    "project_not_allowed": "This key's project may not use this route.",
    "no_route": "No route matches this path.",
    "bad_content_length": "The Content-Length header is not a number.",
    "body_too_large": "The request body is larger than this route accepts.",
    "upstream_unreachable": "The upstream service refused the connection or broke it.",
    "upstream_timeout": "The upstream service did not answer within the route timeout.",
    "store_unavailable": "The key store cannot be read right now; retry shortly.",
    "internal_error": "The gateway failed to handle this request; it has been logged.",
}


async def send_error(
    send: Any, status: int, reason: str, request_id: str, *, message: str | None = None
) -> None:
    body = json.dumps(
        {
            "type": TYPES[status],
            "reason": reason,
            "message": message or MESSAGES[reason],
            "request_id": request_id,
        }
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        (b"cache-control", b"no-store"),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"X-Auth-Token"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
