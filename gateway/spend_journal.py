"""A process's spend journal: for each credit lease it holds, what it has spent, in a small
memory-mapped file on the node (``[credits] journal_dir``), so that a process killed with
SIGKILL leaves its true counts behind for another process of the node to report to the store
(``gateway.credits``; docs/plans-and-credits.md has the proof that this never admits more than
a balance held).

A spend is one 8-byte store into the mapping, made before the request is admitted: the kernel's
page cache holds what a process wrote whatever becomes of the process, and every process that
opens the file reads the same pages. Nothing is synced to disk: a machine that loses power or
restarts loses the page cache, and the file it leaves may hold counts older than the truth, so
a journal written before the machine last booted (its header names the boot) is never reported.

Each process holds an exclusive ``flock`` on its own file while it lives; the kernel lets go of
it when the process dies, however it dies. A file whose lock can be taken is an orphan: its
process is gone, nothing will write to it again, and what it says is final.

The file: a 64-byte header (``MAGIC``, the boot id, the writer's pid), then 32-byte slots, each
a lease id (24 ASCII bytes, zeros when the slot is free) and the spent count (an unsigned 64-bit
integer, aligned, so one store writes it whole).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"GWSPEND1"
HEADER = 64  # MAGIC, boot id (16 bytes), pid (8 bytes), then zeros
SLOT = 32  # lease id, count
ID_BYTES = 24  # a lease id: 12 random bytes as hex
FIRST_SIZE = 4096  # one page: 126 slots; doubled when a process holds more leases
SUFFIX = ".journal"

log = logging.getLogger("gateway.credits")
_skipped: set[Path] = set()  # what this process has said it cannot read, said once each


def boot_id() -> bytes:
    """This boot of the machine, 16 bytes (Linux); empty where the kernel does not say, and
    then no journal is trusted after its process (``Orphan.trusted``)."""
    try:
        text = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return b""
    return bytes.fromhex(text.replace("-", ""))


class SpendJournal:
    """This process's journal: one slot per lease it holds. Made by ``Resources`` at start-up
    (or in memory only, where there is no directory), written by ``gateway.credits.Wallet``.

    ``counts`` is the mapping as unsigned 64-bit words: a lease's count is ``counts[mark]``,
    ``mark`` being what `add` answered. It is replaced when the file grows.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.path: Path | None = None
        self._fd = -1
        if directory is None:
            self._map = mmap.mmap(-1, FIRST_SIZE)
        else:
            self._map = self._create(directory)
        self.counts = memoryview(self._map).cast("Q")
        self._free = list(reversed(range(slots(FIRST_SIZE))))

    def _create(self, directory: Path, content: bytes | None = None) -> mmap.mmap:
        """The file (holding ``content``, else a header and empty slots), locked, then renamed
        to the name sweepers look at: a sweeper never sees a journal before its process holds
        the lock."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{os.getpid()}-{os.urandom(4).hex()}{SUFFIX}"
        partial = directory / f".{name}.new"
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            size = FIRST_SIZE if content is None else len(content)
            os.ftruncate(fd, size)
            found = mmap.mmap(fd, size)
            if content is None:
                found[:HEADER] = header()
            else:
                found[:] = content
            os.replace(partial, directory / name)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        self._fd = fd
        self.path = directory / name
        return found

    def relink(self) -> bool:
        """Make the file again if it is no longer where sweepers look (its directory was
        removed or emptied while this process ran: what it journaled since went nowhere a
        sweeper could read): a new file with every count, swapped in between two spends.
        Whether it was made again; raises OSError when it cannot be."""
        if self.directory is None or self.path is None:
            return False
        try:
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                return False
        except FileNotFoundError:
            pass
        old_fd, old_map = self._fd, self._map
        grown = self._create(self.directory, old_map[:])  # sets _fd and path on success
        self.counts.release()
        old_map.close()
        os.close(old_fd)
        self._map = grown
        self.counts = memoryview(grown).cast("Q")
        return True

    def add(self, lease_id: str) -> int:
        """A slot for a new lease, its count at 0; its ``mark`` in ``counts``. Written before
        the lease is first reserved, so a lease the store has granted always has its slot."""
        encoded = lease_id.encode("ascii")
        assert len(encoded) == ID_BYTES, lease_id
        if not self._free:
            self._grow()
        slot = self._free.pop()
        at = HEADER + slot * SLOT
        mark = (at + ID_BYTES) // 8
        self.counts[mark] = 0  # before the id: a reader never pairs it with an old count
        self._map[at : at + ID_BYTES] = encoded
        return mark

    def free(self, mark: int) -> None:
        """The lease is settled in the store: its slot is no longer reported."""
        at = mark * 8 - ID_BYTES
        self._map[at : at + ID_BYTES] = bytes(ID_BYTES)
        self._free.append((at - HEADER) // SLOT)

    def in_use(self) -> int:
        return slots(len(self._map)) - len(self._free)

    def _grow(self) -> None:
        old = len(self._map)
        size = 2 * old
        if self._fd < 0:
            grown = mmap.mmap(-1, size)
            grown[:old] = self._map[:]
        else:
            os.ftruncate(self._fd, size)
            grown = mmap.mmap(self._fd, size)
        self.counts.release()
        self._map.close()
        self._map = grown
        self.counts = memoryview(grown).cast("Q")
        self._free[:0] = reversed(range(slots(old), slots(size)))

    def close(self) -> None:
        """At exit: the file goes when every lease in it was settled; otherwise it stays, for
        the next sweep on this node (its lock goes with the descriptor)."""
        if self.path is not None and self.in_use() == 0:
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.counts.release()
        self._map.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def header() -> bytes:
    written = MAGIC + boot_id().ljust(16, b"\0") + struct.pack("<Q", os.getpid())
    return written.ljust(HEADER, b"\0")


def slots(size: int) -> int:
    return (size - HEADER) // SLOT


@dataclass(frozen=True)
class Entry:
    lease_id: str
    spent: int


class Orphan:
    """The journal of a process that is gone, locked by this process while it is settled."""

    def __init__(self, path: Path, fd: int, data: bytes) -> None:
        self.path = path
        self._fd = fd
        self.pid = struct.unpack_from("<Q", data, 24)[0] if len(data) >= HEADER else 0
        mine = boot_id()
        # Written before the machine last booted: the page cache it was written to is gone,
        # and the file may say less than was spent.
        self.trusted = data[:8] == MAGIC and bool(mine) and data[8:24] == mine.ljust(16, b"\0")
        entries = []
        for at in range(HEADER, len(data) - SLOT + 1, SLOT):
            lease_id = data[at : at + ID_BYTES]
            if lease_id.strip(b"\0"):
                (spent,) = struct.unpack_from("<Q", data, at + ID_BYTES)
                with contextlib.suppress(UnicodeDecodeError):
                    entries.append(Entry(lease_id.decode("ascii"), spent))
        self.entries = tuple(entries)

    def remove(self) -> None:
        """Settled: the file goes (the lock is still held, so no other sweeper reads it)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def orphans(directory: Path) -> Iterator[Orphan]:
    """The journals in ``directory`` whose processes are gone, one at a time, each locked until
    the caller closes it (a sweeper of another process skips it meanwhile)."""
    try:
        names = sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX))
    except FileNotFoundError:
        return
    for path in names:
        try:
            # Only a regular file is a journal; a symlink is not followed (nor a pipe or a
            # device opened, which may block or do something on open).
            found = os.lstat(path)
            if not stat.S_ISREG(found.st_mode):
                raise OSError(f"it is not a regular file (mode {stat.filemode(found.st_mode)})")
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            continue  # settled meanwhile
        except OSError as exc:
            # Skipped, not raised: one entry no sweep can read (a journal of another user's
            # gateway, a directory) must not stop the others, nor the round of reports.
            if path not in _skipped:
                _skipped.add(path)
                log.warning(
                    "credits: %s is not a spend journal this process can read (%s): skipped; "
                    "move it out of journal_dir",
                    path,
                    exc.strerror or exc,
                )
            continue
        orphan = None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process lives (or another sweeper holds it)
            # Removed by another sweeper between the open and the lock: already settled.
            if path.stat().st_ino != os.fstat(fd).st_ino:
                continue
            data = os.pread(fd, os.fstat(fd).st_size, 0)
            orphan = Orphan(path, fd, data)
            yield orphan
        except FileNotFoundError:
            continue
        finally:
            if orphan is not None:
                orphan.close()
            else:
                os.close(fd)
