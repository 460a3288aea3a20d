"""Faults: broken upstreams, an exception inside the gateway, a store
locked by another process or made read-only.

Each uses real sockets and processes; the client must get 502/504 or a cleanly aborted stream,
never a hang, and the gateway must keep serving afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.store import StoreUnavailable
from tests.support import Gateway, LoopThread, Upstream, free_socket, wait_for


async def _misbehave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    path = request.split(b" ", 2)[1]
    if path.startswith(b"/malformed"):
        writer.write(b"HTTP/1.1 abc nonsense\r\n\r\n")
    elif path.startswith(b"/reset"):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"r" * 100_000)
        await writer.drain()
        writer.transport.abort()  # RST in the middle of the body
        return
    elif path.startswith(b"/stall"):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"s" * 100_000)
        await writer.drain()
        with contextlib.suppress(TimeoutError):  # then nothing, until the gateway hangs up
            await asyncio.wait_for(reader.read(), 30)
    elif path.startswith(b"/hang"):
        # Until the gateway gives up and closes the connection (EOF), at most 30 s.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(), 30)
    elif path.startswith(b"/empty"):
        pass  # close without a word
    writer.close()


@pytest.fixture(scope="module")
def bad_upstream(loop_thread: LoopThread) -> Iterator[str]:
    sock = free_socket()
    server = loop_thread.run(asyncio.start_server(_misbehave, sock=sock))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.close()
    loop_thread.run(server.wait_closed())


BAD_ROUTE = """
[[routes]]
prefix = "/bad"
upstream = "{bad}"
auth = "none"
timeout_seconds = 0.5
"""


@pytest.mark.parametrize(
    ("path", "statuses"),
    [("/bad/malformed", (502,)), ("/bad/hang", (504,)), ("/bad/empty", (502,))],
)
def test_broken_upstream_before_the_response(
    make_gateway: Any, bad_upstream: str, path: str, statuses: tuple[int, ...]
) -> None:
    gateway: Gateway = make_gateway(BAD_ROUTE.replace("{bad}", bad_upstream))
    with gateway.client() as client:
        response = client.get(path)
        assert response.status_code in statuses
        assert response.json()["type"] == "upstream_error"
        assert client.get("/echo/x", headers={"X-Auth-Token": gateway.secret_key}).is_success


def test_upstream_reset_mid_body_aborts_the_stream(make_gateway: Any, bad_upstream: str) -> None:
    gateway: Gateway = make_gateway(BAD_ROUTE.replace("{bad}", bad_upstream))
    with gateway.client() as client:
        # The body ends short of its Content-Length: a clean abort the client can see.
        with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", "/bad/reset") as got:
            assert got.status_code == 200
            for _ in got.iter_bytes():
                pass
        assert client.get("/echo/x", headers={"X-Auth-Token": gateway.secret_key}).is_success


def test_upstream_stalling_mid_body_is_cut_at_the_route_timeout(
    make_gateway: Any, bad_upstream: str
) -> None:
    """The route timeout (0.5 s) bounds each wait on the upstream, mid-body too
    (gateway.http.watchdog): the client sees a short body soon after, not a hang."""
    gateway: Gateway = make_gateway(BAD_ROUTE.replace("{bad}", bad_upstream))
    with gateway.client() as client:
        started = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", "/bad/stall") as got:
            assert got.status_code == 200
            for _ in got.iter_bytes():
                pass
        assert 0.5 <= time.monotonic() - started < 3
        assert client.get("/echo/x", headers={"X-Auth-Token": gateway.secret_key}).is_success


def test_a_slow_client_upload_is_not_an_upstream_timeout(
    gateway: Gateway, upstream: Upstream
) -> None:
    """Waiting on the client is not waiting on the upstream: an upload that pauses 0.7 s between
    chunks on a route whose timeout is 0.5 s still goes through."""

    def slowly() -> Iterator[bytes]:
        for _ in range(2):
            time.sleep(0.7)  # each pause longer than the route timeout
            yield b"u" * 1000

    with gateway.client() as client:
        response = client.post(
            "/api/upload", content=slowly(), headers={"X-Auth-Token": gateway.secret_key}
        )
    assert response.status_code == 200, response.text
    assert response.json()["body_bytes"] == 2000


def test_a_slow_reader_is_not_an_upstream_timeout(gateway: Gateway) -> None:
    """A client that stops reading a 32 MB download for 1.2 s (route timeout 0.5 s) blocks the
    gateway's sends, not the upstream: the download completes."""
    headers = {"X-Auth-Token": gateway.secret_key}
    size = 32 * 1024 * 1024
    received = 0
    with (
        gateway.client() as client,
        client.stream("GET", f"/api/stream?bytes={size}", headers=headers) as got,
    ):
        assert got.status_code == 200
        for n, chunk in enumerate(got.iter_bytes()):
            received += len(chunk)
            if n == 0:
                time.sleep(1.2)
    assert received == size


def test_the_watchdog_sleeps_when_nothing_is_in_flight(gateway: Gateway) -> None:
    with gateway.client() as client:
        assert client.get("/echo/x", headers={"X-Auth-Token": gateway.secret_key}).is_success
    dog = gateway.resources.upstream.watchdog
    wait_for(lambda: dog._ticker is None, timeout=2)
    assert dog._active == {}


def test_exception_inside_the_gateway_is_a_json_500(gateway: Gateway) -> None:
    def explode(token: str) -> Any:
        raise RuntimeError("/srv/secret/path.py exploded")

    original = gateway.resources.verifier.cached
    gateway.resources.verifier.cached = explode  # type: ignore[method-assign]
    try:
        with gateway.client() as client:
            response = client.get("/echo/x", headers={"X-Auth-Token": gateway.secret_key})
    finally:
        gateway.resources.verifier.cached = original  # type: ignore[method-assign]
    assert response.status_code == 500
    assert response.json()["type"] == "internal_error"
    assert "Traceback" not in response.text and "/srv/secret" not in response.text
    assert "exploded" not in response.text


def test_store_write_locked_by_another_process(make_gateway: Any) -> None:
    """WAL readers are never blocked by a writer, so keys keep verifying; admin writes wait
    busy_timeout_ms, answer 503, and work again once the lock is released."""
    gateway: Gateway = make_gateway()
    uncached = {"X-Auth-Token": gateway.new_key().secret_key}
    holder = sqlite3.connect(gateway.config.store.path, timeout=1, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE organizations SET name = name")
    try:
        with gateway.client() as client:
            assert client.get("/echo/x", headers=uncached).status_code == 200
        with gateway.admin() as admin:
            refused = admin.post("/v1/projects", json={"name": "while-locked"})
            assert refused.status_code == 503
            assert refused.json()["type"] == "store_unavailable"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with gateway.admin() as admin:
        assert admin.post("/v1/projects", json={"name": "after"}).status_code == 201
        names = [p["name"] for p in admin.get("/v1/projects").json()["projects"]]
    assert "while-locked" not in names


def test_listener_survives_garbage(gateway: Gateway) -> None:
    port = int(gateway.url.rsplit(":", 1)[1])
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"GARBAGE\r\n\r\n", b"\r\n" * 50):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(4096)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 400")
    with gateway.client() as client:
        assert client.get("/echo/x", headers={"X-Auth-Token": gateway.secret_key}).is_success


def _immutable(paths: list[Path], on: bool) -> None:
    for path in paths:
        if path.exists():
            subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)


def test_store_made_read_only_then_restored(make_gateway: Any) -> None:
    """The file system refuses writes (``chattr +i``: even root's open descriptors cannot write,
    as on a disk remounted read-only). Reads still work, so every key keeps verifying; admin writes
    answer 503 and change nothing; once writable again, everything works with no restart."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        if os.environ.get("CI"):
            pytest.fail("this test needs root and chattr (e2fsprogs) in CI")
        pytest.skip("making a file immutable needs root and chattr")
    gateway: Gateway = make_gateway()
    cached = {"X-Auth-Token": gateway.secret_key}
    uncached = {"X-Auth-Token": gateway.new_key().secret_key}
    store = gateway.config.store.path
    files = [store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")]
    verifier = gateway.resources.verifier
    with gateway.client() as client:
        assert client.get("/echo/x", headers=cached).status_code == 200
    _immutable(files, True)
    try:
        with gateway.client() as client, gateway.admin() as admin:
            assert client.get("/echo/x", headers=cached).status_code == 200
            assert client.get("/echo/x", headers=uncached).status_code == 200
            refused = admin.post("/v1/projects", json={"name": "while-read-only"})
            assert refused.status_code == 503, refused.text
            assert refused.json()["type"] == "store_unavailable"
            assert "Traceback" not in refused.text and str(store) not in refused.text
            assert admin.get("/v1/projects").status_code == 200
        # The batched last-used write fails like any other and keeps its batch for later.
        with pytest.raises(StoreUnavailable):
            gateway.loop.run(verifier.flush_last_used())
    finally:
        _immutable(files, False)
    with gateway.admin() as admin:
        assert admin.post("/v1/projects", json={"name": "after"}).status_code == 201
        names = [p["name"] for p in admin.get("/v1/projects").json()["projects"]]
    assert "while-read-only" not in names and "after" in names
    assert gateway.loop.run(verifier.flush_last_used()) >= 1
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
