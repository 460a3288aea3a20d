"""PostgreSQL going away under a running gateway, on a server of the test's own: stopped,
restarted, killed with SIGKILL. Cached keys keep working, uncached ones and admin writes get 503
and change nothing, and the gateway comes back by itself, catching up on what changed meanwhile.
No restart of the gateway, no traceback in its log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support import BOUND, Gateway, Upstream, build_gateway, wait_for
from tests.support.pgserver import PgServer


@pytest.fixture
def server() -> Iterator[PgServer]:
    own = PgServer()
    own.start()
    yield own
    own.remove()


@pytest.fixture
def on_own_server(
    tmp_path: Path, upstream: Upstream, server: PgServer
) -> Iterator[tuple[Gateway, PgServer]]:
    async def create() -> None:
        conn = await asyncpg.connect(server.url)
        await conn.execute("CREATE DATABASE gw")
        await conn.close()

    asyncio.run(create())
    store_url = server.url.rsplit("/", 1)[0] + "/gw"
    gateway, running = build_gateway(tmp_path, upstream.url, store_url=store_url)
    yield gateway, server
    running.stop()


def status(gateway: Gateway, secret: str) -> int:
    with gateway.client() as client:
        return client.get("/echo/x", headers={"X-Auth-Token": secret}).status_code


def test_the_database_stopped_restarted_and_killed(
    on_own_server: tuple[Gateway, PgServer], caplog: pytest.LogCaptureFixture
) -> None:
    gateway, server = on_own_server
    caplog.set_level(logging.WARNING)
    cached, uncached, doomed = (gateway.new_key() for _ in range(3))
    assert status(gateway, cached.secret_key) == 200
    assert status(gateway, doomed.secret_key) == 200

    server.stop()
    assert status(gateway, cached.secret_key) == 200  # from the cache, no store needed
    with gateway.client() as client:
        refused = client.get("/echo/x", headers={"X-Auth-Token": uncached.secret_key})
    assert refused.status_code == 503 and refused.json()["reason"] == "store_unavailable"
    with gateway.admin() as admin:  # the admin caller is cached too: its write gets 503
        write = admin.post("/v1/projects", json={"name": "while-away"})
    assert write.status_code == 503 and write.json()["type"] == "store_unavailable"

    server.start()
    # Revoked the moment the database is back: the gateway reconnects, catches up on the feed
    # (what was notified while its listener was away is lost) and refuses it.
    gateway.cli("keys", "revoke", doomed.key.access_key)
    wait_for(lambda: status(gateway, doomed.secret_key) == 401, timeout=BOUND + 3)
    assert status(gateway, uncached.secret_key) == 200
    with gateway.admin() as admin:
        names = [p["name"] for p in admin.get("/v1/projects").json()["projects"]]
    assert "while-away" not in names  # the 503 write changed nothing

    assert status(gateway, cached.secret_key) == 200  # still cached: a reconnect clears nothing
    server.kill()
    assert status(gateway, cached.secret_key) == 200
    server.start()
    wait_for(lambda: status(gateway, gateway.new_key().secret_key) == 200, timeout=10)
    with gateway.admin() as admin:
        assert admin.post("/v1/projects", json={"name": "after"}).status_code == 201
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
