"""Rate limits at their edges: exactly `limit` pass, the next is 429 with a correct Retry-After,
the window slides; the RateLimit fields on every response of a limited route; Redis shared by
two gateways, and Redis away with fail open and fail closed."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import config as config_module
from core.config import ConfigError
from tests.support import (
    REDIS_URL,
    Gateway,
    RedisServer,
    Upstream,
    require_redis,
    run_cli,
    start_gateway,
    start_serve,
    stop_serve,
    wait_for,
    write_config,
)

LIMITED = """
[[routes]]
prefix = "/limited"
upstream = "{upstream}"
rate_limits = [{{limit = 3, window_seconds = 10}}]

[[routes]]
prefix = "/two"
upstream = "{upstream}"
rate_limits = [{{limit = 2, window_seconds = 1}}, {{limit = 5, window_seconds = 60}}]

[[routes]]
prefix = "/anyone"
upstream = "{upstream}"
auth = "none"
rate_limits = [{{limit = 1, window_seconds = 60}}]
"""


def limited(upstream: Upstream, ratelimit: str = "") -> str:
    # `extra` is formatted with `init`'s values: its own braces are doubled.
    text = LIMITED.replace("{upstream}", upstream.url)
    return text + (ratelimit.replace("{", "{{").replace("}", "}}") if ratelimit else "")


def get(gateway: Gateway, path: str, secret: str | None = None) -> httpx.Response:
    headers = {"X-Auth-Token": secret or gateway.secret_key}
    return httpx.get(gateway.url + path, headers=headers, timeout=10)


@pytest.fixture
def local(make_gateway: Any, upstream: Upstream) -> Gateway:
    gateway: Gateway = make_gateway(extra=limited(upstream))
    gateway.clock.freeze()
    return gateway


def test_exactly_the_limit_passes_then_429_with_retry_after(
    local: Gateway, upstream: Upstream
) -> None:
    forwarded = len(upstream.requests)
    for left in (2, 1, 0):
        response = get(local, "/limited/x")
        assert response.status_code == 200
        assert response.headers["ratelimit-policy"] == '"route-3-per-10s";q=3;w=10'
        assert response.headers["ratelimit"] == f'"route-3-per-10s";r={left};t=10'
    refused = get(local, "/limited/x")
    assert refused.status_code == 429
    assert refused.json()["type"] == "rate_limited" and refused.json()["reason"] == "rate_limited"
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    assert refused.headers["retry-after"] == "10"
    assert refused.headers["ratelimit"] == '"route-3-per-10s";r=0;t=10'
    assert refused.headers["ratelimit-policy"] == '"route-3-per-10s";q=3;w=10'
    assert len(upstream.requests) == forwarded + 3  # the refused one never left
    local.clock.advance(4)
    assert get(local, "/limited/x").headers["retry-after"] == "6"
    local.clock.advance(5.5)
    assert get(local, "/limited/x").headers["retry-after"] == "1"  # 0.5 s, rounded up
    local.clock.advance(0.5)  # the first three leave the window together
    assert get(local, "/limited/x").status_code == 200


def test_the_window_slides(local: Gateway) -> None:
    """No fixed windows: what passed in the last 10 s counts, wherever a boundary would be."""
    assert get(local, "/limited/x").status_code == 200  # t = 0
    local.clock.advance(6)
    assert get(local, "/limited/x").status_code == 200  # t = 6
    assert get(local, "/limited/x").status_code == 200  # t = 6
    local.clock.advance(3.9)
    refused = get(local, "/limited/x")  # t = 9.9: all three still in the window
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    local.clock.advance(0.1)  # t = 10: the first has left, the two at t = 6 have not
    allowed = get(local, "/limited/x")
    assert allowed.status_code == 200
    assert allowed.headers["ratelimit"] == '"route-3-per-10s";r=0;t=6'
    refused = get(local, "/limited/x")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "6"


def test_every_limit_must_hold_and_a_refusal_consumes_none(local: Gateway) -> None:
    expected_policy = '"route-2-per-1s";q=2;w=1, "route-5-per-60s";q=5;w=60'
    statuses = []
    for _ in range(3):
        for _ in range(3):
            response = get(local, "/two/x")
            statuses.append(response.status_code)
            assert response.headers["ratelimit-policy"] == expected_policy
        local.clock.advance(1)
    # 2 per second pass; the third of each second is refused and counts toward nothing
    assert statuses == [200, 200, 429, 200, 200, 429, 200, 429, 429]
    refused = get(local, "/two/x")
    assert refused.headers["ratelimit"] == '"route-2-per-1s";r=2;t=0, "route-5-per-60s";r=0;t=57'
    assert refused.headers["retry-after"] == "57"


def test_limits_are_per_key(local: Gateway) -> None:
    other = local.new_key().secret_key
    for _ in range(3):
        assert get(local, "/limited/x").status_code == 200
    assert get(local, "/limited/x").status_code == 429
    assert get(local, "/limited/x", other).status_code == 200  # a log of its own


def test_anonymous_requests_and_unlimited_routes_carry_no_fields(local: Gateway) -> None:
    for _ in range(3):
        response = httpx.get(local.url + "/anyone/x")
        assert response.status_code == 200 and "ratelimit" not in response.headers
    plain = get(local, "/echo/x")
    assert plain.status_code == 200 and "ratelimit-policy" not in plain.headers


def test_rate_limited_requests_are_logged_and_counted(local: Gateway) -> None:
    for _ in range(4):
        get(local, "/limited/x")
    metrics = httpx.get(local.admin_url + "/metrics").text
    assert 'reason="rate_limited",route="/limited",status_class="4xx"} 1.0' in metrics
    log = Path(local.config.source).parent / "access.log"

    def logged() -> bool:
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        return any(e["status"] == 429 and e["reason"] == "rate_limited" for e in entries)

    wait_for(logged, timeout=5)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("rate_limits = [{limit = 0, window_seconds = 1}]", "limit must be between 1 and"),
        ("rate_limits = [{limit = 1, window_seconds = 0}]", "window_seconds must be between 1"),
        ("rate_limits = [{limit = 1.5, window_seconds = 1}]", "limit must be a whole number"),
        ("rate_limits = [{limit = 1}]", "is not a rate limit: write {limit = 100"),
        (
            "rate_limits = [{limit = 1, window_seconds = 5}, {limit = 2, window_seconds = 5}]",
            "two rate limits over the same window",
        ),
        ('rate_limits = "10/1s"', "rate_limits must be a list"),
    ],
)
def test_bad_rate_limits_are_refused_with_a_reason(
    tmp_path: Path, table: str, message: str
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[[routes]]\nprefix = "/a"\nupstream = "http://127.0.0.1:9"\n{table}\n')
    with pytest.raises(ConfigError) as raised:
        config_module.load(config)
    assert message in str(raised.value) and "routes[0]" in str(raised.value)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('backend = "memcached"', "must be local or redis"),
        ('backend = "redis"', "is not a redis://host:port URL"),
        ('backend = "redis"\nurl = "redis://127.0.0.1"\nfail = "maybe"', "must be open or closed"),
    ],
)
def test_bad_ratelimit_settings_are_refused(tmp_path: Path, table: str, message: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f"[ratelimit]\n{table}\n")
    with pytest.raises(ConfigError, match=message):
        config_module.load(config)


# -- Redis ------------------------------------------------------------------------------------


def test_two_gateways_share_one_redis_limit(make_gateway: Any, upstream: Upstream) -> None:
    """Two processes' worth of gateways (two resources, two caches) over one Redis: together
    they let exactly `limit` through."""
    require_redis()
    first: Gateway = make_gateway(
        extra=limited(upstream, f'\n[ratelimit]\nbackend = "redis"\nurl = "{REDIS_URL}"\n')
    )
    first.clock.freeze()
    second = start_gateway(first.config, first.clock)
    try:
        urls = [first.url, second.url(0)]
        headers = {"X-Auth-Token": first.secret_key}
        statuses = [
            httpx.get(urls[n % 2] + "/limited/x", headers=headers).status_code for n in range(6)
        ]
        assert statuses == [200, 200, 200, 429, 429, 429]
        refused = httpx.get(urls[1] + "/limited/x", headers=headers)
        assert refused.headers["retry-after"] == "10"
        assert refused.headers["ratelimit"] == '"route-3-per-10s";r=0;t=10'
        first.clock.advance(10)  # both gateways share the clock: the window has passed
        assert httpx.get(urls[1] + "/limited/x", headers=headers).status_code == 200
    finally:
        second.stop()


def test_two_workers_share_one_redis_limit(tmp_path: Path, upstream: Upstream) -> None:
    """`serve --workers 2` over Redis: requests spread over both workers, exactly `limit` pass
    (with the local backend each worker would let its own three through)."""
    require_redis()
    settings = f'\n[ratelimit]\nbackend = "redis"\nurl = "{REDIS_URL}"\n'
    config = write_config(tmp_path, upstream.url, LIMITED.replace("{upstream}", upstream.url))
    config.write_text(config.read_text().replace("{{", "{").replace("}}", "}") + settings)
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    process, url = start_serve(config, "--workers", "2")
    try:
        headers = {"X-Auth-Token": secret}
        wait_for(lambda: httpx.get(url + "/echo/x", headers=headers).status_code == 200, 15, 0.1)

        def send(_: int) -> int:  # a connection each, several at once: both workers take some
            return httpx.get(url + "/limited/x", headers=headers).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(16)))
        assert statuses.count(200) == 3 and statuses.count(429) == 13
    finally:
        stop_serve(process)


@pytest.mark.parametrize("fail", ["open", "closed"])
def test_redis_away(
    make_gateway: Any, upstream: Upstream, fail: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer()
    server.start()
    try:
        settings = f'\n[ratelimit]\nbackend = "redis"\nurl = "{server.url}"\nfail = "{fail}"\n'
        gateway: Gateway = make_gateway(extra=limited(upstream, settings))
        gateway.clock.freeze()
        assert get(gateway, "/limited/x").headers["ratelimit"] == '"route-3-per-10s";r=2;t=10'
    finally:
        server.stop()
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        statuses = [get(gateway, "/limited/x").status_code for _ in range(5)]
    if fail == "open":
        assert statuses == [200] * 5  # more than the limit: nobody could count
    else:
        assert statuses == [503] * 5
        refused = get(gateway, "/limited/x").json()
        assert refused["type"] == "rate_limit_unavailable"
        assert refused["reason"] == "rate_limit_unavailable"
    warnings = [r for r in caplog.records if "Redis does not answer" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not per request
    metrics = httpx.get(gateway.admin_url + "/metrics").text
    unanswered = 5 if fail == "open" else 6
    assert f"gateway_rate_limit_unavailable_total {unanswered}.0" in metrics
    server.start()  # back: counted again, from an empty log (a new server)
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        response = get(gateway, "/limited/x")
    assert response.status_code == 200 and response.headers["ratelimit"].endswith("r=2;t=10")
    assert any("Redis answers again" in r.getMessage() for r in caplog.records)
    server.stop()


def test_a_redis_limited_route_that_costs_credits_spends_them(
    make_gateway: Any, upstream: Upstream
) -> None:
    """The Redis check answered by a callback, then the route's cost: spent from what the
    process holds, or waited for from the store, never a 500 and never past the credits."""
    from core.plans import Credits, Refill

    require_redis()
    gateway: Gateway = make_gateway(
        extra=limited(upstream, f'\n[ratelimit]\nbackend = "redis"\nurl = "{REDIS_URL}"\n')
    )
    gateway.clock.freeze()
    new = gateway.new_key(credits=Credits(2, Refill(2, "daily")))
    answers = [get(gateway, "/limited/x", new.secret_key) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers.get("x-credits-remaining") for a in answers] == ["1", "0", "0"]
    assert answers[2].json()["reason"] == "usage_exceeded"
    # A route without rate limits on the same gateway: the credits alone wait for the store.
    other = gateway.new_key(credits=Credits(1, Refill(1, "daily")))
    answers = [get(gateway, "/echo/x", other.secret_key) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 429]
    assert answers[0].headers["x-credits-remaining"] == "0"
