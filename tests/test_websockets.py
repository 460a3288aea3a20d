"""WebSockets through the gateway, with a real WebSocket upstream (the `websockets` package) and
a real WebSocket client: the handshake is authenticated, frames flow both ways, close codes pass
through, and sessions end on revocation, expiry and idleness."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response
from websockets.sync.client import connect

from tests.support import BOUND, Gateway, LoopThread, build_gateway, free_socket, send_raw


@dataclass
class WebSocketUpstream:
    url: str = ""
    handshakes: list[dict[str, str]] = field(default_factory=list)
    closes: list[tuple[int, str]] = field(default_factory=list)


@pytest.fixture(scope="module")
def ws_upstream() -> Iterator[WebSocketUpstream]:
    record = WebSocketUpstream()
    loop = LoopThread()

    async def handler(connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        record.handshakes.append({k.lower(): v for k, v in request.headers.raw_items()})
        path = request.path
        try:
            if path.startswith("/close/"):
                await connection.close(int(path.rsplit("/", 1)[1]), "bye")
                return
            async for message in connection:
                await connection.send(message)
        except ConnectionClosed:
            pass
        finally:
            received = connection.protocol.close_rcvd
            record.closes.append((received.code, received.reason) if received else (1006, ""))

    def refuse(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/refuse"):
            return connection.respond(403, "upstream says no\n")
        return None

    sock = free_socket()

    async def start() -> Any:
        return await serve(handler, sock=sock, process_request=refuse, select_subprotocol=_first)

    server = loop.run(start())
    record.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield record
    server.close()
    loop.run(server.wait_closed())
    loop.close()


def _first(connection: ServerConnection, offered: Any) -> str | None:
    return offered[0] if offered else None


def routes(upstream: WebSocketUpstream) -> str:
    return f"""
[[routes]]
prefix = "/ws"
upstream = "{upstream.url}"
websocket = true

[[routes]]
prefix = "/quiet"
upstream = "{upstream.url}"
websocket = true
websocket_idle_timeout_seconds = 0.3

[[routes]]
prefix = "/plain"
upstream = "{upstream.url}"
"""


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, ws_upstream: WebSocketUpstream
) -> Iterator[Gateway]:
    built, running = build_gateway(
        Path(tmp_path_factory.mktemp("websockets")), ws_upstream.url, routes(ws_upstream)
    )
    yield built
    running.stop()


def ws_url(gateway: Gateway, path: str) -> str:
    return gateway.url.replace("http://", "ws://") + path


def refused(gateway: Gateway, path: str, **headers: str) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as caught:
        connect(ws_url(gateway, path), additional_headers=headers, open_timeout=5)
    response = caught.value.response
    if response.headers.get("content-type") != "application/json":
        return response.status_code, {"text": bytes(response.body or b"").decode()}
    return response.status_code, json.loads(response.body or b"{}")


def test_frames_flow_both_ways_as_the_key_holder(
    gateway: Gateway, ws_upstream: WebSocketUpstream
) -> None:
    forged = {
        "X-Auth-Access-Key": "evil",
        "X-Project-Id": "evil",
        "X-Auth-Assertion": "evil",
        "X-Real-IP": "6.6.6.6",
        "Forwarded": "for=6.6.6.6",
        "X-HTTP-Method-Override": "DELETE",
        "Authorization": f"Token {gateway.secret_key}",
    }
    with connect(
        ws_url(gateway, "/ws/room?x=1"),
        additional_headers={"X-Auth-Token": gateway.secret_key, **forged},
        # Browsers cannot set headers on a WebSocket: clients put the key in a subprotocol,
        # which the gateway does not read as a key and must not pass on.
        subprotocols=["chat.v2", gateway.secret_key, "chat.v1"],  # type: ignore[list-item]
        open_timeout=5,
    ) as socket:
        assert socket.subprotocol == "chat.v2"  # the upstream's choice, passed on
        assert socket.response is not None and socket.response.headers["x-request-id"]
        socket.send("hello")
        assert socket.recv(timeout=5) == "hello"
        socket.send(b"\x00\x01binary")
        assert socket.recv(timeout=5) == b"\x00\x01binary"
    seen = ws_upstream.handshakes[-1]
    assert seen["x-auth-access-key"] == gateway.access_key
    assert seen["x-project-id"] == gateway.project_id
    assert "x-auth-assertion" not in seen  # forged, and this route does not sign
    assert "x-auth-token" not in seen and gateway.secret_key not in str(seen)
    assert seen["x-forwarded-for"].endswith("127.0.0.1")
    assert seen["x-real-ip"] == "127.0.0.1" and seen["forwarded"] == "for=127.0.0.1;proto=http"
    assert "6.6.6.6" not in str(seen) and "x-http-method-override" not in seen


def test_handshakes_are_refused_like_requests(gateway: Gateway) -> None:
    status, body = refused(gateway, "/ws/room")
    assert status == 401 and body["reason"] == "missing_token"
    status, body = refused(gateway, "/plain/room", **{"X-Auth-Token": gateway.secret_key})
    assert status == 403 and body["reason"] == "websocket_not_allowed"
    status, body = refused(gateway, "/nowhere", **{"X-Auth-Token": gateway.secret_key})
    assert status == 404 and body["reason"] == "no_route"
    for ambiguous in ("/ws/room;x", "/ws/room.", "/ws/room%3Bx/y"):
        status, body = refused(gateway, ambiguous, **{"X-Auth-Token": gateway.secret_key})
        assert status == 400 and body["reason"] == "ambiguous_path", ambiguous
    status, body = refused(gateway, "/ws/refuse", **{"X-Auth-Token": gateway.secret_key})
    assert (status, body) == (403, {"text": "upstream says no\n"})  # the upstream's, passed on


def test_close_codes_pass_through(gateway: Gateway, ws_upstream: WebSocketUpstream) -> None:
    key = {"X-Auth-Token": gateway.secret_key}
    with (
        connect(ws_url(gateway, "/ws/close/4001"), additional_headers=key) as socket,
        pytest.raises(ConnectionClosed) as closed,
    ):
        socket.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye")
    with connect(ws_url(gateway, "/ws/room"), additional_headers=key) as socket:
        socket.send("x")
        socket.recv(timeout=5)
        socket.close(4002, "client leaves")
    deadline = time.monotonic() + 5
    while ws_upstream.closes[-1:] != [(4002, "client leaves")] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ws_upstream.closes[-1] == (4002, "client leaves")


def closed_by_gateway(socket: Any, within: float) -> tuple[int, str]:
    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            socket.recv(timeout=within)
    assert time.monotonic() - started <= within
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_a_revoked_key_loses_its_open_websockets(gateway: Gateway) -> None:
    made = gateway.new_key()
    key = {"X-Auth-Token": made.secret_key}
    with (
        connect(ws_url(gateway, "/ws/a"), additional_headers=key) as first,
        connect(ws_url(gateway, "/ws/b"), additional_headers=key) as second,
    ):
        first.send("x")
        first.recv(timeout=5)
        gateway.cli("keys", "revoke", made.key.access_key)
        assert closed_by_gateway(first, BOUND + 1) == (1008, "invalid_token")
        assert closed_by_gateway(second, BOUND + 1)[0] == 1008
    with connect(ws_url(gateway, "/ws/c"), additional_headers={"X-Auth-Token": gateway.secret_key}):
        pass  # another key's sessions are untouched


def test_an_expiring_key_loses_its_open_websockets(gateway: Gateway) -> None:
    made = gateway.new_key(expires_at=time.time() + 1.0)
    with connect(
        ws_url(gateway, "/ws/a"), additional_headers={"X-Auth-Token": made.secret_key}
    ) as socket:
        assert closed_by_gateway(socket, 3.0) == (1008, "expired_token")


def test_an_idle_websocket_is_closed(gateway: Gateway) -> None:
    key = {"X-Auth-Token": gateway.secret_key}
    with connect(ws_url(gateway, "/quiet/a"), additional_headers=key) as socket:
        socket.send("keep")
        socket.recv(timeout=5)
        assert closed_by_gateway(socket, 2.0) == (1001, "idle timeout")


def test_an_upgrade_to_something_else_is_a_plain_request(gateway: Gateway) -> None:
    port = gateway.url.rsplit(":", 1)[1]
    answer = send_raw(
        gateway.url,
        f"GET /ws/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\n"
        f"Upgrade: h2c\r\nX-Auth-Token: {gateway.secret_key}\r\n\r\n".encode(),
    )
    # Served as HTTP (the WebSocket upstream answers plain HTTP with 426), never switched.
    assert not answer.startswith(b"HTTP/1.1 101"), answer[:200]


def test_sessions_are_forgotten_when_they_end(gateway: Gateway) -> None:
    with connect(ws_url(gateway, "/ws/a"), additional_headers={"X-Auth-Token": gateway.secret_key}):
        pass
    deadline = time.monotonic() + 5
    while len(gateway.resources.sessions) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(gateway.resources.sessions) == 0


def test_each_session_is_one_line_of_the_access_log(gateway: Gateway) -> None:
    key = {"X-Auth-Token": gateway.secret_key}
    # The bytes counted are the data frames' payloads as on the wire: without permessage-deflate
    # (negotiated end to end otherwise, and "12345" deflated is 7 bytes), the message's own.
    with connect(ws_url(gateway, "/ws/logged"), additional_headers=key, compression=None) as socket:
        request_id = socket.response.headers["x-request-id"] if socket.response else ""
        socket.send("12345")
        socket.recv(timeout=5)
    refused(gateway, "/plain/logged", **key)
    path = gateway.config.source.parent / "access.log"

    def logged() -> list[dict[str, Any]]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if "logged" in line]

    deadline = time.monotonic() + 5
    while len(logged()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    # The session's line is written when it ends on the gateway's side, which may come after
    # the refusal's: found by path, not by order.
    [session] = [line for line in logged() if line["path"] == "/ws/logged"]
    [refusal] = [line for line in logged() if line["path"] == "/plain/logged"]
    assert session["status"] == 101 and session["request_id"] == request_id
    assert session["access_key"] == gateway.access_key and session["route"] == "/ws"
    assert session["request_bytes"] == 5 and session["response_bytes"] == 5
    assert (refusal["status"], refusal["reason"]) == (403, "websocket_not_allowed")
    assert gateway.secret_key not in path.read_text()
