"""Path normalisation and route matching: pure functions over strings.

The route decision must be the one any upstream would make about the same path, or a path trick
reaches a protected upstream through an open route. So, on the raw request path (never the
ASGI-decoded ``scope["path"]``, where ``%2F`` has already become ``/``):

1. percent-decode unreserved characters (RFC 3986 §6.2.2.2) so ``%2e%2e`` is ``..``; normalise the
   hex of every other escape to upper case (§6.2.2.1); a ``%`` not followed by two hex digits is
   escaped as ``%25``, and bytes that are not allowed in a path are escaped;
2. treat ``\\``, ``%5C`` and ``%2F`` as ``/``: a choice beyond RFC 3986, as the WHATWG URL standard
   (backslash) and Envoy's ``UNESCAPE_AND_FORWARD`` (encoded slash) do, because upstreams that
   decode them would otherwise see ``/open/..%2Fadmin`` as ``/admin``;
3. remove dot segments (RFC 3986 §5.2.4), counting ``..;x`` and ``.;x`` as dot segments since
   servlet containers do, and collapse runs of ``/``.

The upstream receives that normalised path (minus the route prefix when ``strip_prefix``).

A normalised path can still name different resources to different servers, so it is refused
(``is_ambiguous``, 400 ``ambiguous_path``) when a segment has ``;`` parameters (servlet
containers drop ``;x``: ``/api/internal;x/y`` is their ``/api/internal/y``) or ends in a dot
(Windows and IIS drop it: ``/api/internal.`` is ``/api/internal``). Case is the route's to say:
a ``case_insensitive`` route's upstream ignores case, so the decision is made on the lower-cased
path, which a more specific route may claim (``/api/INTERNAL`` under ``/api`` is
``/api/internal``'s), and that is what is forwarded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from core.config import Route

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# pchar without pct-encoded (RFC 3986 §3.3), plus "/".
_ALLOWED = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_HEX = frozenset("0123456789abcdefABCDEF")
# Already canonical: only allowed characters, no "%", no "\", no empty or dot-led segment.
_CANONICAL = re.compile(r"(?:/[A-Za-z0-9\-_~!$&'()*+,;=:@][A-Za-z0-9\-._~!$&'()*+,;=:@]*)*/?")


def normalise_path(raw_path: bytes) -> str:
    """The canonical form of a raw request path (without its query string)."""
    path = raw_path.decode("latin-1")  # one char per byte; non-ASCII bytes get escaped below
    if _CANONICAL.fullmatch(path) and path:
        return path
    return _remove_dot_segments(_canonical_escapes(path))


def _canonical_escapes(path: str) -> str:
    out: list[str] = []
    i, n = 0, len(path)
    while i < n:
        char = path[i]
        if char == "%":
            digits = path[i + 1 : i + 3]
            if len(digits) == 2 and digits[0] in _HEX and digits[1] in _HEX:
                decoded = chr(int(digits, 16))
                if decoded in _UNRESERVED:
                    out.append(decoded)
                elif decoded in "/\\":
                    out.append("/")
                else:
                    out.append("%" + digits.upper())
                i += 3
                continue
            out.append("%25")
        elif char == "\\":
            out.append("/")
        elif char in _ALLOWED:
            out.append(char)
        else:
            out.append(f"%{ord(char):02X}")  # latin-1: each char is one byte
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 on an absolute path, also dropping empty segments (``//``)."""
    segments = path.split("/")
    if segments[0] != "":  # "*" or a relative form: anchor it at the root
        segments.insert(0, "")
    stack: list[str] = []
    for segment in segments[1:]:
        # A dot segment with path parameters (`..;x`) is still a dot segment to servlet
        # containers such as Tomcat, so it is one here too, parameters dropped.
        # `..%3B` too: an upstream that decodes before it splits sees `..;`.
        bare = segment.split(";", 1)[0] if ";" in segment else segment
        if "%3B" in bare:
            bare = bare.split("%3B", 1)[0]
        if bare == "..":
            if stack:
                stack.pop()
        elif bare not in (".", ""):
            stack.append(segment)
    result = "/" + "/".join(stack)
    last = segments[-1].split(";", 1)[0].split("%3B", 1)[0]
    if stack and len(segments) > 1 and last in ("", ".", ".."):
        result += "/"
    return result


# What Windows and IIS trim from the end of a segment (a space, a tab; NUL ends a C string).
TRIMMED = ("%20", "%09", "%00")


def is_ambiguous(path: str) -> bool:
    """Does a segment of a normalised path have ``;`` parameters (``%3B`` too: an upstream may
    decode before it splits) or end in a dot, or in what some servers trim (``TRIMMED``)? (A
    normalised path has no dot segments.)"""
    if ";" in path or "./" in path or path.endswith("."):
        return True
    return "%" in path and (
        "%3B" in path or any(path.endswith(t) or t + "/" in path for t in TRIMMED)
    )


class Router:
    """Longest prefix at a segment boundary: ``/echo`` matches ``/echo/x``, not ``/echoes``."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)

    def match(self, path: str) -> tuple[Route, str] | None:
        """The route for a normalised path and the path to forward to its upstream."""
        found = self._longest(path)
        if found is not None and found[0].case_insensitive:
            # Its upstream ignores case: decide on the path it will serve, lower-cased.
            found = self._longest(path.lower())
        return found

    def _longest(self, path: str) -> tuple[Route, str] | None:
        lower = ""
        for route in self.routes:
            prefix, seen = route.prefix, path
            if route.case_insensitive:
                lower = lower or path.lower()
                prefix, seen = prefix.lower(), lower
            if prefix == "/":
                return route, route.upstream_path + seen
            if seen.startswith(prefix) and (len(seen) == len(prefix) or seen[len(prefix)] == "/"):
                if route.strip_prefix:
                    seen = seen[len(prefix) :] or "/"
                return route, route.upstream_path + seen
        return None
