"""The frame reader, fed bytes: every split of a stream passes it whole and in order, a stop
lands on a frame boundary, and the frames it must refuse have none of their bytes passed.
Frames are built here by hand from RFC 6455 §5.2, not by the module under test."""

from __future__ import annotations

import os

import pytest

from gateway.ws_frames import FrameReader, close_frame

LIMIT = 1 << 20


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    bit = 0x80 if mask is not None else 0
    if size < 126:
        head = bytes((first, bit | size))
    elif size < 1 << 16:
        head = bytes((first, bit | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, bit | 127)) + size.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def fragmented(masked: bool) -> tuple[bytes, int]:
    """A stream of frames of every length form, a message in fragments with pings between
    them, and a close at the end; and its data payload bytes."""
    key = b"\x11\x22\x33\x44" if masked else None
    parts = [
        frame(1, b"hello", mask=key),  # 7-bit length
        frame(2, b"b" * 300, mask=key),  # 16-bit length
        frame(2, b"first", fin=False, mask=key),
        frame(9, b"ping", mask=key),  # a control frame between fragments (§5.4)
        frame(0, b"x" * 125, fin=False, mask=key),
        frame(10, b"", mask=key),
        frame(0, b"last" * 40, mask=key),
        frame(1, b"", mask=key),  # an empty message
        frame(8, (1000).to_bytes(2, "big") + b"done", mask=key),
    ]
    return b"".join(parts), 5 + 300 + 5 + 125 + 160


@pytest.mark.parametrize("masked", [True, False])
def test_every_split_passes_the_stream_whole(masked: bool) -> None:
    stream, data = fragmented(masked)
    for at in range(len(stream) + 1):
        reader = FrameReader(masked, LIMIT)
        out = reader.feed(stream[:at]) + reader.feed(stream[at:])
        assert out == stream, at
        assert reader.data_bytes == data and reader.close == (1000, "done")
        assert reader.at_boundary and reader.refused is None


@pytest.mark.parametrize("masked", [True, False])
def test_byte_by_byte_passes_the_stream_whole(masked: bool) -> None:
    big = frame(2, os.urandom(70_000), mask=b"abcd" if masked else None)  # 64-bit length
    stream = big + fragmented(masked)[0]
    reader = FrameReader(masked, LIMIT)
    out = b"".join(reader.feed(stream[i : i + 1]) for i in range(len(stream)))
    assert out == stream
    assert reader.data_bytes == 70_000 + fragmented(masked)[1]


def test_a_header_split_anywhere_is_held_until_whole() -> None:
    head = frame(2, b"z" * 70_000)[:10]  # a 64-bit length: 10 header bytes
    for at in range(1, 10):
        reader = FrameReader(False, LIMIT)
        assert reader.feed(head[:at]) == b""  # nothing of a header passes before it is whole
        assert reader.feed(head[at:]) == head
        assert not reader.at_boundary


def test_a_stop_lands_on_the_next_frame_boundary() -> None:
    first, second = frame(2, b"a" * 1000), frame(2, b"b" * 10)  # headers of 4 and 2 bytes
    stream = first + second
    for at in range(len(stream) + 1):
        reader = FrameReader(False, LIMIT)
        passed = reader.feed(stream[:at])
        now = reader.stop()
        passed += reader.feed(stream[at:])
        if at < 4:  # no header whole yet: none passed, the stop is at once
            assert (passed, now) == (b"", True), at
        elif at < len(first):  # the frame that had begun passing ends, nothing after it
            assert (passed, now) == (first, False), at
        elif at < len(first) + 2:
            assert (passed, now) == (first, True), at
        else:
            assert (passed, now) == (stream, at == len(stream)), at
        assert not reader.passing and reader.at_boundary


def test_a_stop_at_a_boundary_is_now_and_a_held_header_never_passes() -> None:
    reader = FrameReader(False, LIMIT)
    assert reader.stop() is True
    assert reader.feed(frame(1, b"late")) == b""
    reader = FrameReader(False, LIMIT)
    assert reader.feed(frame(1, b"whole") + b"\x82") == frame(1, b"whole")
    assert reader.stop() is True  # the next frame's first byte was held, never passed
    assert reader.feed(b"\x03abc") == b""


def test_after_a_stop_a_close_is_still_read() -> None:
    """The reply to the gateway's own close: noted, not passed."""
    reader = FrameReader(True, LIMIT)
    reader.stop()
    reply = frame(8, (1008).to_bytes(2, "big") + b"ok", mask=b"\x01\x02\x03\x04")
    assert reader.feed(frame(1, b"more", mask=b"wxyz") + reply[:3]) == b""
    assert reader.close is None
    assert reader.feed(reply[3:]) == b""
    assert reader.close == (1008, "ok")
    assert reader.data_bytes == 0  # nothing passed after the stop is counted


@pytest.mark.parametrize(
    ("masked", "bad", "code", "reason"),
    [
        (True, frame(1, b"plain"), 1002, "unmasked frame"),  # §5.1
        (False, frame(1, b"masked", mask=b"abcd"), 1002, "masked frame"),
        (False, frame(2, b"x" * (LIMIT + 1)), 1009, "frame too large"),
        (True, frame(8, b"x" * 126, mask=b"abcd"), 1002, "close frame too large"),  # §5.5
    ],
)
def test_a_refused_frame_has_none_of_its_bytes_passed(
    masked: bool, bad: bytes, code: int, reason: str
) -> None:
    good = frame(1, b"fine", mask=b"abcd" if masked else None)
    for at in range(len(good), len(good) + 12):  # the bad frame's header split anywhere
        stream = good + bad
        reader = FrameReader(masked, LIMIT)
        passed = reader.feed(stream[:at]) + reader.feed(stream[at:])
        assert passed == good, at
        assert reader.refused == (code, reason) and reader.noted
        assert reader.feed(good) == b""


def test_the_gateways_close_frames_read_back() -> None:
    to_client = close_frame(1008, "invalid_token")
    assert to_client[1] & 0x80 == 0  # unmasked to a client
    reader = FrameReader(False, LIMIT)
    assert reader.feed(to_client) == to_client and reader.close == (1008, "invalid_token")
    to_upstream = close_frame(1001, "idle timeout", b"\x9a\x0b\x5c\x3d")
    assert to_upstream[1] & 0x80  # masked to a server (§5.3)
    reader = FrameReader(True, LIMIT)
    assert reader.feed(to_upstream) == to_upstream and reader.close == (1001, "idle timeout")
    assert len(close_frame(1000, "é" * 100)) <= 2 + 125  # a reason cut to fit a control frame
