"""What a node costs PostgreSQL: a `gateway serve --workers 2` node holds the connections the
table in docs/fleet.md says (``StoreConfig.connections``), one of them LISTENing for the whole
node, and every worker still hears of a revocation at once."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx

from core.config import StoreConfig
from core.tokens import SecretFormat
from tests.support import (
    POSTGRES_URL,
    Upstream,
    config_text,
    run_cli,
    spawn_cli,
    start_serve,
    stop_serve,
    wait_for,
)
from tests.support.nodes import create_key, status
from tests.support.pgserver import PgServer


def held(database_url: str) -> Counter[str]:
    """The connections to this test's database, by application_name."""

    async def count() -> Counter[str]:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            rows = await conn.fetch(
                "SELECT application_name FROM pg_stat_activity WHERE datname = $1",
                database_url.rsplit("/", 1)[1],
            )
        finally:
            await conn.close()
        return Counter(row[0] for row in rows)

    return asyncio.run(count())


def test_a_node_of_two_workers_holds_its_budget_and_listens_once(
    tmp_path: Path, upstream: Upstream, database_url: str
) -> None:
    text = config_text(upstream.url, store_url=database_url)
    # The poll every 5 s: a revocation seen within a second is the parent's NOTIFY, passed on.
    text = text.replace("invalidation_interval_seconds = 0.2", "invalidation_interval_seconds = 5")
    text = text.replace("pool_max_size = 4", "pool_max_size = 4\npool_idle_seconds = 0.5")
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    init = json.loads(run_cli("--config", str(config), "init", "--json").stdout)
    at_rest, most = StoreConfig(pool_min_size=1, pool_max_size=4).connections(workers=2)
    assert (at_rest, most) == (4, 13)  # the table in docs/fleet.md
    node, url = start_serve(config, "--workers", "2")
    stop = threading.Event()
    try:
        wait_for(lambda: status(url, init["secret_key"]) == 200, timeout=30)
        expected = Counter({"gateway": 3, "gateway-listen": 1})  # a pool of 1 in 3 processes
        try:
            wait_for(lambda: held(database_url) == expected, timeout=10, interval=0.2)
        except AssertionError:
            raise AssertionError(f"at rest: {dict(held(database_url))}, not {expected}") from None

        keys = [create_key(config, init["user_id"]) for _ in range(2)]
        peak: list[int] = []

        def misses() -> None:  # unknown keys on both workers: lookups, while we count
            with httpx.Client() as client:
                while not stop.is_set():
                    unknown = SecretFormat().generate()
                    client.get(url + "/echo/x", headers={"X-Auth-Token": unknown})

        loaders = [threading.Thread(target=misses, daemon=True) for _ in range(2)]
        for loader in loaders:
            loader.start()
        for key in keys:  # cached on both workers
            assert all(status(url, key["secret_key"]) == 200 for _ in range(6))
        for _ in range(3):
            peak.append(sum(held(database_url).values()))
        run_cli("--config", str(config), "keys", "revoke", keys[0]["access_key"])
        started = time.monotonic()
        wait_for(
            lambda: all(status(url, keys[0]["secret_key"]) == 401 for _ in range(6)), timeout=3
        )
        assert time.monotonic() - started < 1.0  # both workers, well before the 5 s poll
        assert all(status(url, keys[1]["secret_key"]) == 200 for _ in range(6))
        assert max(peak) <= most, peak
        assert held(database_url)["gateway-listen"] == 1
    finally:
        stop.set()
        stop_serve(node)


def test_a_node_the_database_has_no_room_for_stops_in_sentences(
    tmp_path: Path, upstream: Upstream
) -> None:
    """A node of 2 workers whose pools the server cannot hold (its max_connections spent: the
    budget of docs/fleet.md's table undersized). The parent's check passed, then a worker's
    store failed to open, and the worker died with a traceback of StoreUnavailable. Now the
    node stops (exit 1) saying why, in sentences."""
    server = PgServer()
    try:
        server.start(30)  # room for one process's pool of 20, not three
        asyncio.run(on_server(server.url, "CREATE DATABASE gw"))
        store_url = server.url.rsplit("/", 1)[0] + "/gw"
        text = config_text(upstream.url, store_url=store_url)
        config = tmp_path / "gateway.toml"
        config.write_text(text.replace("pool_min_size = 1", "pool_min_size = 20"))
        config.write_text(config.read_text().replace("pool_max_size = 4", "pool_max_size = 20"))
        run_cli("--config", str(config), "init")
        node = spawn_cli("--config", str(config), "serve", "--workers", "2")
        try:
            _, stderr = node.communicate(timeout=60)
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
        assert node.returncode == 1, stderr
        assert "Traceback" not in stderr, stderr
        assert "too many clients" in stderr, stderr
        assert "stopped: a worker process exited" in stderr, stderr
    finally:
        server.remove()


async def on_server(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
