"""Rate limits: a sliding log per key and limit (why a sliding log: ``core.policies``).

Two backends behind one answer (:class:`Decision`):
- :class:`LocalLimiter`: the logs live in this process, checked without an ``await`` (a cache
  hit on a limited route still awaits nothing but the upstream). With ``--workers N`` the
  workers share one journal of what each let through (``gateway.node_limits``), so a limit
  counts per node, whatever N is.
- ``gateway.redis_limits.RedisLimiter``: one sorted set per key and limit in Redis, shared by
  every worker and node; one Lua script checks every limit and records the request atomically,
  and the checks of one event-loop iteration share one round trip.
  When Redis does not answer within ``timeout_ms``, ``fail = "open"`` lets the request through
  and ``"closed"`` refuses it with 503; either way it is counted, and logged once per outage.

Every limit that applies must hold; a refused request consumes none of them.
"""

from __future__ import annotations

import collections
import hashlib
import logging
from dataclasses import dataclass
from math import ceil  # a name, not an attribute: looked up per limited request
from typing import NamedTuple

from core.policies import RateLimit

log = logging.getLogger("gateway.ratelimit")
Header = tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit as it applies to one request: whose log (``key``; ``log``, a number for it
    that every process of a node computes alike), its window as a float, and the prefix of its
    member in the RateLimit field (``"name";r=``)."""

    key: str
    rule: RateLimit
    window: float
    field: str
    log: int


def log_id(key: str) -> int:
    """A log's number, the same in every process (``hash()`` of a str is not): 63 bits of its
    BLAKE2b, worked out once per ``Limits``."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest()) >> 1


class Limits:
    """The limits one key is held to on one route, with what never changes between requests
    worked out once: the logs' names and the whole RateLimit-Policy field."""

    __slots__ = ("defaults", "items", "own", "policy", "tier", "tier_owner")

    def __init__(
        self,
        access_key: str,
        route: str,
        own: tuple[RateLimit, ...],
        defaults: tuple[RateLimit, ...],
        tier: tuple[RateLimit, ...] = (),
        tier_owner: str = "",
    ) -> None:
        # The key's own limits count in one log per key across routes; the route's defaults in
        # one log per key on that route. The access key is a Redis hash tag (``{...}``), so every
        # log of a key sits in one cluster slot and one script may touch them all.
        self.own, self.defaults, self.tier, self.tier_owner = own, defaults, tier, tier_owner
        named = [(f"key-{r.name}", f"{{{access_key}}}:key:{r.window_seconds}", r) for r in own]
        # A plan's limits count in the log of whoever the plan budgets: the key, or its bearer
        # (one log for all the bearer's keys; its own hash tag, so on a Redis cluster a key
        # with a bearer's limits needs them on one node).
        named += [(f"plan-{r.name}", f"{{{tier_owner}}}:plan:{r.window_seconds}", r) for r in tier]
        named += [
            (f"route-{r.name}", f"{{{access_key}}}:route{route}:{r.window_seconds}", r)
            for r in defaults
        ]
        self.items = tuple(
            Limit(key, rule, float(rule.window_seconds), f'"{name}";r=', log_id(key))
            for name, key, rule in named
        )
        self.policy = (
            b"ratelimit-policy",
            ", ".join(
                f'"{name}";q={rule.limit};w={rule.window_seconds}' for name, _, rule in named
            ).encode(),
        )


class LimitsCache:
    """``Limits`` per key and route, rebuilt only when the key's or the route's rules change
    (a reload, an edit): building them costs more than the check itself."""

    MAX_ENTRIES = 100_000

    def __init__(self) -> None:
        self._found: dict[tuple[str, str], Limits] = {}

    def get(
        self,
        access_key: str,
        route: str,
        own: tuple[RateLimit, ...],
        defaults: tuple[RateLimit, ...],
        tier: tuple[RateLimit, ...] = (),
        tier_owner: str = "",
    ) -> Limits:
        found = self._found.get((access_key, route))
        if (
            found is None
            or found.own is not own
            or found.defaults is not defaults
            or found.tier is not tier
            or found.tier_owner != tier_owner
        ):
            if len(self._found) >= self.MAX_ENTRIES:
                self._found.clear()  # rare, and rebuilding one costs microseconds
            found = self._found[(access_key, route)] = Limits(
                access_key, route, own, defaults, tier, tier_owner
            )
        return found


class Decision(NamedTuple):
    """Immutable like a frozen dataclass, and built in a third of the time (one per limited
    request: a frozen dataclass's ``__init__`` alone was 1 µs here)."""

    allowed: bool
    retry_after: int  # whole seconds before the request would pass (0 when allowed)
    headers: tuple[Header, ...]  # RateLimit-Policy and RateLimit, for the response


def field(lim: Limit, count: int, reset: float) -> str:
    """One limit's member of the RateLimit field: ``"name";r=LEFT;t=RESET``."""
    left = lim.rule.limit - count
    return f"{lim.field}{left if left > 0 else 0};t={ceil(reset) if reset > 0 else 0}"


def decision(limits: Limits, fields: list[str], retry: float) -> Decision:
    """The answer and its fields (IETF httpapi ratelimit-headers draft, structured-field lists):
    ``RateLimit-Policy: "name";q=LIMIT;w=WINDOW`` and ``RateLimit: "name";r=LEFT;t=RESET``, where
    RESET is the seconds until the oldest counted request leaves the window.

    Plain loops, not comprehensions: this runs for every limited request, and each
    comprehension is a function call of its own on Python 3.11 (with `LocalLimiter.check`'s,
    a check of one limit went from 2.82 to 2.25 us in a loop)."""
    state = fields[0] if len(fields) == 1 else ", ".join(fields)
    headers: tuple[Header, ...] = (limits.policy, (b"ratelimit", state.encode()))
    if retry > 0:
        seconds = max(1, ceil(retry))
        return Decision(False, seconds, (*headers, (b"retry-after", str(seconds).encode())))
    return Decision(True, 0, headers)


class LocalLimiter:
    """Sliding logs in this process. A log holds the moment each request it counted leaves
    its window (so it needs no window of its own to be trimmed, or replayed by another worker:
    ``gateway.node_limits``). Logs are kept in least-recently-used order, so the ones idle past
    their window are dropped from the front in time proportional to what goes."""

    local = True

    def __init__(self) -> None:
        self.logs: collections.OrderedDict[int, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def check(self, limits: Limits, now: float) -> Decision:
        retry, fields = self.count(limits, now)
        return decision(limits, fields, retry)

    def count(self, limits: Limits, now: float) -> tuple[float, list[str]]:
        """Check every limit, and record the request in each when all hold: how long before
        it would pass (0: it passes), and each limit's RateLimit member."""
        logs = self.logs
        held = []
        retry = 0.0
        for lim in limits.items:
            entries = logs.get(lim.log)
            if entries is None:
                entries = logs[lim.log] = collections.deque()
            else:
                logs.move_to_end(lim.log)
            while entries and entries[0] <= now:
                entries.popleft()
            if len(entries) >= lim.rule.limit:
                # The request passes once enough of the oldest have left the window.
                wait = entries[len(entries) - lim.rule.limit] - now
                if wait > retry:
                    retry = wait
            held.append(entries)
        fields = []
        for lim, entries in zip(limits.items, held, strict=True):
            if retry <= 0:
                entries.append(now + lim.window)
            left = lim.rule.limit - len(entries)
            reset = entries[0] - now if entries else 0.0
            # `field`, inlined: a call per limit was 4% of a check.
            fields.append(
                f"{lim.field}{left if left > 0 else 0};t={ceil(reset) if reset > 0 else 0}"
            )
        return retry, fields

    def trim(self, now: float) -> None:
        """Drop the least recently used logs whose every entry has left its window
        (housekeeping): the front of the order, until one is still live."""
        while self.logs:
            log, entries = next(iter(self.logs.items()))
            if entries and entries[-1] > now:
                break
            del self.logs[log]
