"""JSON error responses on the proxy listener, in the shape ``core.errors`` defines."""

from __future__ import annotations

from typing import Any

from core.errors import error_json


async def send_error(
    send: Any,
    status: int,
    reason: str,
    request_id: str,
    *,
    message: str | None = None,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> int:
    """Send the error; returns the body's length (for the access log)."""
    headers, body = error_response(status, reason, request_id, message, extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return len(body)


def error_response(
    status: int,
    reason: str,
    request_id: str,
    message: str | None = None,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The error's headers and body."""
    body = error_json(status, reason, request_id, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        (b"cache-control", b"no-store"),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"X-Auth-Token"))
    headers.extend(extra)
    return headers, body
