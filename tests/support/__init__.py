"""Real parts for tests: an aiohttp upstream and the gateway under uvicorn, each on an ephemeral
loopback port and its own event-loop thread, over a real SQLite file in a temporary directory."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import asyncpg
import httpx
import pytest
from aiohttp import web

from admin import access, service
from core import config as config_module
from core.config import Config
from core.store import make_store
from core.tokens import SecretFormat
from gateway.app import GatewayApp
from gateway.resources import Resources
from gatewaycli.server import _Server, admin_app, uvicorn_config

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent.parent


class LoopThread:
    """An event loop running in a daemon thread; `run` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


# -- the upstream -------------------------------------------------------------------------------


@dataclass
class Upstream:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)

    def last(self) -> dict[str, Any]:
        return self.requests[-1]


def headers_of(request: web.Request) -> list[tuple[str, str]]:
    """Every header as received, repeated ones included, names lower-cased."""
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.raw_headers]


def make_upstream_app(record: Upstream) -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = {
            "method": request.method,
            "path": request.raw_path.split("?", 1)[0],
            "query": request.query_string,
            "headers": headers_of(request),
            "body_bytes": len(body),
        }
        record.requests.append(seen)
        return web.json_response(seen)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "5")))
        return web.Response(text="late")

    async def cookies(request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.headers.add("Set-Cookie", "a=1; Path=/")
        response.headers.add("Set-Cookie", "b=2; Path=/")
        response.headers.add("Connection", "X-Upstream-Private")
        response.headers.add("X-Upstream-Private", "secret-ish")
        response.headers.add("Keep-Alive", "timeout=5")
        response.headers.add("X-Request-ID", "upstream-made-this")
        return response

    async def stream(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("bytes", "1000000"))
        delay = float(request.query.get("delay", "0"))
        response = web.StreamResponse()
        response.content_length = size
        await response.prepare(request)
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < size:
                part = chunk[: size - sent]
                await response.write(part)
                sent += len(part)
                if delay:
                    await asyncio.sleep(delay)
        except (ConnectionResetError, asyncio.CancelledError, OSError):
            record.aborted.append(request.path)
            raise
        await response.write_eof()
        return response

    async def upload(request: web.Request) -> web.Response:
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
        record.requests.append(
            {"path": "/upload", "body_bytes": total, "headers": headers_of(request)}
        )
        return web.json_response({"body_bytes": total})

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")  # records nothing: for load that must not grow memory

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/api/ok", ok)
    app.router.add_route("*", "/api/slow", slow)
    app.router.add_route("*", "/api/cookies", cookies)
    app.router.add_route("*", "/api/stream", stream)
    app.router.add_route("*", "/api/upload", upload)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def store_text(store_url: str | None = None) -> str:
    """The [store] table: a SQLite file beside the config, or a PostgreSQL database."""
    if store_url is None:
        return 'path = "store.db"\nbusy_timeout_ms = 1000'
    return f'url = "{store_url}"\npool_min_size = 1\npool_max_size = 4'


# Webhook delivery is off in tests unless one asks for it: nothing generated (schemathesis's
# URLs) is ever sent anywhere.
NO_WEBHOOKS = "deliver = false"


def config_text(
    upstream_url: str,
    extra: str = "",
    server: str = "",
    store_url: str | None = None,
    webhooks: str = NO_WEBHOOKS,
) -> str:
    """The test config: its routes cover every auth mode; `extra`, `server` and `webhooks` (the
    [webhooks] table) extend it."""
    return f"""
[server]
listen = "127.0.0.1:0"
{server}
[webhooks]
{webhooks}
[admin]
listen = ""
[store]
{store_text(store_url)}
[log]
access = "access.log"
[cache]
ttl_seconds = 60
negative_ttl_seconds = 5
invalidation_interval_seconds = 0.2

[[routes]]
prefix = "/api"
upstream = "{upstream_url}/api"
auth = "required"
timeout_seconds = 0.5

[[routes]]
prefix = "/echo"
upstream = "{upstream_url}"
auth = "required"

[[routes]]
prefix = "/keep"
upstream = "{upstream_url}"
strip_prefix = false
auth = "required"

[[routes]]
prefix = "/small"
upstream = "{upstream_url}/api"
auth = "none"
max_body_bytes = 1000

[[routes]]
prefix = "/open"
upstream = "{upstream_url}"
auth = "none"

[[routes]]
prefix = "/maybe"
upstream = "{upstream_url}"
auth = "optional"

[[routes]]
prefix = "/down"
upstream = "http://127.0.0.1:9"
{extra}
"""


def write_config(
    directory: Path,
    upstream_url: str,
    extra: str = "",
    server: str = "",
    store_url: str | None = None,
    webhooks: str = NO_WEBHOOKS,
) -> Path:
    path = directory / "gateway.toml"
    path.write_text(config_text(upstream_url, extra, server, store_url, webhooks))
    return path


# -- PostgreSQL -----------------------------------------------------------------------------------

BOTH_STORES = ("sqlite", "postgresql")  # BACKENDS of a store-facing test module

POSTGRES_URL = os.environ.get(
    "GATEWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def unavailable(message: str) -> NoReturn:
    """Something a test needs is not here: skip and say so, or fail in CI, where `.ci/run`
    should have provided it."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _on_server(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def require_postgres() -> None:
    """Skip with a message where no PostgreSQL answers; in CI, fail instead."""
    try:
        _on_server("SELECT 1")
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        unavailable(f"no PostgreSQL at {POSTGRES_URL} ({exc}); set GATEWAY_TEST_POSTGRES_URL")


class PostgresDatabases:
    """Databases of this test run on the shared server: each made fresh, all dropped after."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def new(self) -> str:
        name = f"gw_test_{os.getpid()}_{len(self.made)}_{random.getrandbits(32):08x}"
        _on_server(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name

    def drop_all(self) -> None:
        for name in self.made:
            _on_server(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.made.clear()


# -- Redis ----------------------------------------------------------------------------------------

REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis() -> None:
    """Skip with a message where no Redis answers; in CI, fail instead."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"no Redis at {REDIS_URL} ({exc}); set GATEWAY_TEST_REDIS_URL")
    finally:
        client.close()


class RedisServer:
    """A Redis server of a test's own (the shared one is never stopped), on a free port, with
    nothing written to disk."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("no redis-server (apt-get install redis-server)")
        self.binary = binary
        sock = free_socket()
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for(answers, timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


# How long a revocation may take to reach a gateway on the test config, derived from it.
BOUND = config_module.parse(
    tomllib.loads(config_text("http://127.0.0.1:9")), Path("gateway.toml")
).cache.revocation_bound_seconds


class FakeClock:
    """The wall clock, plus whatever a test has advanced it by: the verifier's `clock`, so
    expiry and roll grace are tested without waiting."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.frozen: float | None = None

    def __call__(self) -> float:
        return (time.time() if self.frozen is None else self.frozen) + self.offset

    def freeze(self) -> None:
        """Stop the clock where it is: from now on only `advance` moves it (for tests that
        compare times to the second, such as a Retry-After)."""
        self.frozen = time.time()

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Gateway:
    url: str
    config: Config
    resources: Resources
    loop: LoopThread
    owner_id: str
    project_id: str
    secret_key: str
    access_key: str
    admin_url: str
    clock: FakeClock

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def admin(self, secret: str | None = None) -> httpx.Client:
        """A client of the admin listener, signed in with `secret` (default: the owner key)."""
        headers = {"X-Auth-Token": secret if secret is not None else self.secret_key}
        return httpx.Client(base_url=self.admin_url, timeout=10, headers=headers)

    def new_key(self, **kwargs: Any) -> service.NewKey:
        kwargs.setdefault("user_id", self.owner_id)
        return self.loop.run(
            service.create_key(
                self.resources.db, access.LOCAL_OPERATOR, self.resources.secret_format, **kwargs
            )
        )

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli("--config", str(self.config.source), *args, check=check)


def run_cli(
    *args: str, check: bool = True, unprivileged: bool = False
) -> subprocess.CompletedProcess[str]:
    """`python -m gatewaycli ARGS`; `unprivileged`: as a user that file permissions bind (root
    is not one: it runs in a user namespace of its own, without its capabilities)."""
    prefix = unprivileged_prefix() if unprivileged else []
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "gatewaycli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"gateway {' '.join(args)} failed: {result.stderr}")
    return result


def cli_json(config: Path, *args: str) -> Any:
    """`gateway --config CONFIG ARGS --json`, its output read."""
    return json.loads(run_cli("--config", str(config), *args, "--json").stdout)


def cli_refused(config: Path, *args: str) -> str:
    """`gateway --config CONFIG ARGS`, which must be refused as bad input (status 2, no
    traceback): what it said."""
    result = run_cli("--config", str(config), *args, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def unprivileged_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--user", "true"]).returncode != 0:
        unavailable("root without capabilities needs `unshare --user` (util-linux)")
    return [unshare, "--user"]


@dataclass
class Running:
    """The proxy app and the admin app on one loop, sharing one Resources (as `serve` does)."""

    loop: LoopThread
    resources: Resources
    servers: list[tuple[_Server, concurrent.futures.Future[None], socket.socket]]

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.servers[index][2].getsockname()[1]}"

    def stop(self) -> None:
        for server, _, _ in self.servers:
            server.should_exit = True
        for _, serving, sock in self.servers:
            serving.result(15)
            sock.close()
        self.loop.run(self.resources.stop())
        self.loop.close()


def spawn_cli(*args: str) -> subprocess.Popen[str]:
    """`python -m gatewaycli ARGS` running in the background (serve, demo), output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "gatewaycli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )


def start_gateway(config: Config, clock: FakeClock | None = None) -> Running:
    loop = LoopThread()
    resources = Resources(config, clock or FakeClock())
    loop.run(resources.start())
    servers = []
    for app in (GatewayApp(resources), admin_app(resources)):
        sock = free_socket()
        server = _Server(
            uvicorn_config(
                app,
                config.trusted_proxies,
                header_timeout=config.header_timeout_seconds,
                body_timeout=config.body_timeout_seconds,
                send_timeout=config.send_timeout_seconds,
                keepalive_timeout=config.keepalive_timeout_seconds,
                websockets=isinstance(app, GatewayApp),
            )
        )
        serving = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), loop.loop)
        wait_for(lambda s=server: s.started, timeout=10, interval=0.005)  # type: ignore[misc]
        servers.append((server, serving, sock))
    return Running(loop, resources, servers)


def init_store(config: Config) -> dict[str, str]:
    """What `gateway init --json` does, in this process: the store, its owner and owner key.
    (A subprocess per gateway cost 0.4 s of interpreter start-up, a fifth of the suite; the
    CLI's own init is tested as a subprocess in tests/test_cli.py.)"""

    async def run() -> dict[str, str]:
        db = make_store(config.store)
        await db.open(create=True)
        try:
            made = await service.init(db, SecretFormat(config.key_prefix))
        finally:
            await db.close()
        assert made.key is not None and made.secret_key is not None
        return {
            "organization_id": made.organization.id,
            "project_id": made.project.id,
            "user_id": made.user.id,
            "access_key": made.key.access_key,
            "secret_key": made.secret_key,
        }

    # A thread of its own: the caller's thread may be running an event loop (Playwright's).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def build_gateway(
    directory: Path,
    upstream_url: str,
    extra: str = "",
    server: str = "",
    store_url: str | None = None,
    webhooks: str = NO_WEBHOOKS,
) -> tuple[Gateway, Running]:
    """A gateway (and admin listener) over a fresh store: a SQLite file in `directory`, or the
    (empty) PostgreSQL database `store_url`.

    `extra` is TOML appended to the config; it may name {project_id}, {user_id}, ... of `init`.
    """
    source = write_config(directory, upstream_url, store_url=store_url)
    init = init_store(config_module.load(source))
    config = config_module.load(
        write_config(directory, upstream_url, extra.format(**init), server, store_url, webhooks)
    )
    clock = FakeClock()
    running = start_gateway(config, clock)
    gateway = Gateway(
        running.url(0),
        config,
        running.resources,
        running.loop,
        init["user_id"],
        init["project_id"],
        init["secret_key"],
        init["access_key"],
        running.url(1),
        clock,
    )
    return gateway, running


def wait_for(predicate: Any, timeout: float, interval: float = 0.02) -> float:
    """Seconds until predicate() is true; fails after timeout."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - start


def send_raw(url: str, request: bytes, timeout: float = 5.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def run_demo(
    directory: Path,
    while_running: Callable[[str], None] | None = None,
    command: list[str] | None = None,
) -> tuple[Path, str]:
    """`gateway demo` on the example config (free ports, its echo upstream on a free one); calls
    `while_running` with what it printed, then stops it with Ctrl-C. Returns the config and the
    text. ``command``: an installed `gateway` to run instead, from ``directory``."""
    sock = free_socket()
    echo_port = sock.getsockname()[1]
    sock.close()  # the demo's echo upstream takes this port
    example = (ROOT / "config.example.toml").read_text()
    config = directory / "demo.toml"
    config.write_text(
        example.replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:8081", "127.0.0.1:0")
        .replace("127.0.0.1:9000", f"127.0.0.1:{echo_port}")
    )
    if command is None:
        process = spawn_cli("--config", str(config), "demo")
    else:
        process = subprocess.Popen(
            [*command, "--config", str(config), "demo"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=directory,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while not any("Ctrl-C" in line for line in lines):
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else "demo exited"
            lines.append(line)
        url = re.search(r"curl -s (\S+)", "".join(lines))
        assert url is not None, lines

        def serving() -> bool:  # listening, and so Ctrl-C is the demo's own to handle
            try:
                return httpx.get(url.group(1)).status_code == 401
            except httpx.TransportError:
                return False

        wait_for(serving, timeout=10, interval=0.05)
        if while_running is not None:
            while_running("".join(lines))
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
    assert process.returncode == 0
    return config, "".join(lines)


def start_serve(config: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """`gateway serve` in the background; returns it and its proxy's URL."""
    process = spawn_cli("--config", str(config), "serve", *extra)
    return process, listening(process)[0]


def unbuffered_line(fd: int) -> str:
    """One line, read a byte at a time: a buffered readline would take lines beyond it, which
    `communicate` (reading the descriptor itself) would then never see."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line.decode()


def listening(process: subprocess.Popen[str], count: int = 1, log: Path | None = None) -> list[str]:
    """The URLs of the first ``count`` "... listening on URL" lines of `gateway serve`, which
    says them on stderr (its stdout is the access log's): read from its stderr pipe, or from the
    file ``log`` its stderr goes to. Lines read from the pipe on the way are dropped."""
    urls: list[str] = []
    seen: list[str] = []
    deadline = time.monotonic() + 30
    offset = 0
    while len(urls) < count:
        if log is not None:
            text = log.read_text()
            lines = text[offset:].splitlines(keepends=True)
            lines = [line for line in lines if line.endswith("\n")]
            offset += sum(len(line) for line in lines)
            if not lines:
                assert process.poll() is None and time.monotonic() < deadline, text
                time.sleep(0.02)
        else:
            assert process.stderr is not None
            line = unbuffered_line(process.stderr.fileno())
            assert line, "".join(seen) + "(serve exited)"
            lines = [line]
        for line in lines:
            seen.append(line)
            if "listening on " in line:
                urls.append(line.split("listening on ", 1)[1].split()[0])
    return urls


def stop_serve(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    return stderr


def run_bench_script(command: list[str], timeout: float, grace: float) -> tuple[int, str]:
    """A bench script run as a session of its own, from the repository's root: its exit status
    and stderr. On a timeout it is interrupted (its ``finally`` stops what it started), given
    ``grace`` seconds, then whatever is left of its group is killed: never left serving."""
    bench = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = bench.communicate(timeout=timeout)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGINT)
            try:
                bench.communicate(timeout=grace)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(bench.pid, signal.SIGKILL)
                bench.communicate()
    return bench.returncode, stderr
