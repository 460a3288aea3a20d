"""Writes held to the end of the loop iteration (gateway.http.batch), on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket

from gateway.http.batch import LIMIT, Batched, Flusher


async def connected() -> tuple[Batched, socket.socket, asyncio.Transport]:
    """A transport on one end of a socket pair, batched, and the other end to read from."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    return Batched(transport, Flusher(loop)), theirs, transport


def pending(theirs: socket.socket) -> bytes:
    """What has reached the other end so far."""
    try:
        return theirs.recv(1 << 20)
    except BlockingIOError:
        return b""


def test_writes_wait_for_the_end_of_the_iteration_and_leave_together() -> None:
    async def run() -> None:
        batched, theirs, transport = await connected()
        second, other, other_transport = await connected()
        second.flusher = batched.flusher  # one flusher for both, as the server's connections
        batched.write(b"HTTP/1.1 200 OK\r\n")
        batched.writelines([b"content-length: 2\r\n\r\n", b"ok"])
        second.write(b"two")
        assert pending(theirs) == b"" and pending(other) == b""
        assert len(batched.flusher.waiting) == 2  # one entry per transport, one call_soon
        await asyncio.sleep(0)  # the flusher ran before this task resumed
        assert pending(theirs) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        assert pending(other) == b"two"
        for transport_ in (transport, other_transport):
            transport_.close()
        theirs.close()
        other.close()
        await asyncio.sleep(0)

    asyncio.run(run())


def test_closing_sends_what_is_held_first_and_aborting_drops_it() -> None:
    async def run() -> None:
        batched, theirs, _ = await connected()
        batched.write(b"last words")
        batched.close()
        await asyncio.sleep(0.01)
        assert pending(theirs) == b"last words"
        assert theirs.recv(10) == b""  # then the end of the stream
        theirs.close()

        aborted, theirs, _ = await connected()
        aborted.write(b"never")
        aborted.abort()
        await asyncio.sleep(0.01)
        assert pending(theirs) == b""
        theirs.close()

    asyncio.run(run())


def test_a_large_write_is_not_held() -> None:
    """Past LIMIT bytes held, what is held goes at once (a stream's chunks are not hoarded)."""

    async def run() -> None:
        batched, theirs, transport = await connected()
        batched.write(b"a" * 10)
        batched.write(b"b" * LIMIT)
        assert not batched.out
        received = b""
        while len(received) < LIMIT + 10:
            await asyncio.sleep(0.001)
            received += pending(theirs)
        assert received == b"a" * 10 + b"b" * LIMIT
        transport.close()
        theirs.close()
        await asyncio.sleep(0)

    asyncio.run(run())


def test_a_write_after_the_close_for_writing_is_dropped() -> None:
    """A connection closed for writing (a lingering close) may still be written to by a late
    answer: the write is dropped, and the other connections' writes of that round leave."""

    async def run() -> None:
        ended, theirs, transport = await connected()
        second, other, other_transport = await connected()
        second.flusher = ended.flusher
        transport.write_eof()
        ended.write(b"too late")
        second.write(b"still sent")
        await asyncio.sleep(0)
        assert pending(other) == b"still sent"
        for transport_ in (transport, other_transport):
            transport_.close()
        theirs.close()
        other.close()
        await asyncio.sleep(0)

    asyncio.run(run())


def test_a_write_that_fails_holds_back_no_other_connection() -> None:
    """Whatever a held write raises, that connection is dropped (and the failure logged), and
    the other connections' writes of the same round still leave."""

    async def run() -> None:
        broken, theirs, transport = await connected()
        second, other, other_transport = await connected()
        second.flusher = broken.flusher
        broken.write("not bytes")  # type: ignore[arg-type]  # the transport refuses it
        second.write(b"still sent")
        await asyncio.sleep(0)
        assert pending(other) == b"still sent"
        assert transport.is_closing()  # the broken one was dropped
        other_transport.close()
        theirs.close()
        other.close()
        await asyncio.sleep(0)

    asyncio.run(run())
