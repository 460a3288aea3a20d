"""The credits of the node's dead processes, given back: each journal a process left when it
died (``gateway.spend_journal``) is reported to the store, lease by lease
(``core.store.credits.settle``), then removed.

Safe to run from any process of the node at any time, and from several at once: a journal is
read only once the lock of its process has gone (nothing spends from it after that), one sweeper
at a time holds it, and the store settles each lease once, so a journal settled again after a
sweeper died between the commit and the removal gives nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from core.store import Database
from core.store import credits as store_credits
from gateway.spend_journal import orphans

log = logging.getLogger("gateway.credits")


async def settle_orphans(db: Database, directory: Path | None, clock: Callable[[], float]) -> int:
    """Settle the journals in ``directory`` whose processes are gone, one transaction each;
    how many were settled. Raises StoreUnavailable: the journal being settled stays for the
    next sweep."""
    if directory is None:
        return 0
    settled = 0
    for orphan in orphans(directory):
        if not orphan.trusted:
            log.warning(
                "credits: the spend journal %s was written before this machine last started, "
                "so its counts may be short: it is dropped, and its leases give back only what "
                "lay above their ceilings when they expire",
                orphan.path,
            )
        elif orphan.entries:
            now = clock()
            counts = [(entry.lease_id, entry.spent) for entry in orphan.entries]
            async with db.transaction() as w:
                await store_credits.settle_all(w, counts, now)
        orphan.remove()
        settled += 1
    return settled
