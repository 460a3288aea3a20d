"""Hostile input: one table of raw requests, each with the statuses it may get and what
the upstream must or must not receive.

The route table mixes auth modes and gives each route its own upstream base path, so the path the
upstream records tells which route a request really reached:
``/public`` (auth none) -> ``/pub``, ``/private`` (auth required) -> ``/priv``,
``/sometimes`` (auth optional) -> ``/opt``.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from typing import Any

import pytest

from admin import access, service
from core.identity import IDENTITY_HEADERS
from tests.support import Gateway, Upstream, send_raw

ROUTES = """
[[routes]]
prefix = "/public"
upstream = "{upstream}/pub"
auth = "none"
[[routes]]
prefix = "/private"
upstream = "{upstream}/priv"
auth = "required"
[[routes]]
prefix = "/sometimes"
upstream = "{upstream}/opt"
auth = "optional"
[[routes]]
prefix = "/tiny"
upstream = "{upstream}/api"
auth = "none"
max_body_bytes = 100
[[routes]]
prefix = "/public/internal"
upstream = "{upstream}/internal"
auth = "required"
[[routes]]
prefix = "/folded"
upstream = "{upstream}/fold"
auth = "none"
case_insensitive = true
[[routes]]
prefix = "/folded/internal"
upstream = "{upstream}/fold-internal"
auth = "required"
"""

OURS = IDENTITY_HEADERS


@dataclass(frozen=True)
class Case:
    request: str  # {valid}, {unknown}, {revoked}, ... are filled per run; "\n" becomes CRLF
    statuses: tuple[int, ...]
    reaches: str | None  # the upstream path prefix it must land under, or None: must not arrive
    body: bytes = b""
    passes: str | None = None  # an Authorization value that is not ours and must arrive as sent
    absent: str | None = None  # text that must not be anywhere in what the upstream saw
    present: str | None = None  # text that must be there


def get(target: str, *headers: str) -> str:
    return "\n".join([f"GET {target} HTTP/1.1", "Host: gw", *headers, "Connection: close", "", ""])


KEY = "X-Auth-Token: {valid}"
CASES: dict[str, Case] = {
    # -- path tricks: none may reach /priv without a key, none may leave its route ----------------
    "dot-dot into private": Case(get("/public/../private/x"), (401,), None),
    "encoded dots": Case(get("/public/%2e%2e/private/x"), (401,), None),
    "upper-case encoded dots and slash": Case(get("/public/%2E%2E%2Fprivate/x"), (401,), None),
    "encoded slash": Case(get("/public/..%2fprivate/x"), (401,), None),
    "encoded backslash": Case(get("/public/..%5cprivate/x"), (401,), None),
    "raw backslash": Case(get("/public/..\\private/x"), (401,), None),
    "mixed dots": Case(get("/public/.%2e/private/x"), (401,), None),
    "deep climb": Case(get("/public/a/b/../../../private/x"), (401,), None),
    "dot segment then climb": Case(get("/public/./../private"), (401,), None),
    "doubled slash": Case(get("//private/x"), (401,), None),
    "doubled slashes inside": Case(get("/public//..//private/x"), (401,), None),
    "path parameter dots (Tomcat ..;)": Case(get("/public/..;/private/x"), (401,), None),
    "path parameter dot": Case(get("/public/.;x/y"), (200,), "/pub/y"),
    # -- ambiguous paths: another server would serve another resource --------------------------
    "servlet path parameter": Case(get("/public/internal;x/y"), (400,), None),
    "encoded path parameter": Case(get("/public/internal%3bx/y"), (400,), None),
    "path parameter at the end": Case(get("/public/internal;jsessionid=1"), (400,), None),
    "trailing dot": Case(get("/public/internal."), (400,), None),
    "trailing dot inside": Case(get("/public/internal./y"), (400,), None),
    "encoded trailing dot": Case(get("/public/internal%2e/y"), (400,), None),
    "case on a case-sensitive route is its own path": Case(
        get("/public/INTERNAL"), (200,), "/pub/INTERNAL"
    ),
    "case folded onto the more specific route": Case(get("/FOLDED/Internal/x"), (401,), None),
    "case folded and forwarded lower-cased": Case(get("/Folded/Open/X"), (200,), "/fold/open/x"),
    "a dot inside a segment is plain": Case(get("/public/v1.2/x.json"), (200,), "/pub/v1.2/x.json"),
    "double encoding stays in route": Case(
        get("/public/%252e%252e/private"), (200,), "/pub/%252e%252e/private"
    ),
    "overlong UTF-8 dots stay in route": Case(
        get("/public/%c0%ae%c0%ae/private"), (200,), "/pub/%C0%AE%C0%AE/private"
    ),
    "absolute-form target": Case(get("http://evil.example/private/x"), (400,), None),
    "absolute-form naming the Host": Case(get("http://gw/public/x"), (200,), "/pub/x"),
    "encoded path parameter dots (..%3B)": Case(get("/public/..%3B/private/x"), (401,), None),
    "encoded path parameter dots, lower case": Case(get("/public/..%3b/private/x"), (401,), None),
    # -- the request's Host (RFC 9112 §3.2) --------------------------------------------------------
    "HTTP/1.1 without Host": Case("GET /public/h HTTP/1.1\nConnection: close\n\n", (400,), None),
    "two Hosts": Case(get("/public/h", "Host: evil.example"), (400,), None),
    "Host that is not an authority": Case(
        "GET /public/h HTTP/1.1\nHost: evil.example/x\nConnection: close\n\n", (400,), None
    ),
    "HTTP/1.0 without Host is fine": Case("GET /public/h HTTP/1.0\n\n", (200,), "/pub/h"),
    # -- framing that must not be tampered with ----------------------------------------------
    "trailers are never headers": Case(
        "POST /public/t HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\nTrailer: Host\n"
        "Connection: close\n\n3\nabc\n0\nHost: evil.example\nX-Auth-Token: {valid}\n"
        "X-Forwarded-Host: evil.example\n\n",
        (200,),
        "/pub/t",
        absent="evil.example",
    ),
    "a token sent only as a trailer does not authenticate": Case(
        "POST /private/t HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\nConnection: close\n\n"
        "3\nabc\n0\nX-Auth-Token: {valid}\n\n",
        (401,),
        None,
    ),
    "Connection naming Content-Length": Case(
        "POST /tiny/upload HTTP/1.1\nHost: gw\nContent-Length: 101\nConnection: content-length, "
        "close\n\n" + "e" * 101,
        (413,),
        None,
    ),
    "Connection naming Content-Length keeps the body": Case(
        "POST /public/body HTTP/1.1\nHost: gw\nContent-Length: 5\nConnection: content-length, "
        "close\n\nhello",
        (200,),
        "/pub/body",
        present="'body_bytes': 5",
    ),
    "underscore framing headers": Case(
        get("/public/u", "Transfer_Encoding: chunked", "Content_Length: 5", "X_Request_Id: x"),
        (200,),
        "/pub/u",
        absent="_encoding",
    ),
    "header bytes pass as sent": Case(
        get("/public/n", "X-Name: caf\udce9"), (200,), "/pub/n", present="caf\xe9"
    ),
    "Upgrade with a body": Case(
        "POST /public/up HTTP/1.1\nHost: gw\nConnection: Upgrade\nUpgrade: foo\n"
        "Content-Length: 5\n\nhello",
        (400,),
        None,
    ),
    "Upgrade without a body is served plainly": Case(
        "GET /public/up HTTP/1.1\nHost: gw\nConnection: Upgrade, HTTP2-Settings\nUpgrade: h2c\n"
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\n\n",
        (200,),
        "/pub/up",
        absent="h2c",
    ),
    "query cannot climb": Case(get("/public/x?../../private"), (200,), "/pub/x"),
    "case is not folded": Case(get("/PRIVATE/x"), (404,), None),
    "prefix needs a segment boundary": Case(get("/privateer/x"), (404,), None),
    "climb out of public lands at root": Case(get("/public/../../x"), (404,), None),
    # A segment ending in NUL (or a space or tab) means less to a C or Windows upstream.
    "a segment ending in a null byte is refused": Case(get("/public/%00/x"), (400,), None),
    "a null byte inside a segment stays encoded": Case(
        get("/public/a%00b/x"), (200,), "/pub/a%00b/x"
    ),
    "private with key is fine": Case(get("/private/../private/ok", KEY), (200,), "/priv/ok"),
    # -- identity spoofing, on every auth mode -------------------------------------------------
    "spoof on none": Case(
        get(
            "/public/s",
            "X-Auth-Access-Key: evil",
            "x_project_id: evil",
            "X-ORGANIZATION-ID: evil",
            "X_Auth_Bearer_Type: user",
        ),
        (200,),
        "/pub/s",
    ),
    "spoof on optional without key": Case(
        get("/sometimes/s", "X-Auth-Bearer-ID: evil", "X-Project-ID: evil", "X-Project-ID: evil2"),
        (200,),
        "/opt/s",
    ),
    "spoof on optional with key": Case(
        get("/sometimes/s", KEY, "X-Auth-Key-Mode: test", "x-auth-bearer-id: evil"),
        (200,),
        "/opt/s",
    ),
    "spoof on required with key": Case(
        get(
            "/private/s",
            KEY,
            "X-Organization-Id: evil",
            "X_AUTH_ACCESS_KEY: evil",
            "X-Auth-Foo: evil",
        ),
        (200,),
        "/priv/s",
    ),
    # -- what would make the upstream do another thing than the gate decided -------------------
    "method and URL overrides are dropped": Case(
        get(
            "/public/o",
            "X-HTTP-Method-Override: DELETE",
            "X-HTTP-Method: DELETE",
            "X-Method-Override: DELETE",
            "X-Original-URL: /private/x",
            "X-Rewrite-URL: /private/x",
            "X_HTTP_Method_Override: DELETE",
        ),
        (200,),
        "/pub/o",
        absent="DELETE",
    ),
    "overrides are dropped with a key too": Case(
        get("/private/o", KEY, "X-HTTP-Method-Override: DELETE", "X-Original-URL: /x"),
        (200,),
        "/priv/o",
        absent="override",
    ),
    "the client's address headers are replaced": Case(
        get("/public/a", "Forwarded: for=6.6.6.6;proto=https", "X-Real-IP: 6.6.6.6"),
        (200,),
        "/pub/a",
        absent="6.6.6.6",
        present="('forwarded', 'for=127.0.0.1;proto=http'), ('x-real-ip', '127.0.0.1')",
    ),
    "CONNECT is never forwarded": Case(
        "CONNECT 127.0.0.1:9 HTTP/1.1\nHost: 127.0.0.1:9\n\n", (405, 400), None
    ),
    "CONNECT to a route's path": Case("CONNECT /public/c HTTP/1.1\nHost: gw\n\n", (405,), None),
    "spoof alone is not a key": Case(
        get("/private/s", "X-Auth-Access-Key: {access_key}"), (401,), None
    ),
    "token under another spelling": Case(get("/private/s", "X_Auth_Token: {valid}"), (401,), None),
    # -- tokens ---------------------------------------------------------------------------------
    "empty token": Case(get("/private/t", "X-Auth-Token: "), (401,), None),
    "whitespace-padded token (OWS is not part of a value, RFC 9110 5.5)": Case(
        get("/private/t", "X-Auth-Token:    {valid}   "), (200,), "/priv/t"
    ),
    "10 KB token": Case(get("/private/t", "X-Auth-Token: " + "a" * 10_240), (401,), None),
    "non-ASCII token": Case(get("/private/t", "X-Auth-Token: gws_live_é"), (401,), None),
    "invalid UTF-8 token": Case(get("/private/t", "X-Auth-Token: gws_\udcff"), (401, 400), None),
    "checksum-valid unknown token": Case(
        get("/private/t", "X-Auth-Token: {unknown}"), (401,), None
    ),
    "right secret, other mode's prefix": Case(
        get("/private/t", "X-Auth-Token: {other_mode}"), (401,), None
    ),
    "revoked key": Case(get("/private/t", "X-Auth-Token: {revoked}"), (401,), None),
    "expired key": Case(get("/private/t", "X-Auth-Token: {expired}"), (401,), None),
    "rolled past its grace": Case(get("/private/t", "X-Auth-Token: {rolled}"), (401,), None),
    "two different tokens": Case(get("/private/t", KEY, "X-Auth-Token: {unknown}"), (401,), None),
    "invalid token on optional": Case(get("/sometimes/t", "X-Auth-Token: {unknown}"), (401,), None),
    # -- Authorization: Bearer, the second carrier of a key ----------------------------------
    "bearer carrier on required": Case(
        get("/private/b", "Authorization: Bearer {valid}"), (200,), "/priv/b"
    ),
    "bearer scheme in any case, padded": Case(
        get("/private/b", "authorization: bEaReR   {valid}  "), (200,), "/priv/b"
    ),
    "bearer agreeing with X-Auth-Token": Case(
        get("/private/b", KEY, "Authorization: Bearer {valid}"), (200,), "/priv/b"
    ),
    "bearer differing from X-Auth-Token": Case(
        get("/private/b", KEY, "Authorization: Bearer {unknown}"), (401,), None
    ),
    "revoked key as bearer": Case(
        get("/private/b", "Authorization: Bearer {revoked}"), (401,), None
    ),
    "truncated secret as bearer": Case(
        get("/private/b", "Authorization: Bearer gws_live_typo"), (401,), None
    ),
    "bearer carrier on optional": Case(
        get("/sometimes/b", "Authorization: Bearer {valid}"), (200,), "/opt/b"
    ),
    "unknown secret as bearer on optional is refused": Case(
        get("/sometimes/b", "Authorization: Bearer {unknown}"), (401,), None
    ),
    "our secret as bearer on a none route is removed unread": Case(
        get("/public/b", "Authorization: Bearer {unknown}"), (200,), "/pub/b"
    ),
    "truncated secret as bearer on a none route is removed": Case(
        get("/public/b", "Authorization: Bearer gws_test_abc"), (200,), "/pub/b"
    ),
    "valid secret as bearer on a none route is removed": Case(
        get("/public/b", "Authorization: Bearer {valid}"), (200,), "/pub/b"
    ),
    "someone else's bearer token passes through": Case(
        get("/public/b", "Authorization: Bearer eyJhbGciOi.upstream.jwt"),
        (200,),
        "/pub/b",
        passes="Bearer eyJhbGciOi.upstream.jwt",
    ),
    "Basic credentials pass through beside a key": Case(
        get("/private/b", KEY, "Authorization: Basic dXNlcjpwYXNz"),
        (200,),
        "/priv/b",
        passes="Basic dXNlcjpwYXNz",
    ),
    "someone else's bearer token is not a key": Case(
        get("/private/b", "Authorization: Bearer eyJhbGciOi.upstream.jwt"), (401,), None
    ),
    "someone else's bearer on optional is anonymous": Case(
        get("/sometimes/b", "Authorization: Bearer eyJhbGciOi.upstream.jwt"),
        (200,),
        "/opt/b",
        passes="Bearer eyJhbGciOi.upstream.jwt",
    ),
    # -- framing ---------------------------------------------------------------------------------
    "Content-Length with Transfer-Encoding": Case(
        "POST /tiny/upload HTTP/1.1\nHost: gw\nContent-Length: 5\n"
        "Transfer-Encoding: chunked\nConnection: close\n\n0\n\nGET /private/smuggled "
        "HTTP/1.1\nHost: gw\n\n",
        (400, 200),
        "/upload",
    ),
    "two Content-Lengths": Case(
        "POST /tiny/upload HTTP/1.1\nHost: gw\nContent-Length: 3\n"
        "Content-Length: 30\nConnection: close\n\nabc",
        (400,),
        None,
    ),
    "bare CR in a header value": Case(
        get("/public/h", "X-Custom: a\rX-Auth-Access-Key: evil"), (400,), None
    ),
    "obs-fold continuation line": Case(
        get("/public/h", "X-Custom: a", " X-Project-ID: evil"), (400, 200), "/pub/h"
    ),
    "oversized header block": Case(
        get("/public/h", *(f"X-Pad-{i}: " + "p" * 4000 for i in range(64))), (431, 400), None
    ),
    "body over the limit with Content-Length": Case(
        "POST /tiny/upload HTTP/1.1\nHost: gw\nContent-Length: 101\nConnection: close\n\n"
        + "b" * 101,
        (413,),
        None,
    ),
    "body over the limit, chunked": Case(
        "POST /tiny/upload HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\n"
        "Connection: close\n\n" + "40\n" + "c" * 64 + "\n" + "40\n" + "c" * 64 + "\n0\n\n",
        (413,),
        None,
    ),
    "body at the limit": Case(
        "POST /tiny/upload HTTP/1.1\nHost: gw\nContent-Length: 100\n"
        "Connection: close\n\n" + "d" * 100,
        (200,),
        "/upload",
    ),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Any:
    from pathlib import Path

    from tests.support import build_gateway

    gateway, running = build_gateway(
        Path(tmp_path_factory.mktemp("hostile")),
        upstream.url,
        ROUTES.replace("{upstream}", upstream.url),
    )
    db, fmt, op = gateway.resources.db, gateway.resources.secret_format, access.LOCAL_OPERATOR
    revoked = gateway.new_key()
    gateway.loop.run(service.revoke_key(db, op, revoked.key.access_key))
    expired = gateway.new_key(expires_at=time.time() + 0.5)
    rolled = gateway.new_key()
    gateway.loop.run(service.roll_key(db, op, fmt, rolled.key.access_key, 0))
    valid = gateway.secret_key
    other = "gws_test_" + valid[9:]
    time.sleep(0.6)  # let the expiring key expire
    tokens = {
        "valid": valid,
        "unknown": fmt.generate(),
        "revoked": revoked.secret_key,
        "expired": expired.secret_key,
        "rolled": rolled.secret_key,
        "other_mode": other,
        "access_key": gateway.access_key,
    }
    yield gateway, tokens
    running.stop()


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input(
    hostile: tuple[Gateway, dict[str, str]], upstream: Upstream, name: str
) -> None:
    gateway, tokens = hostile
    case = CASES[name]
    text = case.request
    for field, value in tokens.items():
        text = text.replace("{" + field + "}", value)
    raw = text.replace("\n", "\r\n").encode("utf-8", "surrogateescape")
    before = len(upstream.requests)
    response = send_raw(gateway.url, raw)
    assert response, "no answer (the gateway hung or dropped the connection)"
    status = int(response.split(b" ", 2)[1])
    assert status in case.statuses, response[:300]
    assert b"Traceback" not in response and b'File "' not in response
    time.sleep(0.05)  # the upstream records after answering
    arrived = upstream.requests[before:]
    if case.reaches is None:
        assert not arrived, arrived  # refused before anything was forwarded
    elif status == 200:
        assert arrived, "nothing reached the upstream"
        seen = arrived[-1]
        assert seen["path"].startswith(case.reaches), seen["path"]
        assert "/smuggled" not in str(arrived)
        values = {k: v for k, v in seen["headers"]}
        for header in OURS:
            assert values.get(header) != "evil" and values.get(header) != "evil2", header
            assert [k for k, _ in seen["headers"]].count(header) <= 1, header
        assert "x-auth-token" not in values and tokens["valid"] not in str(seen)
        # No gateway secret, valid or not, by any carrier: only someone else's credentials.
        assert re.search(r"gws_(live|test)_", str(seen)) is None, seen
        authorizations = [v for k, v in seen["headers"] if k == "authorization"]
        assert authorizations == ([case.passes] if case.passes else []), authorizations
        if seen["path"].startswith("/priv"):
            assert values["x-auth-access-key"] == gateway.access_key
        if case.absent is not None:
            assert case.absent not in str(seen), seen
        if case.present is not None:
            assert case.present in str(seen), seen


def test_a_pipeline_is_answered_in_order_before_its_malformed_request(
    hostile: tuple[Gateway, dict[str, str]], upstream: Upstream
) -> None:
    gateway, _ = hostile
    before = len(upstream.requests)
    answer = send_raw(
        gateway.url,
        b"GET /public/first HTTP/1.1\r\nHost: gw\r\n\r\n"
        b"GET /public/second HTTP/1.1\r\nHost: gw\r\n\r\n"
        b"GET /public/third HTTP/1.1\r\nHost gw\r\n\r\n",
    )
    statuses = re.findall(rb"HTTP/1.1 (\d{3})", answer)
    assert statuses == [b"200", b"200", b"400"], answer[:500]
    assert answer.index(b"/pub/first") < answer.index(b"/pub/second")
    assert [r["path"] for r in upstream.requests[before:]] == ["/pub/first", "/pub/second"]
    assert b"Traceback" not in answer


def test_a_request_head_must_arrive_in_time(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(server="header_timeout_seconds = 0.3")
    host, port = gateway.url.removeprefix("http://").split(":")
    for sent in (b"", b"G", b"GET /open/x HTTP/1.1\r\nHost: gw\r\n"):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(sent)
            started = time.monotonic()
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b'"reason": "header_timeout"' in answer
            assert b'"type": "request_timeout"' in answer
            assert sock.recv(65536) == b""  # closed
            assert time.monotonic() - started < 3
    # A kept-alive connection gets the same bound for its next request's head.
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /open/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        head, body = first.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += sock.recv(65536)
        sock.sendall(b"GE")
        assert sock.recv(65536).startswith(b"HTTP/1.1 408")


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 55
