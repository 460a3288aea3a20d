"""WebSocket frames read by their headers only (RFC 6455 §5.2), one direction of a session at a
time: where each frame ends, so that a relay copying bytes as they come can stop at a frame
boundary, and what a frame says before it passes (its size against a bound, its mask bit, a
close frame's code and reason). No I/O: it is fed bytes and says which of them may pass, so its
tests feed it bytes split anywhere (``tests/test_ws_frames.py``).

Payloads are skipped, never unmasked or copied; a close frame (at most 125 bytes, §5.5) is the
one payload read, to note its code. A frame is passed only once its header is whole (a header
split across reads is held, at most 14 bytes; a close frame is held whole), so a frame refused
for its header has had none of its bytes passed, and the bytes passed always end either inside
a frame whose header passed or at a boundary.
"""

from __future__ import annotations

CLOSE = 8
PROTOCOL_ERROR = 1002  # RFC 6455 §7.4.1
TOO_BIG = 1009
NO_CODE = 1005  # a close frame without a code (§7.1.5); never sent


class FrameReader:
    """One direction's frames. ``masked``: what the mask bit of every frame must be (set from
    client to server, clear from server to client, §5.1); ``limit``: the largest payload a
    frame may have.

    ``feed`` returns what may pass of the bytes given (all of them, in the common case the
    very object given); after a stop (`stop`, or a refused frame) the bytes are still read, to
    note a close frame, but none pass. ``noted`` is set whenever there is something for the
    relay to look at: the reader stopped, a close frame came, a frame was refused."""

    __slots__ = (
        "close",
        "data_bytes",
        "held",
        "left",
        "limit",
        "mask_bit",
        "masked",
        "noted",
        "passing",
        "plain",
        "refused",
        "stopping",
    )

    def __init__(self, masked: bool, limit: int) -> None:
        self.masked = masked
        self.mask_bit = 0x80 if masked else 0
        self.limit = limit
        self.left = 0  # bytes of the frame that has begun passing still to come
        self.held = b""  # the start of the next frame, not passed yet: its header is not whole
        self.stopping = False  # pass nothing past the next boundary
        self.passing = True
        self.data_bytes = 0  # payload bytes of the data frames passed (headers not counted)
        self.close: tuple[int, str] | None = None  # the first close frame read
        self.refused: tuple[int, str] | None = None  # the close code and reason a frame earned
        self.noted = False
        # Nothing held, no stop asked, nothing refused: a read that is one small data frame
        # whole (what a message of a chat or an echo is) is passed by the first lines of `feed`.
        self.plain = True

    @property
    def at_boundary(self) -> bool:
        """No frame is part-way through: what has passed ends where a frame ends."""
        return self.left == 0

    def stop(self) -> bool:
        """Pass nothing past the next frame boundary. True when that is now (the bytes passed
        so far end at one, or the reader has stopped already)."""
        self.stopping = True
        self.plain = False
        if self.passing and self.left == 0:
            self.passing = False
            self.noted = True
        return not self.passing

    def feed(self, data: bytes) -> bytes:
        """Read the next bytes of this direction; returns what of them may pass."""
        if self.plain and not self.left and len(data) >= 2:
            second = data[1]
            length = second & 0x7F
            if (
                length < 126
                and second & 0x80 == self.mask_bit
                and data[0] & 0x0F < CLOSE
                and length + (6 if second & 0x80 else 2) == len(data)
            ):
                self.data_bytes += length
                return data
        return self._feed(data)

    def _feed(self, data: bytes) -> bytes:
        if self.refused is not None:
            return b""
        if self.held:
            data = self.held + data
            self.held = b""
        size = len(data)
        left = self.left
        if left > size:  # inside a frame whose header passed: all of it passes
            self.left = left - size
            return data if self.passing else b""
        passed = size if self.passing else 0
        pos = left
        self.left = 0
        while True:
            # `pos` is a frame boundary.
            if self.stopping and self.passing:
                passed = pos
                self.passing = False
                self.noted = True
            if pos == size:
                break
            end = self._frame(data, pos, size)
            if end < 0:  # its header (or the close frame) is not whole yet: held
                self.held = data[pos:]
                if self.passing:
                    passed = pos
                break
            if self.refused is not None:
                if self.passing:
                    passed = pos
                    self.passing = False
                break
            if end > size:
                self.left = end - size
                break
            pos = end
        self.plain = not self.held and not self.stopping and self.refused is None
        if passed == size and self.passing:
            return data
        return data[:passed]

    def _frame(self, data: bytes, pos: int, size: int) -> int:
        """The frame starting at ``pos``: where it ends, or -1 when more bytes are needed to
        read its header; a frame refused sets ``refused``."""
        if size - pos < 2:
            return -1
        first = data[pos]
        second = data[pos + 1]
        length = second & 0x7F
        start = pos + 2
        if length == 126:
            start += 2
            if start > size:
                return -1
            length = int.from_bytes(data[pos + 2 : start], "big")
        elif length == 127:
            start += 8
            if start > size:
                return -1
            length = int.from_bytes(data[pos + 2 : start], "big")
        masked = second & 0x80
        if masked:
            start += 4
            if start > size:
                return -1
        if bool(masked) != self.masked:
            # §5.1: a server closes on an unmasked client frame, a client on a masked one.
            return self._refuse(PROTOCOL_ERROR, "masked frame" if masked else "unmasked frame")
        if length > self.limit:
            return self._refuse(TOO_BIG, "frame too large")
        opcode = first & 0x0F
        if opcode == CLOSE:
            if length > 125:  # §5.5: a control frame's payload is at most 125 bytes
                return self._refuse(PROTOCOL_ERROR, "close frame too large")
            if start + length > size:
                return -1
            if self.close is None:
                payload = data[start : start + length]
                if masked:
                    key = data[start - 4 : start]
                    payload = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
                self.close = close_code(payload)
                self.noted = True
        elif opcode < CLOSE and self.passing:
            self.data_bytes += length
        return start + length

    def _refuse(self, code: int, reason: str) -> int:
        self.plain = False
        self.refused = (code, reason)
        self.noted = True
        return 0


def close_code(payload: bytes) -> tuple[int, str]:
    """A close frame's code and reason (§5.5.1); 1005 for one without a code."""
    if len(payload) < 2:
        return NO_CODE, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")


def close_frame(code: int, reason: str, mask: bytes | None = None) -> bytes:
    """A close frame of the gateway's own: unmasked to a client, masked with ``mask`` (four
    bytes, §5.3: fresh and unpredictable) to a server. The reason is cut to fit 125 bytes."""
    payload = code.to_bytes(2, "big") + reason.encode("utf-8")[:123]
    if mask is None:
        return bytes((0x80 | CLOSE, len(payload))) + payload
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes((0x80 | CLOSE, 0x80 | len(payload))) + mask + masked
