"""Faults of the upstream side of an exchange, each the behaviour the engine must have: an
upstream that fails mid-upload, answers early, echoes while it reads, sends trailers or two
responses at once, closes idle connections early. Raw sockets and scripted upstreams
(``tests.test_upstream_engine.Scripted``), every wait bounded."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.support import Gateway, LoopThread, free_socket, wait_for
from tests.support.scripted import (
    connect,
    dechunk,
    read_response,
    reason_of,
    scripted_gateway,
    status_of,
)
from tests.test_upstream_engine import OK, Scripted, keep_alive, read_request, use

UNAUTHORIZED = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Scripted]]:
    with scripted_gateway(Path(tmp_path_factory.mktemp("exchange")), timeout=2) as started:
        yield started[0], started[1]


def access_line(gateway: Gateway, request_id: str) -> dict[str, Any]:
    """The access log's line for ``request_id``."""
    path = gateway.config.source.parent / "access.log"
    found: list[dict[str, Any]] = []

    def logged() -> bool:
        if path.exists():
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            found[:] = [line for line in lines if line["request_id"] == request_id]
        return bool(found)

    wait_for(logged, timeout=5)
    return found[0]


def header_values(head: bytes, name: bytes) -> list[bytes]:
    return [
        line.partition(b":")[2].strip()
        for line in head.split(b"\r\n")[1:]
        if line.partition(b":")[0].strip().lower() == name
    ]


def test_an_upstream_that_fails_during_the_upload_is_a_502(
    scripted: tuple[Gateway, Scripted],
) -> None:
    """The upstream closes after 10 of 100,000 body bytes, the rest not sent yet. Today the
    client gets ``HTTP/1.1 0`` and the access log says 0: the failed response head is taken
    as an early answer."""
    gateway, upstream = scripted

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        upstream.heads.append(await reader.readuntil(b"\r\n\r\n"))
        upstream.bodies.append(await reader.readexactly(10))  # then closed

    use(gateway, upstream, script)
    with connect(gateway) as client:
        client.sendall(b"POST /s/up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        client.sendall(b"0123456789")
        head, body = read_response(client, 5)
    assert status_of(head) == 502, head
    assert reason_of(body) == "upstream_unreachable", body
    request_id = header_values(head, b"x-request-id")[0].decode()
    assert access_line(gateway, request_id)["status"] == 502


def test_an_upstream_may_answer_while_it_reads_the_body(
    scripted: tuple[Gateway, Scripted],
) -> None:
    """Full duplex (RFC 9112 §9.3): the upstream answers 200 at once and echoes the body as it
    reads it. Today the response head cancels the upload: the upstream gets none of it."""
    gateway, upstream = scripted
    size = 200_000

    async def echo(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        upstream.heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        left = size
        while left:
            data = await reader.read(min(left, 65536))
            if not data:
                return
            left -= len(data)
            upstream.sent += len(data)
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    use(gateway, upstream, echo)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    with connect(gateway) as client:
        client.sendall(b"POST /s/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        answer = b""
        while b"\r\n\r\n" not in answer:  # the head comes before any of the body is sent
            data = client.recv(65536)
            assert data, answer
            answer += data
        assert status_of(answer) == 200, answer
        client.sendall(payload)
        answer += read_until_closed_or(client, answer, lambda got: got.endswith(b"0\r\n\r\n"))
    body = answer.partition(b"\r\n\r\n")[2]
    assert upstream.sent == size
    assert dechunk(body) == payload


def read_until_closed_or(client: socket.socket, got: bytes, enough: Any) -> bytes:
    """More of the answer, until ``enough(got + more)``, the peer closes, or 5 s pass."""
    more = b""
    deadline = time.monotonic() + 5
    while not enough(got + more) and (left := deadline - time.monotonic()) > 0:
        client.settimeout(left)
        try:
            data = client.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not data:
            break
        more += data
    return more


def test_response_trailers_never_become_headers(scripted: tuple[Gateway, Scripted]) -> None:
    """Trailer fields an upstream sends after a chunked body are dropped, as request trailers
    are (RFC 9110 §6.5.1): today they are merged into the response's headers."""
    gateway, upstream = scripted
    answer = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
        b"set-cookie: session=stolen\r\nlocation: https://elsewhere.example/\r\n"
        b"access-control-allow-origin: *\r\n\r\n"
    )

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        while await read_request(reader, upstream):
            writer.write(answer)
            await writer.drain()

    use(gateway, upstream, script)
    with connect(gateway) as client:
        for _ in range(2):  # a new upstream connection, then a kept-alive one
            client.sendall(b"GET /s/t HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = read_response(client, 5)
            assert status_of(head) == 200 and body == b"ok", head
            for name in (b"set-cookie", b"location", b"access-control-allow-origin"):
                assert header_values(head, name) == [], head


def test_two_responses_in_one_segment_are_not_merged(scripted: tuple[Gateway, Scripted]) -> None:
    """An upstream that sends a second response nobody asked for, in the same TCP segment as
    the first: the client gets the first alone, and that connection carries no other request
    (its stream is out of step). Today both heads' headers reach the client (two
    Content-Lengths) and the connection is pooled."""
    gateway, upstream = scripted
    reused: list[bytes] = []

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        await read_request(reader, upstream)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-second: yes\r\n\r\nbye"
        )
        await writer.drain()
        while head := await read_request(reader, upstream):
            reused.append(head)
            writer.write(OK)
            await writer.drain()

    use(gateway, upstream, script)
    with connect(gateway) as client:
        for _ in range(2):
            client.sendall(b"GET /s/two HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = read_response(client, 5)
            assert status_of(head) == 200 and body == b"hi", (head, body)
            assert header_values(head, b"content-length") == [b"2"], head
            assert header_values(head, b"x-second") == [], head
    assert reused == []
    assert upstream.connections == 2


def test_an_oversized_response_head_is_a_502(scripted: tuple[Gateway, Scripted]) -> None:
    """A response head is bounded as a request head is: a 200 KB header is refused (502), not
    relayed. Today it is relayed whole."""
    gateway, upstream = scripted
    huge = b"HTTP/1.1 200 OK\r\nx-huge: " + b"h" * 200_000 + b"\r\ncontent-length: 2\r\n\r\nok"
    use(gateway, upstream, keep_alive(huge))
    with connect(gateway) as client:
        client.sendall(b"GET /s/huge HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = read_response(client, 5)
    assert status_of(head) == 502, head[:100]
    assert reason_of(body) == "upstream_unreachable", body[:100]
    assert len(head) < 4096


# -- an early answer to a chunked upload ------------------------------------------------------


def early_answer(mixed: list[bytes]) -> Any:
    """The upstream of the upload reads its head and nothing more for a while (so the gateway's
    write of the body waits on it), answers 401 and keeps the connection open; later it reads
    what follows as HTTP/1.1 would: the chunked body, then any next request. A line that is not
    a chunk size where one is due (the next request read as chunk data) goes to ``mixed``;
    ``upstream.sent`` is 1 once that reading is over. Other connections are answered 200."""

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        upstream.heads.append(head)
        if b"transfer-encoding: chunked" in head.lower():
            await asyncio.sleep(0.3)
            writer.write(UNAUTHORIZED)
            await writer.drain()
            await asyncio.sleep(0.5)
            try:
                while line := await reader.readline():
                    try:
                        size = int(line.split(b";")[0], 16)
                    except ValueError:
                        mixed.append(line)
                        break
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            finally:
                upstream.sent = 1  # read to the end of the body, or of what was sent of it
            if mixed:  # answered, so that only the assertion tells of it
                writer.write(OK)
                await writer.drain()
                return
        else:
            writer.write(OK)
            await writer.drain()
        while await read_request(reader, upstream):
            writer.write(OK)
            await writer.drain()

    return script


def test_a_connection_is_never_reused_after_an_incomplete_request(tmp_path: Path) -> None:
    """A chunked upload the upstream answers (401) before it has read it: the connection carries
    no other request unless the upload was sent whole first (RFC 9112 §9.3). Today an answer
    that comes while the body's last chunk waits to be written cancels the upload: its ``0``
    chunk is never sent, the connection is pooled, and the next client's request is read
    upstream as chunk data. Here that wait is certain: the body arrives in one piece, larger
    than the upstream's socket takes (a small receive buffer and segment size), and the
    upstream reads nothing of it before it answers."""
    mixed: list[bytes] = []
    with scripted_gateway(
        tmp_path, timeout=5, receive_buffer=1, segment=256, read_ahead=8192
    ) as started:
        gateway, upstream, _ = started
        use(gateway, upstream, early_answer(mixed))
        size = 120_000  # the head and body in two TCP segments on loopback: read at once
        with connect(gateway) as client, connect(gateway) as other:
            client.sendall(
                b"POST /s/up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n" % size
                + b"u" * size
                + b"\r\n0\r\n\r\n"
            )
            head, _ = read_response(client, 5)
            assert status_of(head) == 401, head
            other.sendall(b"GET /s/next HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = read_response(other, 5)
            assert status_of(head) == 200 and body == b"ok", head
        wait_for(lambda: upstream.sent == 1, timeout=5)
        assert mixed == [], "the next request was read upstream as the upload's chunk data"
        assert any(h.startswith(b"GET /next HTTP/1.1\r\n") for h in upstream.heads)


# -- kept-alive connections and an upstream's idle timeout -------------------------------------

LANES = 200  # uvicorn's ports, one route and so one pool of the gateway's each
ROUNDS = 3
GAPS = (4.984, 5.004)  # seconds between uvicorn's answer and the lane's next POST


@dataclass
class Uvicorn:
    """A real uvicorn on its defaults (a kept-alive connection is closed after 5 idle seconds),
    listening on ``LANES`` ephemeral ports; ``answered``: by port, when its last answer left."""

    ports: list[int]
    answered: dict[int, float]


@pytest.fixture
def uvicorn_upstream() -> Iterator[Uvicorn]:
    answered: dict[int, float] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 204, "headers": []})
        # uvicorn's idle timer starts as this answer leaves: noted before it does, or the client
        # (on another thread) could have it and look for this note first.
        answered[scope["server"][1]] = time.monotonic()
        await send({"type": "http.response.body", "body": b""})

    loop = LoopThread()
    socks = [free_socket() for _ in range(LANES)]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning")
    )
    serving = asyncio.run_coroutine_threadsafe(server.serve(sockets=socks), loop.loop)
    wait_for(lambda: server.started, timeout=10)
    try:
        yield Uvicorn([sock.getsockname()[1] for sock in socks], answered)
    finally:
        server.should_exit = True
        serving.result(15)
        for sock in socks:
            sock.close()
        loop.close()


async def post(port: int, lane: int) -> int:
    """One POST with a body through the gateway to route /u<lane>, on a client connection of
    its own: its status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /u%d/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Connection: close\r\n\r\nhello" % lane
        )
        async with asyncio.timeout(10):
            line = await reader.readline()
            await reader.read()
        return int(line.split()[1])
    finally:
        writer.close()


def test_kept_alive_connections_outlive_no_upstream_idle_timeout(
    make_gateway: Any, uvicorn_upstream: Uvicorn
) -> None:
    """uvicorn closes a kept-alive connection after 5 idle seconds; a route's default
    ``upstream_keepalive_seconds`` must be below that, so that a POST (never sent twice) does
    not meet the keep-alive race: 0 errors.

    How the pacing crosses the bound: 200 lanes, each a route to a port of its own on the same
    uvicorn, so each lane's kept-alive connection is the only one in its pool. A lane POSTs,
    then POSTs again when its connection has been idle (from uvicorn's answer, as uvicorn
    counts) for a gap between 4.984 and 5.004 s, the lanes spread evenly across that range
    (the gateway's own few milliseconds to get a request upstream put the arrivals across
    uvicorn's 5.000 s), three rounds. Today connections are kept 30 s: the POSTs that reach
    uvicorn as it closes their connection get 502."""
    routes = "".join(
        f'[[routes]]\nprefix = "/u{lane}"\nupstream = "http://127.0.0.1:{port}"\nauth = "none"\n'
        for lane, port in enumerate(uvicorn_upstream.ports)
    )
    gateway: Gateway = make_gateway(routes)
    port = int(gateway.url.rsplit(":", 1)[1])
    answered = uvicorn_upstream.answered
    low, high = GAPS

    async def lane(index: int) -> list[int]:
        statuses = [await post(port, index)]
        gap = low + (high - low) * index / LANES
        for _ in range(ROUNDS):
            last = answered.get(uvicorn_upstream.ports[index])
            if last is None:  # uvicorn never answered this lane: its status says why, below
                break
            due = last + gap
            await asyncio.sleep(due - time.monotonic())
            statuses.append(await post(port, index))
        return statuses

    async def paced() -> list[int]:
        lanes = await asyncio.gather(*(lane(index) for index in range(LANES)))
        return [status for statuses in lanes for status in statuses]

    loop = LoopThread()
    try:
        statuses = loop.run(paced(), timeout=40)
    finally:
        loop.close()
    errors = [status for status in statuses if status != 204]
    assert errors == [], f"{len(errors)} of {len(statuses)} POSTs failed: {sorted(set(errors))}"
