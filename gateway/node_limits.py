"""Local rate limits counted per node: the workers of one `serve --workers N` share a journal.

Each worker keeps every sliding log of the node in its own memory (``LocalLimiter``), and the
workers keep those copies equal through a journal in shared memory: a ring of records (which
log, when the request leaves its window), one per limit a request was counted in, behind one
lock. A check takes the lock, replays the records the other workers wrote since its last look,
decides on logs now equal to the node's, appends its own records, and lets go. So the node
decides one request at a time, in one order: 3 per 10 s is 3 per node, whatever N is.

Why a journal and not the logs themselves in shared memory: the logs stay Python deques, which
the check already works on at its own speed; sharing adds one uncontended lock (a futex), a
few reads and writes of shared words, and the replay of what the other workers let through.

Two workers that read the clock at the same moment may record their requests in the other
order, microseconds apart: the later entry then leaves the log with the earlier one, so the
count is high for those microseconds, never low.

The journal holds ``CAPACITY`` records. A worker that has not looked for longer than the node
takes to write that many (an idle one catches up at every housekeeping round, 5 s) has lost
the oldest: it says so once, and until they leave their windows it counts too few.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
from multiprocessing.context import BaseContext
from typing import Any

from gateway.ratelimit import Decision, Limits, LocalLimiter, decision

log = logging.getLogger("gateway.ratelimit")

CAPACITY = 1 << 18  # records: 4 MiB of shared memory; at 50,000 counted requests a second, 5 s


class NodeJournal:
    """The shared memory and the lock: made by the parent before it starts its workers, and
    handed to each (picklable while a process is spawned, as multiprocessing's own are)."""

    def __init__(self, context: BaseContext, capacity: int = CAPACITY) -> None:
        assert capacity & (capacity - 1) == 0, "a power of two"
        self.lock = context.Lock()
        # The pid of the worker holding the lock (0: none), for ``release_for``.
        self.holder = context.RawArray(ctypes.c_int64, 1)
        self.written = context.RawArray(ctypes.c_uint64, 1)  # records ever written
        self.logs = context.RawArray(ctypes.c_uint64, capacity)
        self.expiries = context.RawArray(ctypes.c_double, capacity)

    def release_for(self, pid: int) -> bool:
        """The parent, seeing worker ``pid`` dead: if it died holding the lock (SIGKILL, the
        OOM killer, in the microseconds of a check), release it on its behalf. Otherwise the
        other workers waited on it for ever, their event loops frozen: they could neither drain
        nor exit, and their parent waited on them. Only the parent does this, once per dead
        worker, and nobody else can take the lock meanwhile, so it is released once."""
        if self.holder[0] != pid:
            return False
        self.holder[0] = 0
        self.lock.release()
        log.warning(
            "rate limits: worker %d died in a check; its lock on the journal is released", pid
        )
        return True


class NodeLimiter(LocalLimiter):
    """A ``LocalLimiter`` whose logs are the node's (``NodeJournal``)."""

    def __init__(self, journal: NodeJournal) -> None:
        super().__init__()
        # The lock's own C methods: `with lock` goes through Python-level __enter__ and
        # __exit__, 4x the cost.
        lock: Any = journal.lock
        self.acquire, self.release = lock.acquire, lock.release
        # Flat views of the shared arrays: indexing one costs what indexing a list does.
        self.written = memoryview(journal.written).cast("B").cast("Q")
        self.holder = memoryview(journal.holder).cast("B").cast("q")
        self.pid = os.getpid()
        self.log_ids = memoryview(journal.logs).cast("B").cast("Q")
        self.expiries = memoryview(journal.expiries).cast("B").cast("d")
        self.mask = len(self.log_ids) - 1
        # Records replayed or written by this process: one started late replays what the ring
        # still holds at its first check.
        self.seen = max(0, self.written[0] - len(self.log_ids))
        self.overrun = False

    def check(self, limits: Limits, now: float) -> Decision:
        self.acquire()
        self.holder[0] = self.pid
        try:
            written = self.written[0]
            if written != self.seen:
                self.catch_up(written)
            retry, fields = self.count(limits, now)
            if retry <= 0:
                for lim in limits.items:
                    at = written & self.mask
                    self.log_ids[at] = lim.log
                    self.expiries[at] = now + lim.window
                    written += 1
                self.written[0] = self.seen = written
        finally:
            self.holder[0] = 0
            self.release()
        return decision(limits, fields, retry)

    def catch_up(self, written: int) -> None:
        """Replay the records the other workers wrote since this one last looked (with the
        lock held)."""
        seen, mask = self.seen, self.mask
        if written - seen > mask + 1:
            if not self.overrun:
                self.overrun = True
                log.warning(
                    "rate limits: this worker fell %d records behind the node's journal; "
                    "the oldest are lost, and its counts are short until they leave their "
                    "windows",
                    written - seen - mask - 1,
                )
            seen = written - mask - 1
        logs, log_ids, expiries = self.logs, self.log_ids, self.expiries
        for index in range(seen, written):
            at = index & mask
            key = log_ids[at]
            entries = logs.get(key)
            if entries is None:
                entries = logs[key] = collections.deque()
            else:
                logs.move_to_end(key)
            entries.append(expiries[at])
        self.seen = written

    def trim(self, now: float) -> None:
        """Housekeeping: catch up (so an idle worker does not fall a whole journal behind),
        then drop the logs gone idle."""
        self.acquire()
        self.holder[0] = self.pid
        try:
            written = self.written[0]
            if written != self.seen:
                self.catch_up(written)
        finally:
            self.holder[0] = 0
            self.release()
        super().trim(now)
