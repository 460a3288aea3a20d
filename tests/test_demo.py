"""`gateway demo` (what `make demo` runs): the printed curl line and console work against the
running demo."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx

from tests.support import ROOT, free_socket, spawn_cli, wait_for


def test_demo_prints_a_working_key(tmp_path: Path) -> None:
    sock = free_socket()
    echo_port = sock.getsockname()[1]
    sock.close()  # the demo's echo upstream takes this port
    example = (ROOT / "config.example.toml").read_text()
    config = tmp_path / "demo.toml"
    config.write_text(
        example.replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:8081", "127.0.0.1:0")
        .replace("127.0.0.1:9000", f"127.0.0.1:{echo_port}")
    )
    process = spawn_cli("--config", str(config), "demo")
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while not any("Ctrl-C" in line for line in lines):
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else "demo exited"
            lines.append(line)
        text = "".join(lines)
        curl = re.search(r"curl -s (\S+) -H 'X-Auth-Token: (\S+)'", text)
        assert curl is not None, text
        url, secret = curl.groups()

        def answered() -> bool:
            try:
                return httpx.get(url, headers={"X-Auth-Token": secret}).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answered, timeout=10, interval=0.1)
        seen = httpx.get(url, headers={"X-Auth-Token": secret}).json()
        assert seen["headers"]["x-auth-access-key"].startswith("GWK")
        assert secret not in str(seen)
        assert httpx.get(url).status_code == 401
        console = re.search(r"The admin console: (\S+) ", text)
        assert console is not None, text
        assert "Gateway console" in httpx.get(console.group(1)).text
        whoami = httpx.get(console.group(1) + "v1/whoami", headers={"X-Auth-Token": secret})
        assert whoami.json()["is_owner"] is True
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
    assert process.returncode == 0
