"""Operating the gateway: processes, probes, drain."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import (
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


def test_probes_on_the_admin_and_the_proxy_listener(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(server='health_path = "/readyz"')
    with httpx.Client(base_url=gateway.admin_url) as admin, gateway.client() as proxy:
        assert admin.get("/healthz").json() == {"status": "ok"}
        for client in (admin, proxy):
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json() == {"status": "ready"}

        path = gateway.config.store.path
        assert path is not None
        aside = path.with_name("away.db")
        path.rename(aside)  # the store goes away
        try:
            for client in (admin, proxy):
                gone = client.get("/readyz")
                assert gone.status_code == 503 and gone.json()["reason"] == "store_unavailable"
                assert gone.json()["message"]
            assert admin.get("/healthz").status_code == 200  # alive, just not ready
        finally:
            aside.rename(path)
        assert proxy.get("/readyz").status_code == 200

        # As if the feed had not been read for 10 s: the follower held still meanwhile (left
        # running, it could read the feed between the clock's jump and the probe).
        resources = gateway.resources
        [follower] = [t for t in resources._tasks if t.get_name() == "key-events-follower"]

        async def hold() -> None:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

        async def resume() -> None:
            resources._tasks.append(
                asyncio.create_task(resources.verifier.run_follower(), name="key-events-follower")
            )

        gateway.loop.run(hold())
        gateway.clock.advance(10)
        behind = admin.get("/readyz").json()
        assert behind["reason"] == "key_feed_behind"
        gateway.loop.run(resume())
        wait_for(lambda: admin.get("/readyz").status_code == 200, timeout=BOUND + 1)

        gateway.resources.draining = True  # what SIGTERM sets first
        assert proxy.get("/readyz").json()["reason"] == "draining"
        gateway.resources.draining = False


def test_sigterm_lets_a_slow_stream_finish(tmp_path: Path, upstream: Upstream) -> None:
    """SIGTERM: nothing new is accepted, but a download in flight finishes, then exit 0."""
    config = write_config(tmp_path, upstream.url, server="shutdown_timeout_seconds = 10")
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    process, url = start_serve(config)
    headers = {"X-Auth-Token": secret}
    wait_for(lambda: httpx.get(url + "/echo/x", headers=headers).status_code == 200, 15, 0.1)
    received = bytearray()
    with httpx.stream(
        "GET", url + "/api/stream?bytes=1000000&delay=0.05", headers=headers, timeout=20
    ) as response:
        chunks = response.iter_raw()
        received += next(chunks)
        process.send_signal(signal.SIGTERM)
        for chunk in chunks:
            received += chunk
    assert len(received) == 1_000_000  # the whole body, sent after the SIGTERM
    process.communicate(timeout=20)
    assert process.returncode == 0


def test_sigterm_waits_no_longer_than_the_shutdown_timeout(
    tmp_path: Path, upstream: Upstream
) -> None:
    """A stream that outlasts `shutdown_timeout_seconds` is cut there, and the process exits 0."""
    config = write_config(tmp_path, upstream.url, server="shutdown_timeout_seconds = 1")
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    process, url = start_serve(config)
    headers = {"X-Auth-Token": secret}
    wait_for(lambda: httpx.get(url + "/echo/x", headers=headers).status_code == 200, 15, 0.1)
    received = 0
    with httpx.stream(  # 6.5 MB at 64 KiB per 0.05 s: about 5 s
        "GET", url + "/api/stream?bytes=6500000&delay=0.05", headers=headers, timeout=20
    ) as response:
        chunks = response.iter_raw()
        received += len(next(chunks))
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            for chunk in chunks:
                received += len(chunk)
        except httpx.HTTPError:
            pass  # cut short: that is the point
    process.communicate(timeout=20)
    assert process.returncode == 0
    assert time.monotonic() - signalled < 4
    assert received < 6_500_000


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made at run time (ECDSA P-256), and its key, mode 0600."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_https_on_both_listeners(tmp_path: Path, upstream: Upstream) -> None:
    cert, key = self_signed(tmp_path)
    files = f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n'
    config = write_config(tmp_path, upstream.url, server=files)
    config.write_text(
        config.read_text().replace(
            '[admin]\nlisten = ""', f'[admin]\nlisten = "127.0.0.1:0"\n{files}'
        )
    )
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    process, url = start_serve(config)
    admin_url = listening(process)[0]
    try:
        assert url.startswith("https://") and admin_url.startswith("https://")
        headers = {"X-Auth-Token": secret}
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as client:
            wait_for(lambda: client.get(url + "/echo/x", headers=headers).is_success, 15, 0.1)
            seen = client.get(url + "/echo/x", headers=headers).json()
            assert [v for k, v in seen["headers"] if k == "x-forwarded-proto"] == ["https"]
            assert client.get(admin_url + "/v1/whoami", headers=headers).json()["is_owner"]
        # HTTP to an HTTPS listener is not served
        with httpx.Client() as plain, pytest.raises(httpx.HTTPError):
            plain.get(url.replace("https://", "http://") + "/echo/x", headers=headers)
    finally:
        stop_serve(process)


def test_a_private_key_others_can_read_is_refused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    key.chmod(0o644)
    files = f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n'
    config = write_config(tmp_path, "http://127.0.0.1:9", server=files)
    result = run_cli("--config", str(config), "serve", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"can be read by other users (mode 0644): chmod 600 {key}" in result.stderr


def test_reload_with_a_good_and_a_bad_file_under_load(tmp_path: Path, upstream: Upstream) -> None:
    """`gateway reload` (SIGHUP to serve, which passes it to its workers): a new route is served
    by every worker and no request fails meanwhile; a broken file keeps the running config and
    says why in one line."""
    config = write_config(tmp_path, upstream.url, server='pid_file = "gateway.pid"')
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    process, url = start_serve(config, "--workers", "2")
    headers = {"X-Auth-Token": secret}
    failures: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                status = client.get(url + "/echo/x", headers=headers).status_code
                if status != 200:
                    failures.append(status)

    try:
        wait_for(lambda: httpx.get(url + "/echo/x", headers=headers).status_code == 200, 15, 0.1)
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        original = config.read_text()
        config.write_text(
            original + f'\n[[routes]]\nprefix = "/extra"\nupstream = "{upstream.url}"\n'
        )
        run_cli("--config", str(config), "reload")

        def everywhere() -> bool:  # new connections: each may reach another worker
            return all(
                httpx.get(url + "/extra/y", headers=headers).status_code == 200 for _ in range(6)
            )

        wait_for(everywhere, timeout=5)
        config.write_text(original + "\n[[routes]]\nprefix = \n")  # not TOML
        refused = run_cli("--config", str(config), "reload", check=False)
        assert refused.returncode == 2 and "is not valid TOML" in refused.stderr  # checked first
        os.kill(process.pid, signal.SIGHUP)  # and if it reaches the gateway all the same
        time.sleep(0.5)
        assert httpx.get(url + "/extra/y", headers=headers).status_code == 200  # kept
        stop.set()
        loader.join(10)
        assert not failures, failures
    finally:
        stop.set()
        stderr = stop_serve(process)
    logged = [line for line in stderr.splitlines() if "reload refused" in line]
    assert logged and all("is not valid TOML" in line for line in logged), stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "gateway.pid").exists()  # removed on exit


def test_reload_changes_the_log_level(tmp_path: Path, upstream: Upstream) -> None:
    """`[log] level` is read again at a reload: a warning hidden at "error" shows at "info", as
    does the reload itself (a good reload is said at INFO)."""
    config = write_config(tmp_path, upstream.url, server='pid_file = "gateway.pid"')
    secret = json.loads(run_cli("--config", str(config), "init", "--json").stdout)["secret_key"]
    original = config.read_text()
    config.write_text(original.replace("[log]\n", '[log]\nlevel = "error"\n'))
    process, url = start_serve(config)
    headers = {"X-Auth-Token": secret}
    try:
        wait_for(lambda: httpx.get(url + "/echo/x", headers=headers).status_code == 200, 15, 0.1)
        assert httpx.get(url + "/down/hidden", headers=headers).status_code == 502
        config.write_text(original.replace("[log]\n", '[log]\nlevel = "info"\n'))
        run_cli("--config", str(config), "reload")
        time.sleep(0.5)
        assert httpx.get(url + "/down/shown", headers=headers).status_code == 502
    finally:
        stderr = stop_serve(process)
    failed = [line for line in stderr.splitlines() if "upstream http://127.0.0.1:9 failed" in line]
    assert len(failed) == 1, stderr
    reloads = [line for line in stderr.splitlines() if "reloaded" in line]
    assert len(reloads) == 1 and reloads[0].startswith("INFO "), stderr


def test_reload_without_a_pid_file_says_what_to_do(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    result = run_cli("--config", str(config), "reload", check=False)
    assert result.returncode == 2 and "set [server] pid_file" in result.stderr
