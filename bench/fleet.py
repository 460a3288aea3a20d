"""A fleet on one PostgreSQL: NODES `gateway serve` processes (small pools) on one database of the
shared server; what they cost it at rest and how fast a revocation reaches all of them.

    .venv/bin/python bench/fleet.py [--nodes 50] [--workers 1] [--revocations 10] [--json PATH]

Reports (docs/fleet.md has a run's figures):
- **connections held** at rest, by ``application_name`` (``gateway``: the pools;
  ``gateway-listen``: one per node), against ``StoreConfig.connections``;
- **queries per second at rest**: the statements the database ran (``pg_stat_statements``) over
  ``--rest-seconds``, and which ones;
- **revocation fan-out**: a key cached on every node is revoked (one transaction, as the admin
  API does); each node is asked on its own kept-alive connection until it refuses, and the time
  from the commit to each refusal is kept. Median and max over every (key, node), and the median
  and max of the slowest node per key. The probes' own pace (every node asked in turn by one
  client) bounds the resolution at a few ms per round.

The server is one of the run's own (``tests.support.pgserver``: initdb in a temporary directory,
``max_connections`` 400), so the shared server's limit of 100 and its other users stay out of
the figures; ``--pgbouncer`` puts Debian's PgBouncer (transaction mode, 20 server connections)
between the nodes' pools and it, their listeners going straight to it. The quick form that
``tests/test_bench_fleet.py`` runs in `make test`, so the script does not rot, has two nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiohttp import web

from admin import access, service
from core import config as config_module
from core.store import make_store
from core.tokens import SecretFormat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test suite's own servers: tests.support
from tests.support.pgbouncer import PgBouncer  # noqa: E402
from tests.support.pgserver import PgServer  # noqa: E402


def pool(idle: float) -> str:
    return f"pool_min_size = 1\npool_max_size = 2\npool_idle_seconds = {idle}"


def store_text(direct: str, pooled: str | None, idle: float) -> str:
    if pooled is None:
        return f'url = "{direct}"\n{pool(idle)}'
    return f'url = "{pooled}"\ntransaction_pooler = true\nlisten_url = "{direct}"\n{pool(idle)}'


def config_text(store: str, upstream: str) -> str:
    return f"""
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[store]
{store}
[log]
access = "off"

[[routes]]
prefix = "/api"
upstream = "{upstream}"
auth = "required"
"""


async def upstream() -> tuple[web.AppRunner, str]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def held(server: str, database: str) -> Counter[str]:
    """Every connection to the server by application_name (PgBouncer's to ``database`` too)."""
    conn = await asyncpg.connect(server)
    try:
        rows = await conn.fetch(
            "SELECT application_name FROM pg_stat_activity WHERE datname = $1", database
        )
    finally:
        await conn.close()
    return Counter(row[0] for row in rows)


async def statements(server: str, database: str) -> Counter[str]:
    """How often the database ran each statement since the server started."""
    conn = await asyncpg.connect(server)
    try:
        rows = await conn.fetch(
            "SELECT query, calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = $1",
            database,
        )
    finally:
        await conn.close()
    found: Counter[str] = Counter()
    for query, calls in rows:
        found[" ".join(query.split())[:60]] += calls
    return found


async def start_nodes(
    config: Path, nodes: int, workers: int, started: list[tuple[Any, Path]]
) -> tuple[list[str], list[str]]:
    """The nodes, ten at a time (fifty interpreters starting at once on two cores took long
    enough for a store connect to time out); each one's proxy address once it prints it.
    ``started`` gets every process as it starts, with the file its stderr goes to. Returns
    their proxies' and admin listeners' addresses."""
    urls, admin_urls = [], []
    for first in range(0, nodes, 10):
        batch = []
        for n in range(first, min(first + 10, nodes)):
            errors = config.parent / f"node-{n}.err"
            with errors.open("wb") as stderr:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    *("-m", "gatewaycli", "--config", str(config), "serve"),
                    *("--workers", str(workers)),
                    stdout=subprocess.DEVNULL,  # the access log, if any: not read
                    stderr=stderr,
                    cwd=ROOT,
                )
            started.append((process, errors))
            batch.append((process, errors))
        for process, errors in batch:
            proxy, admin = await said_listening(process, errors, 300)
            urls.append(proxy)
            admin_urls.append(admin)
    return urls, admin_urls


async def said_listening(process: Any, errors: Path, timeout: float) -> tuple[str, str]:
    """The proxy's and the admin listener's addresses, from the "listening on" lines the node
    says on stderr (its stdout is the access log's)."""
    deadline = time.monotonic() + timeout
    while True:
        text = errors.read_text(errors="replace")
        found = [
            line.split("listening on ", 1)[1].split()[0]
            for line in text.splitlines()
            if "listening on " in line
        ]
        if len(found) >= 2:
            return found[0], found[1]
        if process.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"a node did not start: {text[-2000:]}")
        await asyncio.sleep(0.05)


class Probe:
    """One kept-alive connection to a node's proxy, asked with bytes written by hand: httpx's
    own CPU per request (hundreds of us) made the probes, not the nodes, the slow part."""

    def __init__(self, url: str) -> None:
        self.host, port = url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def status(self, secret: str) -> int:
        try:
            return await self._ask(secret)
        except (asyncio.IncompleteReadError, ConnectionError):
            # The node closed it (idle past its keep-alive timeout, 30 s): a new one.
            await self.close()
            return await self._ask(secret)

    async def _ask(self, secret: str) -> int:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        writer.write(f"GET /api/x HTTP/1.1\r\nHost: b\r\nX-Auth-Token: {secret}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        return int(head.split(b" ", 2)[1])

    async def close(self) -> None:
        streams, self.streams = self.streams, None
        if streams is not None:
            streams[1].close()
            with contextlib.suppress(OSError):
                await streams[1].wait_closed()


async def fan_out(db: Any, probes: list[Probe], secret: str, access_key: str) -> list[float]:
    """Seconds from the revocation's commit to each node's first refusal."""
    await service.revoke_key(db, access.LOCAL_OPERATOR, access_key)
    committed = time.monotonic()
    refused: list[float | None] = [None] * len(probes)

    async def watch(n: int) -> None:
        while refused[n] is None:
            if await probes[n].status(secret) == 401:
                refused[n] = time.monotonic() - committed
            elif time.monotonic() - committed > 10:
                raise RuntimeError(f"node {n} still accepts a key revoked 10 s ago")

    await asyncio.gather(*(watch(n) for n in range(len(probes))))
    return [r for r in refused if r is not None]


async def lag_buckets(admin_urls: list[str]) -> dict[str, int]:
    """The nodes' own revocation lag (commit to eviction, ``gateway_revocation_lag_seconds``),
    bucket counts added up over every node."""
    total: Counter[str] = Counter()
    async with httpx.AsyncClient(timeout=30) as client:
        for url in admin_urls:
            text = (await client.get(url + "/metrics")).text
            for line in text.splitlines():
                if line.startswith("gateway_revocation_lag_seconds_bucket"):
                    bound = line.split('le="', 1)[1].split('"', 1)[0]
                    total[bound] += int(float(line.rsplit(" ", 1)[1]))
    return dict(total)


async def run(
    args: argparse.Namespace, server: str, name: str, pooled: str | None
) -> dict[str, Any]:
    store_url = server.rsplit("/", 1)[0] + "/" + name
    runner, upstream_url = await upstream()
    cleanup: list[Path] = []
    nodes: list[tuple[Any, Path]] = []
    probes: list[Probe] = []
    try:
        work = Path(tempfile.mkdtemp(prefix="gw-fleet-"))
        cleanup.append(work)
        config = work / "gateway.toml"
        config.write_text(config_text(store_text(store_url, pooled, args.idle), upstream_url))
        loaded = config_module.load(config)
        db = await make_store(loaded.store, listens=False).open(create=True)
        made = await service.init(db, SecretFormat())
        keys = [
            await service.create_key(
                db, access.LOCAL_OPERATOR, SecretFormat(), user_id=made.user.id
            )
            for _ in range(args.revocations + 1)
        ]
        began = time.monotonic()
        urls, admin_urls = await start_nodes(config, args.nodes, args.workers, nodes)
        probes = [Probe(url) for url in urls]
        for key in keys:  # every key cached on every node (every worker: several tries)
            for _ in range(2 * args.workers):
                answers = await asyncio.gather(*(p.status(key.secret_key) for p in probes))
                assert set(answers) == {200}, answers
        ready = time.monotonic() - began

        await db.close()  # ours would be counted with the nodes'
        await asyncio.sleep(args.settle)  # the pools back to their floor (pool_idle_seconds)
        at_rest = await held(server, name)
        before, t0 = await statements(server, name), time.monotonic()
        await asyncio.sleep(args.rest_seconds)
        after, t1 = await statements(server, name), time.monotonic()
        ran = after - before
        qps = sum(ran.values()) / (t1 - t0)

        db = await make_store(loaded.store, listens=False).open(create=False)
        per_node: list[float] = []
        slowest: list[float] = []
        for key in keys[: args.revocations]:
            latencies = await fan_out(db, probes, key.secret_key, key.key.access_key)
            per_node.extend(latencies)
            slowest.append(max(latencies))
        assert await probes[0].status(keys[-1].secret_key) == 200  # not revoked
        lags = await lag_buckets(admin_urls)
        await db.close()
        expected = loaded.store.connections(args.workers)
        return {
            "nodes": args.nodes,
            "workers": args.workers,
            "pool": pool(args.idle).replace("\n", ", "),
            "pgbouncer": pooled is not None,
            "started_and_cached_seconds": round(ready, 1),
            "connections_at_rest": dict(at_rest),
            "connections_at_rest_total": sum(at_rest.values()),
            "connections_expected": {
                "per_node_at_rest": expected[0],
                "per_node_most": expected[1],
                "at_rest": expected[0] * args.nodes,
            },
            "queries_per_second_at_rest": round(qps, 1),
            "queries_at_rest_by_statement": {
                query: round(calls / (t1 - t0), 2) for query, calls in ran.most_common(8)
            },
            "rest_seconds": args.rest_seconds,
            "revocations": args.revocations,
            "fan_out_ms": {
                "median": round(statistics.median(per_node) * 1000, 1),
                "max": round(max(per_node) * 1000, 1),
            },
            "nodes_own_lag_buckets": lags,
            "all_nodes_refuse_ms": {
                "median": round(statistics.median(slowest) * 1000, 1),
                "max": round(max(slowest) * 1000, 1),
            },
        }
    finally:
        for probe in probes:
            await probe.close()
        for process, _ in nodes:
            process.terminate()
        for process, _ in nodes:
            await process.wait()
        await runner.cleanup()
        for work in cleanup:
            shutil.rmtree(work, ignore_errors=True)


async def create(server: str, name: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.execute("CREATE EXTENSION pg_stat_statements")  # read from here
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="workers per node")
    parser.add_argument("--revocations", type=int, default=10)
    parser.add_argument("--rest-seconds", type=float, default=30.0)
    parser.add_argument("--idle", type=float, default=5.0, help="[store] pool_idle_seconds")
    parser.add_argument("--settle", type=float, default=8.0, help="idle seconds before counting")
    parser.add_argument("--pgbouncer", action="store_true", help="the pools through PgBouncer")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    server = PgServer()
    bouncer: PgBouncer | None = None
    try:
        server.start(400, "shared_preload_libraries=pg_stat_statements")
        asyncio.run(create(server.url, "fleet"))
        if args.pgbouncer:
            bouncer = PgBouncer("127.0.0.1", server.port, pool_size=20)
        pooled = bouncer.url("fleet") if bouncer is not None else None
        figures = asyncio.run(run(args, server.url, "fleet", pooled))
    finally:
        if bouncer is not None:
            bouncer.stop()
        server.remove()
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
