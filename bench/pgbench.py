"""The PostgreSQL rows of `make bench`: a database of the shared server filled with the same keys as
the SQLite store, cold lookups through the verifier, and the revocation latency across two nodes.

The database is the server at ``$GATEWAY_TEST_POSTGRES_URL`` (default the local one); each run
makes its own and drops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from micro_verify import cold_lookups

from admin import service
from core.store.postgres import PostgresDatabase
from core.tokens import SecretFormat, hash_secret

SERVER = os.environ.get("GATEWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parent.parent


def available() -> str | None:
    """None if the server answers, else why not."""

    async def probe() -> None:
        conn = await asyncpg.connect(SERVER, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"no PostgreSQL at {SERVER} ({exc})"
    return None


def _on_server(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(SERVER, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def create_database() -> tuple[str, str]:
    name = f"gw_bench_{os.getpid()}_{random.getrandbits(32):08x}"
    _on_server(f'CREATE DATABASE "{name}"')
    return name, SERVER.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    _on_server(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def give_credits(url: str, access_key: str, credits: str) -> None:
    """Rows 5cp: a key spending credits (its balance starts at its `remaining`)."""

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "UPDATE api_keys SET credits = $1 WHERE access_key = $2", credits, access_key
            )
        finally:
            await conn.close()

    asyncio.run(run())


def fill(url: str, secrets: list[str]) -> dict[str, str]:
    """``init``, then the keys with COPY (the bulk path). Returns the owner's secret and ids."""

    async def run() -> dict[str, str]:
        db = await PostgresDatabase(url, 1, 2).open(create=True)
        made = await service.init(db, SecretFormat())
        await db.close()
        assert made.secret_key is not None
        org, user, project = made.user.organization_id, made.user.id, made.project.id
        now = time.time()
        access_keys = [f"GWKP{n:016d}" for n in range(len(secrets))]
        conn = await asyncpg.connect(url)
        try:
            await conn.copy_records_to_table(
                "api_keys",
                columns=[
                    "access_key",
                    "organization_id",
                    "user_id",
                    "default_project_id",
                    "description",
                    "mode",
                    "created_at",
                    "updated_at",
                ],
                records=((ak, org, user, project, "bench", "live", now, now) for ak in access_keys),
            )
            await conn.copy_records_to_table(
                "key_secrets",
                columns=["secret_hash", "access_key", "secret_prefix", "created_at"],
                records=(
                    (hash_secret(s), ak, s[:12], now)
                    for s, ak in zip(secrets, access_keys, strict=True)
                ),
            )
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        return {"owner_secret": made.secret_key, "user_id": user}

    return asyncio.run(run())


def cold_direct(url: str, secrets: list[str]) -> dict[str, float]:
    """Cold lookups through the verifier alone: one round trip each on a pooled connection."""

    async def run() -> dict[str, float]:
        return await cold_lookups(await PostgresDatabase(url, 1, 2).open(create=False), secrets)

    return asyncio.run(run())


def _status(url: str, secret: str) -> int:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    import socket

    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            f"GET /api/small.json HTTP/1.1\r\nHost: b\r\nX-Auth-Token: {secret}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        head = sock.recv(64)
    return int(head.split(b" ", 2)[1])


def revocation_across_nodes(
    work: Path, config_text: str, owner: dict[str, str], revocations: int
) -> dict[str, Any]:
    """Two `gateway serve` nodes (two workers each) on the database, the poll every 5 s, so a
    refusal within it is the NOTIFY's doing; keys revoked through node A's admin API. Each
    latency runs from sending the DELETE to both nodes refusing the key on new connections."""
    # The poll every 5 s, in the config's [cache] table (TOML allows one) or a new one.
    poll = "invalidation_interval_seconds = 5\n"
    if "\n[cache]\n" in config_text:
        config_text = config_text.replace("\n[cache]\n", "\n[cache]\n" + poll, 1)
    else:
        config_text += "\n[cache]\n" + poll
    text = config_text.replace('[admin]\nlisten = ""', '[admin]\nlisten = "127.0.0.1:0"')
    configs = []
    for name, body in (("a", text), ("b", config_text)):
        path = work / f"node-{name}.toml"
        path.write_text(body)
        configs.append(path)
    command = [sys.executable, "-m", "gatewaycli"]
    nodes, urls = [], []
    admin_url = ""
    try:
        for path in configs:
            node = subprocess.Popen(
                [*command, "--config", str(path), "serve", "--workers", "2"],
                stdout=subprocess.DEVNULL,  # the access log's; `serve` says where on stderr
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            nodes.append(node)
            assert node.stderr is not None
            urls.append(node.stderr.readline().split("listening on ", 1)[1].split()[0])
            if path.name == "node-a.toml":
                admin_url = node.stderr.readline().split("listening on ", 1)[1].strip()
        headers = {"X-Auth-Token": owner["owner_secret"]}
        with httpx.Client(base_url=admin_url, headers=headers, timeout=10) as admin:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    if admin.get("/v1/whoami").is_success:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            keys = [
                admin.post("/v1/api-keys", json={"description": f"doomed {n}"}).json()
                for n in range(revocations)
            ]
            for key in keys:  # cached in every worker of both nodes
                for url in urls:
                    for _ in range(8):
                        assert _status(url, key["secret_key"]) == 200
            latencies = []
            for key in keys:
                started = time.monotonic()
                admin.delete(f"/v1/api-keys/{key['access_key']}")
                while not all(
                    _status(url, key["secret_key"]) == 401 for url in urls for _ in range(3)
                ):
                    if time.monotonic() - started > 10:
                        raise RuntimeError("a revoked key was still accepted after 10 s")
                    time.sleep(0.002)
                latencies.append(time.monotonic() - started)
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.wait(20)
    return {
        "revocations": len(latencies),
        "median_ms": statistics.median(latencies) * 1000,
        "max_ms": max(latencies) * 1000,
    }


if __name__ == "__main__":  # a quick look: python bench/pgbench.py
    print(json.dumps({"server": SERVER, "problem": available()}))
