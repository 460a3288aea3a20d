"""`make bench` / `make bench-quick`: the gateway side by side with nginx and a bare
Python proxy, against one nginx upstream serving a small static body.

    .venv/bin/python bench/run.py [--quick]

Rows (each with wrk at 1 and at 32 connections, one wrk thread, the same Lua script):
 1 the upstream directly; 2 nginx proxy_pass to it (keepalive); 3 a bare pass-through proxy
 (bench/bare_proxy.py, the Python floor); 4 the gateway on an auth = "none" route; 5 ... a
 "required" route with one valid key; 6 ... with 10,000 valid keys in round robin; 7 ...
 well-formed unknown tokens, all different (store queries counted).
Then 8: cold lookups against a store of 1,000,000 keys (through HTTP at 1 connection, and the
verifier alone), and 9: 100 MB upload and download through the gateway and through nginx, with
the gateway's peak RSS growth.

Rows 1-7 are interleaved (1 2 3 4 5 6 7, then again) and medians reported, because this machine
is noisy. Prints a Markdown table and writes JSON (and the table) under bench/results/.
`--quick` runs every row briefly at small sizes: it checks the harness, not the targets.
Exit status: 0, or 1 if a row failed (errors, wrong statuses), or 2 if nginx or wrk is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pgbench
import verify_api
import webhook_row
from micro_verify import cached_hit_seconds, cold_lookups

from admin import access, service
from core import assertion_keys
from core.store.sqlite import SQLiteDatabase
from core.tokens import BASE62, RANDOM_LENGTH, SecretFormat, checksum, hash_secret

BENCH = Path(__file__).resolve().parent
FORWARD_AUTH_NGINX = BENCH.parent / "docs" / "forward-auth" / "nginx.conf"
PYTHON = sys.executable


@dataclass(frozen=True)
class Scale:
    name: str
    seconds: int  # per wrk run
    rounds: int  # interleaved rounds of rows 1-7
    round_robin_keys: int  # row 6
    store_keys: int  # keys in the store (row 8)
    cold_http: int  # distinct cold keys offered to wrk in row 8
    cold_direct: int  # cold lookups through the verifier alone in row 8
    body_mb: int  # row 9
    transfers: int  # row 9 repetitions (median)


FULL = Scale("full", 5, 3, 10_000, 1_000_000, 60_000, 5_000, 100, 3)
QUICK = Scale("quick", 1, 1, 1_000, 20_000, 6_000, 500, 10, 1)
ROWS = {
    "1": "upstream directly (nginx, static body)",
    "2": "nginx proxy_pass (keepalive)",
    "3": "bare Python proxy on aiohttp (the old engine's floor)",
    "3e": "bare proxy on the gateway's engine (floor: auth off, no headers added)",
    "4": 'gateway, auth = "none"',
    "5": "gateway, one key (cache hits)",
    "6": "gateway, 10,000 keys round robin",
    "7": "gateway, unknown tokens, all different",
    "5p": "gateway on PostgreSQL, one key (cache hits)",
    "5a": "gateway, one key, access log to a file",
    "5m": "gateway, one key, metrics off",
    "5l": "gateway, one key, rate-limited route (local)",
    "5r": "gateway, one key, rate-limited route (Redis)",
    "5s": "gateway, one key, route signing identity assertions",
    "5f": "nginx auth_request to the gateway (forward-auth), one key",
    "5c": "gateway, one key spending credits (cost 1)",
    "5cp": "gateway on PostgreSQL, one key spending credits (cost 1)",
    "5w": "gateway, one key, webhook events to a receiver that never answers",
}
# Rows measured as a ratio to row 5: each is run right after a run of row 5 (kept as "ROW.base"),
# and its target is the median over rounds of the two adjacent runs' ratio. Measured apart, a
# row's place in the round moved it by up to 25% on this VM, more than the costs compared.
PAIRED = ("5a", "5m", "5l", "5r", "5s", "5f", "5c", "5cp", "5w")
# A paired row's base when it is not row 5: the same gateway on PostgreSQL.
PAIRED_BASE = {"5cp": "5p"}
# Rows 5c/5cp: a key whose credits never run out in a run, so every request spends one.
CREDITS = '{"remaining": 1000000000000, "refill": null}'

# Rows 5l/5r: a limit that never bites at these rates, so every request is checked and recorded.
LIMITED_ROUTE = "rate_limits = [{limit = 100000, window_seconds = 1}]"
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_problem() -> str | None:
    """None if Redis answers, else why not."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"no Redis at {REDIS_URL} ({exc})"
    finally:
        client.close()
    return None


# -- keys, in bulk -------------------------------------------------------------------------------


def fast_secret(rng: random.Random, prefix: str = "gws") -> str:
    """A well-formed secret from a seeded (non-cryptographic) generator: fine for a throwaway
    benchmark store, and about 10x faster than ``secrets`` when a million are needed."""
    body = f"{prefix}_live_" + "".join(rng.choices(BASE62, k=RANDOM_LENGTH))
    return body + checksum(body)


def fill_store(path: Path, count: int, rng: random.Random) -> tuple[list[str], str]:
    """Create the store (``init``), then add ``count`` keys in one transaction with
    ``executemany`` (the bulk path: a million single inserts would take minutes). Returns the
    secrets and the owner's secret."""

    async def init() -> tuple[str, str, str, str]:
        db = await SQLiteDatabase(path).open()
        made = await service.init(db, SecretFormat())
        await db.close()
        assert made.secret_key is not None
        return made.secret_key, made.user.organization_id, made.user.id, made.project.id

    owner_secret, org, user, project = asyncio.run(init())
    secrets = [fast_secret(rng) for _ in range(count)]
    now = time.time()
    access_keys = [f"GWKB{n:016d}" for n in range(count)]
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO api_keys (access_key, organization_id, user_id, application_id,"
            " default_project_id, description, mode, created_at, updated_at, expires_at,"
            " last_used_at, creation_ip) VALUES (?, ?, ?, NULL, ?, 'bench', 'live', ?, ?, NULL,"
            " NULL, NULL)",
            ((ak, org, user, project, now, now) for ak in access_keys),
        )
        db.executemany(
            "INSERT INTO key_secrets (secret_hash, access_key, secret_prefix, created_at)"
            " VALUES (?, ?, ?, ?)",
            ((hash_secret(s), ak, s[:12], now) for s, ak in zip(secrets, access_keys, strict=True)),
        )
        db.execute("COMMIT")
    return secrets, owner_secret


# -- processes -----------------------------------------------------------------------------------


class Processes:
    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str, lines: int = 0) -> tuple[subprocess.Popen[str], list[str]]:
        """Start a process; read its first ``lines`` lines of output (addresses)."""
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=BENCH.parent
        )
        self.started.append(process)
        assert process.stdout is not None
        out = []
        for _ in range(lines):
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(
                    f"{args[0]} exited: {process.stderr.read() if process.stderr else ''}"
                )
            out.append(line.strip())
        return process, out

    def check(self) -> None:
        """Raise with the output of any helper that has exited (a bad config, a taken port)."""
        for process in self.started:
            if process.poll() is not None:
                _, err = process.communicate()
                raise RuntimeError(f"{process.args} exited: {err.strip()}")

    def stop(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def nginx_conf(work: Path, name: str, servers: str) -> Path:
    """One nginx instance with one worker, no access log, temp files under ``work``."""
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / f"{name}-{sub}").mkdir(exist_ok=True)
    conf = work / f"{name}.conf"
    conf.write_text(
        f"""
{"user root root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {work}/{name}.pid;
error_log {work}/{name}.err warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    sendfile on;
    client_body_temp_path {work}/{name}-body;
    proxy_temp_path {work}/{name}-proxy;
    fastcgi_temp_path {work}/{name}-fastcgi;
    uwsgi_temp_path {work}/{name}-uwsgi;
    scgi_temp_path {work}/{name}-scgi;
    {servers}
}}
"""
    )
    return conf


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, headers: dict[str, str] | None = None, timeout: float = 15) -> None:
    async def poll() -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        if response.status < 500:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not answer within {timeout} s")
                await asyncio.sleep(0.1)

    asyncio.run(poll())


# -- load ----------------------------------------------------------------------------------------


def wrk_command(
    url: str, connections: int, seconds: int, tokens: Path | None, count: bool
) -> list[str]:
    """One wrk thread, ``connections`` connections, bench/load.lua sending ``tokens``."""
    return [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(BENCH / "load.lua"),
        url,
        "--",
        "/" + url.split("/", 3)[3],
        str(tokens or ""),
        "1" if count else "0",
    ]


def wrk_figures(output: str) -> dict[str, Any]:
    """What bench/load.lua's done() printed (the last line), with the requests per second."""
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def wrk(
    url: str, connections: int, seconds: int, tokens: Path | None, count: bool
) -> dict[str, Any]:
    command = wrk_command(url, connections, seconds, tokens, count)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=True)
    return wrk_figures(done.stdout)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def store_queries(stats_url: str) -> int:
    async def get() -> int:
        async with aiohttp.ClientSession() as session, session.get(stats_url) as response:
            return int((await response.json())["store_queries"])

    return asyncio.run(get())


def warm(url: str, secrets: list[str]) -> None:
    """Put every key in the gateway's positive cache (32 requests in flight)."""

    async def run() -> None:
        queue = list(secrets)
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                while queue:
                    secret = queue.pop()
                    async with session.get(url, headers={"X-Auth-Token": secret}) as response:
                        await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"warm-up: {response.status} for a valid key")

            await asyncio.gather(*(worker() for _ in range(32)))

    asyncio.run(run())


# -- row 9: big bodies -----------------------------------------------------------------------------


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def transfer(url: str, size: int, upload: bool, headers: dict[str, str]) -> float:
    """Seconds to move ``size`` bytes one way; the client reads/writes 1 MiB chunks."""
    chunk = b"\0" * (1 << 20)

    async def body() -> Any:
        for _ in range(size // len(chunk)):
            yield chunk

    async def run() -> float:
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            started = time.perf_counter()
            if upload:
                sized = {**headers, "Content-Length": str(size)}
                async with session.post(url, data=body(), headers=sized) as response:
                    answer = await response.json()
                    if response.status != 200 or answer["received"] != size:
                        raise RuntimeError(f"upload through {url}: {response.status} {answer}")
            else:
                async with session.get(url, headers=headers) as response:
                    received = 0
                    async for part in response.content.iter_chunked(1 << 20):
                        received += len(part)
                    if response.status != 200 or received != size:
                        raise RuntimeError(
                            f"download through {url}: {response.status}, {received} B"
                        )
            return time.perf_counter() - started

    return asyncio.run(run())


def websocket_echo(url: str, headers: dict[str, str], seconds: float) -> float:
    """Row 11: messages per second echoed over 8 WebSockets, each with one message in flight
    (a 64-byte text, sent and waited for)."""
    from websockets.asyncio.client import connect

    async def run() -> float:
        done = 0
        deadline = time.monotonic() + seconds

        async def one() -> None:
            nonlocal done
            async with connect(url, additional_headers=headers, compression=None) as socket:
                message = "m" * 64
                while time.monotonic() < deadline:
                    await socket.send(message)
                    await socket.recv()
                    done += 1

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(8)))
        return done / (time.monotonic() - started)

    return asyncio.run(run())


def big_bodies(
    scale: Scale, nginx: str, gateway: str, gateway_pid: int, secret: str
) -> dict[str, Any]:
    size = scale.body_mb * (1 << 20)
    auth = {"X-Auth-Token": secret}
    result: dict[str, Any] = {"megabytes": scale.body_mb}
    for direction, upload in (("download", False), ("upload", True)):
        path = "/sink/upload" if upload else "/big/blob"
        nginx_times, gateway_times, growth = [], [], []
        for _ in range(scale.transfers):
            nginx_times.append(transfer(nginx + path, size, upload, {}))
            before = rss_kib(gateway_pid, "VmRSS")
            Path(f"/proc/{gateway_pid}/clear_refs").write_text("5")  # reset the peak (VmHWM)
            gateway_times.append(transfer(gateway + path, size, upload, auth))
            growth.append(rss_kib(gateway_pid, "VmHWM") - before)
        mb = size / 1e6
        result[direction] = {
            "nginx_mb_s": mb / statistics.median(nginx_times),
            "gateway_mb_s": mb / statistics.median(gateway_times),
            "gateway_peak_rss_growth_mb": max(growth) / 1024,
        }
        result[direction]["ratio"] = (
            result[direction]["gateway_mb_s"] / result[direction]["nginx_mb_s"]
        )
    return result


# -- row 8 without HTTP ----------------------------------------------------------------------------


def cold_direct(store: Path, secrets: list[str]) -> dict[str, float]:
    async def run() -> dict[str, float]:
        return await cold_lookups(await SQLiteDatabase(store).open(create=False), secrets)

    return asyncio.run(run())


# -- the run ---------------------------------------------------------------------------------------


def check_tools(quick: bool) -> None:
    """nginx and wrk are OS packages: `.ci/run` installs them. Elsewhere a missing one stops the
    full benchmark (exit 2); `make bench-quick` (inside `make test`) says so and skips, so that
    `make test` works on a machine with only Python and make."""
    missing = [
        f"{tool} (Debian/Ubuntu: apt-get install {package})"
        for tool, package in (("nginx", "nginx-light"), ("wrk", "wrk"))
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if missing:
        print("bench: missing " + "; ".join(missing), file=sys.stderr)
        if quick and not os.environ.get("CI"):
            print("bench: bench-quick SKIPPED (outside CI): install them", file=sys.stderr)
            raise SystemExit(0)
        raise SystemExit(2)


def run(scale: Scale) -> dict[str, Any]:
    check_tools(scale.name == "quick")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    rng = random.Random(4)
    processes = Processes()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        work = Path(tmp)
        www = work / "www"
        www.mkdir()
        (www / "small.json").write_text('{"ok": true, "service": "bench-upstream"}\n')
        (www / "api").mkdir()  # row 5f: nginx forwards the path as it is, prefix included
        (www / "api" / "small.json").write_text('{"ok": true, "service": "bench-upstream"}\n')
        # Rows 5s: the key that signs assertions, beside the configs (as `gateway init` makes it).
        assertion_keys.create(work / "assertion-keys.json", time.time())
        with (www / "blob").open("wb") as blob:
            blob.truncate(scale.body_mb * (1 << 20))
        print(
            f"bench ({scale.name}): filling a store with {scale.store_keys:,} keys ...", flush=True
        )
        started = time.monotonic()
        store = work / "store.db"
        secrets, _owner = fill_store(store, scale.store_keys, rng)
        fill_seconds = time.monotonic() - started
        with sqlite3.connect(store, isolation_level=None) as db:  # rows 5c: the second key
            db.execute(
                "UPDATE api_keys SET credits = ? WHERE access_key = ?",
                (CREDITS, "GWKB0000000000000001"),
            )
        round_robin = secrets[: scale.round_robin_keys]
        cold = secrets[scale.round_robin_keys : scale.round_robin_keys + scale.cold_http]
        cold_alone = secrets[-scale.cold_direct :]
        silent, silent_url = webhook_row.silent_receiver()  # row 5w
        try:
            up_port, proxy_port = free_port(), free_port()
            auth_port, front_port = free_port(), free_port()  # row 5f
            upstream = f"http://127.0.0.1:{up_port}"
            _, (sink,) = processes.start(PYTHON, str(BENCH / "sink.py"), lines=1)
            sink_port = sink.rsplit(":", 1)[1]
            processes.start(
                nginx_bin,
                "-e",
                str(work / "up.err"),
                "-c",
                str(
                    nginx_conf(
                        work,
                        "up",
                        f"server {{ listen 127.0.0.1:{up_port}; root {www}; }}",
                    )
                ),
            )
            processes.start(
                nginx_bin,
                "-e",
                str(work / "proxy.err"),
                "-c",
                str(
                    nginx_conf(
                        work,
                        "proxy",
                        f"""
    upstream up {{ server 127.0.0.1:{up_port}; keepalive 64; }}
    upstream sink {{ server 127.0.0.1:{sink_port}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{proxy_port};
        client_max_body_size 0;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_request_buffering off;
        proxy_buffering off;
        client_body_buffer_size 64k;
        proxy_buffer_size 64k;
        proxy_buffers 8 64k;
        proxy_busy_buffers_size 128k;
        location / {{ proxy_pass http://up; }}
        location /big/ {{ proxy_pass http://up/; }}
        location /sink/ {{ proxy_pass http://sink/; }}
    }}""",
                    )
                ),
            )
            nginx_proxy = f"http://127.0.0.1:{proxy_port}"
            # Row 5f: nginx asking the gateway about every request, with the documented file
            # (a whole configuration, its paths under the -p prefix) as written, our ports in.
            fwd = work / "fwd"
            fwd.mkdir(exist_ok=True)
            (fwd / "nginx.conf").write_text(
                FORWARD_AUTH_NGINX.read_text()
                .replace("127.0.0.1:8000", f"127.0.0.1:{front_port}")
                .replace("127.0.0.1:9000", f"127.0.0.1:{up_port}")
                .replace("127.0.0.1:8082", f"127.0.0.1:{auth_port}")
            )
            processes.start(
                nginx_bin,
                "-p",
                f"{fwd}/",
                "-e",
                str(work / "fwd.err"),
                "-c",
                str(fwd / "nginx.conf"),
                "-g",
                "daemon off;" + (" user root root;" if os.geteuid() == 0 else ""),
            )
            nginx_front = f"http://127.0.0.1:{front_port}"
            _, (bare,) = processes.start(
                PYTHON, str(BENCH / "bare_proxy.py"), upstream, "127.0.0.1:0", lines=1
            )
            _, (bare_engine,) = processes.start(
                PYTHON, str(BENCH / "bare_engine.py"), upstream, "127.0.0.1:0", lines=1
            )
            _, (ws_echo,) = processes.start(
                PYTHON, str(BENCH / "ws_echo.py"), "127.0.0.1:0", lines=1
            )
            limit = scale.body_mb * (1 << 20) + 1
            config = work / "gateway.toml"
            # [cache] ttl_seconds outlasts the run: rows 5 and 6 measure cache hits. With the
            # default 60 s, row 6's 10,000 keys, cached together by the warm-up, expired together
            # in mid-run in some rounds (a hit does not renew an entry, so warming them again
            # before each run did nothing): 10,000 misses, ~630 batched store queries in the run.
            base_text = f"""
[server]
listen = "127.0.0.1:0"
workers = 1
[admin]
listen = ""
[store]
path = "{store}"
[log]
access = "off"
[cache]
ttl_seconds = 3600
[webhooks]
deliver = false
[[routes]]
prefix = "/open"
upstream = "{upstream}"
auth = "none"
[[routes]]
prefix = "/api"
upstream = "{upstream}"
[[routes]]
prefix = "/limited"
upstream = "{upstream}"
{LIMITED_ROUTE}
[[routes]]
prefix = "/big"
upstream = "{upstream}"
max_body_bytes = {limit}
[[routes]]
prefix = "/sink"
upstream = "http://127.0.0.1:{sink_port}"
max_body_bytes = {limit}
[[routes]]
prefix = "/signed"
upstream = "{upstream}"
assertion = true
[[routes]]
prefix = "/ws"
upstream = "{ws_echo}"
websocket = true
"""
            # Only this gateway answers forward-auth checks (row 5f): the others share no port.
            config.write_text(
                base_text
                + f'[forward_auth]\nlisten = "127.0.0.1:{auth_port}"\nshape = "nginx"\n'
                + "rate_limited_status = 403\n"
            )
            gateway_process, (gateway, stats) = processes.start(
                PYTHON, str(BENCH / "gateway_server.py"), str(config), lines=2
            )
            # The same gateway writing its access log to a file (row 5a).
            logged_config = work / "gateway-logged.toml"
            logged_config.write_text(
                base_text.replace('access = "off"', f'access = "{work / "access.log"}"')
            )
            _, (logged_gateway, _) = processes.start(
                PYTHON, str(BENCH / "gateway_server.py"), str(logged_config), lines=2
            )
            # The same gateway counting nothing for /metrics (row 5m: what the counts cost).
            quiet_config = work / "gateway-no-metrics.toml"
            quiet_config.write_text(base_text + "[metrics]\nenabled = false\n")
            _, (quiet_gateway, _) = processes.start(
                PYTHON, str(BENCH / "gateway_server.py"), str(quiet_config), lines=2
            )
            # The same gateway delivering webhook events to a receiver that never answers (row
            # 5w): attempts time out after 2 s, every slot taken all through the run.
            webhook_row.add_pending_events(store, silent_url, 5000 if scale.name == "full" else 500)
            webhook_config = work / "gateway-webhooks.toml"
            webhook_config.write_text(
                base_text.replace(
                    "deliver = false",
                    "deliver = true\ntimeout_seconds = 2\npoll_interval_seconds = 1",
                )
            )
            _, (webhook_gateway, _) = processes.start(
                PYTHON, str(BENCH / "gateway_server.py"), str(webhook_config), lines=2
            )
            # The same gateway counting its rate limits in Redis (row 5r).
            redis_gateway = None
            problem = redis_problem()
            if problem is not None:
                print(f"bench: Redis row skipped: {problem}", flush=True)
                if os.environ.get("CI"):
                    failures.append(f"Redis row: {problem}")
            else:
                redis_config = work / "gateway-redis.toml"
                redis_config.write_text(
                    base_text + f'[ratelimit]\nbackend = "redis"\nurl = "{REDIS_URL}"\n'
                )
                _, (redis_gateway, _) = processes.start(
                    PYTHON, str(BENCH / "gateway_server.py"), str(redis_config), lines=2
                )
            # The same gateway on PostgreSQL, over the same keys (rows 5p, 8p, 10).
            pg_gateway = None
            problem = pgbench.available()
            if problem is not None:
                print(f"bench: PostgreSQL rows skipped: {problem}", flush=True)
                if os.environ.get("CI"):
                    failures.append(f"PostgreSQL rows: {problem}")
            else:
                print(
                    f"bench: filling a PostgreSQL store with {len(secrets):,} keys ...", flush=True
                )
                pg_name, pg_url = pgbench.create_database()
                started = time.monotonic()
                pg_owner = pgbench.fill(pg_url, secrets)
                pg_fill_seconds = time.monotonic() - started
                pgbench.give_credits(pg_url, "GWKP0000000000000001", CREDITS)
                pg_text = base_text.replace(f'path = "{store}"', f'url = "{pg_url}"')
                pg_config = work / "gateway-pg.toml"
                pg_config.write_text(pg_text)
                _, (pg_gateway, pg_stats) = processes.start(
                    PYTHON, str(BENCH / "gateway_server.py"), str(pg_config), lines=2
                )
            time.sleep(0.3)
            processes.check()
            for url in (
                upstream + "/small.json",
                nginx_proxy + "/small.json",
                bare + "/small.json",
            ):
                wait_http(url)
            wait_http(gateway + "/open/small.json")
            wait_http(logged_gateway + "/open/small.json")
            warm(logged_gateway + "/api/small.json", round_robin[:1])
            wait_http(quiet_gateway + "/open/small.json")
            warm(quiet_gateway + "/api/small.json", round_robin[:1])
            wait_http(webhook_gateway + "/open/small.json")
            warm(webhook_gateway + "/api/small.json", round_robin[:1])
            if redis_gateway is not None:
                wait_http(redis_gateway + "/open/small.json")
                warm(redis_gateway + "/api/small.json", round_robin[:1])
            if pg_gateway is not None:
                wait_http(pg_gateway + "/open/small.json")
                warm(pg_gateway + "/api/small.json", round_robin[:2])
            print("bench: warming the cache with the round-robin keys ...", flush=True)
            warm(gateway + "/api/small.json", round_robin)
            warm(gateway + "/signed/small.json", round_robin[:1])
            warm(nginx_front + "/api/small.json", round_robin[:1])
            one_key = write_lines(work / "one.txt", round_robin[:1])
            credit_key = write_lines(work / "credits.txt", round_robin[1:2])
            many_keys = write_lines(work / "many.txt", round_robin)
            targets = {
                "1": (upstream + "/small.json", None),
                "2": (nginx_proxy + "/small.json", None),
                "3": (bare + "/small.json", None),
                "3e": (bare_engine + "/small.json", None),
                "4": (gateway + "/open/small.json", None),
                "5": (gateway + "/api/small.json", one_key),
                "6": (gateway + "/api/small.json", many_keys),
                "7": (gateway + "/api/small.json", None),
            }
            targets["5a"] = (logged_gateway + "/api/small.json", one_key)
            targets["5m"] = (quiet_gateway + "/api/small.json", one_key)
            targets["5l"] = (gateway + "/limited/small.json", one_key)
            targets["5s"] = (gateway + "/signed/small.json", one_key)
            targets["5f"] = (nginx_front + "/api/small.json", one_key)
            targets["5c"] = (gateway + "/api/small.json", credit_key)
            targets["5w"] = (webhook_gateway + "/api/small.json", one_key)
            if redis_gateway is not None:
                targets["5r"] = (redis_gateway + "/limited/small.json", one_key)
            if pg_gateway is not None:
                targets["5p"] = (pg_gateway + "/api/small.json", one_key)
                targets["5cp"] = (pg_gateway + "/api/small.json", credit_key)
            runs: dict[str, dict[int, list[dict[str, Any]]]] = {r: {1: [], 32: []} for r in targets}
            for row in PAIRED:
                if row in targets:
                    runs[f"{row}.base"] = {1: [], 32: []}
            flood_size = 80_000 if scale.name == "full" else 20_000
            rows = list(targets.items())
            for round_number in range(scale.rounds):
                # Each round starts at another row: on this machine a row's place in the round
                # moved its figure by up to 25% (rows run late were slower), which made the
                # ratios between rows (5a/5, 5/5m, 5l/5) read noise. Rotated, each row runs
                # early in one round and late in another, and the medians even it out.
                shift = round_number * len(rows) // scale.rounds
                for connections in (1, 32):
                    for row, (url, tokens) in rows[shift:] + rows[:shift]:
                        label = f"round {round_number + 1}, c={connections}, row {row}"
                        if row == "7":
                            unknown = [fast_secret(rng) for _ in range(flood_size)]
                            tokens = write_lines(work / "unknown.txt", unknown)
                            queries_before = store_queries(stats)
                        if row in PAIRED:
                            base_url, base_tokens = targets[PAIRED_BASE.get(row, "5")]
                            base = wrk(base_url, connections, scale.seconds, base_tokens, False)
                            runs[f"{row}.base"][connections].append(base)
                        result = wrk(url, connections, scale.seconds, tokens, count=row == "7")
                        if row == "7":
                            result["store_queries"] = store_queries(stats) - queries_before
                            # wrk counts completed requests; up to one per connection was
                            # still in flight (and already looked up) when it stopped.
                            sent = result["requests"] + connections
                            result["distinct_tokens"] = min(sent, flood_size)
                            others = {s: n for s, n in result["statuses"].items() if s != "401"}
                            if others:
                                failures.append(f"{label}: answers other than 401: {others}")
                            if result["store_queries"] > result["distinct_tokens"]:
                                failures.append(f"{label}: more store queries than tokens")
                        elif result["errors"]["status"]:
                            failures.append(f"{label}: {result['errors']['status']} non-2xx")
                        socket_errors = sum(v for k, v in result["errors"].items() if k != "status")
                        if socket_errors:
                            failures.append(f"{label}: socket errors {result['errors']}")
                        runs[row][connections].append(result)
                        print(
                            f"  {label}: {result['rps']:8.0f} req/s, "
                            f"p50 {result['p50_us'] / 1000:.2f} ms",
                            flush=True,
                        )
            print("bench: row 8, cold lookups ...", flush=True)
            queries_before = store_queries(stats)
            cold_http = wrk(
                gateway + "/api/small.json",
                1,
                scale.seconds,
                write_lines(work / "cold.txt", cold),
                False,
            )
            cold_http["store_queries"] = store_queries(stats) - queries_before
            cold_http["all_cold"] = cold_http["requests"] <= len(cold)
            if cold_http["errors"]["status"]:
                failures.append(f"row 8: {cold_http['errors']['status']} non-2xx")
            pg: dict[str, Any] = {}
            if pg_gateway is not None:
                print("bench: row 8p, cold lookups on PostgreSQL ...", flush=True)
                queries_before = store_queries(pg_stats)
                pg_cold = secrets[-scale.cold_direct - scale.cold_http : -scale.cold_direct]
                pg["cold_http"] = wrk(
                    pg_gateway + "/api/small.json",
                    1,
                    scale.seconds,
                    write_lines(work / "cold-pg.txt", pg_cold),
                    False,
                )
                pg["cold_http"]["store_queries"] = store_queries(pg_stats) - queries_before
                if pg["cold_http"]["errors"]["status"]:
                    failures.append(f"row 8p: {pg['cold_http']['errors']['status']} non-2xx")
                print("bench: row 10, revocation across two PostgreSQL nodes ...", flush=True)
                pg["revocation"] = pgbench.revocation_across_nodes(
                    work, pg_text, pg_owner, 20 if scale.name == "full" else 4
                )
                pg["fill_seconds"] = pg_fill_seconds
            print("bench: row 11, WebSocket echo ...", flush=True)
            key = {"X-Auth-Token": round_robin[0]}
            ws_direct = ws_echo.replace("http://", "ws://") + "/room"
            ws_gateway = gateway.replace("http://", "ws://") + "/ws/room"
            echo_runs = [
                (
                    websocket_echo(ws_direct, {}, scale.seconds),
                    websocket_echo(ws_gateway, key, scale.seconds),
                )
                for _ in range(scale.rounds)
            ]
            websockets_row = {
                "direct": statistics.median(d for d, _ in echo_runs),
                "gateway": statistics.median(g for _, g in echo_runs),
            }
            print("bench: row 12, the verify API ...", flush=True)
            verify_row = verify_row_of(work, base_text, store, round_robin[0], scale)
            if set(verify_row["statuses"]) != {"200"}:
                failures.append(f"row 12: answers {verify_row['statuses']}")
            print("bench: row 9, big bodies ...", flush=True)
            big = big_bodies(scale, nginx_proxy, gateway, gateway_process.pid, round_robin[0])
        finally:
            processes.stop()
            silent.close()
        cold_verifier = cold_direct(store, cold_alone)
        if pg_gateway is not None:
            try:
                pg["cold_verifier"] = pgbench.cold_direct(pg_url, cold_alone)
            finally:
                pgbench.drop_database(pg_name)
    return {
        "scale": asdict(scale),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "nginx": subprocess.run(
                [nginx_bin, "-v"], capture_output=True, text=True
            ).stderr.strip(),
            "wrk": "wrk -t1, one Lua script for every row (bench/load.lua)",
        },
        "store_fill_seconds": fill_seconds,
        "rows": {row: summarize(runs[row]) for row in runs},
        "runs": runs,
        "cold": {"http": cold_http, "verifier": cold_verifier, "store_keys": scale.store_keys},
        "big_bodies": big,
        "websocket_echo": websockets_row,
        "verify_api": verify_row,
        "postgresql": pg,
        "failures": failures,
    }


def verify_row_of(
    work: Path, base_text: str, store: Path, secret: str, scale: Scale
) -> dict[str, Any]:
    """Row 12: `gateway serve` with an admin listener over the same store, a verifier key made
    for it, and `verify_api.measure` on a cached key."""

    async def verifier() -> str:
        db = await SQLiteDatabase(store).open()
        try:
            owner = await db.fetchone("SELECT id FROM users WHERE is_owner = 1")
            assert owner is not None
            made = await service.create_key(
                db,
                access.LOCAL_OPERATOR,
                SecretFormat(),
                user_id=owner[0],
                permissions=["keys:verify"],
            )
        finally:
            await db.close()
        return made.secret_key

    credential = asyncio.run(verifier())
    admin_port = free_port()
    config = work / "gateway-admin.toml"
    config.write_text(base_text.replace('listen = ""', f'listen = "127.0.0.1:{admin_port}"'))
    process = subprocess.Popen(
        [PYTHON, "-m", "gatewaycli", "--config", str(config), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=BENCH.parent,
    )
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        wait_http(admin + "/healthz")
        verify_api.measure(admin, credential, secret, 0.5)  # the key cached, connections open
        return verify_api.measure(admin, credential, secret, scale.seconds)
    finally:
        process.terminate()
        process.communicate(timeout=20)


def summarize(by_connections: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        str(c): {
            "rps": statistics.median(r["rps"] for r in results),
            "p50_ms": statistics.median(r["p50_us"] for r in results) / 1000,
            "p99_ms": statistics.median(r["p99_us"] for r in results) / 1000,
        }
        for c, results in by_connections.items()
    }


def targets(result: dict[str, Any], micro_us: float | None) -> list[tuple[str, bool, str]]:
    rows = result["rows"]

    def rps(row: str, c: str = "32") -> float:
        return float(rows[row][c]["rps"])

    def paired(row: str) -> float:
        """The median over rounds of ROW's req/s over row 5's in the run just before it."""
        found = result["runs"][row]["32"]
        bases = result["runs"][f"{row}.base"]["32"]
        return float(
            statistics.median(r["rps"] / b["rps"] for r, b in zip(found, bases, strict=True))
        )

    flood = result["runs"]["7"]["32"]
    big = result["big_bodies"]
    cold = result["cold"]
    checks = [
        (
            "(5)/(3e) >= 0.95 req/s at 32 connections (the engine with auth off, no headers)",
            rps("5") / rps("3e") >= 0.95,
            f"{rps('5') / rps('3e'):.2f}",
        ),
        (
            "(5) p50 within 0.3 ms of (3e) at 1 connection",
            rows["5"]["1"]["p50_ms"] - rows["3e"]["1"]["p50_ms"] <= 0.3,
            f"{rows['5']['1']['p50_ms'] - rows['3e']['1']['p50_ms']:+.3f} ms",
        ),
        (
            "(5) p99 <= 5 ms at 32 connections",
            rows["5"]["32"]["p99_ms"] <= 5,
            f"{rows['5']['32']['p99_ms']:.2f} ms",
        ),
        (
            "(4)/(3e) >= 0.95 at 32 connections",
            rps("4") / rps("3e") >= 0.95,
            f"{rps('4') / rps('3e'):.2f}",
        ),
        (
            "(5) x (3) the aiohttp floor at 32 connections: reported (the engine's gain)",
            True,
            f"{rps('5') / rps('3'):.2f}",
        ),
        (
            "(6)/(5) >= 0.95 at 32 connections",
            rps("6") / rps("5") >= 0.95,
            f"{rps('6') / rps('5'):.2f}",
        ),
        (
            "(7) >= (5) req/s, only 401s, <= 1 store query per distinct token",
            rps("7") >= rps("5")
            and not any("row 7" in f for f in result["failures"])
            and all(r["store_queries"] <= r["distinct_tokens"] for r in flood),
            f"{rps('7') / rps('5'):.2f} of (5); queries/tokens "
            + ", ".join(f"{r['store_queries']}/{r['distinct_tokens']}" for r in flood),
        ),
        (
            f"(8) cold lookup p99 <= 1 ms at {cold['store_keys']:,} keys (verifier)",
            cold["verifier"]["p99_us"] <= 1000,
            f"p99 {cold['verifier']['p99_us']:.0f} us",
        ),
        (
            "(9) gateway >= 0.5x nginx MB/s, peak RSS growth < 20 MB",
            all(
                big[d]["ratio"] >= 0.5 and big[d]["gateway_peak_rss_growth_mb"] < 20
                for d in ("download", "upload")
            ),
            ", ".join(
                f"{d} {big[d]['ratio']:.2f}x, +{big[d]['gateway_peak_rss_growth_mb']:.1f} MB"
                for d in ("download", "upload")
            ),
        ),
        (
            "(5) >= 0.50 x (2) at 32 connections",
            rps("5") / rps("2") >= 0.50,
            f"{rps('5') / rps('2'):.2f}",
        ),
        (
            "(8) through HTTP, every request a miss, p99 <= 5 ms (no stall of the loop)",
            cold["http"]["p99_us"] <= 5000,
            f"p99 {cold['http']['p99_us'] / 1000:.2f} ms",
        ),
    ]
    checks.append(
        (
            "(5a) access log on >= 0.90 x (5) at 32 connections (paired runs)",
            paired("5a") >= 0.90,
            f"{paired('5a'):.2f}",
        )
    )
    checks.append(
        (
            # Reported, not held to a target: 5m is another process, with none of row 5's
            # history (10,000 identities and 40,000 unknown tokens cached by rows 6 and 7), and
            # that difference outweighs the cost compared. Measured in one process, by calling
            # the ASGI app with a stub send, the counts cost ~3 us a request.
            "(5) metrics on x (5m) metrics off at 32 connections (paired runs): reported",
            True,
            f"{1 / paired('5m'):.2f}",
        )
    )
    checks.append(
        (
            "(5w) webhook receiver that never answers >= 0.97 x (5) at 32 connections "
            "(paired runs)",
            paired("5w") >= 0.97,
            f"{paired('5w'):.2f}",
        )
    )
    checks.append(
        (
            "(5l) rate-limited route (local) >= 0.95 x (5) at 32 connections (paired runs)",
            paired("5l") >= 0.95,
            f"{paired('5l'):.2f}",
        )
    )
    checks.append(
        (
            "(5s) route signing assertions >= 0.90 x (5) at 32 connections (paired runs)",
            paired("5s") >= 0.90,
            f"{paired('5s'):.2f}",
        )
    )
    checks.append(
        (
            "(5f) nginx auth_request to the gateway x (5) the gateway as the proxy: reported",
            True,
            f"{paired('5f'):.2f} of (5) (paired runs), {rps('5f'):.0f} req/s; p50 at 1 "
            f"connection {rows['5f']['1']['p50_ms'] - rows['5']['1']['p50_ms']:+.3f} ms",
        )
    )
    for row, base in (("5c", "5"), ("5cp", "5p")):
        if row in result["rows"]:
            checks.append(
                (
                    f"({row}) route spending credits >= 0.90 x ({base}) at 32 connections "
                    "(paired runs)",
                    paired(row) >= 0.90,
                    f"{paired(row):.2f}",
                )
            )
    verified = result.get("verify_api")
    if verified:
        checks.append(
            (
                "(12) POST /v1/keys/verify on a cached key: reported, no target",
                True,
                f"p50 {verified['p50_ms_c1']:.2f} ms at 1 connection, "
                f"{verified['rps_c32']:.0f} req/s at 32",
            )
        )
    if "5r" in result["rows"]:
        checks.append(
            (
                "(5r) rate-limited route (Redis): reported, no target",
                True,
                f"{paired('5r'):.2f} of (5) (paired runs); p50 at 1 connection "
                f"{rows['5r']['1']['p50_ms'] - rows['5']['1']['p50_ms']:+.3f} ms",
            )
        )
    pg = result["postgresql"]
    if pg:
        checks += [
            (
                "(5p) on PostgreSQL = (5) within noise (>= 0.90) at 32 connections",
                rps("5p") / rps("5") >= 0.90,
                f"{rps('5p') / rps('5'):.2f}",
            ),
            (
                f"(8p) cold lookup p99 <= 2 ms at {cold['store_keys']:,} keys on PostgreSQL "
                "(verifier)",
                pg["cold_verifier"]["p99_us"] <= 2000,
                f"p50 {pg['cold_verifier']['p50_us']:.0f} us, "
                f"p99 {pg['cold_verifier']['p99_us']:.0f} us",
            ),
            (
                "(10) revocation refused by both nodes: max <= 1 s, median <= 100 ms",
                pg["revocation"]["max_ms"] <= 1000 and pg["revocation"]["median_ms"] <= 100,
                f"median {pg['revocation']['median_ms']:.0f} ms, "
                f"max {pg['revocation']['max_ms']:.0f} ms "
                f"over {pg['revocation']['revocations']}",
            ),
        ]
    if micro_us is not None:
        checks.append(("cached verification alone <= 5 us", micro_us <= 5, f"{micro_us:.2f} us"))
    return checks


def pg_lines(result: dict[str, Any]) -> list[str]:
    pg = result["postgresql"]
    if not pg:
        return ["", "PostgreSQL rows: not run (no server answered)."]
    cold, http, revocation = pg["cold_verifier"], pg["cold_http"], pg["revocation"]
    return [
        "",
        f"Row 8p, the same on PostgreSQL (filled in {pg['fill_seconds']:.0f} s with COPY): "
        f"through the verifier p50 {cold['p50_us']:.0f} µs, p99 {cold['p99_us']:.0f} µs "
        f"({cold['lookups']:,} lookups); through HTTP at 1 connection {http['rps']:,.0f} req/s, "
        f"p50 {http['p50_us'] / 1000:.2f} ms, p99 {http['p99_us'] / 1000:.2f} ms, "
        f"{http['store_queries']:,} store queries.",
        "",
        f"Row 10, revocation across two nodes (2 workers each) on PostgreSQL, poll every 5 s, "
        f"{revocation['revocations']} keys revoked through node A's admin API until both nodes "
        f"refuse them: median {revocation['median_ms']:.0f} ms, max {revocation['max_ms']:.0f} ms.",
    ]


def markdown(result: dict[str, Any], checks: list[tuple[str, bool, str]]) -> str:
    rows = result["rows"]
    base3, base2 = rows["3"]["32"]["rps"], rows["2"]["32"]["rps"]
    lines = [
        f"Run {result['date']} on {result['machine']['cores']} cores "
        f"({result['machine']['platform']}, Python {result['machine']['python']}, "
        f"{result['machine']['nginx']}); scale `{result['scale']['name']}`: "
        f"{result['scale']['rounds']} interleaved rounds of {result['scale']['seconds']} s "
        "per row, medians.",
        "",
        "| row | scenario | c=1 req/s | c=1 p50 ms | c=1 p99 ms "
        "| c=32 req/s | c=32 p50 ms | c=32 p99 ms | /(3) | /(2) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row, name in ROWS.items():
        if row not in rows:
            continue
        one, many = rows[row]["1"], rows[row]["32"]
        lines.append(
            f"| {row} | {name} | {one['rps']:,.0f} | {one['p50_ms']:.2f} | {one['p99_ms']:.2f} | "
            f"{many['rps']:,.0f} | {many['p50_ms']:.2f} | {many['p99_ms']:.2f} | "
            f"{many['rps'] / base3:.2f} | {many['rps'] / base2:.2f} |"
        )
    cold, big = result["cold"], result["big_bodies"]
    lines += [
        "",
        f"Row 8, cold lookups with {cold['store_keys']:,} keys in the store: through the verifier "
        f"alone p50 {cold['verifier']['p50_us']:.0f} µs, p99 {cold['verifier']['p99_us']:.0f} µs "
        f"({cold['verifier']['lookups']:,} lookups); through HTTP at 1 connection, every request a "
        f"miss{'' if cold['http']['all_cold'] else ' (the key list wrapped: some were hits)'}: "
        f"{cold['http']['rps']:,.0f} req/s, p50 {cold['http']['p50_us'] / 1000:.2f} ms, "
        f"p99 {cold['http']['p99_us'] / 1000:.2f} ms, "
        f"{cold['http']['store_queries']:,} store queries.",
        *pg_lines(result),
        "",
        f"| row 9, {big['megabytes']} MB bodies | nginx MB/s | gateway MB/s | ratio "
        "| gateway peak RSS growth |",
        "|---|---:|---:|---:|---:|",
    ]
    for direction in ("download", "upload"):
        d = big[direction]
        lines.append(
            f"| {direction} | {d['nginx_mb_s']:,.0f} | {d['gateway_mb_s']:,.0f} "
            f"| {d['ratio']:.2f} | "
            f"{d['gateway_peak_rss_growth_mb']:.1f} MB |"
        )
    echo = result["websocket_echo"]
    lines += [
        "",
        f"Row 11, WebSocket echo (8 connections, one 64-byte message in flight each): directly "
        f"{echo['direct']:,.0f} messages/s, through the gateway {echo['gateway']:,.0f} "
        f"({echo['gateway'] / echo['direct']:.2f}).",
    ]
    lines += ["", "| target | held | measured |", "|---|---|---|"]
    lines += [f"| {name} | {'yes' if ok else '**no**'} | {value} |" for name, ok, value in checks]
    if result["failures"]:
        lines += ["", "Failures: " + "; ".join(result["failures"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every row briefly, small sizes")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--seconds", type=int, help="override the seconds per wrk run")
    parser.add_argument("--rounds", type=int, help="override the interleaved rounds")
    args = parser.parse_args()
    scale = QUICK if args.quick else FULL
    if args.seconds or args.rounds:
        scale = replace(
            scale, seconds=args.seconds or scale.seconds, rounds=args.rounds or scale.rounds
        )
    result = run(scale)
    micro = cached_hit_seconds() * 1e6
    result["micro_cached_verification_us"] = micro
    result["runs"] = {row: {str(c): r for c, r in by.items()} for row, by in result["runs"].items()}
    checks = targets(result, micro)
    result["targets"] = [{"target": n, "held": ok, "measured": v} for n, ok, v in checks]
    table = markdown(result, checks)
    print()
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "quick" if args.quick else datetime.now(UTC).strftime("%Y-%m-%d")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{name}.md").write_text(table)
    print(f"bench: wrote {args.out / (name + '.json')} and .md")
    if result["failures"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
