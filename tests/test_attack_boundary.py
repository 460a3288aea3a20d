"""Ways past the boundary an outside scan found after the boundary fixes: a secret in the path
written whole to the access log, headers that let a plain-HTTP client pose as HTTPS, path
segments a Windows upstream trims, and a secret forwarded inside Basic credentials. Raw sockets
and a scripted upstream that keeps every request head it reads."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Gateway, Running, wait_for
from tests.support.scripted import connect, read_response, scripted_gateway, status_of
from tests.test_upstream_engine import OK, Scripted, keep_alive, use

# A route the scripted upstream never serves: a request for it that reaches the upstream went
# through the shorter /s route instead.
INTERNAL = """
[[routes]]
prefix = "/s/internal"
upstream = "http://127.0.0.1:9"
auth = "required"
"""


@pytest.fixture(scope="module")
def scripted(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, Scripted, Running, Path]]:
    directory = Path(tmp_path_factory.mktemp("boundary"))
    with scripted_gateway(directory, timeout=5, route=INTERNAL) as (gateway, upstream, running):
        yield gateway, upstream, running, directory


def ask(gateway: Gateway, target: str, *headers: str) -> tuple[bytes, bytes]:
    lines = "".join(f"{header}\r\n" for header in headers)
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\n{lines}Connection: close\r\n\r\n"
    with connect(gateway) as client:
        client.sendall(request.encode())
        return read_response(client, 5)


def test_a_secret_in_the_path_is_not_written_to_the_access_log(
    scripted: tuple[Gateway, Scripted, Running, Path],
) -> None:
    """README, security model: no log line carries a secret; strings of its shape are cut to
    their prefix. Today the access log's ``path`` holds a secret in the path whole, on a
    forwarded request and on a refused one alike."""
    gateway, upstream, _, directory = scripted
    use(gateway, upstream, keep_alive(OK))
    secret = gateway.secret_key
    log = directory / "access.log"
    before = log.read_text().count("\n") if log.exists() else 0
    targets = [f"/s/keys/{secret}", f"/nowhere/{secret}", f"/echo/{secret}"]
    for target in targets:
        head, _ = ask(gateway, target)
        assert status_of(head) in (200, 401, 404), head
    wait_for(lambda: log.read_text().count("\n") >= before + len(targets), timeout=5)
    lines = log.read_text().splitlines()[before:]
    assert not [line for line in lines if secret[9:] in line], lines


POSING_AS_HTTPS = ["X-Forwarded-Ssl: on", "X-Forwarded-Scheme: https", "Front-End-Https: on"]


@pytest.mark.parametrize("header", POSING_AS_HTTPS)
def test_a_plain_http_client_cannot_pose_as_https(
    scripted: tuple[Gateway, Scripted, Running, Path], header: str
) -> None:
    """README: a client's own forwarding headers are never believed, "a loopback client cannot
    pose as ... HTTPS". X-Forwarded-Proto is replaced, but these say the same to Rack (Rails,
    Sinatra: ``X-Forwarded-Ssl: on``, ``X-Forwarded-Scheme``) and to Microsoft's stacks
    (``Front-End-Https``), and today they reach the upstream as the client wrote them."""
    gateway, upstream, _, _ = scripted
    use(gateway, upstream, keep_alive(OK))
    head, _ = ask(gateway, "/s/x", header)
    assert status_of(head) == 200, head
    name = header.split(":")[0].lower().encode()
    assert not [h for h in upstream.heads if re.search(rb"\r\n" + name + rb":", h.lower())], (
        upstream.heads
    )


@pytest.mark.parametrize("segment", ["internal%20", "internal%09", "internal%00", "internal%20."])
def test_a_segment_a_windows_upstream_trims_does_not_change_the_route(
    scripted: tuple[Gateway, Scripted, Running, Path], segment: str
) -> None:
    """A trailing dot is refused (400 ``ambiguous_path``) because Windows and IIS drop it; they
    drop trailing spaces the same way, and a NUL ends the name for C servers. Today
    ``/s/internal%20/x`` is served by ``/s`` (auth "none") while ``/s/internal/x`` needs a key:
    the upstream gets ``/internal%20/x``."""
    gateway, upstream, _, _ = scripted
    use(gateway, upstream, keep_alive(OK))
    head, _ = ask(gateway, "/s/internal/x")
    assert status_of(head) == 401, head  # the route this test must not get around
    head, _ = ask(gateway, f"/s/{segment}/x")
    assert status_of(head) in (400, 401), head
    assert not upstream.heads, upstream.heads


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("carrier", ["user", "password"])
def test_a_secret_in_basic_credentials_does_not_reach_the_upstream(
    scripted: tuple[Gateway, Scripted, Running, Path], carrier: str
) -> None:
    """README: no secret reaches an upstream; an Authorization holding a string of our secret's
    shape is removed. Basic credentials carry it base64-encoded (the API-key-as-username style
    of Stripe and others), and today such an Authorization is forwarded as sent beside a valid
    X-Auth-Token."""
    gateway, upstream, _, _ = scripted
    use(gateway, upstream, keep_alive(OK))
    secret = gateway.secret_key
    value = basic(secret, "") if carrier == "user" else basic("me", secret)
    head, _ = ask(gateway, "/echo/x", f"X-Auth-Token: {secret}", f"Authorization: {value}")
    assert status_of(head) == 200, head
    assert upstream.heads, "nothing reached the upstream"
    for seen in upstream.heads:
        for match in re.finditer(rb"authorization: basic ([A-Za-z0-9+/=]+)", seen.lower()):
            encoded = seen[match.start(1) : match.end(1)]
            assert secret.encode() not in base64.b64decode(encoded), seen
