"""The upstream engine (gateway.http.upstream) against upstreams that answer byte for byte as a test
scripts them: framing, keep-alive and its race, interim answers, flow control."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    Gateway,
    LoopThread,
    Running,
    build_gateway,
    free_socket,
    send_raw,
    wait_for,
)
from tests.test_operations import self_signed

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Scripted"], Awaitable[None]]


@dataclass
class Scripted:
    """An upstream whose every connection runs ``script``; it counts connections and keeps
    the request heads and bodies it read."""

    script: Script | None = None
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    sent: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection (asyncio.start_server's callback): the script, then close."""
        self.connections += 1
        try:
            assert self.script is not None
            await self.script(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def read_request(reader: asyncio.StreamReader, upstream: Scripted) -> bytes:
    """One request head, and its body by its framing; b"" when the connection ended."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return b""
    upstream.heads.append(head)
    lower = head.lower()
    body = b""
    if b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    elif b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
    upstream.bodies.append(body)
    return head


@contextlib.contextmanager
def scripted_gateway(
    directory: Path, timeout: float
) -> Iterator[tuple[Gateway, Scripted, Running]]:
    """A gateway whose route /s (auth "none", ``timeout`` seconds) goes to a scripted upstream."""
    upstream = Scripted()
    loop = LoopThread()
    sock = free_socket()
    server = loop.run(asyncio.start_server(upstream.serve, sock=sock))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    extra = f"""
[[routes]]
prefix = "/s"
upstream = "{url}"
auth = "none"
timeout_seconds = {timeout}
"""
    gateway, running = build_gateway(directory, url, extra)
    try:
        yield gateway, upstream, running
    finally:
        running.stop()
        loop.run(finish(server))
        loop.close()


async def finish(server: asyncio.Server) -> None:
    """Stop the scripted upstream and end the connections it still serves (a script may be
    waiting on a read), before its loop closes under them."""
    server.close()
    serving = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in serving:
        task.cancel()
    await asyncio.gather(*serving, return_exceptions=True)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Scripted]]:
    with scripted_gateway(Path(tmp_path_factory.mktemp("engine")), timeout=2) as started:
        yield started[0], started[1]


def use(gateway: Gateway, upstream: Scripted, script: Script) -> None:
    """From now on the upstream runs ``script``; the gateway forgets its kept-alive connections,
    which still run the previous one."""

    async def forget() -> None:
        for pool in gateway.resources.upstream.pools.values():
            pool.close()

    gateway.loop.run(forget())
    upstream.script = script
    upstream.connections = 0
    upstream.heads.clear()
    upstream.bodies.clear()
    upstream.sent = 0


def keep_alive(answer: bytes) -> Script:
    """Answer every request on the connection with ``answer``, as long as it stays open."""

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        while await read_request(reader, upstream):
            writer.write(answer)
            await writer.drain()

    return script


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_connections_are_kept_alive_and_reused(scripted: tuple[Gateway, Scripted]) -> None:
    gateway, upstream = scripted
    use(gateway, upstream, keep_alive(OK))
    with httpx.Client(base_url=gateway.url) as client:
        for _ in range(5):
            assert client.get("/s/x").text == "ok"
    assert upstream.connections == 1
    head = upstream.heads[0]
    assert head.startswith(b"GET /x HTTP/1.1\r\nhost: 127.0.0.1:")  # Host first (RFC 9112 §3.2)


def test_the_keep_alive_race_is_retried_only_when_safe(
    scripted: tuple[Gateway, Scripted],
) -> None:
    """The upstream answers, keeps the connection as if alive, and closes it when the next
    request arrives (what an idle timeout firing at that moment looks like)."""
    gateway, upstream = scripted

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        await read_request(reader, upstream)
        writer.write(OK)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next request: closed without an answer

    use(gateway, upstream, script)
    with httpx.Client(base_url=gateway.url) as client:
        assert client.get("/s/a").status_code == 200
        assert client.get("/s/b").status_code == 200  # sent again on a new connection
        assert upstream.connections == 2
        # POST may have been acted on: never sent twice, the client is told.
        assert client.post("/s/c").status_code == 502
        assert client.get("/s/d").status_code == 200


def test_a_body_delimited_by_the_close(scripted: tuple[Gateway, Scripted]) -> None:
    gateway, upstream = scripted

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        await read_request(reader, upstream)
        writer.write(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\n" + b"z" * 200_000)
        await writer.drain()

    use(gateway, upstream, script)
    with httpx.Client(base_url=gateway.url) as client:
        for _ in range(2):
            answer = client.get("/s/x")
            assert answer.status_code == 200 and answer.content == b"z" * 200_000
    assert upstream.connections == 2  # never kept alive


def test_heads_without_bodies_and_interim_answers(scripted: tuple[Gateway, Scripted]) -> None:
    gateway, upstream = scripted

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        while head := await read_request(reader, upstream):
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
            elif b"/nothing" in head:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif b"/same" in head:
                writer.write(b'HTTP/1.1 304 Not Modified\r\netag: "1"\r\n\r\n')
            else:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n")
                writer.write(OK)
            await writer.drain()

    use(gateway, upstream, script)
    with httpx.Client(base_url=gateway.url) as client:
        head = client.head("/s/x")
        assert head.status_code == 200 and head.headers["content-length"] == "1000"
        assert client.get("/s/nothing").status_code == 204
        assert client.get("/s/same").status_code == 304
        interim = client.get("/s/later")
        assert interim.status_code == 200 and interim.text == "ok"
        assert client.head("/s/y").status_code == 200
    assert upstream.connections == 1  # none of these needed a new connection


def test_a_truncated_body_is_cut_short_not_completed(scripted: tuple[Gateway, Scripted]) -> None:
    gateway, upstream = scripted

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        await read_request(reader, upstream)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 500000\r\n\r\n" + b"a" * 100_000)
        await writer.drain()

    use(gateway, upstream, script)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(gateway.url + "/s/x")
    # A small one fails before the answer starts: a clean 502.

    async def short(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        await read_request(reader, upstream)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await writer.drain()

    use(gateway, upstream, short)
    assert httpx.get(gateway.url + "/s/x").status_code == 502


def test_malformed_answers_are_502(scripted: tuple[Gateway, Scripted]) -> None:
    gateway, upstream = scripted
    for answer in (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\nok",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"NONSENSE\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
    ):
        use(gateway, upstream, keep_alive(answer))
        assert httpx.get(gateway.url + "/s/x").status_code == 502, answer


def test_request_bodies_keep_their_framing(scripted: tuple[Gateway, Scripted]) -> None:
    gateway, upstream = scripted
    use(gateway, upstream, keep_alive(OK))
    assert httpx.post(gateway.url + "/s/x", content=b"hello").status_code == 200
    assert b"content-length: 5" in upstream.heads[-1] and upstream.bodies[-1] == b"hello"

    def parts() -> Iterator[bytes]:
        yield b"one,"
        yield b"two"

    assert httpx.post(gateway.url + "/s/x", content=parts()).status_code == 200
    assert b"transfer-encoding: chunked" in upstream.heads[-1]
    assert upstream.bodies[-1] == b"one,two"


def test_header_bytes_go_upstream_as_received(scripted: tuple[Gateway, Scripted]) -> None:
    gateway, upstream = scripted
    use(gateway, upstream, keep_alive(OK))
    port = gateway.url.rsplit(":", 1)[1]
    answer = send_raw(
        gateway.url,
        f"GET /s/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Name: caf".encode()
        + b"\xe9\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"x-name: caf\xe9\r\n" in upstream.heads[-1]  # not transcoded to UTF-8


def test_a_reader_that_stops_reading_holds_the_upstream_back(
    scripted: tuple[Gateway, Scripted],
) -> None:
    """10 GB offered, a client that reads nothing: the gateway stops reading the upstream, so
    only what fits in the socket buffers and the engine's high-water mark ever leaves it."""
    gateway, upstream = scripted

    async def endless(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        await read_request(reader, upstream)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10000000000\r\n\r\n")
        chunk = b"x" * 65536
        while upstream.sent < 10_000_000_000:
            writer.write(chunk)
            await writer.drain()
            upstream.sent += len(chunk)

    use(gateway, upstream, endless)
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        client.sendall(b"GET /s/big HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: upstream.sent > 0, timeout=5)
        time.sleep(1.0)
        held = upstream.sent
        time.sleep(0.5)
        assert upstream.sent == held  # stalled: nothing more is read from the upstream
        assert held < 64 * 1024 * 1024, held  # kernel buffers and the high-water mark only
        client.recv(65536)


def test_https_upstreams_are_verified(tmp_path: Path) -> None:
    """Verification is on: the route's ca_file makes the upstream's certificate trusted, and
    without it (the system's CAs) the same upstream is refused."""
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    upstream = Scripted(keep_alive(OK))
    loop = LoopThread()
    sock = free_socket()

    server = loop.run(asyncio.start_server(upstream.serve, sock=sock, ssl=context))
    url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    extra = f"""
[[routes]]
prefix = "/trusted"
upstream = "{url}"
auth = "none"
ca_file = "{cert}"

[[routes]]
prefix = "/unknown-ca"
upstream = "{url}"
auth = "none"
"""
    gateway, running = build_gateway(tmp_path, url, extra)
    try:
        trusted = httpx.get(gateway.url + "/trusted/x")
        assert trusted.status_code == 200 and trusted.text == "ok"
        assert httpx.get(gateway.url + "/unknown-ca/x").status_code == 502
    finally:
        running.stop()
        server.close()
        loop.close()
