"""Credits across `gateway serve` nodes on one store: their config, a key with credits, and
requests until every node refuses (tests/test_credits_nodes.py, tests/test_credits_sigkill.py)."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx

from tests.support import Upstream, run_cli, write_config


def credits_table(lease_seconds: float = 2) -> str:
    """Reports every 0.1 s; leases of ``lease_seconds``."""
    return f"""
[credits]
sync_interval_seconds = 0.1
lease_seconds = {lease_seconds}
"""


def node_config(
    directory: Path, upstream: Upstream, store_url: str | None, lease_seconds: float = 2
) -> Path:
    """A node's config in ``directory`` (its spend journal beside it, its own)."""
    directory.mkdir(parents=True, exist_ok=True)
    return write_config(directory, upstream.url, credits_table(lease_seconds), store_url=store_url)


def init(config: Path) -> str:
    """`gateway init`: the owner's user id."""
    user_id: str = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["user_id"]
    return user_id


def key_with(config: Path, user_id: str, credits: int | None) -> str:
    """A new key's secret: with ``credits`` to spend, or none (never counted)."""
    more = ["--credits", str(credits)] if credits is not None else []
    made = run_cli("--config", str(config), "keys", "create", "--user", user_id, *more, "--json")
    secret: str = json.loads(made.stdout)["secret_key"]
    return secret


def status(url: str, secret: str) -> int:
    return httpx.get(url + "/echo/x", headers={"X-Auth-Token": secret}, timeout=30).status_code


def drain(urls: list[str], secret: str, until: float) -> list[int]:
    """Requests from 8 threads over ``urls`` until every node has refused 20 in a row past
    ``until`` (a monotonic time): the statuses."""
    seen: list[int] = []
    refused = dict.fromkeys(urls, 0)

    def one(i: int) -> None:
        url = urls[i % len(urls)]
        got = status(url, secret)
        seen.append(got)
        refused[url] = refused[url] + 1 if got == 429 else 0

    with ThreadPoolExecutor(8) as pool:
        i = 0
        while min(refused.values()) < 20 or time.monotonic() < until:
            list(pool.map(one, range(i, i + 16)))
            i += 16
            assert i < 20_000, "never ran out"
    return seen


def leases(database_url: str) -> list[tuple[int, int, int]]:
    """(granted, ceiling, spent) of every lease in the store."""

    async def read() -> list[tuple[int, int, int]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT granted, ceiling, spent FROM credit_leases")
        finally:
            await conn.close()
        return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    return asyncio.run(read())
