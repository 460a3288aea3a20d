"""No secret in any log line: a whole session against `gateway serve` at debug level."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from core.tokens import SecretFormat, hash_secret
from tests.support import (
    ROOT,
    LoopThread,
    Upstream,
    free_socket,
    listening,
    run_cli,
    wait_for,
    write_config,
)


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
        proxy, admin_url = listening(process, 2, log=log_file)
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


def ws_echo(loop: LoopThread) -> tuple[str, Any]:
    """A WebSocket upstream that echoes, on a free loopback port."""

    async def handler(connection: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in connection:
                await connection.send(message)

    sock = free_socket()

    async def start() -> Any:
        return await serve(handler, sock=sock)

    server = loop.run(start())
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


@pytest.mark.parametrize(("level", "access_query"), [("debug", False), ("info", True)])
def test_no_secret_in_any_line_of_the_key_carriers(
    tmp_path: Path, upstream: Upstream, level: str, access_query: bool
) -> None:
    """Every place a client may put a secret (both carriers, odd Authorization values, the query
    string, a WebSocket handshake), at debug, and at info with the query in the access log: no
    line of stderr, stdout or the access log carries one."""
    loop = LoopThread()
    ws_url, ws_server = ws_echo(loop)
    extra = f'[[routes]]\nprefix = "/ws"\nupstream = "{ws_url}"\nwebsocket = true\n'
    path = write_config(tmp_path, upstream.url, extra=extra)
    logged = f'[log]\nlevel = "{level}"\naccess_query = {str(access_query).lower()}\n'
    path.write_text(path.read_text().replace("[log]\n", logged))
    init = json.loads(run_cli("--config", str(path), "init", "--json").stdout)
    secret = init["secret_key"]
    other = SecretFormat().generate()  # well-formed, unknown
    log_file = tmp_path / "all.log"
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gatewaycli", "--config", str(path), "serve"],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
        )
        proxy = listening(process, log=log_file)[0]
        ws = proxy.replace("http://", "ws://")
        try:
            for secret_used in (secret, other):
                asks = [
                    ({"X-Auth-Token": secret_used}, f"?token={secret_used}"),
                    ({"Authorization": f"Bearer {secret_used}"}, f"?api_key={secret_used}&a=1"),
                    ({"Authorization": f"Bearer\t{secret_used}"}, ""),
                    ({"Authorization": f'Bearer "{secret_used}"'}, ""),
                    ({"Authorization": f"Token {secret_used}"}, ""),
                    ({"Proxy-Authorization": f"Bearer {secret_used}"}, ""),
                ]
                for headers, query in asks:
                    httpx.get(proxy + "/echo/x" + query, headers=headers)
                    httpx.get(proxy + "/open/x" + query, headers=headers)
                for headers, query in asks[:2]:
                    with (
                        contextlib.suppress(InvalidStatus),
                        connect(ws + "/ws/x" + query, additional_headers=headers) as session,
                    ):
                        session.send("hello")
                        assert session.recv(timeout=5) == "hello"
        finally:
            process.send_signal(signal.SIGTERM)
            stdout, _ = process.communicate(timeout=20)
            ws_server.close()
            loop.close()
    access = (tmp_path / "access.log").read_text()
    output = log_file.read_text() + stdout + access
    assert '"/ws/x' in access and '"/echo/x' in access  # the lines were written
    if access_query:  # the query is there, less the secrets
        assert "token=gws_live_[redacted]" in access and "&a=1" in access
    # No library logs a WebSocket handshake any longer (the gateway relays the upgrade itself);
    # the redaction of such lines is tests/test_redaction.py's.
    for used in (secret, other):
        found = [line for line in output.splitlines() if used[9:] in line]
        assert not found, found
        digest = hash_secret(used)
        assert digest.hex() not in output and repr(digest)[2:-1] not in output
    assert process.returncode == 0
