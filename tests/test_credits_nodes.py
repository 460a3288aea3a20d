"""Credits across gateway processes on one PostgreSQL store: exactly the credits held are
admitted however the requests are spread (tests/test_credits_sigkill.py: and when one is
killed)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support import Upstream, start_serve, stop_serve
from tests.support.credits import drain, init, key_with, node_config


def test_two_processes_admit_exactly_the_credits_held(
    tmp_path: Path, upstream: Upstream, database_url: str
) -> None:
    config = node_config(tmp_path, upstream, database_url)
    secret = key_with(config, init(config), 300)
    nodes = [start_serve(config) for _ in range(2)]
    try:
        seen = drain([url for _, url in nodes], secret, time.monotonic())
    finally:
        for process, _ in nodes:
            stop_serve(process)
    assert seen.count(200) == 300 and set(seen) == {200, 429}
