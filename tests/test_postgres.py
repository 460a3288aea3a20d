"""What PostgreSQL adds to the store: a feed read completely when events commit out of id order,
NOTIFY waking followers at once, and several gateway nodes on one database."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from core.config import CacheConfig
from core.store import keys as store_keys
from core.store.postgres import PostgresDatabase, numbered
from core.tokens import SecretFormat
from gateway.verifier import Verifier
from tests.support import (
    Upstream,
    config_text,
    listening,
    run_cli,
    send_raw,
    start_serve,
    stop_serve,
)


async def opened(url: str) -> PostgresDatabase:
    return await PostgresDatabase(url, 1, 8).open(create=True)


def test_placeholders_are_numbered() -> None:
    assert numbered("a = ? AND b IN (?, ?)") == "a = $1 AND b IN ($2, $3)"
    assert numbered("x = ?1 OR y = ?1 AND z = ?2") == "x = $1 OR y = $1 AND z = $2"


def test_an_event_that_commits_after_a_later_one_is_not_skipped(database_url: str) -> None:
    async def scenario() -> None:
        db = await opened(database_url)
        try:
            cursor = await store_keys.feed_start(db)
            holding, release = asyncio.Event(), asyncio.Event()

            async def slow_writer() -> None:
                async with db.transaction() as w:
                    await store_keys.event(w, "GWKSLOW", "revoke", time.time())  # takes its id
                    holding.set()
                    await release.wait()

            slow = asyncio.create_task(slow_writer())
            await holding.wait()
            async with db.transaction() as w:
                await store_keys.event(w, "GWKFAST", "revoke", time.time())
            first = await store_keys.read_feed(db, cursor)
            assert [ak for _, ak, _ in first.events] == ["GWKFAST"]
            release.set()
            await slow
            second = await store_keys.read_feed(db, first.cursor)
            late = [(i, ak) for i, ak, _ in second.events if ak == "GWKSLOW"]
            assert late and late[0][0] < first.events[0][0]  # a smaller id, read after
        finally:
            await db.close()

    asyncio.run(scenario())


def test_concurrent_writers_every_event_reaches_the_follower(database_url: str) -> None:
    """Writers holding their transactions open for random times while a follower polls: every
    committed event is applied, none twice in a row."""

    async def scenario() -> None:
        db = await opened(database_url)
        try:
            verifier = Verifier(db, CacheConfig(invalidation_interval_seconds=0.01), SecretFormat())
            evicted: list[str] = []
            verifier.evict = evicted.append  # type: ignore[method-assign]
            await verifier.poll_events()

            async def writer(n: int) -> None:
                await asyncio.sleep(random.uniform(0, 0.2))
                async with db.transaction() as w:
                    await store_keys.event(w, f"GWK{n:017d}", "revoke", time.time())
                    await asyncio.sleep(random.uniform(0, 0.3))

            done = asyncio.Event()

            async def follow() -> None:
                while not done.is_set():
                    await verifier.poll_events()
                    await asyncio.sleep(0.005)
                await verifier.poll_events()

            follower = asyncio.create_task(follow())
            await asyncio.gather(*(writer(n) for n in range(40)))
            done.set()
            await follower
            assert sorted(evicted) == sorted(f"GWK{n:017d}" for n in range(40))
        finally:
            await db.close()

    asyncio.run(scenario())


def test_notify_wakes_a_waiting_follower_at_once(database_url: str) -> None:
    async def scenario() -> float:
        db = await opened(database_url)
        other = await opened(database_url)
        try:
            waiting = asyncio.create_task(db.wait_for_change(10))
            await asyncio.sleep(0.2)  # the listener is in place
            started = time.monotonic()
            async with other.transaction() as w:
                await store_keys.event(w, "GWKNOTIFIED", "revoke", time.time())
            assert await waiting
            return time.monotonic() - started
        finally:
            await other.close()
            await db.close()

    assert asyncio.run(scenario()) < 1.0


def test_two_nodes_refuse_a_revoked_key_within_a_second_by_notify(
    tmp_path: Path, upstream: Upstream, database_url: str
) -> None:
    """Two `gateway serve` nodes (2 workers each) on one database, polling only every 5 s: keys
    revoked through node A's admin API and through the CLI are refused by both within a second,
    under load on both, so it is the NOTIFY that carries them, not the poll."""
    text = config_text(upstream.url, store_url=database_url)
    text = text.replace("invalidation_interval_seconds = 0.2", "invalidation_interval_seconds = 5")
    configs = []
    for name, admin in (("a", '"127.0.0.1:0"'), ("b", '""')):
        path = tmp_path / f"{name}.toml"
        path.write_text(text.replace('[admin]\nlisten = ""', f"[admin]\nlisten = {admin}"))
        configs.append(path)
    init = json.loads(run_cli("--config", str(configs[0]), "init", "--json").stdout)
    node_a, url_a = start_serve(configs[0], "--workers", "2")
    node_b, url_b = start_serve(configs[1], "--workers", "2")
    admin_url = listening(node_a)[0]
    owner = {"X-Auth-Token": init["secret_key"]}
    stop = threading.Event()
    try:
        keys = [
            json.loads(
                run_cli(
                    "--config",
                    str(configs[0]),
                    "keys",
                    "create",
                    "--user",
                    init["user_id"],
                    "--json",
                ).stdout
            )
            for _ in range(10)
        ]

        def status(url: str, secret: str) -> int:  # a new connection: any worker may answer
            request = f"GET /echo/x HTTP/1.1\r\nHost: n\r\nX-Auth-Token: {secret}\r\n"
            answer = send_raw(url, (request + "Connection: close\r\n\r\n").encode())
            return int(answer.split(b" ", 2)[1])

        for key in keys:  # cached on both nodes (several tries: two workers each)
            for url in (url_a, url_b):
                assert all(status(url, key["secret_key"]) == 200 for _ in range(4))

        def load() -> None:  # the owner key, on both nodes, until the end
            with httpx.Client() as client:
                while not stop.is_set():
                    for url in (url_a, url_b):
                        client.get(url + "/echo/x", headers=owner)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        latencies = []
        admin = httpx.Client(base_url=admin_url, headers=owner)
        for n, key in enumerate(keys):
            # From the moment the revocation is written (the CLI has exited, the API answered):
            # the bound is on the feed, not on the CLI's interpreter start-up.
            if n % 2:
                run_cli("--config", str(configs[0]), "keys", "revoke", key["access_key"])
            else:
                admin.delete(f"/v1/api-keys/{key['access_key']}")
            started = time.monotonic()
            refused = refused_by_both(status, (url_a, url_b), key["secret_key"], timeout=3.0)
            latencies.append(refused - started)
        admin.close()
        assert max(latencies) <= 1.0, latencies
        api, cli = latencies[::2], latencies[1::2]
        print(
            f"both nodes refuse: API median {statistics.median(api) * 1000:.0f} ms, "
            f"CLI {statistics.median(cli) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms"
        )
    finally:
        stop.set()
        stop_serve(node_a)
        stop_serve(node_b)


def refused_by_both(
    status: Callable[[str, str], int], urls: tuple[str, ...], secret: str, timeout: float
) -> float:
    """When every node, on several connections (each may reach another worker), refuses."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(status(url, secret) == 401 for url in urls for _ in range(3)):
            return time.monotonic()
        time.sleep(0.01)
    raise AssertionError(f"still accepted {timeout} s after the revocation")


def test_nodes_starting_together_migrate_once(database_url: str) -> None:
    """Migrations run under an advisory lock: five nodes opening a fresh database at once."""

    async def scenario() -> list[tuple[int, ...]]:
        nodes = await asyncio.gather(*(opened(database_url) for _ in range(5)))
        try:
            return [
                tuple(r)
                for r in await nodes[0].fetchall(
                    "SELECT version FROM schema_migrations ORDER BY version"
                )
            ]
        finally:
            await asyncio.gather(*(node.close() for node in nodes))

    from core.store.migrations import POSTGRES_MIGRATIONS

    versions = asyncio.run(scenario())
    assert versions == [(n,) for n in range(1, len(POSTGRES_MIGRATIONS) + 1)]


def test_last_used_from_many_nodes_never_moves_backwards(database_url: str) -> None:
    async def scenario() -> float:
        db = await opened(database_url)
        try:
            async with db.transaction() as w:
                await w.execute(
                    "INSERT INTO organizations (id, name, created_at) VALUES ('o', 'o', 0)"
                )
                await w.execute(
                    "INSERT INTO projects (id, organization_id, name, created_at, updated_at) "
                    "VALUES ('p', 'o', 'p', 0, 0)"
                )
                await w.execute(
                    "INSERT INTO applications (id, organization_id, name, created_at, "
                    "updated_at) VALUES ('a', 'o', 'a', 0, 0)"
                )
                await w.execute(
                    "INSERT INTO api_keys (access_key, organization_id, application_id, "
                    "default_project_id, mode, created_at, updated_at) "
                    "VALUES ('GWKTOUCHED', 'o', 'a', 'p', 'live', 0, 0)"
                )
            for when in (200.0, 100.0):  # a later batch from a node whose use was earlier
                async with db.transaction() as w:
                    await store_keys.touch_last_used(w, [(when, "GWKTOUCHED")])
            row = await db.fetchone(
                "SELECT last_used_at FROM api_keys WHERE access_key = 'GWKTOUCHED'"
            )
            assert row is not None
            return float(row[0])
        finally:
            await db.close()

    assert asyncio.run(scenario()) == 200.0
