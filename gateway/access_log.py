"""The access log: one JSON line per request on the proxy listener, written off the request path.

The request path only appends a tuple to a list (no formatting, no I/O). Every 20 ms the event
loop turns what gathered into JSON lines in one go and hands the bytes to a thread of its own,
which only writes them: a slow disk, a full disk or a closed stdout never blocks the event loop,
and the thread, blocked in ``write`` with the GIL released, does not compete with the loop for it
(formatting in the thread did: with a line per request it cost 15-40% of the requests per second
on this 2-core machine, bench row 5a). When the writer falls behind by ``MAX_PENDING`` lines, new
ones are dropped and counted rather than grow memory; when a write fails, the lines are lost,
counted, and the failure logged once per outage. SIGUSR1 reopens the file (log rotation).

Never a secret or a hash: the entry holds the access key and project of the key, when known.
The query string is left out unless ``[log] access_query`` (it can carry secrets of other kinds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import msgspec

log = logging.getLogger("gateway.access")

MAX_PENDING = 100_000  # lines handed to the writer and not yet written
HAND_OVER_SECONDS = 0.02


class Line(msgspec.Struct):
    """One line, its fields in this order. Encoded by msgspec, a batch at a time
    (``encode_lines``): ~1 us a line where ``json.dumps`` of a dict and ``datetime.isoformat``
    took 7.6 us, on the event loop (bench row 5a, the access log on, was 0.84 of row 5)."""

    time: str  # ISO 8601, UTC, milliseconds
    request_id: str | None
    client: str | None
    method: str | None
    path: str
    route: str | None
    status: int | None
    reason: str | None
    access_key: str | None
    project_id: str | None
    request_bytes: int
    response_bytes: int
    total_ms: float
    upstream_ms: float | None


FIELDS = Line.__struct_fields__
Entry = tuple[Any, ...]  # the values of FIELDS, "time" as epoch seconds


class AccessLog:
    """Owned by ``Resources``: started and closed with it."""

    def __init__(self, destination: str) -> None:
        self.destination = destination  # "stdout" or a file path ("off" makes no AccessLog)
        self._queue: queue.SimpleQueue[tuple[bytes, int] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._gathered: list[Entry] = []
        self._in_writer = 0  # lines handed over and not yet written (approximate, for the bound)
        self._reopen = threading.Event()
        self.written = self.dropped = self.failed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._write, name="access-log", daemon=True)
        self._thread.start()

    def record(self, entry: Entry) -> None:
        """Called on the request path (the event loop): never blocks, never raises."""
        if not self._gathered:
            asyncio.get_running_loop().call_later(HAND_OVER_SECONDS, self._hand_over)
        self._gathered.append(entry)

    def _hand_over(self) -> None:
        entries, self._gathered = self._gathered, []
        if self._in_writer >= MAX_PENDING:
            self.dropped += len(entries)
            return
        self._in_writer += len(entries)
        self._queue.put_nowait((_lines(entries), len(entries)))

    def reopen(self) -> None:
        """SIGUSR1: the file was rotated; write to a new one at the same path."""
        self._reopen.set()

    def close(self) -> None:
        if self._gathered:
            self._hand_over()
        if self._thread is not None:
            self._queue.put_nowait(None)
            self._thread.join(5)
            self._thread = None

    # -- the writer thread ----------------------------------------------------------------------

    def _open(self) -> IO[bytes] | None:
        # Unbuffered, appending: each batch is one write(2), which O_APPEND keeps whole when
        # several workers log to one file (a buffered file could split a line between writes).
        if self.destination == "stdout":
            stdout: IO[bytes] | None = getattr(sys.stdout, "buffer", None)
            if stdout is None:
                log.warning("access log: standard output takes no bytes here; lines are dropped")
            return stdout
        try:
            return Path(self.destination).open("ab", buffering=0)
        except OSError as exc:
            log.warning("access log %s cannot be opened: %s", self.destination, exc)
            return None

    def _write(self) -> None:
        out = self._open()
        failing = False
        while True:
            item = self._queue.get()
            if item is None:
                _close(out)
                return
            lines, count = item
            if self._reopen.is_set():
                self._reopen.clear()
                _close(out)
                out = self._open()
            try:
                if out is None:
                    raise OSError("not open")
                out.write(lines)
                out.flush()
                self.written += count
                if failing:
                    log.warning("access log %s is written again", self.destination)
                failing = False
            except (OSError, ValueError) as exc:  # a full disk, a closed stdout
                self.failed += count
                if not failing:
                    log.warning("access log %s cannot be written: %s", self.destination, exc)
                failing = True
            finally:
                self._in_writer -= count


def _close(out: IO[bytes] | None) -> None:
    if out is not None and out is not getattr(sys.stdout, "buffer", None):
        with contextlib.suppress(OSError):  # what it still held could not be written either
            out.close()


_ENCODER = msgspec.json.Encoder()


def _lines(entries: list[Entry]) -> bytes:
    """The JSON lines of ``entries``. A string msgspec cannot encode (a lone surrogate: none of
    the gateway's fields can hold one today) sends the batch through ``json.dumps``, which
    escapes it, rather than lose it."""
    stamp = Stamp()
    try:
        return _ENCODER.encode_lines([Line(stamp(entry[0]), *entry[1:]) for entry in entries])
    except (UnicodeEncodeError, msgspec.EncodeError):
        return "".join(_line(stamp, entry) for entry in entries).encode()


def _line(stamp: Stamp, entry: Entry) -> str:
    record = dict(zip(FIELDS, entry, strict=True))
    record["time"] = stamp(entry[0])
    return json.dumps(record, separators=(",", ":")) + "\n"


class Stamp:
    """Epoch seconds as ``2026-12-06T17:37:16.843Z``: what ``datetime.isoformat`` makes of
    them (microseconds rounded half to even, then cut to milliseconds), with the date and time
    of day made once per second; the lines of a batch share a few seconds at most."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def __call__(self, time: float) -> str:
        second = int(time)
        micro = round((time - second) * 1_000_000)
        if micro == 1_000_000:
            second, micro = second + 1, 0
        if second != self.second:
            self.second = second
            self.text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{self.text}{micro // 1000:03d}Z"
