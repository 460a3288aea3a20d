"""The request path end to end: real gateway, real upstream, real SQLite file."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from admin import access, service
from core import config as config_module
from core.store import keys as store_keys
from gateway.app import GatewayApp
from gateway.resources import Resources
from tests.support import (
    BOTH_STORES,
    BOUND,
    Gateway,
    LoopThread,
    Upstream,
    free_socket,
    run_cli,
    wait_for,
    write_config,
)

BACKENDS = BOTH_STORES  # the store-facing suites run on SQLite and PostgreSQL


def header(seen: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in seen["headers"] if k == name]


def auth(gateway: Gateway, secret: str | None = None) -> dict[str, str]:
    return {"X-Auth-Token": secret or gateway.secret_key}


# -- authentication -------------------------------------------------------------------------------


def test_valid_key_reaches_upstream_with_identity_and_without_secret(
    gateway: Gateway, upstream: Upstream
) -> None:
    with gateway.client() as client:
        response = client.get("/echo/hello?b=2&a=1", headers=auth(gateway))
    assert response.status_code == 200
    seen = response.json()
    assert seen["path"] == "/hello" and seen["query"] == "b=2&a=1"
    assert header(seen, "x-auth-access-key") == [gateway.access_key]
    assert header(seen, "x-auth-bearer-type") == ["user"]
    assert header(seen, "x-auth-bearer-id") == [gateway.owner_id]
    assert header(seen, "x-project-id") == [gateway.project_id]
    assert header(seen, "x-auth-key-mode") == ["live"]
    assert len(header(seen, "x-organization-id")) == 1
    assert header(seen, "x-auth-token") == []
    assert gateway.secret_key not in str(seen)
    assert header(seen, "x-forwarded-for") == ["127.0.0.1"]
    assert header(seen, "x-forwarded-proto") == ["http"]
    assert header(seen, "x-forwarded-host") == [gateway.url.removeprefix("http://")]
    request_id = response.headers["x-request-id"]
    assert header(seen, "x-request-id") == [request_id] and len(request_id) == 32


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_token"),
        ({"X-Auth-Token": "gws_live_short"}, "malformed_token"),
        ({"X-Auth-Token": ""}, "malformed_token"),
        ({"X-Auth-Token": "gws_live_" + "A" * 38}, "malformed_token"),  # checksum fails
        ({"X-Auth-Token": "sk_live_" + "A" * 39}, "malformed_token"),  # another prefix
        ({"X-Auth-Token": "GWK" + "A" * 17}, "access_key_as_secret"),  # the key's name
        ({"Authorization": "Bearer GWK" + "A" * 17}, "access_key_as_secret"),  # both carriers
    ],
)
def test_rejections_without_store(
    module_gateway: Gateway, headers: dict[str, str], reason: str
) -> None:
    gateway = module_gateway
    queries = gateway.resources.verifier.store_queries
    with gateway.client() as client:
        response = client.get("/echo/x", headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "denied_authentication" and body["reason"] == reason
    assert body["request_id"] == response.headers["x-request-id"] and body["message"]
    assert response.headers["www-authenticate"] == "X-Auth-Token"
    assert gateway.resources.verifier.store_queries == queries  # offline rejection
    if reason == "missing_token":  # a client that sent none learns both ways to send one
        assert "X-Auth-Token" in body["message"] and "Authorization: Bearer" in body["message"]
    if reason == "access_key_as_secret":
        assert "access key" in body["message"] and "typo" not in body["message"]


def test_unknown_token_is_invalid_and_negatively_cached(gateway: Gateway) -> None:
    unknown = gateway.resources.secret_format.generate("live")
    queries = gateway.resources.verifier.store_queries
    with gateway.client() as client:
        for _ in range(5):
            response = client.get("/echo/x", headers=auth(gateway, unknown))
            assert response.json()["reason"] == "invalid_token"
    assert gateway.resources.verifier.store_queries == queries + 1


def test_concurrent_misses_cost_one_query(gateway: Gateway) -> None:
    import concurrent.futures

    new = gateway.new_key()
    queries = gateway.resources.verifier.store_queries

    def call(_: int) -> int:
        return httpx.get(gateway.url + "/echo/x", headers=auth(gateway, new.secret_key)).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert set(pool.map(call, range(32))) == {200}
    assert gateway.resources.verifier.store_queries - queries <= 2  # one, +1 if a thread lagged


def test_concurrent_misses_of_different_tokens_share_queries(gateway: Gateway) -> None:
    """Misses are looked up in batches (a flood costs one query a batch): 200 distinct tokens
    at once, valid and unknown mixed, each gets its own right answer from a handful of
    queries."""
    verifier = gateway.resources.verifier
    valid = [gateway.new_key() for _ in range(20)]
    unknown = [gateway.resources.secret_format.generate() for _ in range(180)]
    queries = verifier.store_queries

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(
            *(verifier.verify(t) for t in [k.secret_key for k in valid] + unknown)
        )

    answers = gateway.loop.run(all_at_once())
    assert [a.access_key for a in answers[:20]] == [k.key.access_key for k in valid]
    assert answers[20:] == ["invalid_token"] * 180
    assert 1 <= verifier.store_queries - queries <= 3


def test_cache_hit_needs_no_store(gateway: Gateway) -> None:
    verifier = gateway.resources.verifier
    with gateway.client() as client:
        client.get("/echo/x", headers=auth(gateway))
        queries = verifier.store_queries
        for _ in range(20):
            assert client.get("/echo/x", headers=auth(gateway)).status_code == 200
    assert verifier.store_queries == queries
    # The synchronous path answers on its own: no coroutine, no I/O.
    assert verifier.cached(gateway.secret_key).access_key == gateway.access_key  # type: ignore[union-attr]


def test_two_different_tokens_are_refused(gateway: Gateway) -> None:
    other = gateway.new_key()
    headers = [("X-Auth-Token", gateway.secret_key), ("X-Auth-Token", other.secret_key)]
    with gateway.client() as client:
        response = client.get("/echo/x", headers=headers)
        assert response.json()["reason"] == "duplicate_token"
        same = [("X-Auth-Token", gateway.secret_key)] * 2
        assert client.get("/echo/x", headers=same).status_code == 200


def test_expired_key_rejected_even_from_cache(gateway: Gateway) -> None:
    new = gateway.new_key(expires_at=time.time() + 3600)
    with gateway.client() as client:
        assert client.get("/echo/x", headers=auth(gateway, new.secret_key)).status_code == 200
        gateway.clock.advance(3599)
        assert client.get("/echo/x", headers=auth(gateway, new.secret_key)).status_code == 200
        gateway.clock.advance(2)
        response = client.get("/echo/x", headers=auth(gateway, new.secret_key))
    assert response.status_code == 401 and response.json()["reason"] == "expired_token"
    assert "roll" in response.json()["message"]


def test_a_roll_of_an_expired_key_gives_a_usable_key(gateway: Gateway) -> None:
    """The 401 for an expired key says to roll it: the roll renews the key for the lifetime it
    was created with, and its old secret stays dead whatever the grace."""
    new = gateway.new_key(expires_at=time.time() + 3600)
    db, fmt, op = gateway.resources.db, gateway.resources.secret_format, access.LOCAL_OPERATOR
    access_key = new.key.access_key

    async def backdate() -> None:  # made two hours ago, expired one hour ago
        async with db.transaction() as w:
            await w.execute(
                "UPDATE api_keys SET created_at = created_at - 7200, "
                "expires_at = expires_at - 7200 WHERE access_key = ?",
                (access_key,),
            )
            await store_keys.event(w, access_key, "update", time.time())

    gateway.loop.run(backdate())
    with gateway.client() as client:
        wait_for(
            lambda: client.get("/echo/x", headers=auth(gateway, new.secret_key)).status_code == 401,
            timeout=BOUND,
        )
        rolled = gateway.loop.run(service.roll_key(db, op, fmt, access_key, 3600))
        assert rolled.key.expires_at is not None
        assert 3500 < rolled.key.expires_at - time.time() <= 3600
        wait_for(
            lambda: (
                client.get("/echo/x", headers=auth(gateway, rolled.secret_key)).status_code == 200
            ),
            timeout=BOUND,
        )
        old = client.get("/echo/x", headers=auth(gateway, new.secret_key))
        assert old.status_code == 401  # no grace brings an expired key's secret back
        given = gateway.loop.run(
            service.roll_key(db, op, fmt, access_key, 0, expires_at=time.time() + 60)
        )
        assert given.key.expires_at is not None and given.key.expires_at - time.time() <= 60


def test_roll_keeps_old_secret_for_grace_then_not(gateway: Gateway) -> None:
    new = gateway.new_key()
    db, fmt, op = gateway.resources.db, gateway.resources.secret_format, access.LOCAL_OPERATOR
    with gateway.client() as client:
        assert client.get("/echo/x", headers=auth(gateway, new.secret_key)).status_code == 200
        rolled = gateway.loop.run(service.roll_key(db, op, fmt, new.key.access_key, 3600))
        # The roll's event evicts the cached old secret within the bound; reloaded, it carries
        # the end of its grace.
        wait_for(lambda: not is_cached(gateway, new.secret_key), timeout=BOUND)
        assert client.get("/echo/x", headers=auth(gateway, rolled.secret_key)).status_code == 200
        assert client.get("/echo/x", headers=auth(gateway, new.secret_key)).status_code == 200
        gateway.clock.advance(3601)
        old = client.get("/echo/x", headers=auth(gateway, new.secret_key))
        assert old.status_code == 401 and old.json()["reason"] == "expired_token"
        assert client.get("/echo/x", headers=auth(gateway, rolled.secret_key)).status_code == 200
        again = gateway.loop.run(service.roll_key(db, op, fmt, new.key.access_key, 0))

        def refused() -> bool:
            response = client.get("/echo/x", headers=auth(gateway, rolled.secret_key))
            return response.status_code == 401

        wait_for(refused, timeout=BOUND)
        assert client.get("/echo/x", headers=auth(gateway, again.secret_key)).status_code == 200


def is_cached(gateway: Gateway, secret: str) -> bool:
    async def check() -> bool:  # on the gateway's loop: the caches belong to it
        return not isinstance(gateway.resources.verifier.cached(secret), bytes)

    return gateway.loop.run(check())


def test_roll_grace_ends_in_real_time(gateway: Gateway) -> None:
    """The one real-time check of a roll's grace: the whole path, no injected clock."""
    new = gateway.new_key()
    db, fmt, op = gateway.resources.db, gateway.resources.secret_format, access.LOCAL_OPERATOR
    with gateway.client() as client:
        assert client.get("/echo/x", headers=auth(gateway, new.secret_key)).status_code == 200
        gateway.loop.run(service.roll_key(db, op, fmt, new.key.access_key, 1))
        assert client.get("/echo/x", headers=auth(gateway, new.secret_key)).status_code == 200
        wait_for(
            lambda: client.get("/echo/x", headers=auth(gateway, new.secret_key)).status_code == 401,
            timeout=1 + BOUND,
        )


def test_auth_modes(gateway: Gateway, upstream: Upstream) -> None:
    with gateway.client() as client:
        anonymous = client.get("/maybe/x")
        assert anonymous.status_code == 200 and header(anonymous.json(), "x-auth-access-key") == []
        named = client.get("/maybe/x", headers=auth(gateway)).json()
        assert header(named, "x-auth-access-key") == [gateway.access_key]
        bad = client.get("/maybe/x", headers={"X-Auth-Token": "nope"})
        assert bad.status_code == 401
        open_route = client.get("/open/x", headers={"X-Auth-Token": "anything at all"})
        assert open_route.status_code == 200
        assert header(open_route.json(), "x-auth-token") == []
        assert header(open_route.json(), "x-auth-access-key") == []


def test_project_policy(make_gateway: Any, upstream: Upstream) -> None:
    # A route limited to a project the owner key is not in, and one limited to its project.
    gateway = make_gateway(f"""
[[routes]]
prefix = "/team"
upstream = "{upstream.url}"
projects = ["00000000-0000-0000-0000-000000000000"]
[[routes]]
prefix = "/mine"
upstream = "{upstream.url}"
projects = ["{{project_id}}"]
""")
    with gateway.client() as client:
        denied = client.get("/team/x", headers=auth(gateway))
        assert denied.status_code == 403
        assert denied.json()["type"] == "permission_denied"
        assert denied.json()["reason"] == "project_not_allowed"
        assert client.get("/mine/x", headers=auth(gateway)).status_code == 200


def test_no_route_is_404(gateway: Gateway) -> None:
    with gateway.client() as client:
        response = client.get("/elsewhere", headers=auth(gateway))
        assert response.status_code == 404 and response.json()["type"] == "not_found"
        assert client.get("/echoes", headers=auth(gateway)).status_code == 404


# -- routing as the upstream sees it --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "forwarded"),
    [
        ("/echo", "/"),
        ("/echo/a/b", "/a/b"),
        ("/echo//a///b/", "/a/b/"),
        ("/echo/a/./b/../c", "/a/c"),
        ("/echo/%7Euser/%61", "/~user/a"),
        ("/echo/a%2fb", "/a/b"),
        ("/echo/x%3Fy", "/x%3Fy"),
        ("/keep/a/b", "/keep/a/b"),
        ("/open/../echo/a", None),  # normalises into /echo: needs a key
    ],
)
def test_forwarded_path(module_gateway: Gateway, path: str, forwarded: str | None) -> None:
    gateway = module_gateway
    with httpx.Client(base_url=gateway.url) as client:
        request = client.build_request("GET", path)
        request.url = request.url.copy_with(raw_path=path.encode())
        response = client.send(request)
        if forwarded is None:
            assert response.status_code == 401
            return
        request.headers["X-Auth-Token"] = gateway.secret_key
        response = client.send(request)
    assert response.status_code == 200
    assert response.json()["path"] == forwarded


# -- responses ------------------------------------------------------------------------------------


def test_response_headers(gateway: Gateway) -> None:
    with gateway.client() as client:
        response = client.get("/api/cookies", headers={**auth(gateway), "X-Request-ID": "abc-123"})
    assert response.status_code == 200
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert "x-upstream-private" not in response.headers  # named in Connection
    assert "keep-alive" not in response.headers
    assert response.headers.get_list("x-request-id") == ["abc-123"]


@pytest.mark.parametrize(
    ("server", "forwarded_for", "proto"),
    [
        ("", ["6.6.6.6, 127.0.0.1"], ["http"]),  # default: nobody's X-Forwarded-* believed
        ('trusted_proxies = ["127.0.0.1"]', ["6.6.6.6, 6.6.6.6"], ["https"]),  # a local terminator
        ('trusted_proxies = ["10.0.0.0/8"]', ["6.6.6.6, 127.0.0.1"], ["http"]),
    ],
)
def test_forwarded_headers_are_believed_only_from_trusted_proxies(
    make_gateway: Any, server: str, forwarded_for: list[str], proto: list[str]
) -> None:
    """The first request opens the upstream connection (the ASGI path, in a task); the second
    is served by callbacks (gateway.relay), where `gateway serve` runs uvicorn's proxy-headers
    rules itself: the same answer, and no task for it."""
    gateway: Gateway = make_gateway(server=server)
    spoof = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", **auth(gateway)}
    made: list[str] = []

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def count(on: bool) -> None:
        asyncio.get_running_loop().set_task_factory(counting if on else None)

    with gateway.client() as client:
        for second in (False, True):
            if second:
                gateway.loop.run(count(True))
            seen = client.get("/echo/x", headers=spoof).json()
            gateway.loop.run(count(False))
            assert header(seen, "x-forwarded-for") == forwarded_for
            assert header(seen, "x-forwarded-proto") == proto
    assert "Cycle.run" not in made, made


def test_insane_request_id_is_replaced(gateway: Gateway) -> None:
    with gateway.client() as client:
        response = client.get("/echo/x", headers={**auth(gateway), "X-Request-ID": "a b" * 100})
    assert response.headers["x-request-id"] != "a b" * 100
    assert len(response.headers["x-request-id"]) == 32


# -- bodies ---------------------------------------------------------------------------------------


def chunks(total: int, size: int = 256) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        part = min(size, total - sent)
        yield b"y" * part
        sent += part


def test_streamed_upload_over_limit_is_413(gateway: Gateway, upstream: Upstream) -> None:
    before = len([r for r in upstream.requests if r.get("path") == "/upload"])
    with gateway.client() as client:
        # /small allows 1000 bytes; a chunked body (no Content-Length) of 5000 bytes.
        response = client.post("/small/upload", content=chunks(5000))
        assert response.status_code == 413
        assert response.json()["type"] == "payload_too_large"
        declared = client.post("/small/upload", content=b"z" * 1001)
        assert declared.status_code == 413
        ok = client.post("/small/upload", content=chunks(1000))
        assert ok.status_code == 200 and ok.json() == {"body_bytes": 1000}
    completed = [r for r in upstream.requests if r.get("path") == "/upload"]
    assert len(completed) == before + 1  # the oversized ones never completed upstream


def test_large_bodies_stream_both_ways(gateway: Gateway) -> None:
    size = 10 * 1024 * 1024  # /api keeps the default limit: exactly 10 MiB is allowed
    with gateway.client() as client:
        up = client.post("/api/upload", content=chunks(size, 65536), headers=auth(gateway))
        assert up.status_code == 200 and up.json() == {"body_bytes": size}
        size *= 3
        received = 0
        with client.stream("GET", f"/api/stream?bytes={size}", headers=auth(gateway)) as down:
            assert down.status_code == 200
            for part in down.iter_bytes():
                received += len(part)
    assert received == size


def test_client_disconnect_frees_upstream(gateway: Gateway, upstream: Upstream) -> None:
    before = len(upstream.aborted)
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"GET /api/stream?bytes=100000000&delay=0.01 HTTP/1.1\r\nHost: x\r\n"
            b"X-Auth-Token: " + gateway.secret_key.encode() + b"\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    wait_for(lambda: len(upstream.aborted) > before, timeout=5)


# -- upstream failures ----------------------------------------------------------------------------


def test_upstream_down_is_502_and_slow_is_504(gateway: Gateway) -> None:
    with gateway.client() as client:
        down = client.get("/down/x", headers=auth(gateway))
        assert down.status_code == 502 and down.json()["type"] == "upstream_error"
        slow = client.get("/api/slow?seconds=3", headers=auth(gateway))
        assert slow.status_code == 504 and slow.json()["reason"] == "upstream_timeout"
        assert client.get("/echo/x", headers=auth(gateway)).status_code == 200


# -- the store going away -------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_store_unavailable_then_back(gateway: Gateway) -> None:
    cached = gateway.secret_key
    uncached = gateway.new_key().secret_key
    path = gateway.config.store.path
    aside = path.with_name("aside.db")
    with gateway.client() as client:
        assert client.get("/echo/x", headers=auth(gateway, cached)).status_code == 200
        path.rename(aside)
        try:
            response = client.get("/echo/x", headers=auth(gateway, uncached))
            assert response.status_code == 503
            assert response.json()["type"] == "store_unavailable"
            assert client.get("/echo/x", headers=auth(gateway, cached)).status_code == 200
        finally:
            aside.rename(path)
        assert client.get("/echo/x", headers=auth(gateway, uncached)).status_code == 200


def test_last_used_is_written_in_batches(gateway: Gateway) -> None:
    new = gateway.new_key()
    with gateway.client() as client:
        for _ in range(3):
            client.get("/echo/x", headers=auth(gateway, new.secret_key))
    assert gateway.loop.run(gateway.resources.verifier.flush_last_used()) == 1
    key = gateway.loop.run(
        service.get_key(gateway.resources.db, access.LOCAL_OPERATOR, new.key.access_key)
    )
    assert key.last_used_at is not None and abs(key.last_used_at - time.time()) < 5
    # Within the minute, further use writes nothing more.
    with gateway.client() as client:
        client.get("/echo/x", headers=auth(gateway, new.secret_key))
    assert gateway.loop.run(gateway.resources.verifier.flush_last_used()) == 0


def test_housekeeping_trims_only_what_expired(gateway: Gateway) -> None:
    verifier = gateway.resources.verifier
    now = verifier.clock()
    verifier._last_marked.clear()
    verifier._last_marked.update({"GWKOLD1": now - 120, "GWKOLD2": now - 61, "GWKNEW": now - 1})
    gateway.loop.run(_call(verifier.trim))
    assert list(verifier._last_marked) == ["GWKNEW"]


async def _call(function: Any) -> None:
    function()


def test_the_app_runs_under_any_asgi_server_through_its_lifespan(
    tmp_path: Path, upstream: Upstream
) -> None:
    """Outside `gateway serve`, the ASGI lifespan starts and stops the resources."""
    source = write_config(tmp_path, upstream.url)
    secret = json.loads(run_cli("--config", str(source), "init", "--json").stdout)["secret_key"]
    resources = Resources(config_module.load(source))
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(GatewayApp(resources), lifespan="on", log_config=None))
    loop = LoopThread()
    try:
        serving = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), loop.loop)
        wait_for(lambda: server.started, timeout=10)
        assert resources.started
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/echo/x"
        assert httpx.get(url, headers={"X-Auth-Token": secret}).status_code == 200
        server.should_exit = True
        serving.result(15)
        assert not resources.started
    finally:
        loop.close()
        sock.close()
