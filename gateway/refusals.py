"""What the server protocol (``gateway.protocol``) answers on its own, before any app sees a
request: a head too large, malformed or late, a Host that does not hold. The same JSON error
shape as everything else the gateway says, then the connection is closed (after such a request,
where the next one starts is not known)."""

from __future__ import annotations

import json
import random
import re

MAX_HEAD_BYTES = 64 * 1024
# RFC 3986 §3.2.2-3: an IP literal, or a reg-name (unreserved, sub-delims, pct-encoded), then an
# optional port. An "http" URI's host is never empty (RFC 9110 §4.2.1).
AUTHORITY = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)(?::[0-9]*)?"
)
# Statuses and messages of the requests refused here.
REFUSALS = {
    "headers_too_large": (
        b"431 Request Header Fields Too Large",
        f"The request line and headers exceed {MAX_HEAD_BYTES} bytes.",
    ),
    "malformed_request": (
        b"400 Bad Request",
        "The request is not valid HTTP/1.1 (framing, header syntax or encoding).",
    ),
    "bad_host": (
        b"400 Bad Request",
        "An HTTP/1.1 request needs exactly one Host header naming a valid authority, the one of "
        "its target if that is absolute (RFC 9112 §3.2).",
    ),
    "upgrade_with_body": (
        b"400 Bad Request",
        "This server does not switch protocols for this request, and an Upgrade request with a "
        "body cannot be served as a plain one; send it without Upgrade.",
    ),
    "header_timeout": (
        b"408 Request Timeout",
        "The request line and headers did not arrive in time.",
    ),
}


class Refused(Exception):
    """A request refused while it is parsed (httptools turns it into an HttpParserError)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def refusal(reason: str) -> bytes:
    """The whole response refusing a request for ``reason`` (a key of ``REFUSALS``)."""
    status, message = REFUSALS[reason]
    body = json.dumps(
        {
            "type": "request_timeout" if status.startswith(b"408") else "bad_request",
            "reason": reason,
            "message": message,
            "request_id": f"{random.getrandbits(128):032x}",
        }
    ).encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )
