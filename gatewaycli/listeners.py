"""Listeners and the event loop of one process: bind sockets, run uvicorn's server (uvloop) with
the gateway's HTTP protocol on them, and handle the signals of a running gateway (SIGINT/SIGTERM
drain: ``gatewaycli.drain``; SIGHUP reload, SIGUSR1 log reopening), for the parent and for each
worker alike (``gatewaycli.server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn
import uvloop

from core import config as config_module
from core.config import ConfigError, Listen, TLSFiles
from gateway import redaction
from gateway.http.server import GatewayHttpProtocol
from gateway.resources import Resources
from gatewaycli.drain import Drain
from gatewaycli.fanout import follow_parent
from gatewaycli.scrape import answer

if TYPE_CHECKING:
    from gatewaycli.server import Supervisor

log = logging.getLogger("gateway")
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


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
    websockets: bool = False  # the proxy listener: WebSockets for the routes that allow them
    closes_last: bool = False  # the admin listener: open until the traffic listeners drained


def uvicorn_config(
    app: ASGIApp,
    trusted_proxies: tuple[str, ...] = (),
    shutdown_timeout: int = 30,
    tls: TLSFiles | None = None,
    header_timeout: float = 10.0,
    websockets: bool = False,
    body_timeout: float = 60.0,
    send_timeout: float = 60.0,
    keepalive_timeout: float = 30.0,
) -> uvicorn.Config:
    settings = {
        "header_timeout": header_timeout,
        "body_timeout": body_timeout,
        "send_timeout": send_timeout,
        # WebSockets on the proxy listener (gateway.websocket takes the upgraded connections);
        # elsewhere an Upgrade is served as a plain request (gateway.http.server).
        "websockets": websockets,
    }
    protocol = type("ListenerHttpProtocol", (GatewayHttpProtocol,), settings)
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
        http=protocol,  # the gateway's own HTTP/1.1 protocol (gateway.http.server, .cycle)
        ws="none",  # upgrades are the protocol's to hand over, not uvicorn's WebSocket protocol
        lifespan="off",  # `run_listeners` owns the resources' life cycle
        access_log=False,
        server_header=False,  # the upstream's Server and Date headers pass through
        date_header=False,
        log_config=None,
        timeout_keep_alive=keepalive_timeout,  # type: ignore[arg-type]
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
    changes_sock: socket.socket | None = None,
    serving: Callable[[], None] | None = None,
) -> None:
    """Start the shared resources, serve every listener until SIGINT/SIGTERM (or, in a worker,
    until its parent is gone; answering the parent's scrapes on ``metrics_sock``, told of key
    changes on ``changes_sock``), drain (``gatewaycli.drain``), then clean up. ``parent``: this
    is a worker of that process; ``serving()`` is called once every listener serves."""
    await resources.start()
    # Everything made so far (modules, classes, the config, the app) lives as long as the
    # process: out of the collector's sight, so a full collection walks only what came after.
    # Full collections were the event loop's longest pauses (50-220 ms with ~50,000-90,000
    # objects, bench row 8's p99; gc.callbacks timings), and most of those objects
    # were these.
    gc.freeze()
    servers = [_Server(listener_config(resources, listener)) for listener in listeners]
    front = [s for s, listener in zip(servers, listeners, strict=True) if not listener.closes_last]
    drain = Drain(resources, front, supervisor, speaks=parent is None)
    install_signals(resources, drain, supervisor, speaks=parent is None)
    background = []
    if parent:
        stop = functools.partial(drain.begin, "the parent process is gone", grace=False)
        background.append(asyncio.create_task(outlive_no_parent(parent, stop)))
    if metrics_sock is not None:
        background.append(asyncio.create_task(answer(metrics_sock, resources.snapshot)))
    if changes_sock is not None:
        background.append(asyncio.create_task(follow_parent(changes_sock, resources.db)))
    if serving is not None:
        background.append(asyncio.create_task(said_when_serving(servers, serving)))
    last = [
        asyncio.create_task(server.serve(sockets=[listener.sock]))
        for server, listener in zip(servers, listeners, strict=True)
        if listener.closes_last
    ]
    try:
        await asyncio.gather(
            *(
                server.serve(sockets=[listener.sock])
                for server, listener in zip(servers, listeners, strict=True)
                if not listener.closes_last
            ),
            *([supervisor.run()] if supervisor is not None else []),
        )
    finally:
        # The traffic listeners are done (or the workers are): the admin listener's /readyz
        # said "draining" until now.
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*last, return_exceptions=True)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await resources.stop()
        drain.ended(failed=supervisor is not None and supervisor.failed)


async def said_when_serving(servers: list[_Server], serving: Callable[[], None]) -> None:
    """``serving()`` once every server has started (uvicorn's ``started``: it accepts)."""
    while not all(server.started for server in servers):
        await asyncio.sleep(0.01)
    serving()


def listener_config(resources: Resources, listener: Listener) -> uvicorn.Config:
    config = resources.config
    return uvicorn_config(
        listener.app,
        config.trusted_proxies,
        config.shutdown_timeout_seconds,
        listener.tls,
        config.header_timeout_seconds,
        listener.websockets,
        config.body_timeout_seconds,
        config.send_timeout_seconds,
        config.keepalive_timeout_seconds,
    )


def install_signals(
    resources: Resources, drain: Drain, supervisor: Supervisor | None, speaks: bool
) -> None:
    """SIGINT/SIGTERM drain, SIGHUP reloads, SIGUSR1 reopens the access log; the parent passes
    each on to its workers. ``speaks``: this process logs what it does (the parent); a worker
    logs only what goes wrong, so a reload is one line for the whole gateway."""
    loop = asyncio.get_running_loop()

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
        # A good reload is news, not trouble: INFO (WARNING when some change waits for a
        # restart), said by the process that was signalled (`serve`); each worker it passes the
        # signal on to says it at DEBUG only.
        level = logging.WARNING if fixed else logging.INFO
        log.log(
            level if speaks else logging.DEBUG,
            "reloaded %s: %d route(s)%s",
            source,
            len(new.routes),
            kept,
        )
        if supervisor is not None:
            supervisor.signal(signal.SIGHUP)

    def reopen() -> None:
        """SIGUSR1 (log rotation): the access log writes to a new file at its path."""
        if resources.access_log is not None:
            resources.access_log.reopen()
        if supervisor is not None:
            supervisor.signal(signal.SIGUSR1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, drain.begin, sig.name)
    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGUSR1, reopen)
    if EARLY_SIGHUP.is_set():  # a reload asked for while this process was starting
        EARLY_SIGHUP.clear()
        reload()


def run(coro: Awaitable[None]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)  # type: ignore[arg-type]


def setup_logging(level: int | str) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    redaction.install()  # no secret in any line, uvicorn's debug lines included
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
