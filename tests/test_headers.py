"""Header filtering: one table of what the upstream must and must not receive."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.tokens import SecretFormat
from gateway.headers import filter_response, is_spoofable, split_request
from tests.support import Gateway

# (header sent by the client, is it forwarded?)
REQUEST_CASES = [
    ("X-Auth-Token", False),
    ("X-Auth-Access-Key", False),
    ("x-auth-access-key", False),
    ("X_Auth_Access_Key", False),
    ("X-AUTH-BEARER-ID", False),
    ("X-Auth_Bearer-Type", False),
    ("X-Auth-Anything-New", False),
    ("X-Project-ID", False),
    ("X_Project_Id", False),
    ("X-Organization-ID", False),
    ("x_organization_id", False),
    ("X-Auth-Key-Mode", False),
    ("Connection", False),
    ("Keep-Alive", False),
    ("Proxy-Connection", False),
    ("TE", False),
    ("Trailer", False),
    ("Upgrade", False),
    ("Proxy-Authorization", False),
    ("X-Named-In-Connection", False),
    ("X-Forwarded-Proto", False),  # replaced by ours
    ("X-Forwarded-Host", False),
    ("X-Project", True),  # not one of ours
    ("X-Auth", True),
    ("X-Custom", True),
    ("Authorization", True),
    ("Accept-Encoding", True),
]

MARKS = SecretFormat().marks


@pytest.mark.parametrize("route", ["/echo", "/open", "/maybe"])
def test_headers_reaching_the_upstream(module_gateway: Gateway, route: str) -> None:
    gateway = module_gateway
    headers = [(name, "client-value") for name, _ in REQUEST_CASES if name != "X-Auth-Token"]
    headers = [
        (n, "X-Named-In-Connection, keep-alive" if n == "Connection" else v) for n, v in headers
    ]
    headers.append(("X-Auth-Token", gateway.secret_key))
    with gateway.client() as client:
        response = client.get(f"{route}/x", headers=headers)
    assert response.status_code == 200
    received = response.json()["headers"]
    names = {name for name, _ in received}
    for name, forwarded in REQUEST_CASES:
        values = [v for n, v in received if n == name.lower()]
        if forwarded:
            assert values == ["client-value"], name
        else:
            # Either absent, or (for our own headers) present with our value only.
            assert "client-value" not in values, name
    assert gateway.secret_key not in str(received)
    assert ("x-auth-access-key" in names) is (route != "/open")


def test_split_request_collects_what_the_gateway_needs() -> None:
    parsed = split_request(
        [
            (b"host", b"example.com"),
            (b"x-auth-token", b"t1"),
            (b"x-forwarded-for", b"1.1.1.1"),
            (b"x-forwarded-for", b"2.2.2.2"),
            (b"x-request-id", b"req-1"),
            (b"content-length", b"10"),
            (b"transfer-encoding", b"chunked"),
            (b"accept", b"*/*"),
            (b"authorization", b"Bearer  gws_live_t2 "),
            (b"authorization", b"Basic dXNlcjpwYXNz"),
            (b"authorization", b"Bearer someone-elses.jwt"),
        ],
        MARKS,
    )
    assert parsed.tokens == [b"t1", b"gws_live_t2"]
    assert parsed.host == b"example.com"
    assert parsed.forwarded_for == b"1.1.1.1, 2.2.2.2"
    assert parsed.request_id == b"req-1"
    assert parsed.content_length == b"10" and parsed.chunked
    assert parsed.forward == [
        (b"content-length", b"10"),
        (b"accept", b"*/*"),
        (b"authorization", b"Basic dXNlcjpwYXNz"),
        (b"authorization", b"Bearer someone-elses.jwt"),
    ]


def test_filter_response_keeps_repeats_and_drops_hop_by_hop() -> None:
    out = filter_response(
        (
            (b"Set-Cookie", b"a=1"),
            (b"Set-Cookie", b"b=2"),
            (b"Connection", b"X-Private"),
            (b"X-Private", b"1"),
            (b"Transfer-Encoding", b"chunked"),
            (b"X-Request-ID", b"theirs"),
            (b"Content-Type", b"text/plain"),
        )
    )
    assert out == [
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"content-type", b"text/plain"),
    ]


def test_a_plain_keep_alive_is_skipped_but_any_name_beside_it_is_still_dropped() -> None:
    out = filter_response(
        (
            (b"Connection", b"Keep-Alive"),
            (b"Connection", b"close, X-Other"),
            (b"X-Other", b"1"),
            (b"Content-Length", b"2"),
        )
    )
    assert out == [(b"content-length", b"2")]


NAME_CHARS = st.sampled_from("xXaAuUtThH-_pPrRoOjJeEcCiIdDgGnNzZ")


@given(st.text(NAME_CHARS, min_size=1, max_size=24))
def test_no_spoofable_name_gets_through(name: str) -> None:
    folded = name.lower().replace("_", "-")
    ours = folded.startswith("x-auth-") or folded in ("x-project-id", "x-organization-id")
    raw = name.lower().encode()
    forwarded = split_request([(raw, b"v")], MARKS).forward
    assert is_spoofable(name.encode()) is ours
    assert (
        (not forwarded)
        if ours
        else bool(forwarded)
        or raw in (b"te", b"trailer", b"upgrade", b"connection", b"host", b"expect")
    )


ODD_CARRIERS = [
    "Bearer\t{secret}",
    'Bearer "{secret}"',
    "Token {secret}",
    "Basic {secret}",
    "{secret}",
    "Bearer other, Bearer {secret}",
    'Digest username="x", response="{secret}"',
]


@pytest.mark.parametrize("template", ODD_CARRIERS)
@pytest.mark.parametrize("name", ["Authorization", "Proxy-Authorization"])
def test_a_secret_in_any_authorization_value_is_dropped(
    module_gateway: Gateway, template: str, name: str
) -> None:
    gateway = module_gateway
    value = template.format(secret=gateway.secret_key)
    headers = [("X-Auth-Token", gateway.secret_key), (name, value)]
    with gateway.client() as client:
        response = client.get("/echo/x", headers=headers)
    assert response.status_code == 200, response.text
    received = response.json()["headers"]
    assert gateway.secret_key[9:] not in str(received)
    # Someone else's credentials still pass.
    with gateway.client() as client:
        theirs = client.get(
            "/echo/x", headers=[*headers[:1], ("Authorization", "Token someone-elses")]
        )
    assert ("authorization", "Token someone-elses") in [tuple(h) for h in theirs.json()["headers"]]


def test_split_request_drops_authorization_of_our_shape() -> None:
    parsed = split_request(
        [
            (b"authorization", b"Bearer\tgws_live_t2"),
            (b"authorization", b'Bearer "gws_rk_test_t3"'),
            (b"authorization", b"Token gws_live_t4"),
            (b"authorization", b"Token theirs"),
        ],
        MARKS,
    )
    assert parsed.tokens == []  # not read as keys: only `Bearer <secret>` is a carrier
    assert parsed.forward == [(b"authorization", b"Token theirs")]
