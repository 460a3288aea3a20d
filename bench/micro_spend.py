"""Micro-benchmark of one credit spend on the request path (``Wallet.spend``), without HTTP or
store: the process holds a lease with room to spare, as it does between two reports.

    .venv/bin/python bench/micro_spend.py [--rounds 20]

Prints the fastest round's cost of a spend in nanoseconds (this VM's CPU speed moves from one
minute to the next: the fastest round is the one least disturbed). It runs on a tree without the
spend journal too (the Wallet of before it), so two trees can be compared with PYTHONPATH.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

from core.plans import Budget
from gateway import credits

N = 200_000
BUDGET = Budget("key:GWKbench", 10**15, None)


def holding_wallet(directory: Path) -> Any:
    """A wallet holding a lease on BUDGET that nothing will run out of; its journal a file in
    ``directory`` where the tree has one."""
    wallet: Any = credits.Wallet(None, time.time)  # no store is asked
    if hasattr(wallet, "open_journal"):
        from gateway.spend_journal import SpendJournal

        wallet.open_journal(SpendJournal(directory))
        held = wallet._new(BUDGET, time.time())
    else:
        held = credits.Held(BUDGET, time.time())
    held.granted = held.ceiling = 10**15
    wallet.held[BUDGET.owner] = held
    return wallet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        wallet = holding_wallet(Path(directory))
        times = timeit.repeat(
            "spend(budget, 1)",
            globals={"spend": wallet.spend, "budget": BUDGET},
            number=N,
            repeat=args.rounds,
        )
        journal = getattr(wallet, "journal", None)
        print(f"spend: {min(times) / N * 1e9:.1f} ns (fastest of {args.rounds} x {N:,})")
        print(f"journal: {getattr(journal, 'path', None) or 'none (the tree has no journal)'}")
        if journal is not None:
            journal.close()


if __name__ == "__main__":
    main()
