"""Connecting to a multi-host PostgreSQL URL (``postgresql://u@db1:5432,db2:5432/gateway?...``,
for failover: ``docs/fleet.md``), one host at a time, each with its own share of the timeout.

asyncpg tries the hosts in order under one timeout for them all, so a host that takes the TCP
connection but never answers (a machine that hangs, a network that drops its packets: nothing
refuses) spends the whole timeout, and the hosts after it are never tried: a node could neither
start nor fail over while the old primary hung. libpq bounds each host on its own
(``connect_timeout`` is per host); so does this. The host that answered last is tried first, so
after a switch new connections go to the new primary without waiting on the old one again.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import asyncpg

CONNECT_SECONDS = 10.0  # for all the hosts of a URL together
# What sends the connect on to the next host: none there, no answer, not the primary, or a server
# starting or shutting down (an old primary stopping in a switchover says so).
NEXT_HOST: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.TargetServerAttributeNotMatched,
    asyncpg.CannotConnectNowError,
)


def split(url: str) -> list[str]:
    """One URL per host of a multi-host URL, in its order (a URL of one host: itself). A URL
    that asks for ``prefer-standby`` is left whole: only asyncpg, seeing every host, can prefer."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if "," not in hosts or "prefer-standby" in parts.query:
        return [url]
    return [
        urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}"))
        for host in hosts.split(",")
    ]


class Hosts:
    """The hosts of one URL, and which answered last (``connect`` is the pool's ``connect``).
    One per URL in a process (``of``), so its pool, its listener and its next store share
    what they learnt."""

    _known: dict[str, Hosts] = {}

    @classmethod
    def of(cls, url: str) -> Hosts:
        found = cls._known.get(url)
        if found is None:
            found = cls._known[url] = cls(url)
        return found

    def __init__(self, url: str, timeout: float = CONNECT_SECONDS) -> None:
        self.urls = split(url)
        self.timeout = timeout
        self.last = 0

    async def connect(self, *_: Any, **options: Any) -> asyncpg.Connection:
        """A connection to the first host that takes it, as ``asyncpg.connect`` would make it
        (``options`` are its keyword arguments; a ``timeout`` among them is replaced)."""
        options.pop("timeout", None)
        share = self.timeout / len(self.urls)
        error: BaseException | None = None
        first = self.last  # read once: other connects under way may move it meanwhile
        for turn in range(len(self.urls)):
            index = (first + turn) % len(self.urls)
            try:
                conn = await asyncpg.connect(self.urls[index], timeout=share, **options)
            except NEXT_HOST as exc:
                error = exc  # the next host, if there is one
                continue
            self.last = index
            return conn
        assert error is not None
        raise error
