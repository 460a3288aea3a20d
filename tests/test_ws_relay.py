"""The WebSocket relay seen as bytes: a client and an upstream of a few lines over sockets, which
see every frame as it crossed the gateway (where each one ends, whether it is masked), beside
the `websockets` package's echo server and client for what a real peer negotiates
(permessage-deflate, frames sent before the 101)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from gateway.app import GatewayApp
from tests.support import (
    BOUND,
    Gateway,
    LoopThread,
    build_gateway,
    free_socket,
    run_cli,
    start_serve,
    stop_serve,
    wait_for,
    write_config,
)
from tests.test_operations import self_signed

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
OVER = 16 * 1024 * 1024 + 1  # one byte past the gateway's frame bound
Frame = tuple[bool, int, bool, bytes]  # fin, opcode, masked, payload (unmasked)


def frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = False) -> bytes:
    size = len(payload)
    bit = 0x80 if masked else 0
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = bytes((first, bit | size))
    elif size < 1 << 16:
        head = bytes((first, bit | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, bit | 127)) + size.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def parse(data: bytes) -> tuple[list[Frame], bytes]:
    """The whole frames in ``data``, and what is left after the last of them."""
    frames: list[Frame] = []
    pos = 0
    while len(data) - pos >= 2:
        size, start = data[pos + 1] & 0x7F, pos + 2
        if size == 126:
            size, start = int.from_bytes(data[pos + 2 : pos + 4], "big"), pos + 4
        elif size == 127:
            size, start = int.from_bytes(data[pos + 2 : pos + 10], "big"), pos + 10
        masked = bool(data[pos + 1] & 0x80)
        key = data[start : start + 4] if masked else b""
        start += len(key)
        if start + size > len(data):
            break
        payload = data[start : start + size]
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        frames.append((bool(data[pos] & 0x80), data[pos] & 0x0F, masked, payload))
        pos = start + size
    return frames, data[pos:]


def close_of(payload: bytes) -> tuple[int, str]:
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


@dataclass
class RawUpstream:
    """An upstream answering the upgrade by hand; what each session received after its 101 is
    kept by path. ``/stream``: fragmented messages with pings between the fragments until a
    close comes; ``/listen``: nothing; ``/big``: a frame over the bound; ``/flood``: frames
    as fast as the gateway takes them (``written`` counts); ``/h2c``: a 101 to another
    protocol; ``/wrong-accept``: a 101 that does not answer the client's key; ``/silent``: no
    answer at all; ``/late``: the 101 once ``release`` is set."""

    url: str = ""
    received: dict[str, bytes] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].decode()
        if path.startswith("/silent"):
            await reader.read()
            writer.close()
            return
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        if path.startswith("/late"):
            await asyncio.to_thread(self.release.wait, 20)
        if path.startswith("/wrong-accept"):
            accept = base64.b64encode(hashlib.sha1(b"not the client's key" + GUID).digest())
        protocol = b"h2c" if path.startswith("/h2c") else b"websocket"
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: %s\r\n\r\n" % (protocol, accept)
        )
        sending = asyncio.ensure_future(self.send(path, writer))
        received = b""
        try:
            while not any(op == 8 for _, op, _, _ in parse(received)[0]):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                received += chunk
                self.received[path] = received
        finally:
            sending.cancel()
            with contextlib.suppress(Exception):
                writer.write(frame(8, (1000).to_bytes(2, "big")))
                writer.close()

    async def send(self, path: str, writer: asyncio.StreamWriter) -> None:
        if path.startswith("/big"):
            writer.write(b"\x82\x7f" + OVER.to_bytes(8, "big") + b"x" * 1000)
        elif path.startswith("/stream"):
            piece = b"s" * 32768
            while True:
                writer.write(frame(2, piece, fin=False))
                writer.write(frame(9, b"between"))  # a control frame between fragments
                writer.write(frame(0, piece, fin=False) + frame(0, piece))
                await writer.drain()
        elif path.startswith("/flood"):
            big = frame(2, b"f" * (1 << 20))
            self.written[path] = 0
            for _ in range(256):
                writer.write(big)
                await writer.drain()
                self.written[path] += len(big)


@pytest.fixture(scope="module")
def raw_upstream() -> Iterator[RawUpstream]:
    record = RawUpstream()
    loop = LoopThread()
    sock = free_socket()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(record.session, sock=sock)

    server = loop.run(start())
    record.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield record
    server.close()
    loop.close()


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """The `websockets` package's echo server, permessage-deflate on (its default)."""
    handshakes: list[dict[str, str]] = []
    loop = LoopThread()

    async def echo(connection: ServerConnection) -> None:
        assert connection.request is not None
        handshakes.append({k.lower(): v for k, v in connection.request.headers.raw_items()})
        with contextlib.suppress(ConnectionClosed):
            async for message in connection:
                await connection.send(message)

    sock = free_socket()

    async def start() -> Any:
        return await serve(echo, sock=sock)

    server = loop.run(start())
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", handshakes
    server.close()
    loop.close()


def routes(raw: str, echo: str, gone: str) -> str:
    return f"""
[[routes]]
prefix = "/raw"
upstream = "{raw}"
websocket = true

[[routes]]
prefix = "/slow"
upstream = "{raw}"
websocket = true
timeout_seconds = 0.5

[[routes]]
prefix = "/live"
upstream = "{echo}"
websocket = true

[[routes]]
prefix = "/gone"
upstream = "{gone}"
websocket = true

[[routes]]
prefix = "/plain"
upstream = "{echo}"
"""


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    raw_upstream: RawUpstream,
    echo_upstream: tuple[str, list[dict[str, str]]],
) -> Iterator[Gateway]:
    closed = free_socket()
    gone = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()  # nothing listens there
    text = routes(raw_upstream.url, echo_upstream[0], gone)
    built, running = build_gateway(Path(tmp_path_factory.mktemp("wsrelay")), raw_upstream.url, text)
    yield built
    running.stop()


def ws_url(gateway: Gateway, path: str) -> str:
    return gateway.url.replace("http://", "ws://") + path


def opened(
    gateway: Gateway, path: str, secret: str, early: bytes = b""
) -> tuple[socket.socket, bytes]:
    """A client's connection past its 101 (``early``: sent with the upgrade request, before
    the 101), and what came after the 101's head."""
    host = gateway.url.removeprefix("http://")
    sock = socket.create_connection(tuple(host.split(":")), timeout=10)  # type: ignore[arg-type]
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nX-Auth-Token: %s\r\n\r\n%s"
        % (path.encode(), host.encode(), key, secret.encode(), early)
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    # The upstream's answer to the client's own key: the handshake holds end to end.
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    assert {k.lower(): v for k, v in fields.items()}[b"sec-websocket-accept"] == accept
    return sock, rest


def read_to_the_end(sock: socket.socket, data: bytes = b"") -> bytes:
    """Everything the gateway sends until it closes; its close frame is answered (masked)."""
    answered = False
    while True:
        if not answered and any(op == 8 for _, op, _, _ in parse(data)[0]):
            sock.sendall(frame(8, (1000).to_bytes(2, "big"), masked=True))
            answered = True
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data
        data += chunk


def test_a_revocation_mid_stream_closes_both_sides_at_a_frame_boundary(
    gateway: Gateway, raw_upstream: RawUpstream
) -> None:
    made = gateway.new_key()
    assert made.secret_key is not None
    sock, first = opened(gateway, "/raw/stream/revoked", made.secret_key)
    result: list[bytes] = []
    reading = threading.Thread(target=lambda: result.append(read_to_the_end(sock, first)))
    reading.start()
    time.sleep(0.3)  # a stream well under way
    gateway.cli("keys", "revoke", made.key.access_key)
    reading.join(BOUND + 10)
    sock.close()
    frames, rest = parse(result[0])
    # Whole frames, then the gateway's close: nothing of a frame cut short.
    assert rest == b"" and len(frames) > 10
    assert frames[-1] == (True, 8, False, (1008).to_bytes(2, "big") + b"invalid_token")
    assert all(op in (0, 2, 9) for _, op, _, _ in frames[:-1])
    assert any(not fin for fin, _, _, _ in frames)  # fragmented messages did cross
    # The upstream got the gateway's close, masked as a client's frames must be (§5.3).
    upstream, left = parse(raw_upstream.received["/stream/revoked"])
    assert left == b"" and [f[1:3] for f in upstream] == [(8, True)]
    assert close_of(upstream[0][3]) == (1008, "invalid_token")


def test_a_key_revoked_while_the_upstream_answers_closes_the_session(
    gateway: Gateway, raw_upstream: RawUpstream
) -> None:
    """The key passes the gate, then is revoked while the upstream has yet to answer: the
    change reaches the process before the session is held by key, and must not be lost."""
    made = gateway.new_key()
    assert made.secret_key is not None
    raw_upstream.release.clear()
    result: list[tuple[socket.socket, bytes]] = []
    opening = threading.Thread(
        target=lambda: result.append(opened(gateway, "/raw/late/revoked", made.secret_key or ""))
    )
    opening.start()
    try:
        time.sleep(0.5)  # the gate has admitted it; the upstream holds its 101
        gateway.cli("keys", "revoke", made.key.access_key)
        with gateway.client() as client:
            key = {"X-Auth-Token": made.secret_key}
            wait_for(lambda: client.get("/raw/x", headers=key).status_code == 401, BOUND + 5)
    finally:
        raw_upstream.release.set()
    opening.join(10)
    sock, first = result[0]
    sock.settimeout(BOUND + 10)
    with sock:
        frames, rest = parse(read_to_the_end(sock, first))
    revoked = (1008).to_bytes(2, "big") + b"invalid_token"
    assert rest == b"" and frames == [(True, 8, False, revoked)]


@pytest.mark.parametrize(
    ("path", "sent", "code", "reason"),
    [
        (
            "/raw/listen/over",
            b"\x82\xff" + OVER.to_bytes(8, "big") + b"mask",
            1009,
            "frame too large",
        ),
        ("/raw/listen/unmasked", frame(1, b"hello"), 1002, "unmasked frame"),  # §5.1
        ("/raw/big", b"", 1009, "frame too large"),  # the upstream's frame over the bound
    ],
)
def test_frames_refused_close_both_sides(
    gateway: Gateway, raw_upstream: RawUpstream, path: str, sent: bytes, code: int, reason: str
) -> None:
    sock, first = opened(gateway, path, gateway.secret_key)
    with sock:
        sock.sendall(sent)
        frames, rest = parse(read_to_the_end(sock, first))
    assert rest == b"" and frames == [(True, 8, False, code.to_bytes(2, "big") + reason.encode())]
    # The upstream reads in a thread of its own: the gateway's close may reach it a moment later.
    wait_for(lambda: parse(raw_upstream.received.get(path.removeprefix("/raw"), b""))[0], 5)
    upstream, _ = parse(raw_upstream.received[path.removeprefix("/raw")])
    assert [(f[1], f[2], close_of(f[3])) for f in upstream] == [(8, True, (code, reason))]


def test_frames_sent_before_the_101_are_kept(gateway: Gateway) -> None:
    early = frame(1, b"early bird", masked=True)
    sock, first = opened(gateway, "/live/room", gateway.secret_key, early=early)
    with sock:
        data = first
        while not parse(data)[0]:
            data += sock.recv(65536)
        assert parse(data)[0][0] == (True, 1, False, b"early bird")


def test_permessage_deflate_holds_end_to_end(
    gateway: Gateway, echo_upstream: tuple[str, list[dict[str, str]]]
) -> None:
    text = "compressible " * 20000
    with connect(
        ws_url(gateway, "/live/deflate"),
        additional_headers={"X-Auth-Token": gateway.secret_key},
        compression="deflate",
    ) as socket_:
        assert socket_.response is not None
        assert "permessage-deflate" in socket_.response.headers["sec-websocket-extensions"]
        socket_.send(text)
        assert socket_.recv(timeout=5) == text
    assert "permessage-deflate" in echo_upstream[1][-1]["sec-websocket-extensions"]


def refused(gateway: Gateway, path: str) -> tuple[int, dict[str, Any]]:
    key = {"X-Auth-Token": gateway.secret_key}
    with pytest.raises(InvalidStatus) as caught:
        connect(ws_url(gateway, path), additional_headers=key, open_timeout=10)
    response = caught.value.response
    return response.status_code, json.loads(response.body or b"{}")


def test_an_upstream_that_fails_the_handshake_is_502_or_504(gateway: Gateway) -> None:
    assert refused(gateway, "/gone/x")[1]["reason"] == "upstream_unreachable"
    status, body = refused(gateway, "/slow/silent")
    assert (status, body["reason"]) == (504, "upstream_timeout")
    status, body = refused(gateway, "/raw/h2c")  # a 101, to something else than WebSocket
    assert (status, body["reason"]) == (502, "upstream_unreachable")
    # RFC 6455 §4.1: a client (the gateway, to its upstream) fails a 101 whose accept does
    # not answer its key, rather than relay a session the upstream never agreed to.
    status, body = refused(gateway, "/raw/wrong-accept")
    assert (status, body["reason"]) == (502, "upstream_unreachable")


def test_a_client_that_does_not_read_holds_the_upstream_back(
    gateway: Gateway, raw_upstream: RawUpstream
) -> None:
    sock, _ = opened(gateway, "/raw/flood", gateway.secret_key)
    with sock:
        wait_for(lambda: raw_upstream.written.get("/flood", 0) > 0, timeout=5)
        time.sleep(2)
        # The socket buffers on the way, and a transport's high-water mark, hold what the
        # client does not read: without flow control the gateway would take all 256 MiB.
        assert raw_upstream.written["/flood"] < 64 << 20


def test_an_upgrade_pipelined_behind_a_request_is_400(gateway: Gateway) -> None:
    host = gateway.url.removeprefix("http://")
    upgrade = (
        f"GET /live/x HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    plain = f"GET /plain/x HTTP/1.1\r\nHost: {host}\r\nX-Auth-Token: {gateway.secret_key}\r\n\r\n"
    with socket.create_connection(tuple(host.split(":")), timeout=10) as sock:  # type: ignore[arg-type]
        sock.sendall((plain + upgrade).encode())
        data = b""
        while b"upgrade_pipelined" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 426") and b"HTTP/1.1 400 Bad Request" in data


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        (b"Content-Length: 5", b"hello"),
        (b"Transfer-Encoding: chunked", b"5\r\nhello\r\n0\r\n\r\n"),
    ],
)
def test_a_websocket_upgrade_with_a_body_is_400(
    gateway: Gateway, raw_upstream: RawUpstream, framing: bytes, body: bytes
) -> None:
    """A handshake is a GET without a body (RFC 6455 §4.1): one that frames a body is refused
    as any other upgrade with one is, before the gate and the upstream, not opened with its
    body read as the client's first frames."""
    host = gateway.url.removeprefix("http://")
    path = b"/raw/listen/framed-" + framing[:1]
    with socket.create_connection(tuple(host.split(":")), timeout=10) as sock:  # type: ignore[arg-type]
        sock.sendall(
            b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n"
            b"X-Auth-Token: %s\r\n%s\r\n\r\n%s"
            % (path, host.encode(), gateway.secret_key.encode(), framing, body)
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 ") and b"upgrade_with_body" in data, data
    assert path.decode().removeprefix("/raw") not in raw_upstream.received


@pytest.mark.parametrize(
    "keys",
    [
        b"",
        b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
        b"Sec-WebSocket-Key: BBBBBBBBBBBBBBBBBBBBBB==\r\n",
    ],
)
def test_a_handshake_without_one_key_is_400(
    gateway: Gateway, raw_upstream: RawUpstream, keys: bytes
) -> None:
    """Without exactly one Sec-WebSocket-Key there is no accept to check the upstream's 101
    against (RFC 6455 §4.1, §4.2.1): the client's fault, said so, before the gate and the
    upstream."""
    host = gateway.url.removeprefix("http://")
    path = b"/raw/listen/keys-%d" % len(keys)
    with socket.create_connection(tuple(host.split(":")), timeout=10) as sock:  # type: ignore[arg-type]
        sock.sendall(
            b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"%sSec-WebSocket-Version: 13\r\nX-Auth-Token: %s\r\n\r\n"
            % (path, host.encode(), keys, gateway.secret_key.encode())
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 ") and b"bad_websocket_handshake" in data, data
    assert path.decode().removeprefix("/raw") not in raw_upstream.received


def test_a_shutdown_closes_sessions_with_1001(
    tmp_path: Path, echo_upstream: tuple[str, list[dict[str, str]]]
) -> None:
    built, running = build_gateway(
        tmp_path, echo_upstream[0], routes(echo_upstream[0], echo_upstream[0], echo_upstream[0])
    )
    stopping = threading.Thread(target=running.stop)
    with connect(
        ws_url(built, "/live/x"), additional_headers={"X-Auth-Token": built.secret_key}
    ) as socket_:
        socket_.send("x")
        socket_.recv(timeout=5)
        stopping.start()
        with pytest.raises(ConnectionClosed) as closed:
            socket_.recv(timeout=10)
    stopping.join(20)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "going away")


def test_under_another_asgi_server_a_websocket_is_refused(
    tmp_path: Path, echo_upstream: tuple[str, list[dict[str, str]]]
) -> None:
    built, running = build_gateway(
        tmp_path, echo_upstream[0], routes(echo_upstream[0], echo_upstream[0], echo_upstream[0])
    )
    try:
        resources = built.resources
        sock = free_socket()
        server = uvicorn.Server(
            uvicorn.Config(GatewayApp(resources), log_config=None, lifespan="off")
        )
        serving = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), built.loop.loop)
        wait_for(lambda: server.started, timeout=10)
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}/live/x"
        with pytest.raises(InvalidStatus) as caught:
            connect(url, additional_headers={"X-Auth-Token": built.secret_key})
        body = json.loads(caught.value.response.body or b"{}")
        assert caught.value.response.status_code == 403
        assert body["reason"] == "websocket_not_allowed" and "gateway serve" in body["message"]
        server.should_exit = True
        serving.result(15)
        sock.close()
    finally:
        running.stop()


def test_wss_upstreams_are_verified(tmp_path: Path) -> None:
    """An https upstream is spoken to over TLS, verified against the route's ca_file; without
    it (the system's CAs) the same upstream is 502."""
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    loop = LoopThread()
    sock = free_socket()

    async def echo(connection: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in connection:
                await connection.send(message)

    async def start() -> Any:
        return await serve(echo, sock=sock, ssl=context)

    server = loop.run(start())
    url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    extra = f"""
[[routes]]
prefix = "/trusted"
upstream = "{url}"
websocket = true
ca_file = "{cert}"

[[routes]]
prefix = "/unknown-ca"
upstream = "{url}"
websocket = true
"""
    built, running = build_gateway(tmp_path, url, extra)
    try:
        key_header = {"X-Auth-Token": built.secret_key}
        with connect(ws_url(built, "/trusted/x"), additional_headers=key_header) as socket_:
            socket_.send("over tls")
            assert socket_.recv(timeout=5) == "over tls"
        with pytest.raises(InvalidStatus) as caught:
            connect(ws_url(built, "/unknown-ca/x"), additional_headers=key_header)
        assert caught.value.response.status_code == 502
    finally:
        running.stop()
        server.close()
        loop.close()


def test_a_tls_listener_relays_websockets(
    tmp_path: Path, echo_upstream: tuple[str, list[dict[str, str]]]
) -> None:
    """`gateway serve` with TLS on its listener: the handshake and the relay run on the TLS
    transport (no half-close there), and a refusal is still a whole answer."""
    cert, key = self_signed(tmp_path)
    files = f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n'
    extra = f'[[routes]]\nprefix = "/live"\nupstream = "{echo_upstream[0]}"\nwebsocket = true\n'
    config = write_config(tmp_path, echo_upstream[0], extra=extra, server=files)
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    process, url = start_serve(config)
    try:
        tls = ssl.create_default_context(cafile=str(cert))
        wss = url.replace("https://", "wss://")
        with connect(wss + "/live/x", additional_headers={"X-Auth-Token": secret}, ssl=tls) as ws:
            ws.send("over tls both ways")
            assert ws.recv(timeout=5) == "over tls both ways"
        with pytest.raises(InvalidStatus) as caught:
            connect(wss + "/live/x", ssl=tls)
        assert json.loads(caught.value.response.body or b"{}")["reason"] == "missing_token"
    finally:
        stop_serve(process)
