"""This process's lease on one budget (``gateway.credits``): what the store granted it, the
ceiling written there (it spends only up to that), what it has spent and reported, and the slot
of the spend journal (``gateway.spend_journal``) where its spent count outlives the process."""

from __future__ import annotations

import math
import os

from core.plans import Budget, next_refill, period
from gateway.spend_journal import SpendJournal

MIN_BLOCK = 16  # credits (in units of the last cost) reserved at least, per budget


class Held:
    """This process's lease on one budget."""

    __slots__ = (
        "budget",
        "ceiling",
        "cost",
        "ends",
        "granted",
        "heard",
        "idle",
        "lease_id",
        "mark",
        "period",
        "renew_at",
        "reported",
        "spent",
        "store_remaining",
    )

    def __init__(self, budget: Budget, now: float, journal: SpendJournal) -> None:
        self.budget = budget
        self.lease_id = os.urandom(12).hex()
        self.mark = journal.add(self.lease_id)  # where its spent count is journaled
        self.period = period(budget.interval, now)
        # When the period ends (the lease with it); a budget that never refills never ends.
        self.ends = math.inf if budget.refill is None else next_refill(budget.refill.interval, now)
        self.granted = self.ceiling = self.spent = self.reported = 0
        self.store_remaining = 0
        self.cost = 1
        self.idle = 0
        self.renew_at = 0.0  # when the lease needs renewing even if nothing was spent
        self.heard = False  # the store has answered a report: its counts are known

    def headroom(self) -> int:
        """What to hold spendable beyond what is spent: twice what an interval spent, and at
        least MIN_BLOCK of the last cost."""
        return max(MIN_BLOCK * self.cost, 2 * (self.spent - self.reported))
