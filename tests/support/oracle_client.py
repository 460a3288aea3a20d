"""The client side of the h11 oracle: requests framed by h11 and written in pieces of chosen
sizes (pipelined, or cut off part way), and every byte the gateway answers parsed by h11."""

from __future__ import annotations

import itertools
import selectors
import socket
import struct
import time
from dataclasses import dataclass, field

import h11

from tests.support.oracle import WAIT


@dataclass
class Answer:
    """One response as the client's h11 parsed it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    interim: list[int] = field(default_factory=list)

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]


@dataclass
class Outcome:
    """What one client connection got: the answers whole, then how the connection ended."""

    answers: list[Answer]
    error: str | None = None  # h11 refused a byte of the gateway's
    truncated: bool = False  # the connection ended inside an answer
    closed: bool = False  # the gateway closed the connection
    hung: bool = False  # nothing for WAIT seconds while an answer was owed
    extra: bytes = b""  # bytes after the last answer expected
    stayed_open: bool = False  # not closed where it had to be


def serialise(events: list[h11.Event]) -> bytes:
    """The request's bytes, framed by h11 (each Data a chunk when it is chunked)."""
    conn = h11.Connection(h11.CLIENT)
    return b"".join(conn.send(event) or b"" for event in events)


def prefix(events: list[h11.Event], body: int) -> int:
    """How many bytes of the request go before the first ``body`` bytes of its body are sent."""
    conn = h11.Connection(h11.CLIENT)
    size = len(conn.send(events[0]) or b"")
    for event in events[1:]:
        if not isinstance(event, h11.Data) or body <= 0:
            break
        part = event.data[:body]
        body -= len(part)
        size += len(conn.send(h11.Data(data=part)) or b"")
    return size


def converse(
    address: tuple[str, int],
    requests: list[list[h11.Event]],
    pieces: list[int],
    stop_after: int | None = None,
    reset: bool = False,
    hold: tuple[int, int] | None = None,
    wire: list[bytes] | None = None,
    closes: bool = False,
) -> Outcome | None:
    """Write the requests (pipelined) in pieces of the given sizes, then read every answer with
    h11. ``stop_after``: write that many bytes, then close (``reset``: with an RST) without
    reading; returns None then. ``hold`` (offset, n): stop writing at that offset until the
    head of the n-th answer arrives, as a client that reads while it sends (full duplex).
    ``wire``: the bytes to send instead of h11's framing of ``requests``; ``closes``: the
    gateway must close the connection after the last answer (what came before the close is
    kept in the outcome's ``extra``)."""
    stream = b"".join(wire if wire is not None else [serialise(e) for e in requests])
    if stop_after is not None:
        stream = stream[:stop_after]
    sock = socket.create_connection(address, timeout=WAIT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    try:
        outcome = _converse(sock, stream, requests, pieces, stop_after, hold)
        if closes and outcome is not None and not outcome.closed:
            outcome.extra += _until_closed(sock, outcome)
        return outcome
    finally:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def _until_closed(sock: socket.socket, outcome: Outcome) -> bytes:
    """What the gateway sends until it closes the connection (bounded by WAIT)."""
    sock.settimeout(WAIT)
    received = b""
    try:
        while data := sock.recv(65536):
            received += data
    except TimeoutError:
        outcome.stayed_open = True
    except OSError:
        pass
    return received


def _converse(
    sock: socket.socket,
    stream: bytes,
    requests: list[list[h11.Event]],
    pieces: list[int],
    stop_after: int | None,
    hold: tuple[int, int] | None,
) -> Outcome | None:
    cuts = list(itertools.accumulate(p for p in pieces if p > 0))
    if hold is not None:
        cuts.append(hold[0])
    cuts = [*sorted({c for c in cuts if c < len(stream)}), len(stream)]
    held_since: float | None = None
    sent = 0
    parser = Parser(requests)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    last = time.monotonic()
    try:
        while True:
            if sent >= len(stream) and stop_after is not None:
                return None
            done = parser.finished()
            if done and (sent >= len(stream) or time.monotonic() - last > WAIT):
                # Every answer is in, and the request's bytes are all written (a body the
                # upstream answered early is still sent: it may read it all), or the gateway
                # took none for WAIT seconds.
                parser.outcome.extra = parser.conn.trailing_data[0]
                return parser.outcome
            if not done and time.monotonic() - last > WAIT:
                parser.outcome.hung = True
                return parser.outcome
            writing = sent < len(stream)
            if hold is not None and sent == hold[0] and parser.heads < hold[1]:
                held_since = held_since or time.monotonic()
                writing = time.monotonic() - held_since > WAIT / 2  # no answer yet: go on
            want = selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0)
            selector.modify(sock, want)
            for _, mask in selector.select(0.2):
                if mask & selectors.EVENT_WRITE and writing:
                    end = next(c for c in cuts if c > sent)
                    try:
                        sent += sock.send(stream[sent:end])
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        sent = len(stream)  # the gateway closed on us: read what it said
                    last = time.monotonic()
                if mask & selectors.EVENT_READ:
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    last = time.monotonic()
                    parser.feed(data)
    finally:
        selector.close()


class Parser:
    """The client's h11, told each request (its bytes thrown away) before it parses that
    request's answer, so it knows a HEAD's answer has no body and when the cycle ends."""

    def __init__(self, requests: list[list[h11.Event]]) -> None:
        self.requests = requests
        self.conn = h11.Connection(h11.CLIENT)
        self.outcome = Outcome([])
        self.current: Answer | None = None
        self.interim: list[int] = []
        self.heads = 0  # final answer heads parsed
        self._start()

    def _start(self) -> None:
        for event in self.requests[len(self.outcome.answers)]:
            self.conn.send(event)

    def finished(self) -> bool:
        o = self.outcome
        return (
            o.error is not None
            or o.truncated
            or o.closed
            or o.hung
            or len(o.answers) == len(self.requests)
        )

    def feed(self, data: bytes) -> None:
        if len(self.outcome.answers) == len(self.requests):
            self.outcome.extra += data
            return
        self.conn.receive_data(data)
        while not self.finished():
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                if data:
                    self.outcome.error = f"h11 refused the gateway's answer: {exc}"
                else:
                    self.outcome.truncated = True
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.ConnectionClosed):
                self.outcome.closed = True
                return
            self._event(event)

    def _event(self, event: h11.Event) -> None:
        if isinstance(event, h11.InformationalResponse):
            self.interim.append(event.status_code)
        elif isinstance(event, h11.Response):
            self.heads += 1
            self.current = Answer(event.status_code, list(event.headers), interim=self.interim)
        elif isinstance(event, h11.Data) and self.current is not None:
            self.current.body += event.data
        elif isinstance(event, h11.EndOfMessage) and self.current is not None:
            self.current.trailers = list(event.headers)
            self.outcome.answers.append(self.current)
            self.current, self.interim = None, []
            if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                if len(self.outcome.answers) < len(self.requests):
                    self.conn.start_next_cycle()
                    self._start()
            elif len(self.outcome.answers) < len(self.requests):
                self.outcome.closed = True  # MUST_CLOSE: the rest is not answered
