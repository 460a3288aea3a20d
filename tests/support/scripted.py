"""A gateway in front of a scripted upstream (``tests.test_upstream_engine.Scripted``), with the
[server] and route settings a test needs, and raw-socket helpers that never wait unbounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support import Gateway, LoopThread, Running, build_gateway, free_socket
from tests.test_upstream_engine import Scripted, finish


@contextlib.contextmanager
def scripted_gateway(
    directory: Path,
    timeout: float = 2.0,
    server: str = "",
    route: str = "",
    receive_buffer: int | None = None,
    segment: int | None = None,
    read_ahead: int = 65536,
    grace: int = 1,
) -> Iterator[tuple[Gateway, Scripted, Running]]:
    """A gateway whose route /s (auth "none", ``timeout`` seconds, ``route`` TOML added) goes to
    a scripted upstream; ``server`` is TOML added to [server]; ``grace``: the seconds a shutdown
    waits for connections and requests in flight (short: a test that fails may leave one
    hanging). ``receive_buffer``: the upstream's sockets take that few bytes before the sender
    must wait (SO_RCVBUF); ``segment``: the largest TCP segment they accept (TCP_MAXSEG), which
    keeps the gateway's send buffer, sized by the kernel in segments, small too; ``read_ahead``:
    the most the upstream's stream reader takes before its script asks (twice its limit). So a
    test holds the gateway's writes back where it chooses."""
    upstream = Scripted()
    loop = LoopThread()
    sock = free_socket()
    if receive_buffer is not None:
        # Inherited by the accepted sockets, which take their window from it at the handshake.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    if segment is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, segment)
    listening = loop.run(asyncio.start_server(upstream.serve, sock=sock, limit=read_ahead // 2))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    extra = f"""
[[routes]]
prefix = "/s"
upstream = "{url}"
auth = "none"
timeout_seconds = {timeout}
{route}
"""
    gateway, running = build_gateway(directory, url, extra, server)
    for listener, _, _ in running.servers:  # uvicorn's; `start_gateway` leaves its default
        listener.config.timeout_graceful_shutdown = grace
    try:
        yield gateway, upstream, running
    finally:
        if not running.loop.loop.is_closed():  # a test may have stopped it (a shutdown)
            running.stop()
        loop.run(finish(listening))
        loop.close()


async def until_closed(reader: asyncio.StreamReader, seconds: float = 30.0) -> bool:
    """Read and drop bytes until the gateway ends the connection (True), or ``seconds`` pass."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def connect(gateway: Gateway, timeout: float = 5.0) -> socket.socket:
    host, port = gateway.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_until_closed(sock: socket.socket, seconds: float = 5.0) -> tuple[bytes, bool]:
    """What arrives until the peer closes (True) or ``seconds`` pass (False)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
    return b"".join(chunks), False


def read_response(sock: socket.socket, seconds: float = 5.0) -> tuple[bytes, bytes]:
    """One response, framed by its (first) Content-Length or chunked (its payload returned), or
    what came before the peer closed or ``seconds`` passed: its head and body."""
    data = b""
    deadline = time.monotonic() + seconds
    while True:
        if b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            length: int | None = None
            chunked = False
            for line in head.lower().split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name == b"content-length" and length is None:
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value:
                    chunked = True
            if chunked and (payload := dechunk(rest)) is not None:
                return head, payload
            if not chunked and length is not None and len(rest) >= length:
                return head, rest[:length]
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def dechunk(data: bytes) -> bytes | None:
    """The payload of a chunked body (RFC 9112 §7.1), trailers dropped; None while it is not
    whole."""
    out = b""
    while True:
        line, sep, data = data.partition(b"\r\n")
        if not sep:
            return None
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return out if b"\r\n\r\n" in b"\r\n" + data else None
        if len(data) < size + 2:
            return None
        out, data = out + data[:size], data[size + 2 :]


def status_of(head: bytes) -> int | None:
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def reason_of(body: bytes) -> Any:
    """The ``reason`` of the gateway's JSON error body (None when it is not one)."""
    try:
        return json.loads(body).get("reason")
    except (ValueError, AttributeError):
        return None
