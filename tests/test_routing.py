"""Path normalisation (RFC 3986 §5.2.4 and our stricter separators) and route matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.config import Route
from gateway.routing import Router, is_ambiguous, normalise_path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/", "/"),
        (b"", "/"),
        (b"/a/b", "/a/b"),
        (b"/a/b/", "/a/b/"),
        (b"//a///b", "/a/b"),
        (b"/a/./b", "/a/b"),
        (b"/a/../b", "/b"),
        (b"/a/b/..", "/a/"),
        (b"/a/b/.", "/a/b/"),
        (b"/../../etc/passwd", "/etc/passwd"),
        (b"/a/%2e%2e/b", "/b"),  # encoded dots are unreserved: decoded, then removed
        (b"/a/%2E%2e/%2e/b", "/b"),
        (b"/a/.%2e/b", "/b"),
        (b"/a%2fb", "/a/b"),  # encoded slash is a separator
        (b"/a/..%2fb", "/b"),
        (b"/a/..%2F..%2Fb", "/b"),
        (b"/a\\..\\b", "/b"),  # backslash too (WHATWG URL)
        (b"/a/%5c..%5cb", "/b"),
        (b"/%7Euser/%41%42", "/~user/AB"),
        (b"/x%3fy", "/x%3Fy"),  # reserved stays encoded, hex upper-cased
        (b"/x%zz", "/x%25zz"),  # a stray % is escaped
        (b"/x%4", "/x%254"),
        (b"/caf\xc3\xa9", "/caf%C3%A9"),  # raw non-ASCII bytes are escaped
        (b"/a b", "/a%20b"),
        (b"/%252e%252e/x", "/%252e%252e/x"),  # double encoding is not decoded twice
        (b"/%c0%ae%c0%ae/x", "/%C0%AE%C0%AE/x"),  # overlong UTF-8 is not a dot
        (b"/.well-known/x", "/.well-known/x"),
        (b"/a/..;/b", "/b"),  # Tomcat reads `..;x` as `..`
        (b"/a/..;jsessionid=1/b", "/b"),
        (b"/a/.;x/b", "/a/b"),
        (b"/a/b;v=1", "/a/b;v=1"),
        (b"*", "/*"),
    ],
)
def test_normalise(raw: bytes, expected: str) -> None:
    assert normalise_path(raw) == expected


@given(
    st.one_of(st.binary(max_size=64), st.text("./;%2eEfF\\a", max_size=40).map(str.encode)).map(
        lambda b: b"/" + b
    )
)
def test_normalise_is_idempotent_and_never_climbs(raw: bytes) -> None:
    once = normalise_path(raw)
    assert normalise_path(once.encode("latin-1")) == once
    assert once.startswith("/")
    assert "//" not in once
    assert all(seg.split(";")[0] not in (".", "..") for seg in once.split("/"))


ROUTES = [
    Route(prefix="/", upstream="http://root"),
    Route(prefix="/echo", upstream="http://echo"),
    Route(prefix="/echo/deep", upstream="http://deep", upstream_path="/base"),
    Route(prefix="/keep", upstream="http://keep", strip_prefix=False),
]


@pytest.mark.parametrize(
    ("path", "upstream", "forwarded"),
    [
        ("/echo", "http://echo", "/"),
        ("/echo/", "http://echo", "/"),
        ("/echo/x", "http://echo", "/x"),
        ("/echoes", "http://root", "/echoes"),  # segment boundary
        ("/echo/deep/x", "http://deep", "/base/x"),  # longest prefix wins
        ("/echo/deeper", "http://echo", "/deeper"),
        ("/keep/x", "http://keep", "/keep/x"),
        ("/other", "http://root", "/other"),
    ],
)
def test_match(path: str, upstream: str, forwarded: str) -> None:
    match = Router(ROUTES).match(path)
    assert match is not None
    assert (match[0].upstream, match[1]) == (upstream, forwarded)


def test_no_match_without_catch_all() -> None:
    assert Router(ROUTES[1:]).match("/nothing") is None


@pytest.mark.parametrize(
    ("path", "ambiguous"),
    [
        ("/api/internal", False),
        ("/api/v1.2/x.json", False),
        ("/api/internal;x/y", True),  # servlet containers drop `;x`
        ("/api/internal%3Bx/y", True),
        ("/api/x;", True),
        ("/api/internal.", True),  # Windows and IIS drop a trailing dot
        ("/api/internal./y", True),
        ("/api/.well-known", False),
    ],
)
def test_ambiguous_segments(path: str, ambiguous: bool) -> None:
    assert is_ambiguous(normalise_path(path.encode())) is ambiguous


FOLDED = [
    Route(prefix="/api", upstream="http://api", case_insensitive=True),
    Route(prefix="/api/internal", upstream="http://internal"),
    Route(prefix="/Docs", upstream="http://docs", case_insensitive=True, strip_prefix=False),
]


@pytest.mark.parametrize(
    ("path", "upstream", "forwarded"),
    [
        ("/api/Orders", "http://api", "/orders"),  # forwarded lower-cased
        ("/API/x", "http://api", "/x"),
        ("/api/INTERNAL/x", "http://internal", "/x"),  # the more specific route claims it
        ("/Api/Internal", "http://internal", "/"),
        ("/docs/A", "http://docs", "/docs/a"),
    ],
)
def test_case_insensitive_routes(path: str, upstream: str, forwarded: str) -> None:
    match = Router(FOLDED).match(path)
    assert match is not None
    assert (match[0].upstream, match[1]) == (upstream, forwarded)
