"""Fixtures shared by every test module; the helpers they use live in ``tests.support``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support import (
    Gateway,
    LoopThread,
    PostgresDatabases,
    Running,
    Upstream,
    build_gateway,
    free_socket,
    make_upstream_app,
    require_postgres,
)

StoreFactory = Callable[[], str | None]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Store-facing modules (``BACKENDS = BOTH_STORES`` at their top) run on SQLite and on
    PostgreSQL;
    a test marked ``sqlite_only`` (it handles the SQLite file itself) runs on SQLite alone."""
    if "store_backend" not in metafunc.fixturenames:
        return
    backends = getattr(metafunc.module, "BACKENDS", ("sqlite",))
    if metafunc.definition.get_closest_marker("sqlite_only"):
        backends = ("sqlite",)
    metafunc.parametrize("store_backend", backends, indirect=True, scope="module")


@pytest.fixture(scope="module")
def store_backend(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """Where the module's gateways keep their keys: None (a SQLite file beside the config) or
    the URL of a fresh PostgreSQL database, one per call, all dropped with the module."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield lambda: None
        return
    require_postgres()
    databases = PostgresDatabases()
    yield databases.new
    databases.drop_all()


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
def make_gateway(tmp_path: Path, upstream: Upstream, store_backend: StoreFactory) -> Iterator[Any]:
    """Build a gateway over a fresh store; the config can be extended with TOML text."""
    started: list[Running] = []

    def build(extra: str = "", server: str = "", **options: Any) -> Gateway:
        gateway, running = build_gateway(
            tmp_path, upstream.url, extra, server, store_backend(), **options
        )
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
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, store_backend: StoreFactory
) -> Iterator[Gateway]:
    """One gateway for a whole module, for tables of cases that do not depend on a fresh store."""
    gateway, running = build_gateway(
        Path(tmp_path_factory.mktemp("module")), upstream.url, store_url=store_backend()
    )
    yield gateway
    running.stop()


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database of the shared server, dropped after the test."""
    require_postgres()
    databases = PostgresDatabases()
    yield databases.new()
    databases.drop_all()
