"""The upstream's half of a WebSocket handshake: a connection (TLS for https upstreams), the
upgrade request the gateway writes (`upgrade_head`), and the answer read by httptools: a 101,
whose connection becomes the session's, or another answer, read whole (up to ``MAX_BODY``) to
be passed on.

The route timeout bounds it all, connecting included: past it, 504; a refused or broken
connection, or an answer that is not HTTP, 502 (``gateway.http.client.UpstreamError``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from dataclasses import dataclass

import httptools

from core.credentials import carries_secret
from gateway.http.client import Origin, UpstreamError
from gateway.http.refusals import MAX_HEAD_BYTES
from gateway.ws_relay import Held

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
MAX_BODY = 1024 * 1024  # of an answer that refuses the upgrade, as the websockets client's

# The handshake's own headers: the client's key, version and extensions are written upstream by
# `upgrade_head` as they came, its subprotocols less any carrying a secret; the upstream's
# answers come back in its 101 (RFC 6455 §4.1, §4.2.2).
HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
    }
)
PASSED = (b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions")


def upgrade_head(
    headers: list[tuple[bytes, bytes]], secret_marks: tuple[bytes, ...]
) -> list[tuple[bytes, bytes]]:
    """The upgrade's own headers for the upstream: the client's key, version and extensions as
    they came (the upstream's accept and extension answers then hold end to end), its
    subprotocols less any carrying a secret."""
    own = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")]
    own += [(name, value) for name, value in headers if name in PASSED]
    protocols = offered(headers, secret_marks)
    if protocols:
        own.append((b"sec-websocket-protocol", b", ".join(protocols)))
    return own


def offered(headers: list[tuple[bytes, bytes]], secret_marks: tuple[bytes, ...]) -> list[bytes]:
    """The subprotocols the client offered, less any holding a string of our secret's shape:
    browsers cannot set headers on a WebSocket, so some clients carry their key there, and it
    must not reach the upstream (`core.credentials.carries_secret`)."""
    names = [
        name.strip()
        for key, value in headers
        if key == b"sec-websocket-protocol"
        for name in value.split(b",")
    ]
    return [name for name in names if name and not carries_secret(name, secret_marks)]


@dataclass(frozen=True)
class Answer:
    """The upstream's answer to the upgrade: its status, headers (names lower-cased) and, when
    it refused, its body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""

    def says_websocket(self, key: bytes | None) -> bool:
        """A 101 switching to WebSocket (RFC 6455 §4.2.2: ``Upgrade: websocket``) that answers
        the client's ``key``: the gateway is the upstream's client, which fails a handshake
        whose ``Sec-WebSocket-Accept`` is not the key's (§4.1)."""
        upgrade = [value for name, value in self.headers if name == b"upgrade"]
        accept = [value.strip() for name, value in self.headers if name == b"sec-websocket-accept"]
        return (
            self.status == 101
            and [value.strip().lower() for value in upgrade] == [b"websocket"]
            and key is not None
            and accept == [accept_of(key)]
        )


def client_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The client's one ``Sec-WebSocket-Key``, as it went upstream; None for none or several."""
    keys = [value.strip() for name, value in headers if name == b"sec-websocket-key"]
    return keys[0] if len(keys) == 1 else None


def accept_of(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` that answers ``key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID, usedforsecurity=False).digest())


class Reading(Held):
    """The upstream's connection while its answer is read; once it has said 101, what follows
    is kept for the relay, as any ``Held`` connection's."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(None)
        self.parser = httptools.HttpResponseParser(self)
        self.answered: asyncio.Future[Answer] = loop.create_future()
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.body: list[bytes] = []
        self.body_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.answered.done():
            super().data_received(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # The parser stops at the end of a 101's head: the rest is the session's.
            offset = upgrade.args[0]
            self._settle(Answer(101, self.headers))
            if offset < len(data):
                super().data_received(data[offset:])
        except (httptools.HttpParserError, UpstreamError) as exc:
            self._fail(f"answered the upgrade with something that is not HTTP/1.1 ({exc})")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.answered.done():
            return
        if self.status >= 200 and self.status != 101:  # a body delimited by the close
            self._settle(Answer(self.status, self.headers, b"".join(self.body)))
        else:
            self._fail("closed the connection before answering the upgrade")

    # -- the parser's callbacks

    def on_message_begin(self) -> None:
        self.status = 0
        self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD_BYTES:
            raise UpstreamError(False, f"an answer head over {MAX_HEAD_BYTES} bytes")
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY:
            raise UpstreamError(False, f"an answer body over {MAX_BODY} bytes")
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            return  # an interim answer (100 Continue), then the one that counts; 101 excepted
        self._settle(Answer(self.status, self.headers, b"".join(self.body)))

    def _settle(self, answer: Answer) -> None:
        if not self.answered.done():
            self.answered.set_result(answer)

    def _fail(self, detail: str) -> None:
        if not self.answered.done():
            self.answered.set_exception(UpstreamError(False, detail))
        if self.transport is not None:
            self.transport.close()


async def handshake(
    where: Origin, context: ssl.SSLContext | None, head: bytes, timeout: float
) -> tuple[Answer, Reading]:
    """Connect to ``where``, write the upgrade request ``head``, read the answer: the answer
    and the connection, still open for a 101 (closed for any other answer)."""
    loop = asyncio.get_running_loop()
    reading: Reading | None = None
    try:
        async with asyncio.timeout(timeout):
            _, reading = await loop.create_connection(
                lambda: Reading(loop),
                where.host,
                where.port,
                ssl=context,
                server_hostname=where.host if context is not None else None,
            )
            reading.transport.write(head)
            answer = await reading.answered
    except TimeoutError:
        _close(reading)
        raise UpstreamError(True, f"no answer within {timeout} s") from None
    except OSError as exc:  # refused, reset, a TLS failure
        _close(reading)
        raise UpstreamError(False, str(exc) or type(exc).__name__) from None
    except BaseException:  # its failure (UpstreamError), or the client gone (cancelled)
        _close(reading)
        raise
    if answer.status != 101:
        _close(reading)
    return answer, reading


def _close(reading: Reading | None) -> None:
    if reading is not None:
        reading.answered.cancel()  # nobody waits for it any longer
        if reading.transport is not None:
            reading.transport.close()
