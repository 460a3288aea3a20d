"""Stopping and signalling `gateway serve --workers 2` (the CLI as a subprocess): the drain's
steps (gatewaycli.drain), one log line per signal and for the exit, and the pid file."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.support import (
    Upstream,
    listening,
    run_cli,
    start_serve,
    stop_serve,
    wait_for,
    write_config,
)


def serve_two_workers(
    tmp_path: Path, upstream: Upstream, server: str = ""
) -> tuple[subprocess.Popen[str], str, str, dict[str, str]]:
    """`serve --workers 2` with an admin listener, `health_path` and a pid file: the process,
    the proxy's and the admin listener's URLs, and a key's headers."""
    settings = 'pid_file = "gateway.pid"\nhealth_path = "/readyz"\n' + server
    config = write_config(tmp_path, upstream.url, server=settings)
    config.write_text(
        config.read_text().replace('[admin]\nlisten = ""', '[admin]\nlisten = "127.0.0.1:0"')
    )
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    process, url = start_serve(config, "--workers", "2")
    admin_url = listening(process)[0]  # said on stderr after the proxy's line
    headers = {"X-Auth-Token": secret}
    try:  # the workers start on a busy machine: the first connection waits in the backlog
        wait_for(lambda: httpx.get(url + "/echo/x", headers=headers, timeout=15).is_success, 15)
        # One worker answered; the node is ready once every worker serves ("starting" before).
        wait_for(lambda: readiness(admin_url) == (200, ""), 15)
    except BaseException:
        stop_serve(process)
        raise
    return process, url, admin_url, headers


def readiness(url: str) -> tuple[int, str]:
    answer = httpx.get(url + "/readyz", timeout=2)
    return answer.status_code, answer.json().get("reason", "")


def refused(url: str, headers: dict[str, str]) -> bool:
    """A new connection is refused; one served is fine too (the drain has not closed the
    listener yet), but one left waiting fails the test (httpx.ReadTimeout)."""
    try:
        httpx.get(url + "/echo/x", headers=headers, timeout=1.5)
    except httpx.ConnectError:
        return True
    return False


def lines(stderr: str, text: str) -> list[str]:
    return [line for line in stderr.splitlines() if text in line]


def test_a_drain_refuses_new_connections_and_says_draining_until_done(
    tmp_path: Path, upstream: Upstream
) -> None:
    """SIGTERM with a download in flight: /readyz on the admin listener answers 503 draining
    while it finishes, a new connection to the proxy is refused at once (not held until the
    drain ends), the download completes, and the signal and the exit are one line each."""
    process, url, admin_url, headers = serve_two_workers(
        tmp_path, upstream, "shutdown_timeout_seconds = 20\n"
    )
    assert readiness(admin_url) == (200, "")
    received = bytearray()
    started = threading.Event()

    def download() -> None:  # about 6 s: 64 KiB every 0.05 s
        with httpx.stream(
            "GET", url + "/api/stream?bytes=8000000&delay=0.05", headers=headers, timeout=20
        ) as response:
            for chunk in response.iter_raw():
                received.extend(chunk)
                started.set()

    reader = threading.Thread(target=download, daemon=True)
    reader.start()
    try:
        assert started.wait(10)
        process.send_signal(signal.SIGTERM)
        wait_for(lambda: readiness(admin_url) == (503, "draining"), timeout=2)
        wait_for(lambda: refused(url, headers), timeout=3)
        assert reader.is_alive()  # the drain is still under way...
        assert readiness(admin_url) == (503, "draining")  # ...and the admin listener says so
        reader.join(20)
        assert len(received) == 8_000_000  # the whole body, after the listeners closed
    finally:
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert len(lines(stderr, "SIGTERM: draining")) == 1, stderr
    assert len(lines(stderr, "stopped: SIGTERM drain finished")) == 1, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "gateway.pid").exists()  # removed on exit


def test_the_accept_grace_serves_new_connections_while_readiness_says_draining(
    tmp_path: Path, upstream: Upstream
) -> None:
    """`accept_grace_seconds`: after SIGTERM, new connections are still served for that long
    and `health_path` on them answers 503 draining, so a load balancer stops sending before
    anything is refused; then they are refused."""
    process, url, _, headers = serve_two_workers(tmp_path, upstream, "accept_grace_seconds = 5\n")
    try:
        process.send_signal(signal.SIGTERM)
        # Each probe a new connection: either worker may take it, both must say draining.
        wait_for(lambda: all(readiness(url) == (503, "draining") for _ in range(4)), timeout=2)
        assert httpx.get(url + "/echo/x", headers=headers).status_code == 200  # still served
        wait_for(lambda: refused(url, headers), timeout=8)
    finally:
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    [began] = lines(stderr, "SIGTERM: draining")
    assert "served for 5 s more, then refused" in began


def test_a_reload_is_one_line_for_the_whole_gateway(tmp_path: Path, upstream: Upstream) -> None:
    """SIGHUP to `serve --workers 2`: the parent and both workers reload, one line says so."""
    process, url, _, headers = serve_two_workers(tmp_path, upstream)
    config = tmp_path / "gateway.toml"
    try:
        config.write_text(
            config.read_text() + f'\n[[routes]]\nprefix = "/extra"\nupstream = "{upstream.url}"\n'
        )
        run_cli("--config", str(config), "reload")

        def everywhere() -> bool:  # new connections: each may reach another worker
            return all(
                httpx.get(url + "/extra/y", headers=headers).status_code == 200 for _ in range(6)
            )

        wait_for(everywhere, timeout=5)
    finally:
        stderr = stop_serve(process)
    assert len(lines(stderr, "reloaded")) == 1, stderr
    assert len(lines(stderr, "SIGTERM: draining")) == 1, stderr
    assert len(lines(stderr, "stopped:")) == 1, stderr


def test_a_second_serve_on_a_taken_port_names_the_running_one_and_touches_nothing(
    tmp_path: Path, upstream: Upstream
) -> None:
    """A second `serve` on the same port and pid file cannot bind: it says which gateway runs,
    exits 1, and leaves that gateway's pid file, so `gateway reload` still reaches it."""
    process, url, _, headers = serve_two_workers(tmp_path, upstream)
    config = tmp_path / "gateway.toml"
    pid_file = tmp_path / "gateway.pid"
    try:
        assert pid_file.read_text().strip() == str(process.pid)
        port = url.rsplit(":", 1)[1]
        second = tmp_path / "second.toml"
        second.write_text(
            config.read_text().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"', 1)
        )
        result = run_cli("--config", str(second), "serve", check=False)
        assert result.returncode == 1, result.stderr
        assert f"another gateway is running (pid {process.pid})" in result.stderr
        assert "Traceback" not in result.stderr
        assert pid_file.read_text().strip() == str(process.pid)  # untouched
        run_cli("--config", str(config), "reload")
        wait_for(lambda: httpx.get(url + "/echo/x", headers=headers).status_code == 200, 5)
    finally:
        stderr = stop_serve(process)
    assert len(lines(stderr, "reloaded")) == 1, stderr


def test_reload_with_a_stale_pid_file_signals_no_other_process(
    tmp_path: Path, upstream: Upstream
) -> None:
    """The gateway was killed (SIGKILL, a crash: its pid file stays) and its pid went to another
    program: `gateway reload` sent that program SIGHUP, which ends most programs, and said it
    had reloaded the gateway. It now says no gateway runs there and signals nothing."""
    config = write_config(tmp_path, upstream.url, server='pid_file = "gateway.pid"\n')
    other = subprocess.Popen(["sleep", "30"])  # the program that was given the gateway's pid
    try:
        (tmp_path / "gateway.pid").write_text(f"{other.pid}\n")
        result = run_cli("--config", str(config), "reload", check=False)
        assert result.returncode != 0, result.stdout
        assert "no running gateway" in result.stderr and "Traceback" not in result.stderr
        time.sleep(0.2)
        assert other.poll() is None  # not signalled
    finally:
        other.kill()
        other.wait()


def test_a_pid_file_that_cannot_be_written_stops_serve_with_one_sentence(
    tmp_path: Path, upstream: Upstream
) -> None:
    """`[server] pid_file` in a directory that does not exist: `serve` fell over with a
    traceback (FileNotFoundError) once it had bound its ports. It now says what to do."""
    config = write_config(tmp_path, upstream.url, server='pid_file = "run/gateway.pid"\n')
    run_cli("--config", str(config), "init")
    result = run_cli("--config", str(config), "serve", check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert "cannot write the pid file" in result.stderr and "pid_file" in result.stderr


def test_readiness_says_starting_until_every_worker_serves(
    tmp_path: Path, upstream: Upstream
) -> None:
    """The parent's admin listener serves while its workers are still starting (spawned, their
    imports, their stores): its /readyz said 200 ready seconds before any worker accepted, and
    a load balancer that believed it sent connections that waited in the backlog. It now says
    503 `starting` until every worker serves."""
    settings = 'pid_file = "gateway.pid"\n'
    config = write_config(tmp_path, upstream.url, server=settings)
    config.write_text(
        config.read_text().replace('[admin]\nlisten = ""', '[admin]\nlisten = "127.0.0.1:0"')
    )
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    process, url = start_serve(config, "--workers", "2")
    admin_url = listening(process)[0]
    seen: list[tuple[int, str]] = []
    try:
        wait_for(lambda: seen.append(readiness(admin_url)) or seen[-1][0] == 200, 30, 0.02)
        began = time.monotonic()
        for _ in range(4):  # each a new connection: either worker may take it
            assert httpx.get(url + "/echo/x", headers={"X-Auth-Token": secret}).status_code == 200
        assert time.monotonic() - began < 1.0  # served at once, not from the backlog
    finally:
        stop_serve(process)
    assert (503, "starting") in seen, seen
