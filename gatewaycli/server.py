"""Process layout: which process serves which listener, and the workers' supervision (the
listeners themselves and their signals: ``gatewaycli.listeners``).

- ``workers = 1``: one process serves the proxy, forward-auth and admin listeners in one event
  loop, sharing one :class:`Resources` (one store connection pair, one cache).
- ``workers = N``: the parent binds the sockets and starts N worker processes that accept on the
  proxy and forward-auth ones (uvicorn's own model); the admin listener stays in the parent, which
  asks the workers for their counts when /metrics is scraped. Each worker has its own cache, kept
  coherent by the store's ``key_events`` feed.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from admin.api import make_admin_app
from admin.leaks_app import make_leaks_app
from core import assertion_keys
from core import config as config_module
from core.config import Config, ConfigError
from core.store import make_store
from gateway import metrics
from gateway.app import GatewayApp
from gateway.forward_auth import ForwardAuthApp
from gateway.resources import Resources
from gatewaycli.listeners import ASGIApp as ASGIApp
from gatewaycli.listeners import Listener as Listener
from gatewaycli.listeners import _Server as _Server
from gatewaycli.listeners import address as address
from gatewaycli.listeners import bind as bind
from gatewaycli.listeners import note_early_sighup as note_early_sighup
from gatewaycli.listeners import run as run
from gatewaycli.listeners import run_listeners as run_listeners
from gatewaycli.listeners import setup_logging as setup_logging
from gatewaycli.listeners import uvicorn_config as uvicorn_config
from gatewaycli.scrape import Scraper

log = logging.getLogger("gateway")


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
        jwks=resources.assertions.jwks,
    )


def leaks_app(resources: Resources) -> ASGIApp:
    """The leak-response listener's app (``[leaks] listen``) over this process's store."""
    return make_leaks_app(
        resources.db, resources.secret_format, resources.config.leaks, resources.clock
    )


def _worker(
    config: Config,
    sock: socket.socket,
    auth_sock: socket.socket | None,
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
    listeners = data_plane(resources, sock, auth_sock)
    run(run_listeners(resources, listeners, parent=parent, metrics_sock=metrics_sock))


def data_plane(
    resources: Resources, sock: socket.socket, auth_sock: socket.socket | None
) -> list[Listener]:
    """The proxy, and the forward-auth endpoint when configured: what every worker serves."""
    listeners = [Listener(GatewayApp(resources), sock, resources.config.tls, websockets=True)]
    if auth_sock is not None:
        listeners.append(Listener(ForwardAuthApp(resources), auth_sock))
    return listeners


async def check_store(config: Config) -> None:
    """Refuse to start without a usable store (StoreMissing, StoreUnavailable), before binding a
    port or starting a worker: a gateway over an empty store would answer 401 to everyone."""
    db = make_store(config.store)
    await db.open(create=False)
    await db.close()


def check_assertion_keys(config: Config) -> None:
    """Routes that sign identity assertions need a key to sign with: refuse to start without
    one (KeyFileError), rather than answer 503 on those routes."""
    if any(route.assertion for route in config.routes):
        assertion_keys.load(config.assertion.key_file)


def serve(config: Config, workers: int) -> None:
    note_early_sighup()
    run(check_store(config))
    check_assertion_keys(config)
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
    auth = config.forward_auth.listen
    auth_sock = bind(auth) if auth else None
    leaks_sock = bind(config.leaks.listen) if config.leaks.listen else None
    try:
        _serve_on(config, workers, proxy_sock, admin_sock, auth_sock, leaks_sock)
    finally:
        for sock in (proxy_sock, admin_sock, auth_sock, leaks_sock):
            if sock is not None:
                sock.close()


def _serve_on(
    config: Config,
    workers: int,
    proxy_sock: socket.socket,
    admin_sock: socket.socket | None,
    auth_sock: socket.socket | None,
    leaks_sock: socket.socket | None = None,
) -> None:
    where = address(proxy_sock, config.tls)
    print(f"gateway: proxy listening on {where} ({workers} worker(s))", flush=True)
    if admin_sock is not None:
        print(f"gateway: admin listening on {address(admin_sock, config.admin_tls)}", flush=True)
    if auth_sock is not None:
        print(f"gateway: forward-auth listening on {address(auth_sock)}", flush=True)
    if leaks_sock is not None:
        print(f"gateway: leaks listening on {address(leaks_sock)}", flush=True)
    resources = Resources(config)
    # The leak-response listener is served where the admin listener is (the parent with
    # --workers N): it writes to the store, like the admin API, and is never on the hot path.
    control = [Listener(leaks_app(resources), leaks_sock)] if leaks_sock is not None else []
    if workers == 1:
        listeners = data_plane(resources, proxy_sock, auth_sock)
        if admin_sock is not None:
            listeners.append(Listener(admin_app(resources), admin_sock, config.admin_tls))
        run(run_listeners(resources, [*listeners, *control]))
        return
    supervisor = Supervisor(config, proxy_sock, auth_sock, workers)
    scraper = Scraper(resources.snapshot, supervisor.metrics_socks)
    admin: list[Listener] = list(control)
    if admin_sock is not None:
        admin.append(Listener(admin_app(resources, scraper), admin_sock, config.admin_tls))

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

    def __init__(
        self,
        config: Config,
        sock: socket.socket,
        auth_sock: socket.socket | None,
        workers: int,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.ready = [context.Event() for _ in range(workers)]
        pairs = [socket.socketpair() for _ in range(workers)]
        self.metrics_socks = [ours for ours, _ in pairs]  # for the Scraper
        level = logging.getLogger().level
        self.processes = [
            context.Process(
                target=_worker,
                args=(config, sock, auth_sock, theirs, level, os.getpid(), self.ready[n]),
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
