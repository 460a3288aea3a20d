"""Crash and churn: SIGKILL of the gateway or the CLI during writes; 1,000 clients
vanishing mid-stream."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from core.config import StoreConfig
from core.store import make_store
from tests.support import (
    BOTH_STORES,
    Gateway,
    Upstream,
    listening,
    run_cli,
    spawn_cli,
    wait_for,
    write_config,
)

BACKENDS = BOTH_STORES  # SIGKILL during writes loses no acknowledged write on either store


def test_sigkill_during_admin_writes_loses_nothing_acknowledged(
    tmp_path: Path, upstream: Upstream, store_backend: Callable[[], str | None]
) -> None:
    store_url = store_backend()
    path = write_config(tmp_path, upstream.url, store_url=store_url)
    path.write_text(
        path.read_text().replace('[admin]\nlisten = ""', '[admin]\nlisten = "127.0.0.1:0"')
    )
    init = json.loads(run_cli("--config", str(path), "init", "--json").stdout)
    process = spawn_cli("--config", str(path), "serve")
    admin_url = listening(process, 2)[1]
    headers = {"X-Auth-Token": init["secret_key"]}
    wait_for(lambda: httpx.get(admin_url + "/v1/whoami", headers=headers).is_success, 10, 0.1)
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer(prefix: str) -> None:
        with httpx.Client(base_url=admin_url, headers=headers, timeout=5) as client:
            n = 0
            while not stop.is_set():
                name = f"{prefix}-{n}"
                n += 1
                try:
                    if client.post("/v1/projects", json={"name": name}).status_code == 201:
                        acknowledged.append(name)
                except httpx.TransportError:
                    return

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(acknowledged) >= 50, timeout=20)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(10)
    if store_url is None:
        with sqlite3.connect(tmp_path / "store.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored, audited = projects_and_their_audit_events(store_url or str(tmp_path / "store.db"))
    assert set(acknowledged) <= stored
    assert audited == len(stored) - 1  # every project but init's has its audit event
    # And the store opens and serves again.
    assert "projects" in run_cli("--config", str(path), "projects", "list", "--json").stdout


def projects_and_their_audit_events(target: str) -> tuple[set[str], int]:
    async def read() -> tuple[set[str], int]:
        db = await make_store(StoreConfig().pointing_at(target)).open(create=False)
        try:
            names = {str(row[0]) for row in await db.fetchall("SELECT name FROM projects")}
            row = await db.fetchone(
                "SELECT count(*) FROM audit_events WHERE action = 'project.create'"
            )
            return names, int(row[0]) if row else 0
        finally:
            await db.close()

    return asyncio.run(read())


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_clients_vanishing_mid_stream_leak_nothing(gateway: Gateway, upstream: Upstream) -> None:
    port = int(gateway.url.rsplit(":", 1)[1])
    token = gateway.secret_key.encode()
    download = (
        b"GET /api/stream?bytes=50000000 HTTP/1.1\r\nHost: x\r\nX-Auth-Token: "
        + token
        + b"\r\n\r\n"
    )
    upload = (
        b"POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
        b"X-Auth-Token: " + token + b"\r\n\r\n" + b"u" * 20_000
    )
    with gateway.client() as client:  # warm the upstream pool and the cache
        client.get("/echo/x", headers={"X-Auth-Token": gateway.secret_key})
    time.sleep(0.2)
    baseline = open_fds()
    aborted_before = len(upstream.aborted)
    for i in range(1000):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            if i % 2:
                sock.sendall(download)
                sock.recv(16384)
            else:
                sock.sendall(upload)
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    wait_for(lambda: open_fds() <= baseline + 10, timeout=15, interval=0.05)
    # Each vanished download must have freed its upstream connection at once, not been read to
    # its end for nobody (uvicorn drops sends to a gone client silently).
    wait_for(lambda: len(upstream.aborted) - aborted_before >= 500, timeout=5)
    with gateway.client() as client:
        assert client.get("/echo/x", headers={"X-Auth-Token": gateway.secret_key}).is_success


def test_sigkill_of_the_cli_during_writes_leaves_no_half_written_key(tmp_path: Path) -> None:
    """24 concurrent `gateway keys create` processes, each SIGKILLed at a random moment of its
    life (start-up, open, migration check, write, commit). Every key whose creation the CLI
    acknowledged (exit 0 with its JSON) is stored; every stored key is whole: its secret, its
    key event and its audit event, written in one transaction, are there together."""
    path = write_config(tmp_path, "http://127.0.0.1:9")
    owner = json.loads(run_cli("--config", str(path), "init", "--json").stdout)["user_id"]
    rng = random.Random(5)
    processes = [
        (spawn_cli("--config", str(path), "keys", "create", "--user", owner, "--json"), delay)
        for delay in sorted(rng.uniform(0.1, 1.5) for _ in range(24))
    ]
    started = time.monotonic()
    acknowledged: set[str] = set()
    for process, delay in processes:
        time.sleep(max(0.0, started + delay - time.monotonic()))
        process.send_signal(signal.SIGKILL)
    for process, _ in processes:
        out, _err = process.communicate(timeout=30)
        if process.returncode == 0:
            acknowledged.add(json.loads(out)["access_key"])
    killed = sum(p.returncode == -signal.SIGKILL for p, _ in processes)
    assert killed > 0, "every CLI finished before its kill: the test exercised nothing"
    with sqlite3.connect(tmp_path / "store.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in db.execute("SELECT access_key FROM api_keys")}
        whole = {
            row[0]
            for row in db.execute(
                "SELECT k.access_key FROM api_keys k"
                " WHERE EXISTS (SELECT 1 FROM key_secrets s WHERE s.access_key = k.access_key)"
                " AND EXISTS (SELECT 1 FROM key_events e WHERE e.access_key = k.access_key)"
                " AND EXISTS (SELECT 1 FROM audit_events a"
                "  WHERE a.action = 'api_key.create' AND a.target_id = k.access_key)"
            )
        }
        orphans = db.execute(
            "SELECT count(*) FROM key_secrets"
            " WHERE access_key NOT IN (SELECT access_key FROM api_keys)"
        ).fetchone()[0]
    assert acknowledged <= stored
    assert stored == whole and orphans == 0
    # The store is still usable by the next CLI.
    listed = json.loads(run_cli("--config", str(path), "keys", "list", "--json").stdout)
    assert len(listed["api_keys"]) == len(stored)
