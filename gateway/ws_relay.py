"""A WebSocket session after its 101: bytes relayed both ways as they arrive, each direction
read by its frame headers only (``gateway.ws_frames``), so the gateway can end the session at a
frame boundary with a close frame of its own.

Two asyncio Protocols on the two transports, no task and no per-message copy: what one side
reads is written to the other as it came (its payload never unmasked), and a side whose write
buffer passes the transport's high-water mark pauses the reading of the other until it drains.

How a session ends:
- **Either side closes** (a close frame passes, and the other answers with its own): once both
  have, the client's connection is closed (the server's end closes first, RFC 6455 §7.1.1) and
  the upstream's is awaited for ``CLOSE_SECONDS``. A side whose TCP connection closes has the
  other closed after what was written to it is sent.
- **The gateway ends it** (`Relay.end`: the key revoked, expired or edited, idleness, a frame
  refused, a shutdown): each direction stops at its next frame boundary, as it stands when asked
  or when the frame in flight ends, and its destination gets the gateway's close frame, unmasked
  to the client, masked to the upstream (§5.3). Control frames may come between the fragments
  of a message (§5.4), so a close there is as legal as anywhere. What the sides send after that
  is read and dropped until their own close frames come; ``CLOSE_SECONDS`` after the end began,
  whatever is still open is cut.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from gateway.http.server import LINGER_SECONDS
from gateway.ws_frames import FrameReader, close_frame

GOING_AWAY = 1001
CLOSE_SECONDS = 5.0  # for the frame in flight to end and the closing handshake to be answered
HELD_BYTES = 64 * 1024  # kept from a side before its relay begins; reading pauses past it


class Held(asyncio.Protocol):
    """A connection whose relay has not begun (its handshake is under way): what it sends is
    kept in order, reading paused past ``HELD_BYTES``. A client must wait for the 101 before it
    sends frames (RFC 6455 §4.1), but one that does not loses nothing; an upstream may send
    frames in the same segment as its 101. While held, it is one of the server's connections
    (``connections``): a graceful shutdown (``shutdown``) ends its session as it begins."""

    def __init__(
        self, transport: Any, kept: bytes = b"", connections: set[Any] | None = None
    ) -> None:
        self.transport = transport
        self.kept = [kept] if kept else []
        self.size = len(kept)
        self.lost = False
        self.shutting_down = False
        self.on_lost: Callable[[], object] | None = None
        self.connections = connections
        self.dropping = False  # answered: what comes is read and dropped until the close
        self.linger: asyncio.TimerHandle | None = None
        if connections is not None:
            connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.dropping:
            return
        self.kept.append(data)
        self.size += len(data)
        if self.size > HELD_BYTES:
            self.transport.pause_reading()

    def eof_received(self) -> None:
        pass  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.linger is not None:
            self.linger.cancel()
        if self.connections is not None:
            self.connections.discard(self)
        if self.on_lost is not None:
            self.on_lost()

    def shutdown(self) -> None:
        self.shutting_down = True

    def answer(self, response: bytes) -> None:
        """Refuse with ``response`` (a whole HTTP answer), then close: for writing first, reading
        and dropping what still comes until the client closes or ``LINGER_SECONDS`` pass, so the
        answer is not lost to a reset of unread bytes (``gateway.http.server``'s linger)."""
        self.on_lost = None
        if self.lost:
            return
        transport = self.transport
        transport.write(response)
        self.dropping = True
        self.kept = []
        transport.resume_reading()
        if not transport.can_write_eof():  # TLS: no half-close
            transport.close()
            return
        try:
            transport.write_eof()
        except OSError:  # the client is gone already (reset)
            transport.close()
            return
        self.linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)


class Side(asyncio.Protocol):
    """One connection of a relayed session: what it reads goes to its peer's transport."""

    def __init__(self, relay: Relay, transport: Any, reader: FrameReader) -> None:
        self.relay = relay
        self.transport = transport
        self.reader = reader
        self.feed = reader.feed
        self.time = relay.time
        self.peer: Side = self
        self.write: Callable[[bytes], object] = transport.write  # the peer's, once paired
        self.lost = False
        self.told = False  # its peer has had the gateway's close frame
        self.mask = False  # its peer is the upstream: the gateway's frames to it are masked

    def data_received(self, data: bytes) -> None:
        self.relay.last = self.time()
        out = self.feed(data)
        if out:
            self.write(out)
        if self.reader.noted:
            self.reader.noted = False
            self.relay.noted(self)

    def eof_received(self) -> None:
        pass  # the transport closes itself: connection_lost

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.relay.side_lost(self)

    # The transport's flow control: a peer that does not take what is written to it holds
    # back what is read for it.
    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.peer.transport.resume_reading()


class Relay:
    """One session between a client's connection and its upstream's, both past the 101.
    ``over`` is called once both connections are closed."""

    def __init__(
        self,
        client: Held,
        upstream: Held,
        idle_seconds: float,
        limit: int,
        over: Callable[[Relay], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.time = loop.time
        self.last = self.time()
        self.idle_seconds = idle_seconds
        self.over = over
        self.client = Side(self, client.transport, FrameReader(True, limit))
        self.upstream = Side(self, upstream.transport, FrameReader(False, limit))
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.client.write, self.upstream.write = upstream.transport.write, client.transport.write
        self.client.mask = True
        self.held = (client, upstream)
        self.ending: tuple[int, str] | None = None  # the gateway's close: code and reason
        self.why: str | None = None  # why the gateway ended it, for the access log
        self.idle: asyncio.TimerHandle | None = None
        self.cut: asyncio.TimerHandle | None = None
        self.done = False

    def start(self) -> None:
        """Take both connections over from their ``Held`` protocols, and relay what they kept:
        the upstream's first frames (sent with its 101), the client's early ones."""
        self.idle = self.loop.call_at(self.last + self.idle_seconds, self._idle)
        client, upstream = self.held
        self.client.transport.set_protocol(self.client)
        self.upstream.transport.set_protocol(self.upstream)
        for held, side, other in (
            (upstream, self.upstream, client),
            (client, self.client, upstream),
        ):
            if not other.lost:  # kept bytes pass though their sender may have gone since
                for data in held.kept:
                    side.data_received(data)
        for held, side in ((client, self.client), (upstream, self.upstream)):
            if held.lost:
                side.connection_lost(None)
            else:
                side.transport.resume_reading()
        if client.shutting_down:
            self.shutdown()

    def shutdown(self) -> None:
        """The server's graceful shutdown (the session is one of its connections)."""
        self.end(GOING_AWAY, "going away", "shutting_down")

    def end(self, code: int, reason: str, why: str) -> None:
        """End the session from the gateway: each direction at its next frame boundary."""
        if self.ending is not None or self.done:
            return
        self.ending = (code, reason)
        self.why = why
        if self.idle is not None:
            self.idle.cancel()
        self._cut_after(CLOSE_SECONDS)
        for side in (self.client, self.upstream):
            if side.reader.stop():
                self._tell(side)

    def noted(self, side: Side) -> None:
        """``side``'s reader has something to say: a frame refused, a stop, a close frame."""
        reader = side.reader
        if reader.refused is not None and self.ending is None:
            code, reason = reader.refused
            self.end(code, reason, reason.replace(" ", "_"))
        elif self.ending is not None and not reader.passing:
            self._tell(side)
        client, upstream = self.client.reader, self.upstream.reader
        closed = (client.close or client.refused) and (upstream.close or upstream.refused)
        if closed and not self.client.transport.is_closing():
            # Both sides have sent their close frames: the server's end closes first (§7.1.1).
            self.client.transport.close()
            self._cut_after(CLOSE_SECONDS)

    def _tell(self, side: Side) -> None:
        """``side``'s direction has stopped at a boundary: its peer gets the gateway's close."""
        peer = side.peer
        if side.told or self.ending is None or peer.lost:
            return
        side.told = True
        code, reason = self.ending
        # A client-to-server frame is masked with a fresh, unpredictable key (§5.3).
        peer.transport.write(close_frame(code, reason, os.urandom(4) if side.mask else None))

    def side_lost(self, side: Side) -> None:
        if side.peer.lost:
            self._over()
        else:
            side.peer.transport.close()  # after what was written to it is sent
            self._cut_after(CLOSE_SECONDS)

    def _cut_after(self, seconds: float) -> None:
        if self.cut is None:
            self.cut = self.loop.call_later(seconds, self._cut)

    def _cut(self) -> None:
        for side in (self.client, self.upstream):
            if not side.lost:
                side.transport.abort()

    def _idle(self) -> None:
        deadline = self.last + self.idle_seconds
        if self.time() >= deadline:
            self.end(GOING_AWAY, "idle timeout", "idle_timeout")
        else:
            self.idle = self.loop.call_at(deadline, self._idle)

    def _over(self) -> None:
        if self.done:
            return
        self.done = True
        if self.idle is not None:
            self.idle.cancel()
        if self.cut is not None:
            self.cut.cancel()
        self.over(self)
