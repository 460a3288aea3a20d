"""`gateway demo` (what `make demo` runs): the printed curl line and console work against the
running demo."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.support import run_demo, wait_for


def test_demo_prints_a_working_key(tmp_path: Path) -> None:
    def check(text: str) -> None:
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
        bearer = httpx.get(url, headers={"Authorization": f"Bearer {secret}"})
        assert bearer.status_code == 200 and secret not in bearer.text
        console = re.search(r"The admin console: (\S+) ", text)
        assert console is not None, text
        assert "Gateway console" in httpx.get(console.group(1)).text
        whoami = httpx.get(console.group(1) + "v1/whoami", headers={"X-Auth-Token": secret})
        assert whoami.json()["is_owner"] is True

    run_demo(tmp_path, check)
