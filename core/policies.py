"""What a key may do beyond being valid: its rate limits (and the route defaults), the networks
it may be used from, and, for a restricted key, the resources it may read or write.

A rate limit is ``limit`` requests in any ``window_seconds`` long interval: a *sliding* window,
kept as the times of the requests it let through (a sliding log). Chosen over GCRA and over the
two-counter sliding-window estimate because it is exact: what the client reads in
``RateLimit-Policy`` (``q`` requests per ``w`` seconds) holds in every interval of that length, so
no burst of 2x passes at a boundary (Kong's fixed windows allow one; GCRA with a burst of
``limit`` allows ``2 * limit - 1`` in a window after an idle spell; the estimate assumes the
previous window's requests were spread evenly), and ``Retry-After`` is exact: the moment the
oldest counted request leaves the window. The price is memory in proportion to the limit (8 bytes
per counted request locally, one sorted-set member in Redis), hence ``MAX_LIMIT``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_LIMIT = 100_000  # requests per window: the sliding log holds one entry per request
MAX_WINDOW_SECONDS = 31 * 86_400
MAX_RATE_LIMITS = 8  # per key, and per route
_TEXT = re.compile(r"(\d+)/(\d+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


class PolicyError(ValueError):
    """A policy that cannot be: the message says what and how to write it."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int
    window_seconds: int

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise PolicyError(f"limit must be a whole number, not {self.limit!r}")
        if isinstance(self.window_seconds, bool) or not isinstance(self.window_seconds, int):
            raise PolicyError(f"window_seconds must be a whole number, not {self.window_seconds!r}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise PolicyError(f"limit must be between 1 and {MAX_LIMIT:,}, not {self.limit}")
        if not 1 <= self.window_seconds <= MAX_WINDOW_SECONDS:
            raise PolicyError(
                f"window_seconds must be between 1 and {MAX_WINDOW_SECONDS} (31 days), "
                f"not {self.window_seconds}"
            )

    @property
    def name(self) -> str:
        """Its name in the RateLimit fields: ``100-per-60s``."""
        return f"{self.limit}-per-{self.window_seconds}s"

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``100/60s``, ``10/1``, ``1000/1h``, ``5000/1d``: requests per window."""
        match = _TEXT.fullmatch(text.strip())
        if match is None:
            raise PolicyError(f"{text!r} is not a rate limit like 100/60s, 10/1s or 1000/1h")
        limit, count, unit = match.groups()
        return cls(int(limit), int(count) * _UNITS[unit])

    @classmethod
    def from_json(cls, value: object) -> RateLimit:
        """``{"limit": 100, "window_seconds": 60}`` (the config's and the API's form)."""
        if not isinstance(value, dict) or set(value) != {"limit", "window_seconds"}:
            raise PolicyError(
                f"{value!r} is not a rate limit: write {{limit = 100, window_seconds = 60}}"
            )
        return cls(value["limit"], value["window_seconds"])

    def to_json(self) -> dict[str, int]:
        return {"limit": self.limit, "window_seconds": self.window_seconds}


def rate_limits(values: list[object]) -> tuple[RateLimit, ...]:
    """A list of rate limits, checked: each valid, at most MAX_RATE_LIMITS, no window twice
    (two limits over one window: only the smaller can ever bite)."""
    if len(values) > MAX_RATE_LIMITS:
        raise PolicyError(f"at most {MAX_RATE_LIMITS} rate limits, not {len(values)}")
    found = tuple(
        sorted(
            (v if isinstance(v, RateLimit) else RateLimit.from_json(v) for v in values),
            key=lambda r: r.window_seconds,
        )
    )
    windows = [r.window_seconds for r in found]
    if len(set(windows)) != len(windows):
        raise PolicyError("two rate limits over the same window: keep the smaller one")
    return found


MAX_ALLOWED_IPS = 100  # entries in a key's allowlist
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def allowed_ips(values: list[object]) -> tuple[str, ...]:
    """An allowlist, checked and written canonically: ``10.0.0.7`` stays an address
    (``10.0.0.7/32`` is written ``10.0.0.7``), ``10.1.2.3/8`` becomes ``10.0.0.0/8`` (the
    network it lies in), IPv6 is compressed. Empty: the key works from anywhere."""
    if len(values) > MAX_ALLOWED_IPS:
        raise PolicyError(f"at most {MAX_ALLOWED_IPS} allowed_ips entries, not {len(values)}")
    found: dict[str, None] = {}
    for value in values:
        if not isinstance(value, str):
            raise PolicyError(f"allowed_ips entry {value!r} must be a string such as 10.0.0.0/8")
        try:
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise PolicyError(
                f"allowed_ips entry {value!r} is not an IPv4 or IPv6 address or network "
                "(10.0.0.0/8, 192.0.2.7, 2001:db8::/32)"
            ) from None
        single = network.prefixlen == network.max_prefixlen
        found[str(network.network_address) if single else str(network)] = None
    return tuple(found)


def networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """An allowlist's entries as networks, to test addresses against (done once per key load)."""
    return tuple(ipaddress.ip_network(entry) for entry in entries)


def allows(allowed: tuple[Network, ...], client: str) -> bool:
    """Whether ``client`` (an address as the server saw it) lies in one of ``allowed``. An
    IPv4-mapped IPv6 address (``::ffff:192.0.2.7``, from a dual-stack socket) is its IPv4
    address. An address that cannot be read lies in none."""
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allowed)


# A restricted key's permissions: RESOURCE:read or RESOURCE:write (write includes read), and
# VERIFY, which lets the key ask the admin API's POST /v1/keys/verify about other keys.
VERIFY = "keys:verify"
PERMISSION = re.compile(r"([a-z][a-z0-9_-]{0,62}):(read|write)|keys:verify")
RESOURCE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
MAX_PERMISSIONS = 50
READS = frozenset({"GET", "HEAD", "OPTIONS"})


def permissions(values: list[object]) -> tuple[str, ...]:
    """A restricted key's permissions, checked, without repeats, in order."""
    if len(values) > MAX_PERMISSIONS:
        raise PolicyError(f"at most {MAX_PERMISSIONS} permissions, not {len(values)}")
    found: set[str] = set()
    for value in values:
        if not isinstance(value, str) or PERMISSION.fullmatch(value) is None:
            raise PolicyError(
                f"permission {value!r} is not RESOURCE:read or RESOURCE:write (billing:read), "
                "or keys:verify"
            )
        found.add(value)
    return tuple(sorted(found))


def missing_permission(held: frozenset[str], resource: str, method: str) -> str | None:
    """The permission a restricted key lacks for ``method`` on a route of ``resource``, or None
    when it may: reading (GET, HEAD, OPTIONS) takes ``resource:read`` or ``resource:write``;
    anything else takes ``resource:write``."""
    write = f"{resource}:write"
    if write in held:
        return None
    if method in READS:
        read = f"{resource}:read"
        return None if read in held else read
    return write


def restricted(held: frozenset[str], resource: str | None, method: str) -> str | None:
    """Why a restricted key may not make this request, said so a person can act on it, or None
    when it may. A route that names no resource is closed to restricted keys."""
    if resource is None:
        return "This route names no resource, so restricted keys may not use it."
    missing = missing_permission(held, resource, method)
    if missing is None:
        return None
    return f"This restricted key lacks the permission {missing!r}, which {method} here needs."


def unknown_resources(permissions: Iterable[str], resources: Iterable[str]) -> list[str]:
    """The permissions naming a resource no route has: they grant nothing (until a route names
    the resource), which is most often a typo."""
    known = set(resources)
    return [p for p in permissions if p.partition(":")[0] not in known]
