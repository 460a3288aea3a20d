"""The parts of bench/credits_fleet.py: `gateway serve` nodes that can be killed whole, wrk
runs that can be stopped at a chosen moment, and an nginx upstream whose log says which node
forwarded each request and when.

- `Node`: `gateway serve --workers N` in a session of its own, so a SIGKILL to its process group
  takes the parent and every worker at once; started again on the same config (and directory).
- `start_wrk` / `wrk_done`: bench/run.py's wrk command (bench/load.lua, statuses counted), run
  in the background; a run given a long duration is ended by SIGINT, after which wrk still
  prints what it counted (requests in flight then are not counted).
- `Upstream`: nginx answering "ok" to everything, logging ``$msec $uri`` of each request: the
  nodes' routes point at ``/NODE/ROUTE/...``, so the log tells the nodes' forwarded requests
  apart, with the time each reached it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from run import free_port, nginx_conf, wait_http, wrk_command, wrk_figures

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test suite's helpers: tests.support
from tests.support.workers import connections_to_each_worker  # noqa: E402

GATEWAY = (sys.executable, "-m", "gatewaycli")
CONNECTIONS = 16  # per node
LONG = 120  # seconds: the duration of a wrk run ended by SIGINT


def cli(config: Path, *args: str) -> Any:
    """A `gateway` command's --json answer."""
    done = subprocess.run(
        [*GATEWAY, "--config", str(config), *args, "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return json.loads(done.stdout)


class Node:
    """One `gateway serve --workers N`; its stderr in ``serve.err`` beside its config."""

    def __init__(self, config: Path, workers: int = 2) -> None:
        self.config = config
        self.workers = workers
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, secret: str) -> None:
        """Started, and every worker serving: each has served ``secret`` on the route
        ``/echo`` (the config's free one)."""
        errors = self.config.parent / "serve.err"
        self.url = ""  # started again, it listens on a new port
        with errors.open("w") as stderr:
            self.process = subprocess.Popen(
                [*GATEWAY, "--config", str(self.config), "serve", "--workers", str(self.workers)],
                stdout=subprocess.DEVNULL,  # the access log's
                stderr=stderr,
                text=True,
                cwd=ROOT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while not self.url:
            text = errors.read_text()
            for line in text.splitlines():
                if "proxy listening on " in line:
                    self.url = line.split("listening on ", 1)[1].split()[0]
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"a node did not start: {text[-2000:]}")
            time.sleep(0.05)
        # The parent says where it listens before its workers are up: one connection held by
        # each worker, served once, says they are.
        with connections_to_each_worker(self.process, self.url, secret):
            pass

    def kill(self) -> None:
        """SIGKILL to the parent and every worker at once: nothing of it runs on."""
        assert self.process is not None
        signal_group(self.process, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM, the way a node stops cleanly (its leases given back)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            signal_group(self.process, signal.SIGKILL)
            self.process.wait()


def signal_group(process: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def start_wrk(url: str, seconds: float, tokens: Path) -> subprocess.Popen[str]:
    command = wrk_command(url, CONNECTIONS, math.ceil(seconds), tokens, True)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wrk_done(process: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed: {err.strip()}")
    return wrk_figures(out)


def stop_wrk(runs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    for run in runs:
        run.send_signal(signal.SIGINT)
    return [wrk_done(run) for run in runs]


def warm(nodes: list[Node], tokens: Path) -> None:
    """A second of load on the free route: upstream connections pooled in every worker."""
    runs = [start_wrk(node.url + "/echo/x", 1, tokens) for node in nodes]
    for run in runs:
        statuses = wrk_done(run)["statuses"]
        if set(statuses) != {"200"}:
            raise RuntimeError(f"warm-up answered {statuses}")


class Upstream:
    """nginx on an ephemeral port, answering "ok" and logging what it was sent."""

    def __init__(self, work: Path, nginx_bin: str) -> None:
        port = free_port()
        self.log = work / "upstream.log"
        servers = f"""
    log_format credits '$msec $uri';
    server {{
        listen 127.0.0.1:{port};
        access_log {self.log} credits;
        location / {{ return 200 "ok\\n"; }}
    }}"""
        conf = nginx_conf(work, "upstream", servers)
        command = [nginx_bin, "-e", str(work / "upstream.err"), "-c", str(conf)]
        self.process = subprocess.Popen(command)
        self.url = f"http://127.0.0.1:{port}"
        wait_http(self.url + "/ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def forwarded(
        self, route: str, since: float = 0.0, until: float = math.inf
    ) -> dict[str, list[float]]:
        """When each request on ``route`` reached it, by node (wall-clock seconds)."""
        found: dict[str, list[float]] = {}
        for line in self.log.read_text().splitlines():
            when, uri = line.split(" ", 1)
            node, on = [*uri.split("/"), "", ""][1:3]  # /NODE/ROUTE/...
            if on == route and since <= float(when) < until:
                found.setdefault(node, []).append(float(when))
        return found

    def wait_for(self, route: str, enough: int, timeout: float = 60) -> None:
        """Until ``enough`` requests on ``route`` have reached it (its log read as it grows)."""
        deadline = time.monotonic() + timeout
        seen, offset, marker = 0, 0, f"/{route}/".encode()
        with self.log.open("rb") as lines:
            while seen < enough:
                lines.seek(offset)
                text = lines.read()
                text = text[: text.rfind(b"\n") + 1]
                offset += len(text)
                seen += text.count(marker)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the upstream was sent {seen} requests in {timeout} s")
                time.sleep(0.002)
