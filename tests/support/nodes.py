"""Asking a running `gateway serve` node, as a client would: each request on a new connection,
so any of its workers may answer."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import run_cli, send_raw


def answer(url: str, secret: str, timeout: float = 20.0) -> tuple[int, bytes]:
    """The status and the whole answer to ``GET /echo/x`` with the key; 0 and ``b""`` when
    nothing answers within ``timeout`` (a node still starting on a busy machine)."""
    request = f"GET /echo/x HTTP/1.1\r\nHost: n\r\nX-Auth-Token: {secret}\r\nConnection: close\r\n"
    raw = send_raw(url, (request + "\r\n").encode(), timeout=timeout)
    return (int(raw.split(b" ", 2)[1]) if raw else 0), raw


def status(url: str, secret: str) -> int:
    return answer(url, secret)[0]


def create_key(config: Path, user_id: str) -> dict[str, str]:
    """`gateway keys create --json` for the user: the new key's access and secret keys."""
    made = run_cli("--config", str(config), "keys", "create", "--user", user_id, "--json")
    found: dict[str, str] = json.loads(made.stdout)
    return found
