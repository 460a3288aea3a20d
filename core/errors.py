"""The JSON error vocabulary every listener speaks: ``{"type", "reason", "message", "request_id"}``.

The proxy, the admin API and the forms of the data plane that come later answer a refused key with
the same body, so a client handles one shape whatever it talks to.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

# Rejection reasons of a 401 `denied_authentication`.
MISSING = "missing_token"
MALFORMED = "malformed_token"
INVALID = "invalid_token"
EXPIRED = "expired_token"
DUPLICATE = "duplicate_token"
ACCESS_KEY_GIVEN = "access_key_as_secret"

# The type for each status the gateway itself answers with.
TYPES = {
    400: "bad_request",
    401: "denied_authentication",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    429: "rate_limited",
    431: "bad_request",
    500: "internal_error",
    502: "upstream_error",
    503: "store_unavailable",
    504: "upstream_error",
}

MESSAGES = {
    MISSING: "This route needs an API key: send its secret in the X-Auth-Token header "
    "or as Authorization: Bearer <secret>.",
    MALFORMED: "The API key is not a well-formed secret key; check for a typo or a truncated copy.",
    INVALID: "The secret key is not known: it may have been revoked or rolled.",
    EXPIRED: "The secret key has expired; roll the key for a new secret (a roll renews an "
    "expired key) or create a new key.",
    ACCESS_KEY_GIVEN: "That is the key's access key (GWK...), which names the key; send its "
    "secret key instead, the one shown once when the key was created or rolled.",
    DUPLICATE: "The request carries more than one API key (X-Auth-Token or Authorization: "
    "Bearer) with different values; send exactly one.",
    "project_not_allowed": "This key's project may not use this route.",
    "insufficient_permissions": "This restricted key lacks the permission this request needs.",
    # {prefix}: the configured key prefix, filled in by the listener that answers.
    "restricted_key": "A restricted key (its secret starts {prefix}_rk_) is for the proxy's "
    "routes; the admin API takes an unrestricted key.",
    "ip_not_allowed": "This key may not be used from this address: it is limited to the "
    "networks in its allowed_ips.",
    "no_route": "No route matches this path.",
    "method_not_allowed": "The gateway does not tunnel: CONNECT is never forwarded.",
    "ambiguous_path": "The path could name different resources to different servers (a "
    "segment with ;parameters or a trailing dot, dot segments or encoded slashes where the "
    "server in front forwards the path as sent, escapes that are not UTF-8); send it plainly.",
    "bad_check_request": "The forward-auth check request is not shaped like the requests of "
    "the proxy [forward_auth] shape names; configure that proxy as docs/forward-auth/ shows.",
    "websocket_not_allowed": "This route does not take WebSockets (its websocket setting is off).",
    "bad_websocket_handshake": "A WebSocket handshake carries exactly one Sec-WebSocket-Key "
    "header (RFC 6455 section 4.1); send one, as a WebSocket client library does.",
    "bad_content_length": "The Content-Length header is not a number.",
    "body_too_large": "The request body is larger than this route accepts.",
    "upstream_unreachable": "The upstream service refused the connection or broke it.",
    "upstream_timeout": "The upstream service did not answer within the route timeout.",
    "store_unavailable": "The key store cannot be read right now; retry shortly.",
    "internal_error": "The gateway failed to handle this request; it has been logged.",
    "rate_limited": "This key has used its rate limit (RateLimit-Policy says which); retry after "
    "the Retry-After header's seconds.",
    "rate_limit_unavailable": "The rate limit cannot be checked right now; retry shortly.",
    "key_disabled": "This key is disabled: it is kept, not revoked, and works again once its "
    "organization enables it.",
    "usage_exceeded": "This key has spent all its credits until they refill.",
    "assertion_unavailable": "This route signs the caller's identity for its upstream and the "
    "gateway has no signing key loaded; the log says why.",
}
# Where a reason's type is not its status's.
REASON_TYPES = {
    "usage_exceeded": "usage_exceeded",
    "rate_limit_unavailable": "rate_limit_unavailable",
    "assertion_unavailable": "assertion_unavailable",
}

# A client's X-Request-ID is kept if it is this sane; otherwise the gateway makes one.
REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def new_request_id() -> str:
    # Uniqueness, not secrecy, is what a request id needs; getrandbits costs ~0.2 µs.
    return f"{random.getrandbits(128):032x}"


def request_id_of(value: bytes | None) -> str:
    """The client's request id if it is sane, else a new one."""
    if value is not None and REQUEST_ID.fullmatch(value):
        return value.decode("ascii")
    return new_request_id()


def error_json(status: int, reason: str, request_id: str, message: str | None = None) -> bytes:
    """The body: ``json.dumps`` of the four fields, the request id last. What comes before it is
    the same for every refusal with a reason's own message, so it is made once (bench row 7
    answers every request with a 401: ``json.dumps`` per answer was 4.5% of its CPU)."""
    start = _STARTS.get((status, reason)) if not message else None
    if start is None:
        start = _before_request_id(status, reason, message or MESSAGES[reason])
        if not message:
            _STARTS[(status, reason)] = start
    # What json.dumps does to a str (ensure_ascii), in C.
    return start + json.encoder.encode_basestring_ascii(request_id).encode() + b"}"


_STARTS: dict[tuple[int, str], bytes] = {}  # bounded: the statuses and reasons above


def _before_request_id(status: int, reason: str, message: str) -> bytes:
    body: dict[str, Any] = {
        "type": REASON_TYPES.get(reason) or TYPES[status],
        "reason": reason,
        "message": message,
    }
    return json.dumps(body)[:-1].encode() + b', "request_id": '


# Why a process should not get traffic (its readiness probe answers 503 with one of these).
NOT_READY = {
    "draining": "This gateway is shutting down: it finishes what is in flight and takes "
    "nothing new.",
    "starting": "This gateway's worker processes have not all started serving yet.",
    "store_unavailable": "The key store cannot be reached: keys not in the cache would get 503.",
    "key_feed_behind": "The key change feed has not been read lately: a revocation might not "
    "reach this gateway in time.",
}


def readiness_json(reason: str | None, request_id: str) -> tuple[int, bytes]:
    """The readiness probe's answer: 200 when ready, else 503 with the reason."""
    if reason is None:
        return 200, json.dumps({"status": "ready"}).encode()
    body = {"type": "not_ready", "reason": reason, "message": NOT_READY[reason]}
    return 503, json.dumps({**body, "request_id": request_id}).encode()
