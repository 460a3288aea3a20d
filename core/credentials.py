"""Where a request carries its API key, read the same way by every listener.

Two carriers, checked alike: ``X-Auth-Token: <secret>`` and ``Authorization: Bearer <secret>``
(the form Stripe, GitHub and Unkey clients send). An ``Authorization`` header is ours only when its
credentials have our secret's shape (``<prefix>_live_`` / ``<prefix>_test_``): any other
``Authorization`` (Basic, someone else's bearer token) belongs to the upstream and is passed
through untouched; ours is never forwarded, on any route, valid or not. Nor is any
``Authorization`` or ``Proxy-Authorization`` that holds a string of our secret's shape in a form
that is not read as a key (``Bearer\t<secret>``, ``Bearer "<secret>"``, ``Token <secret>``): a
client that sends its key twice, once oddly, must not hand it to the upstream (`carries_secret`),
nor in Basic credentials, user or password (decoded to be looked at).

Leading and trailing whitespace is not part of a field value (RFC 9110 §5.5); the auth scheme is
case-insensitive (RFC 9110 §11.1).
"""

from __future__ import annotations

import base64
import binascii
import re

from core.errors import DUPLICATE, MALFORMED
from core.tokens import ACCESS_KEY_PATTERN

_ACCESS_KEY = re.compile(ACCESS_KEY_PATTERN.pattern.encode())

_OWS = b" \t"


def bearer_secret(value: bytes, marks: tuple[bytes, ...]) -> bytes | None:
    """The credentials of ``Authorization: Bearer <c>`` when ``c`` starts with one of ``marks``
    (our secret's shape), or is one of our access keys (a client that sent the key's name
    instead of its secret is told so, as in ``X-Auth-Token``), else None: the header is someone
    else's."""
    scheme, _, credentials = value.strip(_OWS).partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    credentials = credentials.strip(_OWS)
    if credentials.startswith(marks) or _ACCESS_KEY.fullmatch(credentials):
        return credentials
    return None


def carries_secret(value: bytes, marks: tuple[bytes, ...]) -> bool:
    """Does a header value hold a string of our secret's shape anywhere, Basic credentials
    (RFC 7617: base64 of user:password) decoded too?"""
    if any(mark in value for mark in marks):
        return True
    scheme, _, credentials = value.strip(_OWS).partition(b" ")
    if scheme.lower() != b"basic":
        return False
    try:
        decoded = base64.b64decode(credentials.strip(_OWS), validate=True)
    except binascii.Error:
        return False
    return any(mark in decoded for mark in marks)


def pick(values: list[bytes]) -> tuple[str | None, str | None]:
    """``(token, None)`` for the one key the request carries, ``(None, None)`` when it carries
    none, ``(None, reason)`` when it carries several different ones or one that is not ASCII."""
    if not values:
        return None, None
    first = values[0].strip(_OWS)
    for other in values[1:]:
        if other.strip(_OWS) != first:
            return None, DUPLICATE
    try:
        return first.decode("ascii"), None
    except UnicodeDecodeError:
        return None, MALFORMED
