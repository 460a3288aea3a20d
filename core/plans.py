"""Plans, credits and metadata as values: checked on the way in (the admin service), and
resolved for one key when the verifier loads it (which plan, which budget, which limits).

Precedence, field by field (docs/plans-and-credits.md says why):

- a key's own ``rate_limits`` always apply, per key;
- credits: the key's own, else its plan's (a budget of the key alone); else its bearer's own,
  else its bearer's plan's (one budget shared by every key of the bearer);
- the plan's rate limits: the key's plan's (per key); else the bearer's own, else the bearer's
  plan's (one log shared by every key of the bearer);
- the plan a key is on (its name reaches the upstream): the key's, else its bearer's;
- metadata: the key's merged over that plan's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.policies import PolicyError, RateLimit

INTERVALS = ("daily", "monthly")
MAX_CREDITS = 10**15
MAX_METADATA_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Refill:
    amount: int
    interval: str  # "daily" or "monthly": back to ``amount`` at each UTC day or month


@dataclass(frozen=True, slots=True)
class Credits:
    """A budget: ``remaining`` to start with, and how it refills (None: never)."""

    remaining: int
    refill: Refill | None = None

    def to_json(self) -> dict[str, Any]:
        refill = (
            None
            if self.refill is None
            else {
                "amount": self.refill.amount,
                "interval": self.refill.interval,
            }
        )
        return {"remaining": self.remaining, "refill": refill}


def _count(name: str, value: object) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CREDITS:
        raise PolicyError(f"{name} must be a whole number from 0 to {MAX_CREDITS}, not {value!r}")
    return value


def _interval(name: str, value: object) -> str:
    if value not in INTERVALS:
        raise PolicyError(f"{name} must be daily or monthly, not {value!r}")
    return str(value)


def key_credits(value: object) -> Credits | None:
    """A key's or a bearer's ``credits``: ``{"remaining": N, "refill": {"amount": N,
    "interval": "daily" | "monthly"} | null}``, or null (unlimited)."""
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or not set(value) <= {"remaining", "refill"}
        or ("remaining" not in value)
    ):
        raise PolicyError(
            'credits must be {"remaining": N, "refill": {"amount": N, "interval": "monthly"}} '
            "or null"
        )
    refill = value.get("refill")
    if refill is None:
        return Credits(_count("credits remaining", value["remaining"]))
    if not isinstance(refill, dict) or set(refill) != {"amount", "interval"}:
        raise PolicyError('credits refill must be {"amount": N, "interval": "daily"} or null')
    return Credits(
        _count("credits remaining", value["remaining"]),
        Refill(
            _count("credits refill amount", refill["amount"]),
            _interval("credits refill interval", refill["interval"]),
        ),
    )


def plan_credits(value: object) -> Credits | None:
    """A plan's ``credits``: ``{"amount": N, "refill": "daily" | "monthly" | null}``: each budget
    on the plan starts at ``amount`` and goes back to it at each refill."""
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or not set(value) <= {"amount", "refill"}
        or ("amount" not in value)
    ):
        raise PolicyError('a plan\'s credits must be {"amount": N, "refill": "monthly"} or null')
    amount = _count("credits amount", value["amount"])
    interval = value.get("refill")
    if interval is None:
        return Credits(amount)
    return Credits(amount, Refill(amount, _interval("credits refill", interval)))


def plan_credits_json(credits: Credits | None) -> dict[str, Any] | None:
    if credits is None:
        return None
    return {
        "amount": credits.remaining,
        "refill": None if credits.refill is None else credits.refill.interval,
    }


def metadata(value: object) -> dict[str, Any]:
    """A JSON object of at most ``MAX_METADATA_BYTES`` as compact JSON."""
    if not isinstance(value, dict):
        raise PolicyError('metadata must be a JSON object such as {"tier": "gold"}')
    try:
        # What Python's json reads but JSON is not (NaN, Infinity, a number too large for a
        # float), or no UTF-8 text holds (a lone surrogate): no upstream's parser reads it, and
        # no JSON answer of the API could carry it.
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise PolicyError("metadata is not valid Unicode text (a lone surrogate)") from None
    except ValueError:
        raise PolicyError(
            "metadata must be JSON: NaN and Infinity (or a number too large) are not JSON "
            "numbers; write such a value as a string"
        ) from None
    except RecursionError:
        raise PolicyError("metadata nests arrays or objects too deeply") from None
    size = len(compact(value))
    if size > MAX_METADATA_BYTES:
        raise PolicyError(
            f"metadata must be at most {MAX_METADATA_BYTES} bytes as compact JSON, not {size}"
        )
    return value


def compact(value: object) -> bytes:
    """Compact ASCII JSON: what goes in the ``X-Auth-Key-Metadata`` header (non-ASCII escaped,
    so a header never carries bytes an upstream might read in another charset)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, sort_keys=True).encode()


# -- credits as the columns hold them -------------------------------------------------------


def credits_column(credits: Credits | None) -> str | None:
    return None if credits is None else json.dumps(credits.to_json())


def credits_from_column(text: str | None) -> Credits | None:
    return None if text is None else key_credits(json.loads(text))


def plan_credits_column(credits: Credits | None) -> str | None:
    found = plan_credits_json(credits)
    return None if found is None else json.dumps(found)


def plan_credits_from_column(text: str | None) -> Credits | None:
    return None if text is None else plan_credits(json.loads(text))


# -- periods ----------------------------------------------------------------------------------


def period(interval: str | None, now: float) -> str:
    """The refill period ``now`` falls in (UTC): ``2026-12-07``, ``2026-12``, or ``""`` for a
    budget that never refills."""
    if interval is None:
        return ""
    day = datetime.fromtimestamp(now, UTC)
    return day.strftime("%Y-%m-%d") if interval == "daily" else day.strftime("%Y-%m")


def next_refill(interval: str, now: float) -> float:
    """When the period ``now`` falls in ends: the next UTC midnight, or first of a month."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "daily":
        return day.timestamp() + 86_400
    first = day.replace(day=1)
    following = (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )
    return following.timestamp()


def refill_text(
    interval: str | None, now: float | None = None, cost: int = 0, left: int = 0
) -> str:
    """The sentence a refused request reads: what is left if anything (less than the request
    costs), and when its credits come back."""
    if left > 0:
        start = f"This request costs {cost} credits and this key has {left} left"
    else:
        start = "This key has spent all its credits"
    if interval is None:
        return f"{start}, and they do not refill."
    when = next_refill(interval, time.time() if now is None else now)
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{start}; they refill at {stamp} ({interval})."


# -- resolution -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanRow:
    id: str
    name: str
    rate_limits: tuple[RateLimit, ...]
    credits: Credits | None
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Budget:
    """The credits one request spends from: whose balance (``key:AK`` or ``user:ID`` /
    ``application:ID``), what it starts at and how it refills."""

    owner: str
    initial: int
    refill: Refill | None

    @property
    def interval(self) -> str | None:
        return None if self.refill is None else self.refill.interval

    @property
    def refill_to(self) -> int:
        """What each new period starts at: the refill's amount (``--credits 2 --refill
        5/daily`` is 2 today, 5 each day after), else what the budget started at."""
        return self.initial if self.refill is None else self.refill.amount


@dataclass(frozen=True, slots=True)
class Resolved:
    plan: PlanRow | None
    tier_limits: tuple[RateLimit, ...]
    tier_owner: str  # whose logs hold tier_limits: the key's, or its bearer's
    budget: Budget | None
    metadata: dict[str, Any]


def resolve(
    access_key: str,
    bearer: str,
    key_credits_: Credits | None,
    key_metadata: dict[str, Any],
    key_plan: PlanRow | None,
    bearer_limits: tuple[RateLimit, ...],
    bearer_credits: Credits | None,
    bearer_plan: PlanRow | None,
) -> Resolved:
    """One key's plan, budget, plan limits and metadata, in the order the module says."""
    key_owner = f"key:{access_key}"
    budget: Budget | None = None
    if key_credits_ is not None:
        budget = Budget(key_owner, key_credits_.remaining, key_credits_.refill)
    elif key_plan is not None and key_plan.credits is not None:
        budget = Budget(key_owner, key_plan.credits.remaining, key_plan.credits.refill)
    elif bearer_credits is not None:
        budget = Budget(bearer, bearer_credits.remaining, bearer_credits.refill)
    elif bearer_plan is not None and bearer_plan.credits is not None:
        budget = Budget(bearer, bearer_plan.credits.remaining, bearer_plan.credits.refill)
    if key_plan is not None and key_plan.rate_limits:
        tier, tier_owner = key_plan.rate_limits, key_owner
    elif bearer_limits:
        tier, tier_owner = bearer_limits, bearer
    elif bearer_plan is not None:
        tier, tier_owner = bearer_plan.rate_limits, bearer
    else:
        tier, tier_owner = (), key_owner
    plan = key_plan if key_plan is not None else bearer_plan
    merged = {**(plan.metadata if plan is not None else {}), **key_metadata}
    return Resolved(plan, tier, tier_owner, budget, merged)
