"""The spend journal by itself (gateway.spend_journal): slots written and freed, the file grown,
and what a process killed with SIGKILL leaves for the node's sweepers to read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.spend_journal import FIRST_SIZE, HEADER, SLOT, SpendJournal, orphans, slots
from tests.support import ROOT


def lease(n: int) -> str:
    return f"{n:024x}"


def killed_writer(directory: Path, counts: dict[str, int]) -> None:
    """A process that journals ``counts`` (lease id -> spent), frees one more lease it held,
    then kills itself with SIGKILL."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from gateway.spend_journal import SpendJournal
        journal = SpendJournal(Path({str(directory)!r}))
        gone = journal.add("f" * 24)
        journal.counts[gone] = 99
        for lease_id, spent in {counts!r}.items():
            mark = journal.add(lease_id)  # first: it may grow the file, and `counts` with it
            journal.counts[mark] = spent
        journal.free(gone)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_a_killed_process_leaves_its_counts_for_a_sweeper(tmp_path: Path) -> None:
    counts = {lease(n): n * 7 for n in range(1, 200)}  # more than the first page holds
    killed_writer(tmp_path, counts)
    found = list(orphans(tmp_path))
    assert len(found) == 1
    orphan = found[0]
    assert orphan.trusted and orphan.pid > 0
    assert {e.lease_id: e.spent for e in orphan.entries} == counts  # the freed one is not there
    orphan.remove()
    orphan.close()
    assert list(tmp_path.iterdir()) == []


def test_a_living_processs_journal_is_never_read(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    journal.counts[journal.add(lease(1))] = 5
    try:
        assert list(orphans(tmp_path)) == []  # its lock is held, even from this process
    finally:
        journal.close()
    assert [e.spent for o in orphans(tmp_path) for e in o.entries] == [5]


def test_one_sweeper_at_a_time(tmp_path: Path) -> None:
    killed_writer(tmp_path, {lease(1): 3})
    for first in orphans(tmp_path):
        assert list(orphans(tmp_path)) == []  # held by the first sweeper meanwhile
        first.remove()
    assert list(orphans(tmp_path)) == []


def test_a_journal_from_before_the_machine_started_is_not_trusted(tmp_path: Path) -> None:
    """The page cache went with the last boot: the file may say less than was spent."""
    killed_writer(tmp_path, {lease(1): 3})
    (path,) = tmp_path.iterdir()
    with path.open("r+b") as file:
        file.seek(8)
        file.write(bytes(16))  # another boot's id
    (orphan,) = orphans(tmp_path)
    assert not orphan.trusted
    orphan.close()


def test_slots_are_freed_reused_and_the_file_grows(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    assert journal.path is not None and journal.path.stat().st_mode & 0o777 == 0o600
    marks = [journal.add(lease(n)) for n in range(slots(FIRST_SIZE))]
    for n, mark in enumerate(marks):
        journal.counts[mark] = n
    grown = journal.add(lease(1000))  # one more than the first page holds
    assert journal.path.stat().st_size == 2 * FIRST_SIZE
    journal.counts[grown] = 1000
    assert [journal.counts[m] for m in marks] == list(range(len(marks)))
    journal.free(marks[3])
    assert journal.add(lease(2000)) == marks[3]  # reused, its count back at 0
    assert journal.counts[marks[3]] == 0
    assert journal.in_use() == len(marks) + 1
    journal.close()
    assert journal.path.exists()  # leases still in it: kept for the next sweep


def test_a_journal_with_every_lease_settled_goes_at_close(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    journal.free(journal.add(lease(1)))
    journal.close()
    assert list(tmp_path.iterdir()) == []


def test_in_memory_only(tmp_path: Path) -> None:
    journal = SpendJournal()
    marks = [journal.add(lease(n)) for n in range(slots(FIRST_SIZE) + 1)]
    journal.counts[marks[-1]] = 4
    assert journal.path is None and journal.counts[marks[-1]] == 4
    journal.close()


def test_a_file_being_made_is_not_a_journal_yet(tmp_path: Path) -> None:
    """A journal is locked before it takes the name sweepers look for."""
    (tmp_path / f".{os.getpid()}-00000000.journal.new").write_bytes(bytes(HEADER + SLOT))
    assert list(orphans(tmp_path)) == []
    assert list(orphans(tmp_path / "absent")) == []


def test_an_unwritable_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        SpendJournal(tmp_path / "file" / "journal")
