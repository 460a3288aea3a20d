"""Credits when a gateway process is killed with SIGKILL (gateway.spend_journal,
gateway.orphans): nothing is lost when its node lives on or comes back, which reports what the
journal it left says it spent; the old bound (its ceiling counted as spent) only while its node
stays away. Real `gateway serve` processes on one store; leases of 60 s where the credits must
come back through the journal, not through the lease's expiry."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.support import BOTH_STORES, Upstream, run_cli, start_serve, stop_serve, wait_for
from tests.support.credits import drain, init, key_with, leases, node_config, status
from tests.support.workers import connections_to_each_worker, request, worker_pids

BACKENDS = BOTH_STORES


def journals(config: Path) -> list[Path]:
    return sorted((config.parent / "credits-journal").glob("*.journal"))


def test_a_worker_killed_mid_run_loses_nothing(
    tmp_path: Path, upstream: Upstream, database_url: str
) -> None:
    """Two nodes of two workers: one worker of the first is killed; its supervisor reports
    what it spent, and the other node then admits exactly what is left."""
    first = node_config(tmp_path / "a", upstream, database_url, lease_seconds=60)
    second = node_config(tmp_path / "b", upstream, database_url, lease_seconds=60)
    user_id = init(first)
    paid, free = key_with(first, user_id, 400), key_with(first, user_id, None)
    doomed_node, doomed_url = start_serve(first, "--workers", "2")
    survivor, survivor_url = start_serve(second, "--workers", "2")
    try:
        with connections_to_each_worker(doomed_node, doomed_url, free) as (one, other):
            admitted = [request(one, "/echo/x", paid) for _ in range(30)]
            admitted += [request(other, "/echo/x", paid) for _ in range(20)]
            assert admitted == [200] * 50
            time.sleep(0.5)  # reported: each worker's lease holds more than it spent
            os.kill(worker_pids(doomed_node)[0], signal.SIGKILL)
            _, stderr = doomed_node.communicate(timeout=60)
        assert doomed_node.returncode == 1 and "exited; stopping" in stderr
        assert journals(first) == []  # the dead worker's, settled by its supervisor
        seen = drain([survivor_url], paid, time.monotonic() + 1)
    finally:
        if doomed_node.poll() is None:
            doomed_node.kill()
            doomed_node.communicate(timeout=10)
        stop_serve(survivor)
    assert seen.count(200) == 400 - 50


def test_a_node_killed_and_restarted_loses_nothing(
    tmp_path: Path, upstream: Upstream, store_backend: Callable[[], str | None]
) -> None:
    config = node_config(tmp_path, upstream, store_backend(), lease_seconds=60)
    paid = key_with(config, init(config), 400)
    node, url = start_serve(config)
    try:
        assert [status(url, paid) for _ in range(50)] == [200] * 50
        time.sleep(0.5)
        node.kill()
        node.communicate(timeout=10)
        assert len(journals(config)) == 1
        node, url = start_serve(config)  # reports the journal before it serves
        seen = drain([url], paid, time.monotonic() + 1)
    finally:
        if node.poll() is None:
            stop_serve(node)
    assert seen.count(200) == 400 - 50


def test_a_node_that_stays_away_loses_its_headroom_until_it_comes_back(
    tmp_path: Path, upstream: Upstream, database_url: str
) -> None:
    """The old bound while the killed node is away: its lease expires and gives back what lay
    above its ceiling. When it comes back, its journal gives back the rest (the tombstone
    path): in all, exactly the credits held are admitted."""
    doomed_config = node_config(tmp_path / "a", upstream, database_url)
    survivor_config = node_config(tmp_path / "b", upstream, database_url)
    paid = key_with(doomed_config, init(doomed_config), 400)
    (doomed, doomed_url), (survivor, survivor_url) = (
        start_serve(c) for c in (doomed_config, survivor_config)
    )
    try:
        assert [status(doomed_url, paid) for _ in range(50)] == [200] * 50
        time.sleep(0.5)  # its next report: spent, ceiling
        doomed.kill()
        doomed.communicate(timeout=10)
        ((granted, ceiling, spent),) = leases(database_url)
        assert spent == 50 and 50 < ceiling < granted
        # Its lease (2 s) expires: what lay above its ceiling comes back.
        away = drain([survivor_url], paid, time.monotonic() + 4)
        assert away.count(200) == 400 - ceiling
        (left,) = journals(doomed_config)
        doomed, doomed_url = start_serve(doomed_config)  # reports its journal: ceiling - 50
        wait_for(lambda: not left.exists(), 30)
        # The survivor hears of them at its next report (0.1 s).
        back = drain([survivor_url], paid, time.monotonic() + 1)
    finally:
        for process in (doomed, survivor):
            if process.poll() is None:
                stop_serve(process)
    assert back.count(200) == ceiling - 50
    assert ceiling - spent <= 16  # what was lost meanwhile: at most its last headroom


def test_serve_refuses_a_journal_dir_it_cannot_write(tmp_path: Path, upstream: Upstream) -> None:
    config = node_config(tmp_path, upstream, None)
    init(config)
    (tmp_path / "taken").write_text("")  # a file where the directory should be
    text = config.read_text().replace("[credits]", '[credits]\njournal_dir = "taken/journal"')
    config.write_text(text)
    done = run_cli("--config", str(config), "serve", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "[credits]: journal_dir" in done.stderr and "cannot be written" in done.stderr
