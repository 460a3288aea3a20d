"""Redis rate limits over one pipelined connection (gateway.redis_pipe): the checks of one
loop iteration leave in one write; a silent Redis is bounded; a flushed script is loaded
again; and two nodes of two workers each still let exactly the limit through."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from core.config import RateLimitConfig
from core.policies import RateLimit
from gateway.ratelimit import Limits
from gateway.redis_limits import RedisLimiter
from tests.support import (
    REDIS_URL,
    Gateway,
    RedisServer,
    Upstream,
    require_redis,
    run_cli,
    start_serve,
    stop_serve,
    write_config,
)
from tests.support.tasks import tasks_made
from tests.support.workers import connections_to_each_worker, request
from tests.test_rate_limits import limited


def limiter(url: str, timeout_ms: int = 2000) -> RedisLimiter:
    return RedisLimiter(RateLimitConfig("redis", url, "open", timeout_ms), time.time)


def fresh_limits(limit: int = 3) -> Limits:
    return Limits(f"AK{time.time_ns()}", "/limited", (RateLimit(limit, 10),), ())


def test_the_checks_of_one_iteration_share_one_write() -> None:
    require_redis()

    async def run() -> tuple[list[bool], list[int]]:
        redis = limiter(REDIS_URL)
        limits = fresh_limits()
        await redis.check(limits, 1000.0)  # connected, the script known to Redis
        assert redis.pipe.transport is not None
        writes: list[int] = []
        transport = redis.pipe.transport
        write = transport.write

        def counted(data: bytes | bytearray | memoryview) -> None:
            writes.append(len(data))
            write(data)

        transport.write = counted  # type: ignore[method-assign]
        answers = await asyncio.gather(*(redis.check(limits, 1000.1) for _ in range(20)))
        await redis.close()
        return [a is not None and a.allowed for a in answers], writes

    allowed, writes = asyncio.run(run())
    assert allowed.count(True) == 2 and len(allowed) == 20  # 3 per 10 s, one used before
    assert len(writes) == 1  # twenty checks, one write, one round trip


def test_the_checks_of_one_key_in_one_iteration_are_one_script_call() -> None:
    """Fifty checks of one key at once, ten allowed per 10 s: one script call in Redis, and
    the answers of fifty calls in a row (ten admitted, counting down; forty refused with the
    wait until the oldest leaves, none of them recorded); another key's checks are a call of
    their own."""
    server = RedisServer()
    server.start()

    async def run() -> tuple[list[Any], list[Any], int, int]:
        redis = limiter(server.url)
        limits, other = fresh_limits(10), fresh_limits(10)
        await redis.check(limits, 1000.0)  # connected, the script loaded; one of ten used
        before = await script_calls(redis)
        answers = await asyncio.gather(
            *(redis.check(limits, 1001.0) for _ in range(50)),
            *(redis.check(other, 1001.0) for _ in range(3)),
        )
        calls = await script_calls(redis) - before
        size = await redis.pipe.call("ZCARD", f"gw:rl:{limits.items[0].key}")
        await redis.close()
        return list(answers[:50]), list(answers[50:]), calls, size

    try:
        mine, others, calls, size = asyncio.run(run())
    finally:
        server.stop()
    assert calls == 2  # one for each key
    assert [d is not None and d.allowed for d in mine] == [True] * 9 + [False] * 41
    assert size == 10  # the first check and nine of the fifty, never a refused one
    remaining = [dict(d.headers)[b"ratelimit"] for d in mine if d is not None]
    assert remaining[0].endswith(b"r=8;t=9") and remaining[8].endswith(b"r=0;t=9")
    refused = [d for d in mine[9:] if d is not None]
    assert {dict(d.headers)[b"retry-after"] for d in refused} == {b"9"}  # 1000.0 + 10 - 1001
    assert [d is not None and d.allowed for d in others] == [True] * 3


async def script_calls(redis: RedisLimiter) -> int:
    """EVALSHA and EVAL calls Redis has run (INFO commandstats)."""
    info = (await redis.pipe.call("INFO", "commandstats")).decode()
    calls = 0
    for line in info.splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
            calls += int(line.split("calls=")[1].split(",")[0])
    return calls


def test_a_redis_that_never_answers_is_bounded_then_reconnected() -> None:
    """A server that accepts and says nothing: each check ends at `timeout_ms` with no
    decision (the fail rule applies), the connection is dropped and made again."""
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]

    async def run() -> list[Any]:
        redis = limiter(f"redis://127.0.0.1:{port}/0", timeout_ms=200)
        first = await asyncio.gather(*(redis.check(fresh_limits(), 1000.0) for _ in range(3)))
        second = await redis.check(fresh_limits(), 1000.0)
        await redis.close()
        return [*first, second]

    try:
        assert asyncio.run(run()) == [None] * 4
        accepted = [silent.accept()[0] for _ in range(2)]  # connected twice: dropped once
        for conn in accepted:
            conn.close()
    finally:
        silent.close()


def test_a_flushed_script_is_loaded_again() -> None:
    server = RedisServer()
    server.start()

    async def run() -> list[bool]:
        redis = limiter(server.url)
        limits = fresh_limits()
        first = await redis.check(limits, 1000.0)
        await redis.pipe.call("SCRIPT", "FLUSH")
        second = await redis.check(limits, 1000.1)  # NOSCRIPT, then EVAL
        third = await redis.check(limits, 1000.2)
        await redis.close()
        return [d is not None and d.allowed for d in (first, second, third)]

    try:
        assert asyncio.run(run()) == [True, True, True]
    finally:
        server.stop()


def test_two_nodes_of_two_workers_let_the_limit_through_once(
    tmp_path: Path, upstream: Upstream
) -> None:
    """Two `serve --workers 2` on one store and one Redis: requests in turn on a connection to
    each of the four workers, exactly `limit` pass in all."""
    require_redis()
    extra = (
        f'\n[[routes]]\nprefix = "/limited"\nupstream = "{upstream.url}"\n'
        "rate_limits = [{limit = 3, window_seconds = 10}]\n"
        f'\n[ratelimit]\nbackend = "redis"\nurl = "{REDIS_URL}"\n'
    )
    config = write_config(tmp_path, upstream.url, extra)
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    first, first_url = start_serve(config, "--workers", "2")
    try:
        second, second_url = start_serve(config, "--workers", "2")
        try:
            with (
                connections_to_each_worker(first, first_url, secret) as one,
                connections_to_each_worker(second, second_url, secret) as other,
            ):
                workers = [*one, *other]
                statuses = [request(workers[n % 4], "/limited/x", secret) for n in range(12)]
            assert statuses == [200] * 3 + [429] * 9
        finally:
            stop_serve(second)
    finally:
        stop_serve(first)


def test_a_redis_limited_request_is_served_without_a_task(
    make_gateway: Any, upstream: Upstream
) -> None:
    """On a cache hit, the Redis check is sent and its answer taken by a done callback, and the
    request then goes on by callbacks (gateway.relay): no task for the request, allowed or
    refused."""
    require_redis()
    settings = f'\n[ratelimit]\nbackend = "redis"\nurl = "{REDIS_URL}"\n'
    gateway: Gateway = make_gateway(extra=limited(upstream, settings))
    gateway.clock.freeze()
    headers = {"X-Auth-Token": gateway.secret_key}
    with httpx.Client(base_url=gateway.url, headers=headers) as client:
        warm = client.get("/limited/x")  # the key cached, Redis and the upstream connected
        assert warm.status_code == 200
        with tasks_made(gateway.loop) as made:
            answers = [client.get("/limited/x") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["ratelimit"] == '"route-3-per-10s";r=1;t=10'
    assert answers[2].headers["retry-after"] == "10"
    assert "Cycle.run" not in made, made
