"""Credits across gateway processes on one PostgreSQL store: exactly the credits held are
admitted however the requests are spread, and a process killed with SIGKILL gives back, once
its lease has expired, everything of its reservation it cannot have spent."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx

from tests.support import Upstream, run_cli, start_serve, stop_serve, write_config

CREDITS = """
[credits]
sync_interval_seconds = 0.1
lease_seconds = 2
"""


def node_config(tmp_path: Path, upstream: Upstream, database_url: str) -> tuple[Path, str]:
    """The config both processes serve, and a key of its owner's with 0 credits yet."""
    config = write_config(tmp_path, upstream.url, CREDITS, store_url=database_url)
    init = json.loads(run_cli("--config", str(config), "init", "--json").stdout)
    return config, init["user_id"]


def key_with(config: Path, user_id: str, credits: int) -> str:
    made = run_cli(
        "--config",
        str(config),
        "keys",
        "create",
        "--user",
        user_id,
        "--credits",
        str(credits),
        "--json",
    )
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


def lease(database_url: str) -> tuple[int, int, int]:
    async def read() -> tuple[int, int, int]:
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow("SELECT granted, ceiling, spent FROM credit_leases")
        finally:
            await conn.close()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    return asyncio.run(read())


def test_two_processes_admit_exactly_the_credits_held(
    tmp_path: Path, upstream: Upstream, database_url: str
) -> None:
    config, user_id = node_config(tmp_path, upstream, database_url)
    secret = key_with(config, user_id, 300)
    nodes = [start_serve(config) for _ in range(2)]
    try:
        seen = drain([url for _, url in nodes], secret, time.monotonic())
    finally:
        for process, _ in nodes:
            stop_serve(process)
    assert seen.count(200) == 300 and set(seen) == {200, 429}


def test_a_killed_process_gives_back_what_it_cannot_have_spent(
    tmp_path: Path, upstream: Upstream, database_url: str
) -> None:
    config, user_id = node_config(tmp_path, upstream, database_url)
    secret = key_with(config, user_id, 400)
    (doomed, doomed_url), (survivor, survivor_url) = (start_serve(config) for _ in range(2))
    try:
        assert [status(doomed_url, secret) for _ in range(50)] == [200] * 50
        time.sleep(0.5)  # its next report: spent, ceiling
        doomed.kill()  # SIGKILL: nothing given back by the process itself
        doomed.communicate(timeout=10)
        granted, ceiling, spent = lease(database_url)
        assert spent == 50 and 50 <= ceiling < granted
        # The survivor spends everything but what the dead one may have spent (its ceiling):
        # its unspent reservation above that comes back once its lease (2 s) has expired.
        seen = drain([survivor_url], secret, time.monotonic() + 4)
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.communicate(timeout=10)
        stop_serve(survivor)
    assert seen.count(200) == 400 - ceiling
    assert ceiling - spent <= 16  # lost: at most the headroom of its last report
    assert isinstance(doomed, subprocess.Popen)
