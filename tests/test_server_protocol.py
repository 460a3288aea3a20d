"""The server side of every listener (gateway.http.server, gateway.http.cycle) with a plain ASGI
app: how responses are framed and written, what a failing app leaves the client, idle connections.
(The hostile table, tests/test_hostile.py, holds the requests a client can get wrong.)"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.http.server import Upgraded
from gatewaycli.server import _Server, uvicorn_config
from tests.support import LoopThread, free_socket, wait_for

BODY = b'{"ok": true}'


# Response header fields the server must refuse to send: CRLF, a bare CR or LF (which some
# clients take as a line's end), in a value or a name, and a control character.
SPLITTING = [
    (b"x-note", b"a\r\nset-cookie: session=evil"),
    (b"x-note", b"a\nset-cookie: session=evil"),
    (b"x-note", b"a\rset-cookie: session=evil"),
    (b"set-cookie: session=evil\r\nx-note", b"a"),
    (b"x-note", b"a\x00set-cookie"),
    (b"x-note", b"a\n\rset-cookie: session=evil"),  # LF CR: no CRLF, one more of each
    (b"x-note", b"a\x7f"),
    (b"x-note\x01", b"a"),
]


class App:
    """Answers by path; ``release`` lets the held stream go on."""

    def __init__(self) -> None:
        self.release: asyncio.Event | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == "/fixed":
            headers = [(b"content-type", b"application/json"), (b"content-length", b"12")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": BODY})
        elif path == "/unsized":  # no Content-Length: chunked for HTTP/1.1, the close for 1.0
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"one,", "more_body": True})
            await send({"type": "http.response.body", "body": b"two"})
        elif path == "/held":  # the head goes out before the body exists
            self.release = asyncio.Event()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await self.release.wait()
            await send({"type": "http.response.body", "body": b"late"})
        elif path == "/split":  # a field that would add a header of its own, or is not HTTP
            headers = [SPLITTING[int(scope["query_string"])]]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/raises":
            raise RuntimeError("the app broke")
        elif path == "/echo":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            length = str(len(body)).encode()
            headers = [(b"content-length", length)]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        # any other path: returns without answering


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, int, App, LoopThread, _Server]]:
    loop = LoopThread()
    app = App()
    sock = free_socket()
    config = uvicorn_config(app, shutdown_timeout=1)
    config.timeout_keep_alive = 1  # what an idle connection is given here (30 s in service)
    server = _Server(config)
    serving = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), loop.loop)
    wait_for(lambda: server.started, timeout=10, interval=0.005)
    host, port = sock.getsockname()[:2]
    yield host, port, app, loop, server
    server.should_exit = True
    serving.result(timeout=10)
    sock.close()
    loop.close()


def exchange(served: tuple[str, int, App, LoopThread], request: bytes) -> bytes:
    """Send ``request``, read until the server closes the connection."""
    host, port = served[0], served[1]
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        return data


def test_a_sized_response_keeps_its_length_and_the_connection(served: Any) -> None:
    host, port = served[0], served[1]
    with socket.create_connection((host, port), timeout=5) as conn:
        for _ in range(3):  # the same connection serves each
            conn.sendall(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(BODY):
                data += conn.recv(65536)
            head = data.split(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.1 200 ok") and b"content-length: 12" in head
            assert b"connection: close" not in head and b"transfer-encoding" not in head


def test_an_unsized_response_is_chunked_for_http11(served: Any) -> None:
    data = exchange(served, b"GET /unsized HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n"


def test_an_unsized_response_is_delimited_by_the_close_for_http10(served: Any) -> None:
    """HTTP/1.0 has no chunked coding (RFC 9112 §7): the end of the connection ends the body."""
    data = exchange(served, b"GET /unsized HTTP/1.0\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b"one,two"


def test_head_gets_the_length_and_no_body(served: Any) -> None:
    data = exchange(served, b"HEAD /fixed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-length: 12" in head.lower() and body == b""


def test_a_streamed_head_is_not_held_for_its_body(served: Any) -> None:
    host, port, app, loop, _ = served
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)  # arrives while the app waits: not held for the body
        assert data.startswith(b"HTTP/1.1 200 OK")
        assert app.release is not None
        loop.loop.call_soon_threadsafe(app.release.set)
        while not data.endswith(b"0\r\n\r\n"):
            data += conn.recv(65536)
        assert b"4\r\nlate\r\n" in data


@pytest.mark.parametrize("case", range(len(SPLITTING)))
def test_a_header_that_would_split_the_response_is_never_sent(served: Any, case: int) -> None:
    data = exchange(served, b"GET /split?%d HTTP/1.1\r\nHost: x\r\n\r\n" % case)
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"set-cookie" not in data.lower() and b"internal_error" in data


@pytest.mark.parametrize("path", ["/raises", "/silent"])
def test_an_app_that_fails_or_says_nothing_leaves_a_json_500(served: Any, path: str) -> None:
    data = exchange(served, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ") and b"connection: close" in head
    assert b'"reason": "internal_error"' in body and b"Traceback" not in data


def test_100_continue_is_sent_when_the_app_asks_for_the_body(served: Any) -> None:
    host, port = served[0], served[1]
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        assert conn.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(b"hello")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\nhello")


def test_a_pipeline_is_answered_in_order(served: Any) -> None:
    data = exchange(
        served,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst"
        b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
        b"\r\n6\r\nthird!\r\n0\r\n\r\n",
    )
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.index(b"first") < data.index(BODY) < data.index(b"third!")


def test_each_request_task_leaves_the_servers_set_when_it_ends(served: Any) -> None:
    """The set the graceful shutdown waits on: a task left in it would hold every drain."""
    server: _Server = served[4]
    data = exchange(
        served,
        b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
        b"GET /raises HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert data.count(b"HTTP/1.1 200 OK") == 2 and b"HTTP/1.1 500" in data
    wait_for(lambda: not server.server_state.tasks, timeout=5, interval=0.01)


def test_a_host_is_checked_again_whenever_it_changes_on_a_connection(served: Any) -> None:
    """Host is checked once per connection while it stays the same (gateway.http.server)."""
    data = exchange(
        served,
        b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /fixed HTTP/1.1\r\nHost: x y\r\n\r\n",
    )
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert b"HTTP/1.1 400 " in data and b"bad_host" in data


def test_an_idle_connection_is_closed(served: Any) -> None:
    host, port = served[0], served[1]
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(BODY):
            data += conn.recv(65536)
        conn.settimeout(4)  # the fixture's keep-alive timeout is 1 s
        assert conn.recv(65536) == b""  # closed by the server, nothing more said


class Taker(App):
    """An app that takes WebSocket upgrades: it answers on the transport it is handed with what
    it was handed, then closes."""

    def take_websocket(self, upgraded: Upgraded) -> None:
        scope = upgraded.scope
        said = f"{scope['type']} {scope['scheme']} {scope['path']} {scope['query_string']!r} "
        upgraded.transport.write(said.encode() + upgraded.early)
        upgraded.transport.close()


def test_an_upgrade_to_websocket_is_handed_over_with_what_followed_its_head() -> None:
    """The engine knows nothing of what is done with the connection: the app is handed the
    request's scope, the transport and the bytes the client sent after the head; a POST is no
    WebSocket handshake (RFC 6455 §4.1) and is served as a plain request."""
    loop = LoopThread()
    sock = free_socket()
    server = _Server(uvicorn_config(Taker(), shutdown_timeout=1, websockets=True))
    serving = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), loop.loop)
    try:
        wait_for(lambda: server.started, timeout=10, interval=0.005)
        served = (*sock.getsockname()[:2],)
        upgrade = b"Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        data = exchange(served, b"GET /fixed?a=1 HTTP/1.1\r\n" + upgrade + b"\x81\x85early")
        assert data == b"websocket ws /fixed b'a=1' \x81\x85early"
        data = exchange(served, b"POST /fixed HTTP/1.1\r\n" + upgrade)
        assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(BODY)
    finally:
        server.should_exit = True
        serving.result(timeout=10)
        sock.close()
        loop.close()
