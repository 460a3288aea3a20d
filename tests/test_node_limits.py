"""Local rate limits per node (gateway.node_limits): the workers of one `serve --workers N`
count together, so a limit is the same whatever N is."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from core.policies import RateLimit
from gateway.node_limits import NodeJournal, NodeLimiter
from gateway.ratelimit import Limits
from tests.support import Upstream, run_cli, start_serve, stop_serve, wait_for, write_config

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
    assert (
        len(behind.logs[unlimited.items[0].log]) == 4 + 2
    )  # what the ring still held, and its own


def request(sock: socket.socket, path: str, secret: str) -> int:
    """One GET on a kept-alive connection; its status (the body, a small echo, read whole)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {secret}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, body = answer.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1])


def worker_of(sock: socket.socket, workers: list[int]) -> int:
    """Which worker holds the other end of ``sock``: the server side's inode in /proc/net/tcp,
    then the process with that inode among its open files."""
    server_port, client_port = sock.getpeername()[1], sock.getsockname()[1]
    ends = f"0100007F:{server_port:04X} 0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if f"{fields[1]} {fields[2]}" == ends:
            inode = f"socket:[{fields[9]}]"
            for pid in workers:
                fds = Path(f"/proc/{pid}/fd")
                if any(os.readlink(fd) == inode for fd in fds.iterdir()):
                    return pid
    raise AssertionError(f"no worker holds the connection from port {client_port}")


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
    host, port = url.removeprefix("http://").split(":")
    held: dict[int, socket.socket] = {}  # a connection per worker
    opened: list[socket.socket] = []
    try:
        wait_for(lambda: httpx.get(url + "/echo/x", timeout=15).status_code == 401, 15)
        workers = [
            int(p) for p in subprocess.check_output(["pgrep", "-P", str(process.pid)]).split()
        ]
        while len(held) < 2:  # the kernel hands each connection to one worker or the other
            assert len(opened) < 200, "every connection went to one worker"
            sock = socket.create_connection((host, int(port)), timeout=15)
            opened.append(sock)
            assert request(sock, "/echo/x", secret) == 200  # accepted, and served
            held.setdefault(worker_of(sock, workers), sock)
        first, second = held.values()
        statuses = [request((first, second)[n % 2], "/limited/x", secret) for n in range(8)]
        assert statuses == [200, 200, 200, 429, 429, 429, 429, 429]
    finally:
        for sock in opened:
            sock.close()
        stop_serve(process)
