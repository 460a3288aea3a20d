"""Process layout: bind the listeners, run uvicorn (uvloop + httptools) on them, supervise workers.

- ``workers = 1``: one process serves the proxy listener and the admin listener in one event loop,
  sharing one :class:`Resources` (one store connection pair, one cache).
- ``workers = N``: the parent binds the proxy socket and starts N worker processes that accept on
  it (uvicorn's own model); the admin listener stays in the parent. Each worker has its own cache,
  kept coherent by the store's ``key_events`` feed.

Sockets are bound before anything else, so ``port = 0`` works and the real address is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
import uvloop

from admin.api import make_admin_app
from core import config as config_module
from core.config import Config, ConfigError, Listen, TLSFiles
from core.store import make_store
from gateway import metrics
from gateway.app import GatewayApp
from gateway.protocol import GatewayHttpProtocol
from gateway.resources import Resources
from gatewaycli.scrape import Scraper, answer

log = logging.getLogger("gateway")
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def admin_app(resources: Resources, scraper: Scraper | None = None) -> ASGIApp:
    """The admin API and console over this process's store, authenticating callers with the
    proxy's own verifier (one cache, one revocation feed), and /metrics: this process's counts,
    plus its workers' when ``scraper`` asks them."""
    config = resources.config

    async def scrape() -> bytes:
        snapshot = await scraper.collect() if scraper is not None else resources.snapshot()
        return metrics.render(snapshot, config.metrics_per_project)

    return make_admin_app(
        resources.db,
        resources.secret_format,
        resources.verifier,
        resources.readiness,
        metrics=scrape if config.metrics else None,
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # One process may run several servers: `run_listeners` installs one handler for all.
        yield


def bind(listen: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listen.host, listen.port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"gateway: cannot listen on {listen}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket, tls: TLSFiles | None = None) -> str:
    host, port = sock.getsockname()[:2]
    return f"{'https' if tls else 'http'}://{'[' + host + ']' if ':' in host else host}:{port}"


@dataclass(frozen=True)
class Listener:
    """One listening socket, the app it serves, and its certificate when it speaks HTTPS."""

    app: ASGIApp
    sock: socket.socket
    tls: TLSFiles | None = None


def uvicorn_config(
    app: ASGIApp,
    trusted_proxies: tuple[str, ...] = (),
    shutdown_timeout: int = 30,
    tls: TLSFiles | None = None,
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        # HTTPS on this listener: uvicorn sets the ASGI scheme to https, so X-Forwarded-Proto is.
        ssl_certfile=str(tls.cert_file) if tls else None,
        ssl_keyfile=str(tls.key_file) if tls else None,
        # X-Forwarded-For/-Proto rewrite the client address and scheme only from trusted peers
        # ([server] trusted_proxies); with none, uvicorn's proxy-headers middleware is off.
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=list(trusted_proxies) or None,
        loop="none",
        http=GatewayHttpProtocol,  # httptools, with a bounded request head and JSON errors
        ws="none",  # websockets are not proxied; an Upgrade header is dropped as hop-by-hop
        lifespan="off",  # `run_listeners` owns the resources' life cycle
        access_log=False,
        server_header=False,  # the upstream's Server and Date headers pass through
        date_header=False,
        log_config=None,
        timeout_keep_alive=30,
        # SIGTERM: requests and streams in flight get this long to finish, then the process exits.
        timeout_graceful_shutdown=shutdown_timeout,
    )


PARENT_CHECK_SECONDS = 0.2
# SIGHUP's default action ends a process: from the very start of `serve` and of each worker, a
# SIGHUP is only noted here, and the loop's handler reloads for it once it is installed.
EARLY_SIGHUP = threading.Event()


def note_early_sighup() -> None:
    signal.signal(signal.SIGHUP, lambda *_: EARLY_SIGHUP.set())


async def outlive_no_parent(parent: int, stop: Callable[[], None]) -> None:
    """A worker never outlives the `serve` process that started it (SIGKILL included): when its
    parent is gone (the worker was re-parented), stop serving, and leave within half a second
    even if a request is still in flight. Orphans would keep the port with an old config, so a
    restart would find it taken or two generations would serve at once."""
    while os.getppid() == parent:
        await asyncio.sleep(PARENT_CHECK_SECONDS)
    log.warning("the gateway's parent process %d is gone; this worker stops", parent)
    stop()
    await asyncio.sleep(0.5)
    os._exit(1)


async def run_listeners(
    resources: Resources,
    listeners: list[Listener],
    supervisor: Supervisor | None = None,
    parent: int | None = None,
    metrics_sock: socket.socket | None = None,
) -> None:
    """Start the shared resources, serve every listener until SIGINT/SIGTERM (or, in a worker,
    until its parent is gone; answering the parent's scrapes on ``metrics_sock``), then clean
    up."""
    await resources.start()
    trusted = resources.config.trusted_proxies
    timeout = resources.config.shutdown_timeout_seconds
    servers = [
        _Server(uvicorn_config(listener.app, trusted, timeout, listener.tls))
        for listener in listeners
    ]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        resources.draining = True  # the readiness probes say so at once
        for server in servers:
            server.should_exit = True
        if supervisor is not None:
            supervisor.stop()

    def reload() -> None:
        """SIGHUP: re-read the config; a bad file keeps the running one (one line says why)."""
        source = resources.config.source
        try:
            new = config_module.load(source)
        except ConfigError as exc:
            log.error("reload refused, still serving the previous config: %s", exc)
            return
        fixed = resources.reload(new)
        if new.log_level is not None:
            set_level(new.log_level.upper())
        kept = f"; not changed until a restart: {', '.join(fixed)}" if fixed else ""
        log.warning("reloaded %s: %d route(s)%s", source, len(new.routes), kept)
        if supervisor is not None:
            supervisor.signal(signal.SIGHUP)

    def reopen() -> None:
        """SIGUSR1 (log rotation): the access log writes to a new file at its path."""
        if resources.access_log is not None:
            resources.access_log.reopen()
        if supervisor is not None:
            supervisor.signal(signal.SIGUSR1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGUSR1, reopen)
    if EARLY_SIGHUP.is_set():  # a reload asked for while this process was starting
        EARLY_SIGHUP.clear()
        reload()
    background = []
    if parent:
        background.append(asyncio.create_task(outlive_no_parent(parent, stop)))
    if metrics_sock is not None:
        background.append(asyncio.create_task(answer(metrics_sock, resources.snapshot)))
    try:
        await asyncio.gather(
            *(
                server.serve(sockets=[listener.sock])
                for server, listener in zip(servers, listeners, strict=True)
            ),
            *([supervisor.run()] if supervisor is not None else []),
        )
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await resources.stop()


def run(coro: Awaitable[None]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)  # type: ignore[arg-type]


def setup_logging(level: int | str) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    set_level(level)


def set_level(level: int | str) -> None:
    """The process's log level (at start, and from `[log] level` at a reload)."""
    logging.getLogger().setLevel(level)
    # aiosqlite's debug lines carry every statement's parameters, secret hashes among them: a
    # hash cannot be turned back into a secret, but it has no business in a log.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))
    # uvicorn says "Started server process" once per listener (twice with the admin listener);
    # the gateway prints where it listens itself, so uvicorn's start and stop lines are left to
    # debug level. Its warnings and errors still show.
    quiet = logging.getLogger().level > logging.DEBUG
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING if quiet else logging.NOTSET)


def _worker(
    config: Config,
    sock: socket.socket,
    metrics_sock: socket.socket,
    log_level: int,
    parent: int,
    ready: Any,
) -> None:
    note_early_sighup()
    ready.set()  # from here on, the parent may signal this worker
    setup_logging(log_level)
    # The file may have been reloaded since the parent pickled its config for this worker, when
    # this worker was not ready for a SIGHUP: read it again (a broken one: keep the parent's).
    with contextlib.suppress(ConfigError):
        config = config_module.load(config.source)
    if os.getppid() != parent:  # the parent died while this worker was starting
        return
    resources = Resources(config)
    listener = Listener(GatewayApp(resources), sock, config.tls)
    run(run_listeners(resources, [listener], parent=parent, metrics_sock=metrics_sock))


async def check_store(config: Config) -> None:
    """Refuse to start without a usable store (StoreMissing, StoreUnavailable), before binding a
    port or starting a worker: a gateway over an empty store would answer 401 to everyone."""
    db = make_store(config.store)
    await db.open(create=False)
    await db.close()


def serve(config: Config, workers: int) -> None:
    note_early_sighup()
    run(check_store(config))
    with pid_file(config.pid_file):
        _serve(config, workers)


@contextlib.contextmanager
def pid_file(path: Path | None) -> Iterator[None]:
    """`[server] pid_file`: this process's id while it serves, for `gateway reload`."""
    if path is None:
        yield
        return
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _serve(config: Config, workers: int) -> None:
    proxy_sock = bind(config.listen)
    admin_sock = bind(config.admin_listen) if config.admin_listen else None
    try:
        _serve_on(config, workers, proxy_sock, admin_sock)
    finally:
        for sock in (proxy_sock, admin_sock):
            if sock is not None:
                sock.close()


def _serve_on(
    config: Config, workers: int, proxy_sock: socket.socket, admin_sock: socket.socket | None
) -> None:
    where = address(proxy_sock, config.tls)
    print(f"gateway: proxy listening on {where} ({workers} worker(s))", flush=True)
    if admin_sock is not None:
        print(f"gateway: admin listening on {address(admin_sock, config.admin_tls)}", flush=True)
    resources = Resources(config)
    if workers == 1:
        listeners = [Listener(GatewayApp(resources), proxy_sock, config.tls)]
        if admin_sock is not None:
            listeners.append(Listener(admin_app(resources), admin_sock, config.admin_tls))
        run(run_listeners(resources, listeners))
        return
    supervisor = Supervisor(config, proxy_sock, workers)
    scraper = Scraper(resources.snapshot, supervisor.metrics_socks)
    admin: list[Listener] = []
    if admin_sock is not None:
        admin = [Listener(admin_app(resources, scraper), admin_sock, config.admin_tls)]

    async def serve_admin() -> None:
        try:
            await run_listeners(resources, admin, supervisor)
        finally:
            await scraper.close()

    try:
        run(serve_admin())
    finally:
        supervisor.stop()
        supervisor.join()
    if supervisor.failed:
        raise SystemExit(1)


class Supervisor:
    """The worker processes of `serve --workers N`: started together, stopped together.

    A worker that dies on its own takes the whole service down loudly (exit status 1), rather than
    leaving a gateway running at a fraction of its capacity unnoticed.
    """

    def __init__(self, config: Config, sock: socket.socket, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.ready = [context.Event() for _ in range(workers)]
        pairs = [socket.socketpair() for _ in range(workers)]
        self.metrics_socks = [ours for ours, _ in pairs]  # for the Scraper
        level = logging.getLogger().level
        self.processes = [
            context.Process(
                target=_worker,
                args=(config, sock, theirs, level, os.getpid(), self.ready[n]),
                daemon=True,
            )
            for n, (_, theirs) in enumerate(pairs)
        ]
        for process, (_, theirs) in zip(self.processes, pairs, strict=True):
            process.start()
            theirs.close()  # the worker holds its own copy now
        self.stopping = False
        self.failed = False

    def signal(self, sig: signal.Signals) -> None:
        """Pass a signal to the workers that are ready for it (one still starting has SIGHUP's
        default action, which ends it; it reads the config file itself once ready)."""
        for process, ready in zip(self.processes, self.ready, strict=True):
            if process.pid is not None and process.is_alive() and ready.is_set():
                os.kill(process.pid, sig)

    def stop(self) -> None:
        self.stopping = True
        for process in self.processes:
            if process.is_alive():
                process.terminate()

    def join(self) -> None:
        for process in self.processes:
            process.join(timeout=10)

    async def run(self) -> None:
        while any(p.is_alive() for p in self.processes):
            if not self.stopping and not all(p.is_alive() for p in self.processes):
                dead = [p.pid for p in self.processes if not p.is_alive()]
                print(
                    f"gateway: worker process(es) {dead} exited; stopping",
                    file=sys.stderr,
                    flush=True,
                )
                self.stop()
                self.failed = True
            await asyncio.sleep(0.2)
