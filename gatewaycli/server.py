"""Process layout: which process serves which listener, and the workers' supervision (the
listeners themselves and their signals: ``gatewaycli.listeners``).

- ``workers = 1``: one process serves the proxy, forward-auth and admin listeners in one event
  loop, sharing one :class:`Resources` (one store connection pair, one cache).
- ``workers = N``: the parent binds the sockets and starts N worker processes that accept on the
  proxy and forward-auth ones (uvicorn's own model); the admin listener stays in the parent, which
  asks the workers for their counts when /metrics is scraped. Each worker has its own cache, kept
  coherent by the store's ``key_events`` feed; the parent alone LISTENs for its changes and
  tells the workers (``gatewaycli.fanout``), so a node holds one listening connection.

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
from collections.abc import Awaitable, Callable
from typing import Any

from admin.api import make_admin_app
from admin.leaks_app import make_leaks_app
from core import assertion_keys
from core import config as config_module
from core.config import Config, ConfigError
from core.store import StoreMissing, StoreUnavailable, make_store
from gateway import metrics
from gateway.app import GatewayApp
from gateway.forward_auth import ForwardAuthApp
from gateway.node_limits import NodeJournal
from gateway.resources import Resources
from gateway.spend_journal import SpendJournal
from gateway.verify import KeyVerification
from gatewaycli import pidfile
from gatewaycli.fanout import Fanout
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


def admin_app(
    resources: Resources, scraper: Scraper | None = None, supervisor: Supervisor | None = None
) -> ASGIApp:
    """The admin API and console over this process's store, authenticating callers with the
    proxy's own verifier (one cache, one revocation feed), and /metrics: this process's counts,
    plus its workers' when ``scraper`` asks them. With the ``supervisor`` of workers, /readyz
    says ``starting`` until every worker serves: the proxy is theirs."""
    config = resources.config

    async def readiness() -> str | None:
        if supervisor is not None and not resources.draining and not supervisor.serving():
            return "starting"
        return await resources.readiness()

    async def scrape() -> bytes:
        snapshot = await scraper.collect() if scraper is not None else resources.snapshot()
        return metrics.render(snapshot, config.metrics_per_project)

    return make_admin_app(
        resources.db,
        resources.secret_format,
        resources.verifier,
        readiness,
        metrics=scrape if config.metrics else None,
        jwks=resources.assertions.jwks,
        verify=KeyVerification(resources.gate),
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
    changes_sock: socket.socket,
    log_level: int,
    parent: int,
    ready: Any,
    journal: NodeJournal | None,
    serving: Any,
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
    # The parent listens for the node; the workers share its local rate limits.
    resources = Resources(config, node_journal=journal, listens=False)
    listeners = data_plane(resources, sock, auth_sock)
    try:
        run(
            run_listeners(
                resources,
                listeners,
                parent=parent,
                metrics_sock=metrics_sock,
                changes_sock=changes_sock,
                serving=serving.set,
            )
        )
    except (StoreMissing, StoreUnavailable) as exc:
        # The parent's check passed, then the store failed this worker (the server's
        # max_connections spent, a failover at that moment): one sentence, not a traceback; the
        # parent sees the worker gone and stops the node.
        for held in (sock, auth_sock, metrics_sock, changes_sock):
            if held is not None:
                held.close()
        raise SystemExit(f"gateway: a worker cannot open the store: {exc}") from None


def admin_listener(app: ASGIApp, sock: socket.socket, config: Config) -> Listener:
    """The admin listener closes last in a drain: its /readyz says "draining" throughout."""
    return Listener(app, sock, config.admin_tls, closes_last=True)


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


def say(line: str) -> None:
    """A start-up fact, once, from the process that serves (never from each worker)."""
    print(f"gateway: {line}", file=sys.stderr, flush=True)


def check_assertion_keys(config: Config) -> str | None:
    """Routes that sign identity assertions need a key to sign with: refuse to start without
    one (KeyFileError), rather than answer 503 on those routes. The signing key's id, said once
    at start-up; None when no route signs (then there is nothing to say)."""
    if not any(route.assertion for route in config.routes):
        return None
    signer = assertion_keys.signing_key(assertion_keys.load(config.assertion.key_file))
    return signer.kid if signer is not None else None


def check_journal(config: Config) -> None:
    """Refuse to start where credits spent cannot be journaled (ConfigError): a process killed
    with SIGKILL would lose what it reserved and did not spend."""
    directory = config.credits.journal_dir
    if directory is None:
        return
    try:
        SpendJournal(directory).close()
    except OSError as exc:
        raise ConfigError(
            f"{config.source}, [credits]: journal_dir {str(directory)!r} cannot be written "
            f"({exc.strerror or exc}); point it at a directory on this node's local disk that the "
            'gateway\'s user may write, or set it to "" to keep the journal in memory only'
        ) from None


def serve(config: Config, workers: int) -> None:
    note_early_sighup()
    run(check_store(config))
    signing_kid = check_assertion_keys(config)
    check_journal(config)
    proxy_sock, admin_sock, auth_sock, leaks_sock = bind_all(config)
    try:
        with pidfile.written(config.pid_file):
            _serve_on(config, workers, proxy_sock, admin_sock, auth_sock, signing_kid, leaks_sock)
    finally:
        for sock in (proxy_sock, admin_sock, auth_sock, leaks_sock):
            if sock is not None:
                sock.close()


def bind_all(
    config: Config,
) -> tuple[socket.socket, socket.socket | None, socket.socket | None, socket.socket | None]:
    """The proxy, admin, forward-auth and leak-response sockets, bound before anything is
    written: a `serve` that cannot listen (another gateway holds the port) leaves the running
    one's pid file alone, and names it."""
    bound: list[socket.socket | None] = []
    try:
        listens = (
            config.listen,
            config.admin_listen,
            config.forward_auth.listen,
            config.leaks.listen,
        )
        for listen in listens:
            bound.append(bind(listen) if listen else None)
    except SystemExit as exc:
        for sock in bound:
            if sock is not None:
                sock.close()
        running = pidfile.running(config.pid_file)
        if running is not None:
            raise SystemExit(f"{exc.code}; another gateway is running (pid {running})") from None
        raise
    proxy_sock, admin_sock, auth_sock, leaks_sock = bound
    assert proxy_sock is not None
    return proxy_sock, admin_sock, auth_sock, leaks_sock


def _serve_on(
    config: Config,
    workers: int,
    proxy_sock: socket.socket,
    admin_sock: socket.socket | None,
    auth_sock: socket.socket | None,
    signing_kid: str | None = None,
    leaks_sock: socket.socket | None = None,
) -> None:
    # The process's own lines go to stderr, whatever the log level: stdout is the access log's
    # alone (`[log] access = "stdout"`), so a log shipper reading it finds only JSON lines.
    where = address(proxy_sock, config.tls)
    say(f"proxy listening on {where} ({workers} worker(s))")
    if admin_sock is not None:
        say(f"admin listening on {address(admin_sock, config.admin_tls)}")
    if auth_sock is not None:
        say(f"forward-auth listening on {address(auth_sock)}")
    if signing_kid is not None:
        say(f"identity assertions are signed with key {signing_kid}")
    if leaks_sock is not None:
        say(f"leaks listening on {address(leaks_sock)}")
    resources = Resources(config)
    # The leak-response listener is served where the admin listener is (the parent with
    # --workers N): it writes to the store, like the admin API, and is never on the hot path.
    control = [Listener(leaks_app(resources), leaks_sock)] if leaks_sock is not None else []
    if workers == 1:
        listeners = data_plane(resources, proxy_sock, auth_sock)
        if admin_sock is not None:
            listeners.append(admin_listener(admin_app(resources), admin_sock, config))
        run(run_listeners(resources, [*listeners, *control]))
        return
    supervisor = Supervisor(config, proxy_sock, auth_sock, workers)
    # The workers hold the traffic sockets now. Kept open here too, a socket the workers have
    # closed in a drain would still take connections into its backlog, which nobody accepts:
    # they would hang until this process exits, then be reset.
    proxy_sock.close()
    if auth_sock is not None:
        auth_sock.close()
    resources.db.on_signal.append(supervisor.fanout.tell)
    supervisor.on_death = resources.settle_orphans  # a dead worker's credits, back at once
    scraper = Scraper(resources.snapshot, supervisor.metrics_socks)
    admin: list[Listener] = list(control)
    if admin_sock is not None:
        admin.append(admin_listener(admin_app(resources, scraper, supervisor), admin_sock, config))

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
        supervisor.fanout.close()
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
        self.started = [context.Event() for _ in range(workers)]  # each serves its listeners
        pairs = [socket.socketpair() for _ in range(workers)]
        self.metrics_socks = [ours for ours, _ in pairs]  # for the Scraper
        changes = [socket.socketpair() for _ in range(workers)]
        self.fanout = Fanout([ours for ours, _ in changes])  # key changes, to every worker
        level = logging.getLogger().level
        # Local rate limits count per node: the workers share one journal of them. Held here for
        # as long as the workers run: its lock's name goes when the object does.
        self.journal = NodeJournal(context) if config.ratelimit.backend == "local" else None
        self.processes = [
            context.Process(
                target=_worker,
                args=(
                    config,
                    sock,
                    auth_sock,
                    theirs,
                    changes[n][1],
                    level,
                    os.getpid(),
                    self.ready[n],
                    self.journal,
                    self.started[n],
                ),
                daemon=True,
            )
            for n, (_, theirs) in enumerate(pairs)
        ]
        for process, (_, theirs), (_, told) in zip(self.processes, pairs, changes, strict=True):
            process.start()
            theirs.close()  # the worker holds its own copies now
            told.close()
        self.stopping = False
        self.failed = False
        self.on_death: Callable[[], Awaitable[None]] | None = None

    def serving(self) -> bool:
        """Every worker has started serving its listeners."""
        return all(started.is_set() for started in self.started)

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
        while True:
            # Checked before the loop ends: workers that all died before the first look (a
            # store none of them could open) are a failure too, not a stop (exit 0).
            if not self.stopping and not all(p.is_alive() for p in self.processes):
                dead = [p.pid for p in self.processes if not p.is_alive()]
                for pid in dead:  # the others, stopping now, must not wait on its lock
                    if self.journal is not None and pid is not None:
                        self.journal.release_for(pid)
                print(
                    f"gateway: worker process(es) {dead} exited; stopping",
                    file=sys.stderr,
                    flush=True,
                )
                self.stop()
                self.failed = True
                if self.on_death is not None:
                    await self.on_death()
            if not any(p.is_alive() for p in self.processes):
                return
            await asyncio.sleep(0.2)
