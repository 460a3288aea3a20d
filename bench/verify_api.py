"""Row 12: `POST /v1/keys/verify` on a cached key, through the admin listener of `gateway serve`:
the p50 at one connection and the requests per second at 32 (aiohttp clients, kept-alive
connections, each request a verify of one key with cost 0)."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import aiohttp


async def _run(url: str, credential: str, secret: str, seconds: float, connections: int) -> Any:
    body = {"secret_key": secret}
    headers = {"X-Auth-Token": credential}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                async with session.post(url, json=body, headers=headers) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                latencies.append(time.perf_counter() - started)

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - began
    return latencies, statuses, elapsed


def measure(admin_url: str, credential: str, secret: str, seconds: float) -> dict[str, Any]:
    url = admin_url + "/v1/keys/verify"
    one, one_statuses, _ = asyncio.run(_run(url, credential, secret, seconds, 1))
    many, many_statuses, elapsed = asyncio.run(_run(url, credential, secret, seconds, 32))
    return {
        "p50_ms_c1": statistics.median(one) * 1000,
        "rps_c32": len(many) / elapsed,
        "statuses": {str(k): v for k, v in {**one_statuses, **many_statuses}.items()},
    }
