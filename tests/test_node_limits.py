"""Local rate limits per node (gateway.node_limits): the workers of one `serve --workers N`
count together, so a limit is the same whatever N is."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import threading
from pathlib import Path

import pytest

from core.policies import RateLimit
from gateway.node_limits import NodeJournal, NodeLimiter
from gateway.ratelimit import Limits
from tests.support import Upstream, run_cli, start_serve, stop_serve, write_config
from tests.support.workers import connections_to_each_worker, request

CONTEXT = multiprocessing.get_context("spawn")


def three_per_ten(access_key: str = "AK1") -> Limits:
    return Limits(access_key, "/limited", (RateLimit(3, 10),), ())


def test_workers_on_one_journal_let_the_limit_through_once() -> None:
    """Two workers taking turns: three pass in all, not three each; a refusal consumes none;
    when the window has passed, the next one passes again, on either worker."""
    journal = NodeJournal(CONTEXT)
    first, second = NodeLimiter(journal), NodeLimiter(journal)
    limits = three_per_ten()
    answers = [(first, second)[n % 2].check(limits, 100.0 + n) for n in range(6)]
    assert [a.allowed for a in answers] == [True, True, True, False, False, False]
    assert answers[3].retry_after == 7  # the first of the three leaves at 110.0
    assert dict(answers[2].headers)[b"ratelimit"] == b'"key-3-per-10s";r=0;t=8'
    assert not second.check(limits, 109.9).allowed
    assert second.check(limits, 110.0).allowed  # the one counted at 100.0 has left
    assert not first.check(limits, 110.5).allowed  # and first has seen it taken
    assert first.check(three_per_ten("AK2"), 110.5).allowed  # another key counts apart


def test_a_worker_started_late_or_idle_catches_up() -> None:
    """A worker that has checked nothing yet, and one that only trims, hold the node's logs."""
    journal = NodeJournal(CONTEXT)
    busy = NodeLimiter(journal)
    limits = three_per_ten()
    for n in range(3):
        assert busy.check(limits, 100.0 + n).allowed
    late = NodeLimiter(journal)  # a worker started after these replays what the ring holds
    idle = NodeLimiter(journal)
    idle.seen = 0  # as if it had started first and stayed idle
    idle.trim(105.0)  # housekeeping catches it up
    assert len(idle.logs) == 1
    assert not idle.check(limits, 105.0).allowed
    assert not late.check(limits, 105.0).allowed


def test_trim_drops_the_logs_past_their_window() -> None:
    journal = NodeJournal(CONTEXT)
    limiter = NodeLimiter(journal)
    limiter.check(three_per_ten("AK1"), 100.0)
    limiter.check(three_per_ten("AK2"), 105.0)
    limiter.trim(110.0)  # AK1's entry leaves at 110.0, AK2's at 115.0
    assert len(limiter.logs) == 1
    limiter.trim(115.0)
    assert not limiter.logs


def test_a_worker_that_falls_a_journal_behind_says_so(caplog: pytest.LogCaptureFixture) -> None:
    journal = NodeJournal(CONTEXT, capacity=4)
    busy, behind = NodeLimiter(journal), NodeLimiter(journal)
    unlimited = Limits("AK1", "/x", (RateLimit(100, 10),), ())
    for n in range(6):
        busy.check(unlimited, 100.0 + n)
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        behind.check(unlimited, 106.0)
        behind.check(unlimited, 106.0)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "fell 2 records behind" in said[0]
    # What the ring still held, and its own two.
    assert len(behind.logs[unlimited.items[0].log]) == 4 + 2


def test_two_workers_count_one_local_limit(tmp_path: Path, upstream: Upstream) -> None:
    """`serve --workers 2` with the local backend: requests sent in turn on connections that
    each worker holds (found in /proc), exactly `limit` pass in all, not `limit` each."""
    limited = (
        f'\n[[routes]]\nprefix = "/limited"\nupstream = "{upstream.url}"\n'
        "rate_limits = [{limit = 3, window_seconds = 10}]\n"
    )
    config = write_config(tmp_path, upstream.url, limited)
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    process, url = start_serve(config, "--workers", "2")
    try:
        with connections_to_each_worker(process, url, secret) as held:
            statuses = [request(held[n % 2], "/limited/x", secret) for n in range(8)]
        assert statuses == [200, 200, 200, 429, 429, 429, 429, 429]
    finally:
        stop_serve(process)


def die_holding_the_lock(journal: NodeJournal) -> None:
    """A worker killed (SIGKILL, the OOM killer) in the middle of a check."""

    class Dying(NodeLimiter):
        def count(self, limits: Limits, now: float) -> tuple[float, list[str]]:
            os.kill(os.getpid(), signal.SIGKILL)
            raise AssertionError("killed")

    Dying(journal).check(three_per_ten(), 100.0)


def test_a_worker_killed_holding_the_journal_lock_is_released_for() -> None:
    """A worker killed while it held the journal's lock: the other workers' next check waited
    on it for ever, their event loops frozen, so they could neither drain nor exit, and the
    parent waited on them for ever. The parent, seeing the worker dead, releases it on its
    behalf (once: a worker that died between checks holds nothing)."""
    journal = NodeJournal(CONTEXT)
    dying = CONTEXT.Process(target=die_holding_the_lock, args=(journal,))
    dying.start()
    dying.join(30)
    assert dying.exitcode == -signal.SIGKILL
    assert dying.pid is not None
    assert journal.release_for(dying.pid)  # what the supervisor does for a dead worker
    assert not journal.release_for(dying.pid)
    survivor = NodeLimiter(journal)
    answers: list[bool] = []
    checking = threading.Thread(
        target=lambda: answers.append(survivor.check(three_per_ten(), 100.0).allowed), daemon=True
    )
    checking.start()
    checking.join(5)
    assert answers == [True]
