"""Operating the gateway: processes, probes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx

from tests.support import Upstream, run_cli, start_serve, wait_for, write_config


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def alive(pid: int) -> bool:
    """Running, not a zombie nobody has reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_workers_never_outlive_their_parent(tmp_path: Path, upstream: Upstream) -> None:
    """`serve --workers 2` killed with SIGKILL: its workers stop within a second and the port is
    free again, rather than orphans serving the old config."""
    config = write_config(tmp_path, upstream.url)
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    process, url = start_serve(config, "--workers", "2")
    try:
        headers = {"X-Auth-Token": secret}
        wait_for(lambda: httpx.get(url + "/echo/x", headers=headers).status_code == 200, 15, 0.1)
        workers = children(process.pid)
        assert len(workers) >= 2, workers
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)
    wait_for(lambda: not any(alive(pid) for pid in workers), timeout=1.5)
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))  # nobody listens there any more
