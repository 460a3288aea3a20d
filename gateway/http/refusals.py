"""What the server protocol (``gateway.http.server``) answers on its own: a request refused before
any app sees it (a head too large, malformed or late, a Host that does not hold), and the 500
for an app that failed before answering. The same JSON error shape as everything else the
gateway says (``core.errors``), then the connection is closed (after such a request, where the
next one starts is not known)."""

from __future__ import annotations

import json
import re

from core.errors import error_json, new_request_id

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
    "upgrade_pipelined": (
        b"400 Bad Request",
        "A WebSocket upgrade must wait for the answers to the requests before it on its "
        "connection; send it on a connection of its own.",
    ),
    "body_timeout": (
        b"408 Request Timeout",
        "The request body stopped arriving; [server] body_timeout_seconds bounds each wait.",
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
    return closing(status, error_json(int(status[:3]), reason, new_request_id(), message))


def status_and_reason(answer: bytes) -> tuple[int, str]:
    """The status and the reason of a response this module made (for the access log of a
    request ended by one)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head[9:12]), str(json.loads(body)["reason"])


def internal_error() -> bytes:
    """The whole response for a request whose app failed before answering it."""
    return closing(
        b"500 Internal Server Error", error_json(500, "internal_error", new_request_id())
    )


def closing(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, len(body), body)
    )
