"""h11 as the oracle on both sides of the gateway: an upstream that parses every byte the gateway
sends it with h11 and answers as each request's `Plan` scripts it, and a client that parses every
byte the gateway answers with h11. What each side saw is kept for the tests to hold to account.

Every scripted fault (an early answer, a close, a reset) happens on an event, after so many body
bytes were parsed, never after a sleep; every wait on the gateway is bounded (`WAIT` seconds).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from dataclasses import dataclass, field, fields

import h11

WAIT = 5.0  # seconds either side waits on the gateway before calling it a hang
LINGER = 1.0  # seconds the upstream reads what follows an answer that closes the connection


def compact(value: object) -> str:
    """A dataclass's repr naming only the fields that differ from their defaults, so a drawn
    example reads as what is special about it."""
    default = type(value)()
    changed = [
        f"{f.name}={getattr(value, f.name)!r}"
        for f in fields(value)  # type: ignore[arg-type]
        if getattr(value, f.name) != getattr(default, f.name)
    ]
    return f"{type(value).__name__}({', '.join(changed)})"


@dataclass(frozen=True, repr=False)
class Plan:
    """How the upstream answers one request (found by the marker in its target)."""

    status: int = 200
    size: int = 20  # response body bytes (none for HEAD, 204 and 304)
    framing: str = "length"  # "length", "chunked" or "close" (delimited by the close)
    chunks: tuple[int, ...] = ()  # chunk sizes of a chunked answer (the rest in one chunk)
    trailers: bool = False  # a chunked answer ends with trailer fields
    interim: tuple[int, ...] = ()  # 1xx answers before the final one
    early: int | None = None  # answer after this many request body bytes (None: the whole body)
    close: bool = False  # the answer says Connection: close
    fault: str | None = None  # "close" or "reset" the connection ...
    fault_body: int | None = None  # ... after reading this many request body bytes, or
    fault_answer: int | None = None  # ... after writing this many response body bytes
    extra: bool = False  # a second, unsolicited answer in the same write as the first

    __repr__ = compact


TRAILERS = [(b"x-trailer", b"late"), (b"set-cookie", b"trailer=1")]


def filler(marker: str, size: int) -> bytes:
    """``size`` bytes made of ``marker`` repeated, so stray bytes say whose they are."""
    unit = (marker + ".").encode()
    return (unit * (size // len(unit) + 1))[:size]


def marker_of(target: bytes) -> str:
    return target.rsplit(b"/", 1)[-1].split(b"?", 1)[0].decode("ascii", "replace")


@dataclass
class Seen:
    """One request as the upstream's h11 parsed it."""

    connection: int
    index: int  # its place on its connection
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False  # h11 saw its EndOfMessage
    answered: bool = False  # the final answer was written whole
    answered_at: int | None = None  # body bytes read when it was

    @property
    def marker(self) -> str:
        return marker_of(self.target)


class OracleUpstream:
    """The h11 upstream. ``plans`` maps a request's marker to its `Plan`; ``seen`` is every
    request parsed, ``errors`` every byte h11 refused or wait that ran out, ``open`` the
    connections not closed yet."""

    def __init__(self) -> None:
        self.plans: dict[str, Plan] = {}
        self.seen: list[Seen] = []
        self.errors: list[str] = []
        self.truncated: list[str] = []  # requests whose connection ended inside them
        self.open: set[int] = set()
        self.connections = itertools.count(1)
        self.busy = 0  # connections inside a request (head begun, answer not done)
        self.ended: set[int] = set()  # connections whose end (EOF or reset) h11 was fed

    def reset(self) -> None:
        self.plans.clear()
        self.seen.clear()
        self.errors.clear()
        self.truncated.clear()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = next(self.connections)
        self.open.add(number)
        try:
            await self._serve(number, reader, writer)
        except (ConnectionError, OSError):
            pass
        except Exception as exc:  # the oracle's own fault: said loudly, not taken as a close
            self.errors.append(f"the oracle upstream failed: {exc!r}")
        finally:
            self.open.discard(number)
            writer.transport.abort()

    async def _serve(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = h11.Connection(h11.SERVER)
        tainted: str | None = None  # a previous answer came with an unsolicited second one
        for index in itertools.count():
            event = await self._next(conn, reader, number, None, idle=True)
            if not isinstance(event, h11.Request):
                return  # closed between requests (or refused: recorded)
            seen = Seen(number, index, event.method, event.target, list(event.headers))
            self.seen.append(seen)
            if tainted is not None:
                self.errors.append(
                    f"{seen.marker}: sent on the connection where {tainted}'s answer came with "
                    "a second, unsolicited one: a connection out of step was reused"
                )
            if self.plans.get(seen.marker, Plan()).extra:
                tainted = seen.marker
            self.busy += 1
            try:
                if not await self._exchange(conn, reader, writer, seen):
                    return
            finally:
                self.busy -= 1
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _exchange(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        seen: Seen,
    ) -> bool:
        """Read the body and answer as planned; False when the connection must end."""
        plan = self.plans.get(seen.marker, Plan())
        while True:
            if plan.fault_body is not None and len(seen.body) >= plan.fault_body:
                fail(writer, plan)
                return False
            early = plan.early is not None and len(seen.body) >= plan.early
            if early and not seen.answered and not await self._answer(conn, writer, seen, plan):
                await self._linger(conn, reader, seen)
                return False
            if seen.complete:
                break
            event = await self._next(conn, reader, seen.connection, seen)
            if isinstance(event, h11.Data):
                seen.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                seen.trailers = list(event.headers)
                seen.complete = True
            else:
                return False
        if not seen.answered:
            return await self._answer(conn, writer, seen, plan)
        return plan.framing != "close"

    async def _answer(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, seen: Seen, plan: Plan
    ) -> bool:
        """Write the plan's answer; False when it ended the connection."""
        out = [
            conn.send(h11.InformationalResponse(status_code=s, headers=[])) for s in plan.interim
        ]
        bodiless = seen.method == b"HEAD" or plan.status in (204, 304)
        body = b"" if bodiless else filler(seen.marker, plan.size)
        headers = [(b"x-marker", seen.marker.encode())]
        if plan.close:
            headers.append((b"connection", b"close"))
        if plan.framing == "close":
            out.append(
                b"HTTP/1.1 %d OK\r\nx-marker: %s\r\nconnection: close\r\n\r\n"
                % (plan.status, seen.marker.encode())
            )
        elif plan.framing == "chunked" and plan.status not in (204, 304):
            headers.append((b"transfer-encoding", b"chunked"))
        elif plan.status not in (204, 304):
            headers.append((b"content-length", b"%d" % plan.size))
        if plan.framing != "close":
            out.append(conn.send(h11.Response(status_code=plan.status, headers=headers)))
        cut = plan.fault_answer
        if cut is not None and cut < len(body):
            if plan.framing == "chunked":
                out.append(b"%x\r\n" % len(body))
            writer.write(b"".join(out) + body[:cut])
            fail(writer, plan)
            return False
        if plan.framing == "close":
            out.append(body)
        else:
            start = 0
            for size in (*plan.chunks, len(body)) if plan.framing == "chunked" else (len(body),):
                part = body[start : start + size]
                start += len(part)
                if part:
                    out.append(conn.send(h11.Data(data=part)))
            chunked = plan.framing == "chunked" and not bodiless
            trailers = TRAILERS if plan.trailers and chunked else []
            out.append(conn.send(h11.EndOfMessage(headers=trailers)))
        if plan.extra and plan.framing != "close":
            # (After a body delimited by the close, a second answer is only more of the body.)
            out.append(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-marker: stale\r\n\r\nstale")
        writer.write(b"".join(out))
        try:
            await asyncio.wait_for(writer.drain(), WAIT)
        except TimeoutError:
            self.errors.append(f"the gateway read nothing of {seen.marker}'s answer for {WAIT} s")
            return False
        seen.answered = True
        seen.answered_at = len(seen.body)
        if plan.framing == "close":
            writer.write_eof()  # the answer ends here; the request may still be arriving
            return False
        return conn.our_state is not h11.MUST_CLOSE

    async def _linger(self, conn: h11.Connection, reader: asyncio.StreamReader, seen: Seen) -> None:
        """An answer that ends the connection went out before the request's end: read what
        the gateway still sends for a while (it may stop), so the close is not a reset that
        could take the answer with it (as a lingering close does)."""
        while not seen.complete:
            event = await self._next(conn, reader, seen.connection, seen, wait=LINGER)
            if isinstance(event, h11.Data):
                seen.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                seen.complete = True
            else:
                return

    async def _next(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        number: int,
        seen: Seen | None,
        idle: bool = False,
        wait: float | None = None,
    ) -> h11.Event | None:
        """The next event h11 parses; None (and a record of why) when the bytes are refused,
        the connection ended inside a request or the gateway kept us waiting."""
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if wait is not None:
                    return None  # lingering: the gateway may end the request any way it likes
                where = f"connection {number}, request {seen.marker if seen else '(head)'}"
                if number in self.ended:
                    self.truncated.append(f"{where}: {exc}")
                else:
                    self.errors.append(f"h11 refused the gateway's bytes ({where}): {exc}")
                return None
            if event is not h11.NEED_DATA:
                if isinstance(event, h11.ConnectionClosed):
                    return None
                return event
            try:
                # Between two requests a kept-alive connection may idle as long as the pool
                # keeps it; inside one, the gateway owes us bytes.
                bound = None if idle and not conn.trailing_data[0] else WAIT
                data = await asyncio.wait_for(reader.read(65536), wait or bound)
            except TimeoutError:
                if wait is not None:
                    return None
                self.errors.append(
                    f"the gateway stalled connection {number} mid-request "
                    f"({seen.marker if seen else 'head'}) for {WAIT} s"
                )
                return None
            except ConnectionError:
                data = b""
            if not data:
                self.ended.add(number)
            conn.receive_data(data)


def fail(writer: asyncio.StreamWriter, plan: Plan) -> None:
    """The plan's fault: a close (FIN) or a reset (RST, SO_LINGER 0)."""
    if plan.fault == "reset":
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()
