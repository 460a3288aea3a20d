"""No secret in any log line: a whole session against `gateway serve` at debug level."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from core.tokens import hash_secret
from tests.support import ROOT, Upstream, run_cli, wait_for, write_config


def test_no_secret_in_logs_of_a_full_session(tmp_path: Path, upstream: Upstream) -> None:
    config = write_config(tmp_path, upstream.url).read_text()
    path = tmp_path / "gateway.toml"
    path.write_text(config.replace('[admin]\nlisten = ""', '[admin]\nlisten = "127.0.0.1:0"'))
    init = json.loads(run_cli("--config", str(path), "init", "--json").stdout)
    log_file = tmp_path / "all.log"
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gatewaycli",
                "--config",
                str(path),
                "serve",
                "--log-level",
                "debug",
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
        )
        assert process.stdout is not None
        proxy = process.stdout.readline().split("listening on ", 1)[1].split()[0]
        admin_url = process.stdout.readline().split("listening on ", 1)[1].strip()
        secrets = [init["secret_key"]]
        try:
            owner = {"X-Auth-Token": init["secret_key"]}
            wait_for(
                lambda: httpx.get(admin_url + "/v1/whoami", headers=owner).is_success,
                timeout=10,
                interval=0.1,
            )
            created = httpx.post(
                admin_url + "/v1/api-keys", headers=owner, json={"description": "session"}
            ).json()
            secrets.append(created["secret_key"])
            use = {"X-Auth-Token": created["secret_key"]}
            assert httpx.get(proxy + "/echo/x", headers=use).status_code == 200
            assert httpx.get(proxy + "/down/x", headers=use).status_code == 502  # logs a warning
            rolled = httpx.post(
                admin_url + f"/v1/api-keys/{created['access_key']}/roll",
                headers=owner,
                json={"expire_current_in_seconds": 0},
            ).json()
            secrets.append(rolled["secret_key"])
            new = {"X-Auth-Token": rolled["secret_key"]}
            wait_for(
                lambda: httpx.get(proxy + "/echo/x", headers=new).status_code == 200, timeout=5
            )
            last = created["secret_key"][-1]
            bad = {"X-Auth-Token": created["secret_key"][:-1] + ("y" if last == "x" else "x")}
            assert httpx.get(proxy + "/echo/x", headers=bad).status_code == 401
            assert (
                httpx.delete(
                    admin_url + f"/v1/api-keys/{created['access_key']}", headers=owner
                ).status_code
                == 204
            )
            wait_for(
                lambda: httpx.get(proxy + "/echo/x", headers=new).status_code == 401, timeout=5
            )
        finally:
            process.send_signal(signal.SIGTERM)
            stdout, _ = process.communicate(timeout=20)
    output = log_file.read_text() + stdout
    assert "Started server process" in output and "upstream" in output  # logs were captured
    for secret in secrets:
        assert secret not in output
        assert secret[9:] not in output  # not even without its prefix
        digest = hash_secret(secret)
        assert digest.hex() not in output and repr(digest)[2:-1] not in output
    assert process.returncode == 0
