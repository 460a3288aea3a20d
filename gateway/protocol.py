"""uvicorn's httptools protocol with a bound on the request head, and JSON parser errors.

uvicorn's httptools protocol keeps every header it is sent (no limit), so a client could grow a
worker's memory without end. Here the request line and headers are counted as the parser hands
them over, and past ``MAX_HEAD_BYTES`` the connection gets 431 (RFC 6585 §5) and is closed.
Errors the parser raises (bad framing, two Content-Lengths, a CR in a header, ...) are answered
with the same JSON error shape as everything else the gateway says.
"""

from __future__ import annotations

import json
import random

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024


class _HeadTooLarge(Exception):
    pass


class GatewayHttpProtocol(HttpToolsProtocol):
    _head_bytes = 0
    _head_too_large = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._head_too_large = True
            raise _HeadTooLarge  # httptools turns it into an HttpParserError

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            status, reason = b"431 Request Header Fields Too Large", "headers_too_large"
            message = f"The request line and headers exceed {MAX_HEAD_BYTES} bytes."
        else:
            status, reason = b"400 Bad Request", "malformed_request"
            message = "The request is not valid HTTP/1.1 (framing, header syntax or encoding)."
        body = json.dumps(
            {
                "type": "bad_request",
                "reason": reason,
                "message": message,
                "request_id": f"{random.getrandbits(128):032x}",
            }
        ).encode()
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self.transport.close()


assert issubclass(httptools.HttpParserCallbackError, httptools.HttpParserError)
