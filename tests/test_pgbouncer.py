"""The query path through PgBouncer in transaction mode (``[store] transaction_pooler``), the
LISTEN and the migrations straight to PostgreSQL (``[store] listen_url``): a node of 2 workers
initialised, written to and read from through a pooler of 2 server connections, revocations
heard at once; without the option, PgBouncer refuses the session settings and the node says
so."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from core.tokens import SecretFormat
from tests.support import (
    Upstream,
    config_text,
    run_cli,
    start_serve,
    stop_serve,
    wait_for,
)
from tests.support.nodes import create_key, status
from tests.support.pgbouncer import PgBouncer


@pytest.fixture
def bouncer(database_url: str) -> Iterator[PgBouncer]:
    direct = urlsplit(database_url)
    assert direct.hostname is not None and direct.port is not None
    running = PgBouncer(direct.hostname, direct.port, pool_size=2)
    yield running
    running.stop()


def write_config(
    tmp_path: Path, upstream: Upstream, bouncer: PgBouncer, database_url: str, pooler: bool
) -> Path:
    pooled = bouncer.url(database_url.rsplit("/", 1)[1])
    text = config_text(upstream.url, store_url=pooled)
    text = text.replace("invalidation_interval_seconds = 0.2", "invalidation_interval_seconds = 5")
    if pooler:
        text = text.replace(
            "pool_max_size = 4",
            f'pool_max_size = 4\ntransaction_pooler = true\nlisten_url = "{database_url}"',
        )
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    return config


def test_a_node_behind_pgbouncer_in_transaction_mode(
    tmp_path: Path, upstream: Upstream, bouncer: PgBouncer, database_url: str
) -> None:
    config = write_config(tmp_path, upstream, bouncer, database_url, pooler=True)
    init = json.loads(run_cli("--config", str(config), "init", "--json").stdout)
    keys = [create_key(config, init["user_id"]) for _ in range(3)]
    node, url = start_serve(config, "--workers", "2")
    try:
        wait_for(lambda: status(url, keys[1]["secret_key"]) == 200, timeout=20)
        failures: list[str] = []

        def lookups(n: int) -> None:  # misses from 6 clients at once, through 2 server conns
            with httpx.Client() as client:
                for i in range(40):
                    known = keys[(n + i) % len(keys)]["secret_key"]
                    got = client.get(url + "/echo/x", headers={"X-Auth-Token": known})
                    unknown = client.get(
                        url + "/echo/x", headers={"X-Auth-Token": SecretFormat().generate()}
                    )
                    if (got.status_code, unknown.status_code) != (200, 401):
                        failures.append(f"{got.status_code} {unknown.text}")

        threads = [threading.Thread(target=lookups, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not failures, failures[:3]

        # A write through the pooler, heard straight from PostgreSQL by the node's listener:
        # refused by both workers well before the 5 s poll.
        run_cli("--config", str(config), "keys", "revoke", keys[0]["access_key"])
        took = wait_for(
            lambda: all(status(url, keys[0]["secret_key"]) == 401 for _ in range(6)), timeout=3
        )
        assert took < 1.0
        assert all(status(url, keys[1]["secret_key"]) == 200 for _ in range(4))
    finally:
        stderr = stop_serve(node)
    assert "Traceback" not in stderr, stderr
    assert "unsupported startup parameter" not in bouncer.log()


def test_without_the_option_the_node_says_why_it_cannot_start(
    tmp_path: Path, upstream: Upstream, bouncer: PgBouncer, database_url: str
) -> None:
    config = write_config(tmp_path, upstream, bouncer, database_url, pooler=False)
    result = run_cli("--config", str(config), "init", "--json", check=False)
    assert result.returncode == 1
    assert "unsupported startup parameter: statement_timeout" in result.stderr
    assert "Traceback" not in result.stderr
