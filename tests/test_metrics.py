"""/metrics: Prometheus text on the admin listener, read back with prometheus_client's parser."""

from __future__ import annotations

import asyncio
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from admin import access, service
from gateway.metrics import Metrics, merge, render
from gatewaycli.scrape import Scraper, answer
from tests.support import (
    BOTH_STORES,
    BOUND,
    Gateway,
    Upstream,
    listening,
    run_cli,
    start_serve,
    stop_serve,
    wait_for,
    write_config,
)

BACKENDS = BOTH_STORES
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample by name and labels (the parser fails on anything not in the format)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests(samples: Samples, **labels: str) -> float:
    """The requests counted with these labels, whatever the others."""
    return sum(
        count
        for (name, have), count in samples.items()
        if name == "gateway_http_requests_total" and set(labels.items()) <= set(have)
    )


def scrape(gateway: Gateway) -> Samples:
    response = httpx.get(gateway.admin_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def test_every_outcome_is_counted(gateway: Gateway) -> None:
    before = scrape(gateway)
    with gateway.client() as client:
        for _ in range(3):
            assert client.get("/echo/x", headers={"X-Auth-Token": gateway.secret_key}).is_success
        assert client.get("/echo/x").status_code == 401
        assert client.get("/nowhere").status_code == 404
        assert (
            client.get("/down/x", headers={"X-Auth-Token": gateway.secret_key}).status_code == 502
        )
        assert client.post("/small/x", content=b"x" * 2000).status_code == 413
    samples = scrape(gateway)

    def delta(**labels: str) -> float:
        return requests(samples, **labels) - requests(before, **labels)

    assert delta(route="/echo", status_class="2xx", reason="") == 3
    assert delta(route="/echo", status_class="4xx", reason="missing_token") == 1
    assert delta(route="", status_class="4xx", reason="no_route") == 1
    assert delta(route="/down", status_class="5xx", reason="upstream_unreachable") == 1
    assert delta(route="/small", status_class="4xx", reason="body_too_large") == 1
    assert delta() == 7
    # the latency histograms saw the same requests; the upstream one only those forwarded
    count = value(samples, "gateway_http_request_duration_seconds_count", route="/echo")
    assert count - value(before, "gateway_http_request_duration_seconds_count", route="/echo") == 4
    assert value(samples, "gateway_upstream_duration_seconds_count", route="/echo") >= 3
    assert (
        value(samples, "gateway_http_request_duration_seconds_bucket", route="/echo", le="+Inf")
        == count
    )
    assert value(samples, "gateway_http_requests_in_flight") == 0
    assert value(samples, "gateway_key_cache_lookups_total", result="hit") >= 2
    assert value(samples, "gateway_store_queries_total", kind="read") > 0
    assert value(samples, "gateway_access_log_lines_total", outcome="dropped") == 0
    info = [labels for (name, labels) in samples if name == "gateway_build_info"]
    assert info and dict(info[0])["version"]
    assert "secret" not in str(samples) and gateway.secret_key not in str(samples)


def test_cache_outcomes_and_revocation_lag(gateway: Gateway) -> None:
    """A wrong key is a miss (the store is asked) and then a negative hit; a revocation is an
    eviction whose delay lands in the lag histogram."""
    new = gateway.new_key()
    unknown = gateway.resources.secret_format.generate("live")
    before = scrape(gateway)
    with gateway.client() as client:
        for _ in range(2):
            assert client.get("/echo/x", headers={"X-Auth-Token": unknown}).status_code == 401
        assert client.get("/echo/x", headers={"X-Auth-Token": new.secret_key}).is_success
    gateway.loop.run(
        service.revoke_key(gateway.resources.db, access.LOCAL_OPERATOR, new.key.access_key)
    )

    def evicted() -> bool:
        samples = scrape(gateway)
        lag = "gateway_revocation_lag_seconds_count"
        return value(samples, lag) > value(before, lag)

    wait_for(evicted, timeout=BOUND)
    samples = scrape(gateway)

    def delta(result: str) -> float:
        name = "gateway_key_cache_lookups_total"
        return value(samples, name, result=result) - value(before, name, result=result)

    assert delta("miss") == 2  # the unknown secret once, the new key once
    assert delta("negative_hit") == 1
    lag = value(samples, "gateway_revocation_lag_seconds_sum") - value(
        before, "gateway_revocation_lag_seconds_sum"
    )
    assert 0 <= lag < BOUND


def test_per_project_is_a_switch(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(extra="[metrics]\nper_project = true")
    with gateway.client() as client:
        assert client.get("/echo/x", headers={"X-Auth-Token": gateway.secret_key}).is_success
        assert client.get("/echo/x").status_code == 401
    samples = scrape(gateway)
    assert requests(samples, route="/echo", project=gateway.project_id) == 1
    assert requests(samples, route="/echo", project="", reason="missing_token") == 1


def test_metrics_can_be_turned_off(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(extra="[metrics]\nenabled = false")
    assert httpx.get(gateway.admin_url + "/metrics").status_code == 404
    with gateway.client() as client:  # the proxy works as before, access log included
        assert client.get("/echo/x", headers={"X-Auth-Token": gateway.secret_key}).is_success
    assert gateway.resources.metrics is None


@pytest.mark.sqlite_only
def test_store_errors_are_counted(gateway: Gateway) -> None:
    path = gateway.config.store.path
    assert path is not None
    before = scrape(gateway)
    aside = path.with_name("away.db")
    path.rename(aside)
    try:
        assert httpx.get(gateway.admin_url + "/readyz").status_code == 503
    finally:
        aside.rename(path)
    errors = value(scrape(gateway), "gateway_store_errors_total")
    assert errors > value(before, "gateway_store_errors_total")


def serve_with_admin(tmp_path: Path, upstream: Upstream, workers: int) -> tuple[Any, str, str, str]:
    config = write_config(tmp_path, upstream.url)
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    config.write_text(
        config.read_text().replace('[admin]\nlisten = ""', '[admin]\nlisten = "127.0.0.1:0"')
    )
    process, url = start_serve(config, "--workers", str(workers))
    admin_url = listening(process)[0]
    return process, url, admin_url, secret


def test_counts_from_every_worker_add_up(tmp_path: Path, upstream: Upstream) -> None:
    """`serve --workers 2`: the admin process asks both workers at the scrape; the sum is exactly
    what was sent, at once (not a flush interval later)."""
    process, url, admin_url, secret = serve_with_admin(tmp_path, upstream, 2)
    try:
        headers = {"X-Auth-Token": secret}
        wait_for(lambda: httpx.get(url + "/echo/x", headers=headers).status_code == 200, 15, 0.1)
        before = parse(httpx.get(admin_url + "/metrics").text)
        assert value(before, "gateway_processes_reporting") == 3  # two workers and the admin

        def send(n: int) -> int:
            # a connection per request, several at once: both workers take some
            wanted = headers if n % 4 else {}
            return httpx.get(url + "/echo/x", headers=wanted).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(80)))
        assert statuses.count(200) == 60 and statuses.count(401) == 20
        after = parse(httpx.get(admin_url + "/metrics").text)
        ok = requests(after, route="/echo", status_class="2xx") - requests(
            before, route="/echo", status_class="2xx"
        )
        assert ok == 60
        assert (
            requests(after, reason="missing_token") - requests(before, reason="missing_token") == 20
        )
        lines = "gateway_access_log_lines_total"
        assert value(after, lines, outcome="written") + value(after, lines, outcome="dropped") <= 82
    finally:
        stop_serve(process)


def test_a_worker_that_does_not_answer_is_left_out(loop_thread: Any) -> None:
    """A scrape waits a bounded time for each worker, then counts those that answered."""

    async def scrape() -> tuple[dict[str, Any], dict[str, Any]]:
        answering, silent = socket.socketpair(), socket.socketpair()
        counted = Metrics()
        counted.requests[("/a", "2xx", "", "")] = 5
        worker = asyncio.ensure_future(answer(answering[1], counted.snapshot))
        scraper = Scraper(Metrics().snapshot, [answering[0], silent[0]])
        scraper.timeout = 0.2
        first = await scraper.collect()
        second = await scraper.collect()  # the silent one is not waited for again
        await scraper.close()
        silent[1].close()
        await asyncio.wait_for(worker, 1)
        return first, second

    first, second = loop_thread.run(scrape())
    for snapshot in (first, second):
        assert snapshot["processes"] == 2
        assert snapshot["requests"] == {("/a", "2xx", "", ""): 5}
    text = render(merge([first, second])).decode()
    assert (
        value(parse(text), "gateway_http_requests_total", route="/a", status_class="2xx", reason="")
        == 10
    )


@pytest.mark.parametrize("observed", [0.0004, 0.001, 7.0, 100.0])
def test_histogram_buckets_are_cumulative(observed: float) -> None:
    metrics = Metrics()
    metrics.observe("/r", 200, None, None, observed, None)
    samples = parse(render(metrics.snapshot()).decode())
    name = "gateway_http_request_duration_seconds"
    assert value(samples, name + "_count", route="/r") == 1
    assert value(samples, name + "_sum", route="/r") == observed
    assert value(samples, name + "_bucket", route="/r", le="+Inf") == 1
    assert value(samples, name + "_bucket", route="/r", le="0.001") == (
        1 if observed <= 0.001 else 0
    )
    assert value(samples, name + "_bucket", route="/r", le="10.0") == (1 if observed <= 10 else 0)
