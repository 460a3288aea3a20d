"""Changes made by another process reach running gateways within the invalidation bound."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support import (
    BOTH_STORES,
    BOUND,
    Gateway,
    Upstream,
    run_cli,
    start_serve,
    stop_serve,
    wait_for,
    write_config,
)

BACKENDS = BOTH_STORES  # the store-facing suites run on SQLite and PostgreSQL


def test_cli_revocation_reaches_a_serving_gateway(gateway: Gateway) -> None:
    created = json.loads(gateway.cli("keys", "create", "--user", gateway.owner_id, "--json").stdout)
    headers = {"X-Auth-Token": created["secret_key"]}
    with gateway.client() as client:
        assert client.get("/echo/x", headers=headers).status_code == 200
        gateway.cli("keys", "revoke", created["access_key"])
        elapsed = wait_for(
            lambda: client.get("/echo/x", headers=headers).status_code == 401, timeout=BOUND
        )
        assert client.get("/echo/x", headers=headers).json()["reason"] == "invalid_token"
    assert elapsed <= BOUND


def test_cli_edit_reaches_a_serving_gateway(gateway: Gateway) -> None:
    project = json.loads(gateway.cli("projects", "create", "other", "--json").stdout)
    headers = {"X-Auth-Token": gateway.secret_key}

    def project_seen(client: httpx.Client) -> str:
        seen = client.get("/echo/x", headers=headers).json()["headers"]
        return next(v for k, v in seen if k == "x-project-id")

    with gateway.client() as client:
        assert project_seen(client) == gateway.project_id
        gateway.cli("keys", "edit", gateway.access_key, "--project", project["id"])
        wait_for(lambda: project_seen(client) == project["id"], timeout=BOUND)


def test_serve_with_two_workers(
    tmp_path: Path, upstream: Upstream, store_backend: Callable[[], str | None]
) -> None:
    config = write_config(tmp_path, upstream.url, store_url=store_backend())
    init: dict[str, Any] = json.loads(run_cli("--config", str(config), "init", "--json").stdout)
    process, url = start_serve(config, "--workers", "2")
    try:
        headers = {"X-Auth-Token": init["secret_key"]}

        def status() -> int:  # a new connection each time, so both workers answer
            return httpx.get(url + "/echo/x", headers=headers, timeout=5).status_code

        wait_for(lambda: status() == 200, timeout=15, interval=0.1)
        assert [status() for _ in range(10)] == [200] * 10
        run_cli("--config", str(config), "keys", "revoke", init["access_key"])
        revoked_at = time.monotonic()
        wait_for(lambda: status() == 401, timeout=BOUND)
        time.sleep(max(0.0, BOUND - (time.monotonic() - revoked_at)))
        assert [status() for _ in range(20)] == [401] * 20
    finally:
        stderr = stop_serve(process)
    assert init["secret_key"] not in stderr
