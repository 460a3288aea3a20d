"""What `gateway serve` says, and where: the process's own lines on stderr, the access log alone
on stdout when it goes there; each start-up fact once (with several workers too); a good reload
once, at INFO. `gateway serve` as a subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import Upstream, listening, run_cli, spawn_cli, wait_for, write_config

SIGNING = """
[[routes]]
prefix = "/signed"
upstream = "{url}"
assertion = true
"""


def answers(url: str, status: int, headers: dict[str, str] | None = None) -> bool:
    """Whether ``url`` answers ``status``; workers still starting (a loaded machine) may leave a
    connection waiting in the backlog: that is "not yet", not a failure."""
    try:
        return httpx.get(url, headers=headers, timeout=2).status_code == status
    except httpx.TransportError:
        return False


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    return out, err


def test_stdout_is_the_access_log_alone(tmp_path: Path, upstream: Upstream) -> None:
    config = write_config(tmp_path, upstream.url)
    config.write_text(config.read_text().replace('access = "access.log"', 'access = "stdout"'))
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    process = spawn_cli("--config", str(config), "serve")
    try:
        url = listening(process)[0]
        headers = {"X-Auth-Token": secret}
        wait_for(lambda: answers(url + "/echo/x", 200, headers), 30)
        assert httpx.get(url + "/echo/y").status_code == 401
    finally:
        out, _ = stop(process)
    lines = out.splitlines()
    assert len(lines) >= 2 and all(json.loads(line)["path"] for line in lines), out
    assert "listening" not in out and "gateway:" not in out


@pytest.mark.parametrize("workers", [1, 2])
def test_the_assertion_key_is_announced_once_and_only_where_a_route_signs(
    tmp_path: Path, upstream: Upstream, workers: int
) -> None:
    plain = write_config(tmp_path, upstream.url)
    run_cli("--config", str(plain), "init")
    process = spawn_cli("--config", str(plain), "serve", "--workers", str(workers))
    url = listening(process)[0]
    wait_for(lambda: answers(url + "/echo/x", 401), 30)  # serving
    _, err = stop(process)
    assert "assertion" not in err, err  # no route signs: nothing to say

    signing = write_config(tmp_path, upstream.url, SIGNING.format(url=upstream.url))
    listed = run_cli("--config", str(signing), "assertion-key", "list", "--json").stdout
    kid = json.loads(listed)["keys"][0]["kid"]
    process = spawn_cli("--config", str(signing), "serve", "--workers", str(workers))
    url = listening(process)[0]  # the proxy's line; the key's comes after it
    wait_for(lambda: answers(url + "/signed/x", 401), 30)
    _, err = stop(process)
    said = [line for line in err.splitlines() if "signed with key" in line]
    assert said == [f"gateway: identity assertions are signed with key {kid}"], err


def test_a_good_reload_is_said_once_at_info(tmp_path: Path, upstream: Upstream) -> None:
    config = write_config(tmp_path, upstream.url)
    run_cli("--config", str(config), "init")
    process = spawn_cli("--config", str(config), "serve", "--workers", "2")
    try:
        url = listening(process)[0]
        wait_for(lambda: answers(url + "/later/x", 404), 30)
        config.write_text(
            config.read_text() + f'\n[[routes]]\nprefix = "/later"\nupstream = "{upstream.url}"\n'
        )
        process.send_signal(signal.SIGHUP)

        def both_workers_reloaded() -> bool:  # requests land on either worker
            return all(answers(url + "/later/x", 401) for _ in range(20))

        wait_for(both_workers_reloaded, timeout=30)
    finally:
        _, err = stop(process)
    reloads = [line for line in err.splitlines() if "reloaded" in line]
    assert len(reloads) == 1 and reloads[0].startswith("INFO "), err


def test_a_reload_that_changes_the_rate_limits_backend_says_it_waits_for_a_restart(
    tmp_path: Path, upstream: Upstream
) -> None:
    """`[ratelimit]` (backend, url, fail, timeout_ms) is built into each process at start and a
    reload keeps it: the reload said only "reloaded", so an operator who switched to Redis or to
    `fail = "closed"` believed it applied. The line now names it, as it names the listeners."""
    config = write_config(tmp_path, upstream.url)
    run_cli("--config", str(config), "init")
    process = spawn_cli("--config", str(config), "serve")
    try:
        url = listening(process)[0]
        wait_for(lambda: answers(url + "/later/x", 404), 30)
        route = f'\n[[routes]]\nprefix = "/later"\nupstream = "{upstream.url}"\n'
        config.write_text(config.read_text() + route + '\n[ratelimit]\nfail = "closed"\n')
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: answers(url + "/later/x", 401), 30)  # reloaded
    finally:
        _, err = stop(process)
    [reload] = [line for line in err.splitlines() if "reloaded" in line]
    assert "not changed until a restart: ratelimit" in reload, err


def test_a_reload_of_the_shutdown_timeout_says_it_waits_and_the_drain_tells_the_truth(
    tmp_path: Path, upstream: Upstream
) -> None:
    """The listeners' timeouts are set when they start; a reload changing
    `shutdown_timeout_seconds` said only "reloaded", and the SIGTERM line then announced the new
    bound ("requests in flight get up to 2 s") while the drain kept the old one (30 s). The
    reload now names what waits for a restart, and the drain says the bound it keeps."""
    config = write_config(tmp_path, upstream.url, server="shutdown_timeout_seconds = 30\n")
    run_cli("--config", str(config), "init")
    process = spawn_cli("--config", str(config), "serve")
    try:
        url = listening(process)[0]
        wait_for(lambda: answers(url + "/later/x", 404), 30)
        route = f'\n[[routes]]\nprefix = "/later"\nupstream = "{upstream.url}"\n'
        text = config.read_text().replace(
            "shutdown_timeout_seconds = 30", "shutdown_timeout_seconds = 2"
        )
        config.write_text(text + route)
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: answers(url + "/later/x", 401), 30)  # reloaded
    finally:
        _, err = stop(process)
    [reload] = [line for line in err.splitlines() if "reloaded" in line]
    assert "not changed until a restart: server timeouts" in reload, err
    [drain] = [line for line in err.splitlines() if "SIGTERM: draining" in line]
    assert "requests in flight get up to 30 s" in drain, err
