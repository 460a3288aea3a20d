"""Faults an outside scan found in the engine after the exchange redesign: a Content-Length the
gateway calls "not a number" yet frames by, and an upstream timeout after a streamed head that
is logged as an unhandled error. Raw sockets and scripted upstreams, every wait bounded."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
from tests.test_upstream_engine import OK, Scripted, keep_alive, use

HOST = b"Host: x\r\n"


@pytest.fixture(scope="module")
def scripted(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, Scripted, Running]]:
    with scripted_gateway(Path(tmp_path_factory.mktemp("attack")), timeout=10) as started:
        yield started


@pytest.mark.parametrize("value", [b"5 ", b"5\t", b"  5 "], ids=["space", "tab", "both"])
def test_a_content_length_with_whitespace_is_one_framing(
    scripted: tuple[Gateway, Scripted, Running], value: bytes
) -> None:
    """Whitespace around a field value is not part of it (RFC 9110 §5.5), so ``5 `` is 5 and
    the request is forwarded. If the gateway refuses it instead, it cannot also frame by it: a
    refused Content-Length ends the connection (RFC 9112 §6.3). Today it answers 400
    ``bad_content_length`` ("not a number"), skips 5 bytes anyway and runs what follows as the
    next request, which reaches the upstream."""
    gateway, upstream, _ = scripted
    use(gateway, upstream, keep_alive(OK))
    with connect(gateway) as client:
        client.sendall(
            b"POST /s/a HTTP/1.1\r\n" + HOST + b"Content-Length:" + value + b"\r\n\r\nhello"
            b"GET /s/smuggled HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n"
        )
        got, closed = read_until_closed(client, 3)
    statuses = [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", got)]
    forwarded = [head.split(b" ")[1] for head in upstream.heads]
    if statuses[:1] == [400]:
        assert closed and statuses == [400], got
        assert b"/smuggled" not in forwarded, forwarded
    else:
        assert statuses == [200, 200] and forwarded == [b"/a", b"/smuggled"], (got, forwarded)


def test_the_trailer_section_of_a_request_is_bounded(
    scripted: tuple[Gateway, Scripted, Running],
) -> None:
    """A request head is bounded (64 KB, then 431); its trailer section, a second head after
    the last chunk (RFC 9112 §7.1.2), must be too: one trailer field of 8 MB is refused, the
    connection closed. Today every byte of it is taken in and held in memory (the RSS grows
    with it, unauthenticated, on refused requests too) until the body timeout or the field
    ends, and then the request is served: 200."""
    gateway, upstream, _ = scripted
    use(gateway, upstream, keep_alive(OK))
    with connect(gateway) as client:
        client.sendall(
            b"POST /s/t HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
            b"1\r\nx\r\n0\r\nX-Trailer: "
        )
        client.settimeout(2)
        deadline = time.monotonic() + 10
        try:
            for _ in range(8):
                if time.monotonic() > deadline:
                    break
                client.sendall(b"a" * (1 << 20))
            client.sendall(b"\r\n\r\n")
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass  # refused: the gateway stopped reading
        got, closed = read_until_closed(client, 5)
    # None: the refusal may be lost to the reset of a close with unread bytes.
    assert status_of(got.partition(b"\r\n\r\n")[0]) in (None, 400, 431), got[:200]
    assert closed, "the connection outlived an 8 MB trailer section"


def silent_after(answer: bytes) -> Any:
    """A script that reads the request head, sends ``answer`` and then neither sends nor closes
    until the gateway ends the connection."""

    async def script(reader: Any, writer: asyncio.StreamWriter, upstream: Scripted) -> None:
        upstream.heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer)
        await writer.drain()
        await until_closed(reader, 10)

    return script


STALLS = [
    pytest.param(b"HTTP/1.1 200 OK\r\n\r\nhello", id="close-delimited"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n" + b"x" * 300_000,
        id="content-length-cut",
    ),
]


@pytest.mark.parametrize("answer", STALLS)
def test_an_upstream_silent_after_its_head_went_out_is_no_unhandled_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, answer: bytes
) -> None:
    """The head (and some body) went to the client, then the upstream goes quiet without
    closing: at the route timeout the client connection is closed, the body cut short, and the
    log says so in one line. Today the gateway tries to send a 504 after the 200 head went out:
    ``RuntimeError: expected http.response.body, got 'http.response.start'``, logged as an
    unhandled error with its traceback, then "the application returned without completing its
    response"."""
    with scripted_gateway(tmp_path, timeout=0.5) as (gateway, upstream, _):
        use(gateway, upstream, silent_after(answer))
        caplog.set_level(logging.WARNING)
        with connect(gateway) as client:
            client.sendall(b"GET /s/x HTTP/1.1\r\n" + HOST + b"\r\n")
            got, closed = read_until_closed(client, 8)
        assert closed, "the client connection outlived the route timeout"
        assert status_of(got.partition(b"\r\n\r\n")[0]) == 200, got[:200]
        errors = [
            r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("gateway")
        ]
        assert not [r for r in errors if r.exc_info], [r.getMessage() for r in errors]
        assert not errors, [r.getMessage() for r in errors]


async def reset_after_close_delimited_body(
    reader: Any, writer: asyncio.StreamWriter, upstream: Scripted
) -> None:
    """A response framed by the end of the connection (no Content-Length, not chunked), whose
    end is a reset rather than a close: the body was cut, not finished."""
    upstream.heads.append(await reader.readuntil(b"\r\n\r\n"))
    writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + b"c" * 300_000)
    await writer.drain()
    await asyncio.sleep(0.2)
    # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_close_delimited_body_cut_by_a_reset_is_not_finished(
    scripted: tuple[Gateway, Scripted, Running],
) -> None:
    """A close-delimited body is complete only when the connection closes cleanly; a reset
    means it was cut (RFC 9112 §8: incomplete). The gateway re-frames it chunked for an
    HTTP/1.1 client, so it must then close without the last chunk, as nginx does ("upstream
    prematurely closed"). Today it sends ``0\\r\\n\\r\\n`` and keeps the connection: the cut
    body looks whole."""
    gateway, upstream, _ = scripted
    use(gateway, upstream, reset_after_close_delimited_body)
    with connect(gateway) as client:
        client.sendall(b"GET /s/cut HTTP/1.1\r\n" + HOST + b"\r\n")
        got, closed = read_until_closed(client, 4)
    head, _, body = got.partition(b"\r\n\r\n")
    assert status_of(head) == 200, got[:200]
    assert b"transfer-encoding: chunked" in head.lower(), head
    assert not body.endswith(b"0\r\n\r\n"), "a cut body was finished with the last chunk"
    assert closed, "the connection was kept after a cut response"


def test_a_stalled_upload_is_logged_as_the_408_it_got(tmp_path: Path) -> None:
    """The client of a stalled upload gets 408 ``body_timeout``; the access log must say so.
    Today its line says ``"status": null, "reason": null, "response_bytes": 0``, as for a
    client that left without an answer."""
    server = "body_timeout_seconds = 0.5"
    with scripted_gateway(tmp_path, timeout=10, server=server) as (gateway, upstream, _):

        async def hold(reader: Any, writer: asyncio.StreamWriter, up: Scripted) -> None:
            up.heads.append(await reader.readuntil(b"\r\n\r\n"))
            await until_closed(reader, 10)

        use(gateway, upstream, hold)
        with connect(gateway) as client:
            client.sendall(b"POST /s/stalled HTTP/1.1\r\n" + HOST + b"Content-Length: 1000\r\n\r\n")
            client.sendall(b"0123456789")
            head, body = read_response(client, 5)
        assert status_of(head) == 408 and reason_of(body) == "body_timeout", head
        log = tmp_path / "access.log"

        def line() -> dict[str, Any] | None:
            for text in log.read_text().splitlines() if log.exists() else []:
                entry: dict[str, Any] = json.loads(text)
                if entry["path"] == "/s/stalled":
                    return entry
            return None

        wait_for(lambda: line() is not None, timeout=5)
        entry = line()
        assert entry is not None
        assert (entry["status"], entry["reason"]) == (408, "body_timeout"), entry
