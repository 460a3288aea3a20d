"""The upstream exchange's state machine (gateway.http.exchange), driven by feeding it bytes: it
does no I/O, so every transition is reached without a socket."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gateway.http import exchange as states
from gateway.http.exchange import UpstreamBroken, UpstreamClosed, UpstreamExchange


class Channel:
    """Stands in for the connection: counts the pauses the exchange asks for."""

    def __init__(self) -> None:
        self.paused = 0

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.paused -= 1


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def fed(
    loop: asyncio.AbstractEventLoop, *parts: bytes, head_only: bool = False, lost: bool = False
) -> UpstreamExchange:
    exchange = UpstreamExchange(Channel(), loop, head_only, None, False)
    for part in parts:
        exchange.feed(part)
    if lost:
        exchange.lost()
    return exchange


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
CHUNKED_WITH_TRAILERS = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n"
    b"set-cookie: s=1\r\nlocation: /x\r\naccess-control-allow-origin: *\r\n\r\n"
)

# parts fed, head_only, lost at the end -> response state, status, body, reusable
TABLE = [
    ("length", [OK], False, False, states.DONE, 200, b"hi", True),
    ("split anywhere", [OK[:5], OK[5:30], OK[30:]], False, False, states.DONE, 200, b"hi", True),
    ("chunked, trailers", [CHUNKED_WITH_TRAILERS], False, False, states.DONE, 200, b"hi", True),
    (
        "connection close",
        [b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nhi"],
        False,
        False,
        states.MUST_CLOSE,
        200,
        b"hi",
        False,
    ),
    (
        "HTTP/1.0",
        [b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nhi"],
        False,
        False,
        states.MUST_CLOSE,
        200,
        b"hi",
        False,
    ),
    ("two responses at once", [OK + OK], False, False, states.MUST_CLOSE, 200, b"hi", False),
    ("bytes after it", [OK, b"HTTP/1.1"], False, False, states.MUST_CLOSE, 200, b"hi", False),
    (
        "interim answers first",
        [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + OK],
        False,
        False,
        states.DONE,
        200,
        b"hi",
        True,
    ),
    (
        "delimited by the close",
        [b"HTTP/1.1 200 OK\r\n\r\nall of it"],
        False,
        True,
        states.MUST_CLOSE,
        200,
        b"all of it",
        False,
    ),
    (
        "a HEAD answer",
        [b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n"],
        True,
        False,
        states.DONE,
        200,
        b"",
        True,
    ),
    (
        "a HEAD answer, then another",
        [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n" + OK],
        True,
        False,
        states.MUST_CLOSE,
        200,
        b"",
        False,
    ),
    (
        "a chunked HEAD answer, then another",
        [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", OK],
        True,
        False,
        states.MUST_CLOSE,
        200,
        b"",
        False,
    ),
    ("no byte, then the close", [], False, True, states.ERROR, 0, b"", False),
    ("cut mid-body", [OK[:-1]], False, True, states.ERROR, 200, b"h", False),
    ("malformed", [b"HTTP/1.1 2x0 OK\r\n\r\n"], False, False, states.ERROR, 0, b"", False),
    (
        "a head too large",
        [b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (states.MAX_HEAD_BYTES + 1) + b"\r\n\r\n"],
        False,
        False,
        states.ERROR,
        0,
        b"",
        False,
    ),
    (
        "trailers too large",
        [
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-big: "
            + b"a" * (states.MAX_HEAD_BYTES + 1)
            + b"\r\n\r\n"
        ],
        False,
        False,
        states.ERROR,
        200,
        b"",
        False,
    ),
]


@pytest.mark.parametrize(
    ("parts", "head_only", "lost", "state", "status", "body", "reusable"),
    [case[1:] for case in TABLE],
    ids=[case[0] for case in TABLE],
)
def test_the_response_side_reaches_its_state_by_the_bytes(
    loop: asyncio.AbstractEventLoop,
    parts: list[bytes],
    head_only: bool,
    lost: bool,
    state: str,
    status: int,
    body: bytes,
    reusable: bool,
) -> None:
    exchange = fed(loop, *parts, head_only=head_only, lost=lost)
    assert exchange.response is state
    if exchange.status:
        assert exchange.status == status
    assert b"".join(exchange.chunks) == body
    exchange.chunks.clear()
    assert exchange.reusable is reusable


def test_trailers_never_join_the_headers(loop: asyncio.AbstractEventLoop) -> None:
    exchange = fed(loop, CHUNKED_WITH_TRAILERS)
    assert exchange.headers == [(b"transfer-encoding", b"chunked")]


def test_two_responses_at_once_leave_the_first_alone(loop: asyncio.AbstractEventLoop) -> None:
    second = b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\nx-second: 1\r\n\r\nnot"
    exchange = fed(loop, OK + second)
    assert exchange.status == 200
    assert exchange.headers == [(b"content-length", b"2")]


@pytest.mark.parametrize(
    ("parts", "error"),
    [([], UpstreamClosed), ([OK[:10]], UpstreamBroken)],
    ids=["nothing came back", "part of a head"],
)
def test_a_failure_is_told_to_the_awaited_head(
    loop: asyncio.AbstractEventLoop, parts: list[bytes], error: type[Exception]
) -> None:
    exchange = fed(loop, *parts, lost=True)
    assert exchange.head is not None and exchange.head.done()
    assert isinstance(exchange.head.exception(), error)


def test_the_request_side_is_done_only_when_its_framing_is_sent(
    loop: asyncio.AbstractEventLoop,
) -> None:
    exchange = UpstreamExchange(Channel(), loop, False, None, True)
    assert exchange.request is states.SEND_BODY
    exchange.feed(OK)  # answered early, the upload still going
    assert exchange.response is states.DONE and not exchange.reusable
    exchange.sent()
    exchange.chunks.clear()
    assert exchange.request is states.DONE and exchange.reusable

    stopped = UpstreamExchange(Channel(), loop, False, None, True)
    stopped.feed(OK)
    stopped.abandon()  # the upload stopped short: the upstream would read our next as body
    stopped.sent()  # too late: a direction never leaves MUST_CLOSE
    assert stopped.request is states.MUST_CLOSE and not stopped.reusable


def test_a_direction_moves_only_along_its_table(loop: asyncio.AbstractEventLoop) -> None:
    exchange = fed(loop, OK)
    with pytest.raises(RuntimeError, match="not a transition"):
        exchange._respond(states.SEND_BODY)
    for table in (states.REQUEST_TRANSITIONS, states.RESPONSE_TRANSITIONS):
        for targets in table.values():
            assert targets <= set(table)  # every state it names is one of its own


def test_reading_pauses_above_the_high_water_mark_and_resumes_when_read(
    loop: asyncio.AbstractEventLoop,
) -> None:
    size = states.HIGH_WATER + 1
    channel = Channel()
    exchange = UpstreamExchange(channel, loop, False, None, False)
    exchange.feed(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (size + 1) + b"a" * size)
    assert channel.paused == 1
    assert len(loop.run_until_complete(exchange.read())) == size
    assert channel.paused == 0


@pytest.mark.parametrize("take", ["read", "take_body"])
def test_reading_resumes_when_the_body_completed_above_the_high_water_mark(
    loop: asyncio.AbstractEventLoop, take: str
) -> None:
    """The body crossed the mark and ended in the same bytes: reading must still resume when
    it is taken, or the connection goes back to the pool paused and its next exchange never
    hears its response (a 504 at the route timeout)."""
    size = states.HIGH_WATER + 1
    channel = Channel()
    exchange = UpstreamExchange(channel, loop, False, None, False)
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size
    exchange.feed(head + b"a" * (size // 2))
    exchange.feed(b"a" * (size - size // 2))
    assert exchange.complete and channel.paused == 1
    if take == "read":
        assert len(loop.run_until_complete(exchange.read())) == size
    else:
        assert len(exchange.take_body()) == size
    assert channel.paused == 0
    assert exchange.reusable
