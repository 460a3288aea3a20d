"""Header filtering in both directions: pure functions over ASGI header lists.

ASGI servers hand us lower-cased header names as bytes. One pass over the request headers splits
them into what is forwarded and what the gateway itself needs (the token, the host, the forwarding
chain, the request id, the body framing).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from core.credentials import bearer_secret, carries_secret
from core.errors import REQUEST_ID

# RFC 9110 §7.6.1 hop-by-hop fields, plus the obsolete Proxy-Connection and the proxy auth fields,
# which belong to this hop only. Headers named in Connection are dropped too.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)
TOKEN_HEADER = b"x-auth-token"
AUTHORIZATION = b"authorization"
# Headers the gateway sets itself; a client copy would be forwarded beside ours otherwise.
# `Expect` is handled by our own server (it sends 100 Continue when the body is read).
_SET_BY_GATEWAY = frozenset(
    {b"host", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id", b"expect"}
)
_IDENTITY_EXACT = (b"x-project-id", b"x-organization-id")
# Headers that make frameworks serve another method or path than the request line's (Symfony,
# Laravel, Express's method-override, IIS/Zend URL rewrites): the gate decided on the request
# line, so the upstream must not be told another. Dropped on every route, for every key.
OVERRIDES = frozenset(
    {
        b"x-http-method-override",
        b"x-http-method",
        b"x-method-override",
        b"x-original-url",
        b"x-rewrite-url",
    }
)
# The message's framing and target: never removable by naming them in Connection (which would
# drop a Content-Length and skip the route's body limit), and their `_` spellings are dropped.
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"host"})
# Set by the gateway in place of the client's (RFC 7239 Forwarded, nginx's X-Real-IP): an
# upstream reading the first `for=` of a list would otherwise believe the client.
_REPLACED = frozenset({b"forwarded", b"x-real-ip"})
# What frameworks read as the connection's scheme, port, address or user when a proxy sets it
# (Rack's X-Forwarded-Ssl and -Scheme, Microsoft's Front-End-Https, Akamai's True-Client-IP,
# an auth proxy's Remote-User): only the gateway may say these, and it says none of them, so
# a client's are dropped (X-Forwarded-Proto and -For say the scheme and the address).
POSED = frozenset(
    {
        b"x-forwarded-ssl",
        b"x-forwarded-scheme",
        b"x-url-scheme",
        b"front-end-https",
        b"x-forwarded-port",
        b"true-client-ip",
        b"x-client-ip",
        b"remote-user",
        b"x-forwarded-user",
        b"x-forwarded-email",
    }
)
_LOOKALIKE = frozenset(
    name.replace(b"-", b"_")
    for name in HOP_BY_HOP | _FRAMING | _SET_BY_GATEWAY | OVERRIDES | _REPLACED | POSED
    if b"-" in name
)
_RESPONSE_DROP = HOP_BY_HOP | {b"x-request-id"}
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close"})


def is_spoofable(name: bytes) -> bool:
    """Could a client header pass for one of ours? `_` counts as `-` (CGI servers merge them)."""
    name = name.lower().replace(b"_", b"-")
    return name.startswith(b"x-auth-") or name in _IDENTITY_EXACT


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Header names listed in Connection: hop-by-hop for this message (RFC 9110 §7.6.1)."""
    names: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            names.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(names)


class RequestHeaders(NamedTuple):
    forward: list[tuple[bytes, bytes]]
    tokens: list[bytes]
    host: bytes | None
    forwarded_for: bytes | None
    request_id: bytes | None
    content_length: bytes | None
    chunked: bool


def split_request(headers: list[tuple[bytes, bytes]], marks: tuple[bytes, ...]) -> RequestHeaders:
    """Forwardable headers (the bytes as received) and what the gateway needs.

    ``tokens`` holds every value that carries a key: each ``X-Auth-Token`` and each
    ``Authorization: Bearer`` whose credentials start with one of ``marks`` (our secret's shape).
    Neither is ever forwarded, nor an ``Authorization`` holding one of ``marks`` anywhere; any
    other ``Authorization`` is. (``Proxy-Authorization`` is this hop's: never forwarded.)
    """
    dropped: frozenset[bytes] | tuple[()] = ()
    for name, _ in headers:
        if name == b"connection":
            dropped = connection_tokens(headers) - _FRAMING
            break
    forward: list[tuple[bytes, bytes]] = []
    tokens: list[bytes] = []
    host = forwarded_for = request_id = content_length = None
    chunked = False
    for name, value in headers:
        if name == TOKEN_HEADER:
            tokens.append(value)
        elif name in HOP_BY_HOP or name in dropped:
            if name == b"transfer-encoding":
                chunked = True
        elif name in _SET_BY_GATEWAY:
            if name == b"host":
                host = value
            elif name == b"x-request-id" and REQUEST_ID.fullmatch(value):
                request_id = value
        elif name[:1] in b"xX" and (is_spoofable(name) or name in OVERRIDES):
            continue
        elif name in _REPLACED or name in POSED:
            continue  # the gateway's to say: the client's address and scheme as it knows them
        elif name in _LOOKALIKE:
            continue  # Transfer_Encoding beside Transfer-Encoding: a CGI upstream merges them
        elif name == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
        elif name == AUTHORIZATION and (secret := bearer_secret(value, marks)) is not None:
            tokens.append(secret)
        elif name == AUTHORIZATION and carries_secret(value, marks):
            continue  # our secret in a form not read as a key: dropped all the same
        else:
            if name == b"content-length":
                content_length = value
            forward.append((name, value))
    return RequestHeaders(forward, tokens, host, forwarded_for, request_id, content_length, chunked)


def shaped(
    returned: list[tuple[bytes, bytes]], raw: Iterable[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The client's response headers: the upstream's filtered, then what the gateway adds
    (``returned``: X-Request-ID, RateLimit)."""
    out = filter_response(raw)
    out += returned
    return out


def filter_response(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Upstream response headers minus hop-by-hop ones and the upstream's own X-Request-ID.

    Repeated headers (Set-Cookie) are kept as separate entries.
    """
    out: list[tuple[bytes, bytes]] = []
    connection: list[tuple[bytes, bytes]] = []
    for name, value in raw:
        lower = name.lower()
        if lower in _RESPONSE_DROP:
            # `Connection: keep-alive` (or close), what nearly every upstream sends, names
            # nothing more to drop: parsed only when it could (1.4% of row 5 under py-spy).
            if lower == b"connection" and value.lower() not in _PLAIN_CONNECTION:
                connection.append((lower, value))
            continue
        out.append((lower, value))
    # One pass in the common case; names listed in Connection (beyond the hop-by-hop ones,
    # like "keep-alive") are rare, and filtered in a second pass only when present.
    dropped = connection_tokens(connection) - HOP_BY_HOP - _FRAMING if connection else None
    if dropped:
        out = [(name, value) for name, value in out if name not in dropped]
    return out
