"""Fixtures shared by every test module; the helpers they use live in ``tests.support``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support import (
    Gateway,
    LoopThread,
    Running,
    Upstream,
    build_gateway,
    free_socket,
    make_upstream_app,
)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="session")
def upstream(loop_thread: LoopThread) -> Iterator[Upstream]:
    sock = free_socket()
    record = Upstream(url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    runner = web.AppRunner(make_upstream_app(record), access_log=None, handler_cancellation=True)
    loop_thread.run(runner.setup())
    loop_thread.run(web.SockSite(runner, sock).start())
    yield record
    loop_thread.run(runner.cleanup())
    sock.close()


# -- the gateway --------------------------------------------------------------------------------


@pytest.fixture
def make_gateway(tmp_path: Path, upstream: Upstream) -> Iterator[Any]:
    """Build a gateway over a fresh store; the config can be extended with TOML text."""
    started: list[Running] = []

    def build(extra: str = "", server: str = "") -> Gateway:
        gateway, running = build_gateway(tmp_path, upstream.url, extra, server)
        started.append(running)
        return gateway

    yield build
    for running in started:
        running.stop()


@pytest.fixture
def gateway(make_gateway: Any) -> Gateway:
    gw: Gateway = make_gateway()
    return gw


@pytest.fixture(scope="module")
def module_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
) -> Iterator[Gateway]:
    """One gateway for a whole module, for tables of cases that do not depend on a fresh store."""
    gateway, running = build_gateway(Path(tmp_path_factory.mktemp("module")), upstream.url)
    yield gateway
    running.stop()
