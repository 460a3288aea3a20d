"""A failover under two running gateway nodes: a primary and its streaming standby of the test's
own, the nodes on a multi-host URL (``target_session_attrs=read-write``); the primary killed,
the standby promoted. Cached keys answer throughout, uncached ones get 503 only while there is
no primary, writes resume, and a key revoked after the switch is refused by both nodes within
the bound; no node restarts. The outage it measures is printed (``-s``) for docs/fleet.md."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from admin import access, service
from core import config as config_module
from core.store import make_store
from core.tokens import SecretFormat
from tests.support import (
    Upstream,
    config_text,
    free_socket,
    run_cli,
    start_serve,
    stop_serve,
    wait_for,
)
from tests.support.nodes import answer, create_key
from tests.support.pgserver import PgServer

INTERVAL = 1.0  # the poll: the revocation bound is this plus 0.5 s


@pytest.fixture
def pair() -> Iterator[tuple[PgServer, PgServer]]:
    primary = PgServer()
    standby: PgServer | None = None
    try:
        primary.start()
        standby = PgServer(primary)
        standby.start()
        yield primary, standby
    finally:
        if standby is not None:
            standby.remove()
        primary.remove()


@pytest.fixture
def server() -> Iterator[PgServer]:
    alone = PgServer()
    try:
        alone.start()
        yield alone
    finally:
        alone.remove()


def sql(url: str, statement: str) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return await conn.fetchval(statement)
        finally:
            await conn.close()

    return asyncio.run(run())


def new_keys(config: Path, user_id: str, count: int) -> list[str]:
    """The secrets of ``count`` new keys, made in this process (a CLI call each is 1 s)."""

    async def make() -> list[str]:
        loaded = config_module.load(config)
        db = await make_store(loaded.store, listens=False).open(create=False)
        try:
            fmt = SecretFormat(loaded.key_prefix)
            made = [
                await service.create_key(db, access.LOCAL_OPERATOR, fmt, user_id=user_id)
                for _ in range(count)
            ]
        finally:
            await db.close()
        return [key.secret_key for key in made]

    return asyncio.run(make())


def caught_up(primary: PgServer, standby: PgServer) -> bool:
    """The standby has replayed everything the primary has written so far."""
    written = sql(primary.url, "SELECT pg_current_wal_lsn()::text")
    replayed = sql(standby.url, f"SELECT pg_last_wal_replay_lsn() >= '{written}'::pg_lsn")
    return bool(replayed)


def test_primary_killed_standby_promoted_under_two_nodes(
    tmp_path: Path, upstream: Upstream, pair: tuple[PgServer, PgServer]
) -> None:
    primary, standby = pair
    sql(primary.url, "CREATE DATABASE gw")
    hosts = f"127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
    store_url = f"postgresql://postgres@{hosts}/gw?target_session_attrs=read-write"
    text = config_text(upstream.url, store_url=store_url).replace(
        "invalidation_interval_seconds = 0.2", f"invalidation_interval_seconds = {INTERVAL}"
    )
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    init = json.loads(run_cli("--config", str(config), "init", "--json").stdout)
    cached, *uncached = new_keys(config, init["user_id"], 41)
    doomed = create_key(config, init["user_id"])
    nodes = [start_serve(config) for _ in range(2)]
    urls = [url for _, url in nodes]
    try:
        for url in urls:
            assert answer(url, cached)[0] == 200
            assert answer(url, doomed["secret_key"])[0] == 200
        wait_for(lambda: caught_up(primary, standby), timeout=10, interval=0.05)

        killed = time.monotonic()
        primary.kill()
        # No primary: the cache answers, a lookup is 503 and says why.
        for url in urls:
            assert answer(url, cached)[0] == 200
            status, raw = answer(url, uncached.pop())
            assert status == 503 and b"store_unavailable" in raw, raw

        # A node or command started now, on a URL whose hosts answer but none is read-write
        # (here the standby alone), says so and exits; it does not fall over.
        alone = f"postgresql://postgres@127.0.0.1:{standby.port}/gw?target_session_attrs=read-write"
        started = run_cli("--config", str(config), "--store", alone, "keys", "list", check=False)
        assert started.returncode == 1 and "Traceback" not in started.stderr, started.stderr
        assert "None of the hosts match the target attribute requirement" in started.stderr

        promoting = time.monotonic()
        standby.promote()
        promoted = time.monotonic()
        statuses: list[int] = []

        def served_again() -> bool:  # each try a key never looked up, on both nodes
            assert all(answer(url, cached)[0] == 200 for url in urls)
            now = [answer(url, uncached.pop())[0] for url in urls]
            statuses.extend(now)
            return now == [200, 200]

        wait_for(served_again, timeout=15, interval=0.01)
        back = time.monotonic()
        assert set(statuses) <= {200, 503}, statuses

        written = wait_for(lambda: new_key_or_none(config, init["user_id"]), timeout=15)

        run_cli("--config", str(config), "keys", "revoke", doomed["access_key"])
        revoked = time.monotonic()
        wait_for(
            lambda: all(answer(url, doomed["secret_key"])[0] == 401 for url in urls),
            timeout=INTERVAL + 0.5 + 1.0,
        )
        refused = time.monotonic() - revoked
        assert refused <= INTERVAL + 0.5, refused
        for url in urls:  # still cached, and the uncached path works too
            assert answer(url, cached)[0] == 200
            assert answer(url, uncached.pop())[0] == 200
        assert all(process.poll() is None for process, _ in nodes)  # no restart
        print(
            f"failover: lookups 503 from the kill until {back - promoted:.2f} s after the "
            f"promotion ({back - killed:.2f} s in all, {promoting - killed:.2f} s of them this "
            f"test's checks before promoting; pg_ctl promote {promoted - promoting:.2f} s), a "
            f"write {written:.2f} s after that (a CLI run), a revocation after the switch "
            f"refused by both nodes in {refused * 1000:.0f} ms"
        )
    finally:
        errors = [stop_serve(process) for process, _ in nodes]
    for stderr in errors:
        assert "Traceback" not in stderr, stderr
    assert os.path.exists(standby.data / "postmaster.pid")


def new_key_or_none(config: Path, user_id: str) -> bool:
    """Whether a key can be created now (a write on the new primary)."""
    result = run_cli(
        "--config", str(config), "keys", "create", "--user", user_id, "--json", check=False
    )
    return result.returncode == 0


def test_a_host_that_never_answers_does_not_hide_the_next_one(
    tmp_path: Path, upstream: Upstream, database_url: str
) -> None:
    """A multi-host URL whose first host takes the connection and then never answers (a machine
    that hangs, a network that drops packets: nothing refuses). asyncpg spent its one timeout
    for all the hosts on that one, and never tried the next: `init` and `serve` failed after
    10 s with "cannot connect ()". Each host now has its own share of the timeout."""
    silent = free_socket()  # listens, and nothing ever accepts or answers
    try:
        server = database_url.split("@", 1)[1].split("/", 1)[0]
        hosts = f"127.0.0.1:{silent.getsockname()[1]},{server}"
        store_url = database_url.replace(server, hosts) + "?target_session_attrs=read-write"
        config = tmp_path / "gateway.toml"
        config.write_text(config_text(upstream.url, store_url=store_url))
        began = time.monotonic()
        made = run_cli("--config", str(config), "init", "--json", check=False)
        assert made.returncode == 0, made.stderr
        assert time.monotonic() - began < 9
        secret = json.loads(made.stdout)["secret_key"]
        process, url = start_serve(config)
        try:
            assert answer(url, secret)[0] == 200
        finally:
            stderr = stop_serve(process)
        assert "Traceback" not in stderr, stderr
    finally:
        silent.close()


def test_a_server_that_hangs_costs_uncached_keys_a_503_not_a_hang(
    tmp_path: Path, upstream: Upstream, server: PgServer
) -> None:
    """The store's server hangs (SIGSTOP: the kernel takes connections, nothing answers, as a
    machine that stops or a network that drops packets). Reads had no bound of their own on a
    direct connection (only the server's statement_timeout, which a hung server never applies):
    a request with an uncached key waited as long as the server hung. Now a cached key is
    served, an uncached one gets 503 store_unavailable within about the statement timeout,
    readiness says store_unavailable, and once the server answers again lookups work."""
    sql(server.url, "CREATE DATABASE gw")
    store_url = server.url.rsplit("/", 1)[0] + "/gw"
    text = config_text(upstream.url, server='health_path = "/readyz"', store_url=store_url)
    config = tmp_path / "gateway.toml"
    config.write_text(
        text.replace("pool_max_size = 4", "pool_max_size = 4\nstatement_timeout_ms = 1000")
    )
    init = json.loads(run_cli("--config", str(config), "init", "--json").stdout)
    uncached = new_keys(config, init["user_id"], 2)
    process, url = start_serve(config)
    try:
        assert answer(url, init["secret_key"])[0] == 200
        frozen = server.freeze()
        try:
            began = time.monotonic()
            status, raw = answer(url, uncached[0], timeout=15)
            took = time.monotonic() - began
            assert status == 503 and b"store_unavailable" in raw, raw
            assert took < 3.5, took
            assert answer(url, init["secret_key"])[0] == 200  # cached: served throughout
            began = time.monotonic()
            ready = httpx.get(url + "/readyz", timeout=15)
            assert (ready.status_code, ready.json()["reason"]) == (503, "store_unavailable")
            assert time.monotonic() - began < 3.5
        finally:
            server.thaw(frozen)
        wait_for(lambda: answer(url, uncached[1])[0] == 200, timeout=15)
    finally:
        stderr = stop_serve(process)
    assert "Traceback" not in stderr, stderr


def test_primary_hung_standby_promoted(
    tmp_path: Path, upstream: Upstream, pair: tuple[PgServer, PgServer]
) -> None:
    """The primary hangs (SIGSTOP: it takes connections and answers nothing) and the standby
    is promoted. Before, a node never came back while the old primary hung: its reads waited
    on it without a bound, and each new connection spent the whole connect timeout on it. Now
    every uncached lookup is answered (503 or 200) within the statement timeout and a host's
    share of the connect timeout, lookups work again within seconds of the promotion, and a
    key revoked after the switch is refused within the bound."""
    primary, standby = pair
    sql(primary.url, "CREATE DATABASE gw")
    hosts = f"127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
    store_url = f"postgresql://postgres@{hosts}/gw?target_session_attrs=read-write"
    text = config_text(upstream.url, store_url=store_url).replace(
        "invalidation_interval_seconds = 0.2", f"invalidation_interval_seconds = {INTERVAL}"
    )
    config = tmp_path / "gateway.toml"
    config.write_text(
        text.replace("pool_max_size = 4", "pool_max_size = 4\nstatement_timeout_ms = 1000")
    )
    init = json.loads(run_cli("--config", str(config), "init", "--json").stdout)
    uncached = new_keys(config, init["user_id"], 30)
    doomed = create_key(config, init["user_id"])
    process, url = start_serve(config)
    frozen: list[int] = []
    try:
        assert answer(url, init["secret_key"])[0] == 200
        assert answer(url, doomed["secret_key"])[0] == 200
        wait_for(lambda: caught_up(primary, standby), timeout=10, interval=0.05)
        frozen = primary.freeze()
        standby.promote()
        promoted = time.monotonic()
        statuses: list[int] = []

        def served_again() -> bool:
            began = time.monotonic()
            status = answer(url, uncached.pop(), timeout=15)[0]
            assert time.monotonic() - began < 8, statuses  # 1 s read, 5 s connect, margin
            statuses.append(status)
            return status == 200

        wait_for(served_again, timeout=20, interval=0.05)
        assert set(statuses) <= {200, 503}, statuses
        assert answer(url, init["secret_key"])[0] == 200
        print(f"hung primary: lookups again {time.monotonic() - promoted:.2f} s after promotion")
        run_cli("--config", str(config), "keys", "revoke", doomed["access_key"])
        revoked = time.monotonic()
        wait_for(lambda: answer(url, doomed["secret_key"])[0] == 401, timeout=INTERVAL + 1.5)
        assert time.monotonic() - revoked <= INTERVAL + 0.5
    finally:
        PgServer.thaw(frozen)
        stderr = stop_serve(process)
    assert "Traceback" not in stderr, stderr
