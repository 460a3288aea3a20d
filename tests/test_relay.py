"""`gateway serve`'s fast path (gateway.relay): a request without a body, on a kept-alive upstream
connection, answered by callbacks, with no task; and everything it hands over to the ASGI path
(a large answer, a failure, the route timeout) before a byte has reached the client."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.tokens import SecretFormat
from tests.support import Gateway, Running, wait_for
from tests.support.tasks import tasks_made
from tests.test_upstream_engine import (
    OK,
    Script,
    Scripted,
    keep_alive,
    read_request,
    scripted_gateway,
    use,
)


@pytest.fixture(scope="module")
def relayed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, Scripted, Running]]:
    with scripted_gateway(Path(tmp_path_factory.mktemp("relay")), timeout=0.5) as started:
        yield started


def holding(release: threading.Event) -> Script:
    """Answer OK to every request, but to one for /held only once ``release`` is set."""

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        while head := await read_request(reader, upstream):
            if b"/held" in head:
                while not release.is_set():  # the test's thread says when
                    await asyncio.sleep(0.01)
            writer.write(OK)
            await writer.drain()

    return script


def request_tasks(running: Running) -> int:
    """The proxy listener's request tasks in flight."""
    return len(running.servers[0][0].server_state.tasks)


def in_flight(gateway: Gateway) -> int:
    metrics = gateway.resources.metrics
    assert metrics is not None
    return metrics.in_flight


def test_a_kept_alive_request_is_answered_without_a_task(
    relayed: tuple[Gateway, Scripted, Running],
) -> None:
    """The first request opens the upstream connection (the ASGI path, in a task); the second
    goes on it by callbacks: while the upstream holds its answer, no task is in flight, and
    the answer, its headers and the metrics are what the ASGI path gives."""
    gateway, upstream, running = relayed
    release = threading.Event()

    use(gateway, upstream, holding(release))
    with (
        httpx.Client(base_url=gateway.url) as client,
        concurrent.futures.ThreadPoolExecutor() as pool,
    ):
        assert client.get("/s/first").status_code == 200
        metrics = gateway.resources.metrics
        assert metrics is not None
        counted = sum(metrics.requests.values())
        answer = pool.submit(client.get, "/s/held", headers={"X-Request-ID": "relay-1"})
        wait_for(lambda: len(upstream.heads) == 2, timeout=5)
        assert request_tasks(running) == 0 and in_flight(gateway) == 1
        release.set()
        held = answer.result(5)
    assert held.status_code == 200 and held.text == "ok"
    assert held.headers["x-request-id"] == "relay-1"
    head = upstream.heads[1].lower()
    assert head.startswith(b"get /held http/1.1\r\nhost: 127.0.0.1:")
    assert b"x-forwarded-for: 127.0.0.1\r\n" in head and b"x-request-id: relay-1\r\n" in head
    assert upstream.connections == 1
    wait_for(lambda: in_flight(gateway) == 0, timeout=5)  # told once the answer has left
    assert sum(metrics.requests.values()) == counted + 1


def test_a_large_answer_is_streamed_by_the_engine(
    relayed: tuple[Gateway, Scripted, Running],
) -> None:
    """Past the small-answer size, or without a length, the relay hands the connection to the
    engine's stream at the head; the connection is kept alive after."""
    gateway, upstream, _ = relayed
    big = b"b" * 300_000

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        while head := await read_request(reader, upstream):
            if b"/chunked" in head:
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(big), big))
            await writer.drain()

    use(gateway, upstream, script)
    with httpx.Client(base_url=gateway.url) as client:
        for path in ("/s/warm", "/s/long", "/s/chunked", "/s/long"):
            answer = client.get(path)
            assert answer.status_code == 200 and answer.content == big, path
    assert upstream.connections == 1


def test_failures_on_a_kept_alive_connection_are_502_and_504(
    relayed: tuple[Gateway, Scripted, Running],
) -> None:
    gateway, upstream, _ = relayed

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        while head := await read_request(reader, upstream):
            if b"/silent" in head:
                await reader.read()  # silent until the gateway gives up (0.5 s) and closes
                return
            if b"/short" in head:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
                return  # closed: the body ends short of its length
            if b"/nonsense" in head:
                writer.write(b"NONSENSE\r\n\r\n")
            else:
                writer.write(OK)
            await writer.drain()

    use(gateway, upstream, script)
    with httpx.Client(base_url=gateway.url) as client:
        for path, status, reason in (
            ("/s/silent", 504, "upstream_timeout"),
            ("/s/short", 502, "upstream_unreachable"),
            ("/s/nonsense", 502, "upstream_unreachable"),
        ):
            assert client.get("/s/warm").status_code == 200  # a connection kept alive
            answer = client.get(path)
            assert answer.status_code == status and answer.json()["reason"] == reason, path
            assert answer.headers["x-request-id"]
    wait_for(lambda: in_flight(gateway) == 0, timeout=5)


def test_a_client_gone_before_the_answer_closes_its_upstream_connection(
    relayed: tuple[Gateway, Scripted, Running],
) -> None:
    """The exchange ends when its client leaves, not at the route timeout: the in-flight gauge
    is back at 0 while the upstream still holds the answer, and the next request takes a new
    connection (the one the client left could still bring the late answer)."""
    gateway, upstream, _ = relayed
    release = threading.Event()

    use(gateway, upstream, holding(release))
    with httpx.Client(base_url=gateway.url) as client:
        assert client.get("/s/warm").status_code == 200
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as gone:
        gone.sendall(b"GET /s/held HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: len(upstream.heads) == 2, timeout=5)
    wait_for(lambda: in_flight(gateway) == 0, timeout=2)
    release.set()
    with httpx.Client(base_url=gateway.url) as client:
        assert client.get("/s/after").text == "ok"
    assert upstream.connections == 2


def test_pipelined_requests_are_answered_in_order(
    relayed: tuple[Gateway, Scripted, Running],
) -> None:
    gateway, upstream, _ = relayed

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        while head := await read_request(reader, upstream):
            path = head.split(b" ")[1]
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(path), path))
            await writer.drain()

    use(gateway, upstream, script)
    with httpx.Client(base_url=gateway.url) as client:
        assert client.get("/s/warm").status_code == 200
    host, port = gateway.url.removeprefix("http://").split(":")
    requests = b"".join(b"GET /s/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(3))
    with socket.create_connection((host, int(port)), timeout=5) as client_sock:
        client_sock.sendall(requests + b"GET /s/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := client_sock.recv(65536):
            received += chunk
    bodies = [part.split(b"\r\n\r\n", 1)[1][:2] for part in received.split(b"HTTP/1.1 200")[1:]]
    assert bodies == [b"/0", b"/1", b"/2", b"/3"]


def test_a_route_with_keep_alive_answers_keeps_using_one_connection(
    relayed: tuple[Gateway, Scripted, Running],
) -> None:
    """Many requests, one upstream connection: each relay gives it back to the pool."""
    gateway, upstream, running = relayed
    use(gateway, upstream, keep_alive(OK))
    with httpx.Client(base_url=gateway.url) as client:
        for _ in range(20):
            assert client.get("/s/x").text == "ok"
    assert upstream.connections == 1 and request_tasks(running) == 0


def test_refusals_and_lookups_are_answered_without_a_task_each(
    relayed: tuple[Gateway, Scripted, Running],
) -> None:
    """A refusal is answered as soon as it is decided, and a request whose key is not cached
    goes on when the store's answer comes (a done callback): no task is made for any of them,
    only the verifier's shared ones (one per store query, however many requests wait on it)."""
    gateway, upstream, _ = relayed
    use(gateway, upstream, keep_alive(OK))
    secret = {"X-Auth-Token": gateway.secret_key}

    async def forget() -> None:
        gateway.resources.verifier.clear()  # the key must be looked up again

    unknown = [SecretFormat().generate() for _ in range(5)]
    with httpx.Client(base_url=gateway.url) as client:
        assert client.get("/echo/warm", headers=secret).status_code == 200  # pooled, cached
        gateway.loop.run(forget())
        with tasks_made(gateway.loop) as made:
            statuses = [client.get("/nowhere").status_code, client.get("/echo/x").status_code]
            statuses += [
                client.get("/echo/x", headers={"X-Auth-Token": token}).status_code
                for token in unknown
            ]
            answer = client.get("/echo/x", headers=secret)  # looked up, then relayed
    assert statuses == [404, 401] + [401] * 5
    assert answer.status_code == 200 and answer.text == "ok"
    # The verifier's queries were made (and shared tasks may be: the watchdog's ticker, the key
    # feed's wait), but no request's task: the server makes one only to run ``Cycle.run``.
    assert "Verifier._run_queries" in made, made
    assert "Cycle.run" not in made, made
