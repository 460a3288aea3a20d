"""Webhook delivery across nodes: an event written by a node that is SIGKILLed mid-delivery is
delivered by the next one (at least once, exactly as signed), and two nodes on one PostgreSQL
database deliver each event once (claims ``FOR UPDATE SKIP LOCKED``)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook as Verifier

from core import config as config_module
from tests.support import (
    BOTH_STORES,
    LoopThread,
    Upstream,
    build_gateway,
    run_cli,
    spawn_cli,
    start_gateway,
    stop_serve,
    unbuffered_line,
    wait_for,
    write_config,
)
from tests.support.receiver import Receiver, run_receiver

BACKENDS = BOTH_STORES
DELIVER = "deliver = true\npoll_interval_seconds = 0.05\ntimeout_seconds = 2"


@pytest.fixture
def receiver(loop_thread: LoopThread) -> Iterator[Receiver]:
    with run_receiver(loop_thread) as found:
        yield found


def serve(config: Path) -> tuple[Any, str]:
    """`gateway serve` in the background; returns it and its admin listener's URL."""
    process = spawn_cli("--config", str(config), "serve")
    assert process.stderr is not None  # serve says where it listens on stderr
    while True:
        line = unbuffered_line(process.stderr.fileno())
        assert line, "serve exited"
        if "admin listening on" in line:
            return process, line.split("listening on ", 1)[1].split()[0]


def test_delivered_after_the_writing_node_is_killed(
    tmp_path: Path,
    upstream: Upstream,
    store_backend: Callable[[], str | None],
    receiver: Receiver,
) -> None:
    config = write_config(tmp_path, upstream.url, store_url=store_backend(), webhooks=DELIVER)
    config.write_text(
        config.read_text().replace('[admin]\nlisten = ""', '[admin]\nlisten = "127.0.0.1:0"')
    )
    init = json.loads(run_cli("--config", str(config), "init", "--json").stdout)
    hook = json.loads(
        run_cli(
            "--config",
            str(config),
            "webhooks",
            "create",
            receiver.url,
            "--event",
            "key.created",
            "--json",
        ).stdout
    )
    receiver.hang = True  # the first node's attempt never gets an answer
    first, admin_url = serve(config)
    try:
        made = httpx.post(
            admin_url + "/v1/api-keys",
            json={"description": "written by the node about to die"},
            headers={"X-Auth-Token": init["secret_key"]},
            timeout=10,
        )
        assert made.status_code == 201
        wait_for(lambda: len(receiver.received) == 1, timeout=10)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=10)
    receiver.hang = False
    killed_at = time.monotonic()
    second, _ = serve(config)
    try:
        wait_for(lambda: len(receiver.delivered()) == 1, timeout=30)
    finally:
        stop_serve(second)
    # Sent again only once the dead node's claim ran out (its attempt's timeout + 5 s).
    assert time.monotonic() - killed_at >= 2
    [got] = receiver.delivered()
    event = Verifier(hook["secret"]).verify(got.body, got.headers)
    assert event["type"] == "key.created"
    assert event["data"]["access_key"] == made.json()["access_key"]
    assert got.headers["webhook-id"] == receiver.received[0].headers["webhook-id"]


def test_two_nodes_deliver_each_event_once(
    tmp_path: Path, upstream: Upstream, database_url: str, receiver: Receiver
) -> None:
    gateway, running = build_gateway(
        tmp_path, upstream.url, store_url=database_url, webhooks=DELIVER
    )
    other = start_gateway(config_module.load(gateway.config.source))
    try:
        with gateway.admin() as admin:
            made = admin.post("/v1/webhooks", json={"url": receiver.url, "events": ["key.created"]})
        assert made.status_code == 201
        count = 40
        for n in range(count):
            gateway.new_key(description=f"key {n}")
        wait_for(lambda: len(receiver.delivered()) == count, timeout=30)
        time.sleep(0.5)  # a duplicate would come now
        ids = [r.headers["webhook-id"] for r in receiver.received]
        assert len(ids) == count and len(set(ids)) == count
        sent = [running.resources.webhooks.sent, other.resources.webhooks.sent]
        assert sum(sent) == count, sent
    finally:
        other.stop()
        running.stop()
