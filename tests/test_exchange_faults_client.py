"""Faults of the client side of an exchange, each the behaviour the engine must have: a client
that stalls, sends bytes after its answer, pipelines thousands of refusals, sends a body that
turns out malformed, leaves while the upstream thinks; a bug in the parser's callbacks; an
HTTP/1.0 client that asks for 100 Continue. Raw sockets and scripted upstreams
(``tests.test_upstream_engine.Scripted``), every wait bounded."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tests.support import Gateway, Running, wait_for
from tests.support.scripted import (
    connect,
    read_response,
    read_until_closed,
    reason_of,
    scripted_gateway,
    status_of,
    until_closed,
)
from tests.test_upstream_engine import OK, Scripted, keep_alive, read_request, use

HOST = b"Host: x\r\n"


@pytest.fixture(scope="module")
def scripted(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, Scripted, Running]]:
    """The route /s with a timeout of 10 s: longer than any wait here, so a test that passes
    never owes it to the route timeout."""
    with scripted_gateway(Path(tmp_path_factory.mktemp("client")), timeout=10) as started:
        yield started


def closes(upstream: Scripted, ahead: Any = None) -> Any:
    """A script that reads the request head (and runs ``ahead`` on the connection), then
    notes in ``upstream.sent`` when the gateway ends the connection (``time.monotonic()``, in
    milliseconds)."""

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        upstream.heads.append(await reader.readuntil(b"\r\n\r\n"))
        if ahead is not None:
            await ahead(reader, writer)
        if await until_closed(reader):
            upstream.sent = int(time.monotonic() * 1000)

    return script


# -- waiting on the client is bounded ----------------------------------------------------------

TIMEOUTS = "body_timeout_seconds = 0.5\nsend_timeout_seconds = 0.5"


def test_a_stalled_upload_is_408_and_frees_the_upstream(tmp_path: Path) -> None:
    """10 of 1,000 body bytes, then silence: after ``[server] body_timeout_seconds`` the client
    gets 408 ``body_timeout`` and the upstream connection is aborted. Today there is no such
    setting (the config is refused) and the wait has no bound."""
    with scripted_gateway(tmp_path, timeout=10, server=TIMEOUTS) as (gateway, upstream, _):
        use(gateway, upstream, closes(upstream))
        with connect(gateway) as client:
            client.sendall(b"POST /s/up HTTP/1.1\r\n" + HOST + b"Content-Length: 1000\r\n\r\n")
            client.sendall(b"0123456789")
            head, body = read_response(client, 5)
            assert status_of(head) == 408, head
            assert reason_of(body) == "body_timeout", body
            wait_for(lambda: upstream.sent > 0, timeout=3)


def test_a_client_that_never_reads_is_let_go(tmp_path: Path) -> None:
    """A download the client never reads: after ``[server] send_timeout_seconds`` without a
    write going through, its connection is closed and the upstream's aborted. Today both are
    held for as long as the client likes."""

    async def endless(reader: Any, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10000000000\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(150_000):  # 10 GB at most, in case the gateway never stops it
            writer.write(chunk)
            await writer.drain()

    with scripted_gateway(tmp_path, timeout=10, server=TIMEOUTS) as (gateway, upstream, _):

        async def script(reader: Any, writer: asyncio.StreamWriter, up: Scripted) -> None:
            up.heads.append(await reader.readuntil(b"\r\n\r\n"))
            try:
                await endless(reader, writer)
            except ConnectionError:
                up.sent = 1  # the gateway ended the connection under the download

        use(gateway, upstream, script)
        with connect(gateway) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            client.sendall(b"GET /s/big HTTP/1.1\r\n" + HOST + b"\r\n")
            wait_for(lambda: upstream.sent == 1, timeout=5)
            got, closed = read_until_closed(client, 5)  # what the buffers held, then the end
            assert closed and len(got) < 1_000_000_000  # far from the 10 GB offered


# -- bytes after an answer -----------------------------------------------------------------


def quick_keep_alive(running: Running, seconds: int) -> None:
    """uvicorn's ``timeout_keep_alive`` for the proxy listener's new connections (there is no
    [server] setting for it: `gateway serve` fixes it)."""
    running.servers[0][0].config.timeout_keep_alive = seconds


def test_bytes_after_an_answer_do_not_disable_the_keep_alive_timer(tmp_path: Path) -> None:
    """A POST refused on its head (404), then one byte of its body: the connection is still
    closed by the keep-alive timeout (here 1 s). Today the byte disarms the timer for good."""
    with scripted_gateway(tmp_path) as (gateway, _, running):
        quick_keep_alive(running, 1)
        with connect(gateway) as client:
            client.sendall(b"POST /nowhere HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n\r\n")
            head, _ = read_response(client, 5)
            assert status_of(head) == 404, head
            client.sendall(b"x")
            _, closed = read_until_closed(client, 4)
            assert closed, "the connection outlived its keep-alive timeout"


def test_the_discard_of_a_refused_body_is_bounded(tmp_path: Path) -> None:
    """A POST refused on its head (404) that declares 1 GB: the gateway reads only so much of
    the body it will never use (as nginx's lingering close) and then closes the connection:
    before 64 MB or 5 s, whichever comes first. Today it reads all of it, and stays open."""
    with scripted_gateway(tmp_path) as (gateway, _, running):
        quick_keep_alive(running, 1)
        with connect(gateway) as client:
            client.sendall(
                b"POST /nowhere HTTP/1.1\r\n" + HOST + b"Content-Length: 1000000000\r\n\r\n"
            )
            head, _ = read_response(client, 5)
            assert status_of(head) == 404, head
            chunk = b"d" * (1 << 20)
            deadline = time.monotonic() + 5
            client.settimeout(0.5)
            for _ in range(64):
                if time.monotonic() > deadline:
                    break
                try:
                    client.sendall(chunk)
                except TimeoutError:
                    continue  # not read: the end must come soon
                except (BrokenPipeError, ConnectionResetError):
                    break
            _, closed = read_until_closed(client, 3)
            assert closed, "64 MB of a refused body were read and the connection kept"


# -- a pipeline of refusals ------------------------------------------------------------------


def statuses_of(data: bytes) -> list[int]:
    """The statuses of the whole responses in ``data`` (each with a Content-Length)."""
    found = []
    while b"\r\n\r\n" in data:
        head, _, data = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.lower().split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
        if len(data) < length:
            break
        found.append(int(head.split(b" ", 2)[1]))
        data = data[length:]
    return found


def test_a_long_pipeline_of_refusals_is_answered_in_order(
    scripted: tuple[Gateway, Scripted, Running], caplog: pytest.LogCaptureFixture
) -> None:
    """One write: a GET that goes upstream, then 2,000 requests refused at once (404). All
    2,001 are answered, in order; no RecursionError; the in-flight gauge is back at 0. Today
    each refusal starts the next from inside its own completion: after ~140 answers the
    stack overflows, the connection hangs and the gauge stays at 1."""
    gateway, upstream, _ = scripted
    use(gateway, upstream, keep_alive(OK))
    caplog.set_level(logging.WARNING)
    pipeline = b"GET /s/first HTTP/1.1\r\n" + HOST + b"\r\n"
    pipeline += (b"GET /nowhere HTTP/1.1\r\n" + HOST + b"\r\n") * 2000
    got = b""
    with connect(gateway) as client:
        client.sendall(pipeline)
        deadline = time.monotonic() + 5
        while len(statuses_of(got)) < 2001 and (left := deadline - time.monotonic()) > 0:
            client.settimeout(left)
            try:
                data = client.recv(1 << 20)
            except TimeoutError:
                break
            if not data:
                break
            got += data
    assert statuses_of(got) == [200] + [404] * 2000
    assert not [r for r in caplog.records if r.exc_info and r.exc_info[0] is RecursionError]
    metrics = gateway.resources.metrics
    assert metrics is not None
    wait_for(lambda: metrics.in_flight == 0, timeout=5)


# -- a body that turns out malformed ---------------------------------------------------------

CHUNKED = b"Transfer-Encoding: chunked\r\n"


MALFORMED = [
    pytest.param(CHUNKED, b"0x3\r\nabc\r\n0\r\n\r\n", id="0x-chunk-size"),
    pytest.param(CHUNKED, b"3\nabc\n0\n\n", id="bare-lf-chunks"),
    pytest.param(CHUNKED, b"1" + b"0" * 20 + b"\r\nabc\r\n", id="overflowing-size"),
    pytest.param(b"Transfer-Encoding: gzip, chunked\r\n", b"3\r\nabc\r\nzz", id="gzip"),
    pytest.param(CHUNKED, b"3\r\nabc\r\n0\r\nContent-Length: 5\r\n\r\n", id="cl-trailer"),
]


@pytest.mark.parametrize("early", [True, False], ids=["answered-early", "not-answered"])
@pytest.mark.parametrize(("framing", "body"), MALFORMED)
def test_a_body_malformed_after_the_head_went_upstream_gets_one_answer(
    scripted: tuple[Gateway, Scripted, Running], framing: bytes, body: bytes, early: bool
) -> None:
    """The head is forwarded, then the body turns out not to be valid HTTP/1.1: the client gets
    exactly one response (the upstream's if it answered at once, else a 400), and the upstream
    connection, whose request cannot be finished, is aborted. Today the client gets the
    upstream's answer and then a 400, or nothing while the upstream connection is held."""
    gateway, upstream, _ = scripted

    async def answer(reader: Any, writer: asyncio.StreamWriter) -> None:
        writer.write(OK)  # before the body has come: a complete answer to an unfinished request
        await writer.drain()

    use(gateway, upstream, closes(upstream, answer if early else None))
    with connect(gateway) as client:
        client.sendall(b"POST /s/m HTTP/1.1\r\n" + HOST + framing + b"\r\n")
        wait_for(lambda: upstream.heads, timeout=5)
        early_answer = b""
        if early:  # the upstream's answer reaches the client before the bad body leaves it
            while b"\r\n\r\n" not in early_answer:
                part = client.recv(65536)
                assert part, early_answer
                early_answer += part
        client.sendall(body)
        got, _ = read_until_closed(client, 3)
        got = early_answer + got
    statuses = re.findall(rb"HTTP/1\.1 ([0-9]{3}) ", got)
    assert statuses == ([b"200"] if early else [b"400"]), got
    wait_for(lambda: upstream.sent > 0, timeout=3)


# -- a bug is a 500 ----------------------------------------------------------------------------


def boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected fault")


@pytest.mark.parametrize("where", ["app", "proxy-headers"])
def test_an_exception_in_the_parsers_callbacks_is_a_500(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    """A bug met while a request head is handled (the app's first step, or the proxy-headers
    rewrite of a trusted peer's X-Forwarded-For) is a 500 ``internal_error`` with its traceback
    logged at ERROR. Today it becomes a 400 ``malformed_request`` logged at INFO, with no
    traceback: a bug looks like a client's fault."""
    server = 'trusted_proxies = ["127.0.0.1"]' if where == "proxy-headers" else ""
    with scripted_gateway(tmp_path, server=server) as (gateway, upstream, _):
        use(gateway, upstream, keep_alive(OK))
        if where == "app":
            monkeypatch.setattr("gateway.app.Exchange", boom)  # made first for each request
        else:
            monkeypatch.setattr(ProxyHeadersMiddleware, "__call__", boom)
        caplog.set_level(logging.INFO)
        with connect(gateway) as client:
            client.sendall(b"GET /s/x HTTP/1.1\r\n" + HOST + b"X-Forwarded-For: 10.0.0.1\r\n\r\n")
            head, body = read_response(client, 5)
    assert status_of(head) == 500, head
    assert reason_of(body) == "internal_error", body
    tracebacks = [
        logging.Formatter().formatException(r.exc_info)
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.exc_info
    ]
    assert any("RuntimeError: injected fault" in text for text in tracebacks), tracebacks


# -- the rest ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kept", [False, True], ids=["new-connection", "kept-alive"])
def test_a_client_that_leaves_frees_the_upstream_at_once(
    scripted: tuple[Gateway, Scripted, Running], kept: bool
) -> None:
    """The client goes while the upstream is still thinking: the exchange and its upstream
    connection are aborted at once, not at the route timeout (10 s here). Today nobody
    watches the client until the response starts."""
    gateway, upstream, _ = scripted

    async def script(reader: Any, writer: asyncio.StreamWriter, up: Scripted) -> None:
        while head := await read_request(reader, up):
            if b"/quick" in head:
                writer.write(OK)
                await writer.drain()
                continue
            if await until_closed(reader):  # thinking, for ever
                up.sent = int(time.monotonic() * 1000)
            return

    use(gateway, upstream, script)
    with connect(gateway) as client:
        if kept:  # a kept-alive upstream connection: the request is carried by callbacks
            client.sendall(b"GET /s/quick HTTP/1.1\r\n" + HOST + b"\r\n")
            assert status_of(read_response(client, 5)[0]) == 200
        client.sendall(b"GET /s/think HTTP/1.1\r\n" + HOST + b"\r\n")
        wait_for(lambda: any(b"/think" in head for head in upstream.heads), timeout=5)
        left = time.monotonic()
    wait_for(lambda: upstream.sent > 0, timeout=3)
    assert upstream.sent / 1000 - left < 1.0


def test_a_shutdown_cancels_a_request_without_calling_it_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A shutdown whose grace period (1 s) ends with a request in flight cancels it: that is
    no unhandled error of the request. Today the cancellation is caught and logged as one (and
    a 500 written)."""
    with scripted_gateway(tmp_path, timeout=10) as started:
        gateway, upstream, running = started
        use(gateway, upstream, closes(upstream))
        caplog.set_level(logging.INFO)
        with connect(gateway) as client:
            client.sendall(b"POST /s/slow HTTP/1.1\r\n" + HOST + b"Content-Length: 2\r\n\r\nhi")
            wait_for(lambda: upstream.heads, timeout=5)
            running.stop()
    unhandled = [
        r for r in caplog.records if r.name.startswith("gateway") and r.levelno >= logging.ERROR
    ]
    assert unhandled == [], [r.getMessage() for r in unhandled]


def test_no_100_continue_for_an_http_1_0_client(
    scripted: tuple[Gateway, Scripted, Running],
) -> None:
    """HTTP/1.0 has no interim responses (RFC 9110 §15.2): an HTTP/1.0 client's ``Expect:
    100-continue`` gets no ``100 Continue``, only the final answer. Today it gets both."""
    gateway, upstream, _ = scripted
    use(gateway, upstream, keep_alive(OK))
    with connect(gateway) as client:
        client.sendall(
            b"POST /s/x HTTP/1.0\r\n" + HOST + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        time.sleep(0.3)  # what a client does before sending the body anyway
        client.sendall(b"hello")
        got, _ = read_until_closed(client, 5)
    assert got.startswith(b"HTTP/1.1 200 "), got
    assert b" 100 " not in got.split(b"\r\n\r\n", 1)[0], got
    assert upstream.bodies == [b"hello"]
