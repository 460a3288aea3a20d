"""Webhook signatures as Standard Webhooks specifies them, so existing verifier libraries accept
our deliveries.

A webhook's secret is ``whsec_`` + base64 of 32 random bytes, shown once at creation; the bytes
are the HMAC key. Every delivery attempt carries ``webhook-id`` (the message's id, the same on
every retry, for the receiver to drop duplicates), ``webhook-timestamp`` (seconds since the epoch
at the attempt: receivers refuse stale ones, so a captured delivery cannot be replayed later) and
``webhook-signature: v1,<base64 of HMAC-SHA256 over "id.timestamp.body">``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 (the mark of a secret, not one)
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }
