"""Micro-benchmark of the gateway's own work per request, without sockets or an upstream.

    .venv/bin/python bench/micro_app.py [--rounds 40]

Calls the gateway's ASGI app (a key on a route, the cache warm: row 5's request) and row 3e's
bare engine the same way, in one process, with the upstream exchange replaced by a function
that answers at once: what is left is what the gateway adds to the engine (routing, headers,
the key's check, the metrics). Prints the fastest round of each: on this noisy VM the CPU's
speed moves by half from one minute to the next, and the minimum is what the code costs.
Compare two trees by running each one's copy of this file.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bare_engine import BareEngine
from run import fill_store

from core import config as gateway_config
from gateway.app import GatewayApp
from gateway.resources import Resources

BODY = b'{"ok": true, "service": "bench-upstream"}\n'


async def answer(*, send: Any, shape: Any, **_: Any) -> None:
    """The upstream exchange, answered at once: nginx's small response."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"42")]
    await send({"type": "http.response.start", "status": 200, "headers": shape(headers)})
    await send({"type": "http.response.body", "body": BODY})


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    pass


async def per_request(app: Any, secret: str, count: int) -> float:
    """Microseconds per request over ``count`` requests."""
    headers = [(b"host", b"127.0.0.1:8000"), (b"x-auth-token", secret.encode())]
    started = time.perf_counter()
    for _ in range(count):
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/api/small.json",
            "raw_path": b"/api/small.json",
            "query_string": b"",
            "headers": list(headers),
            "client": ("127.0.0.1", 50000),
        }
        await app(scope, receive, send)
    return (time.perf_counter() - started) / count * 1e6


async def measure(store: Path, secret: str, rounds: int) -> tuple[list[float], list[float]]:
    path = store.parent / "gateway.toml"
    path.write_text(
        f'[admin]\nlisten = ""\n[store]\npath = "{store}"\n[log]\naccess = "off"\n'
        '[cache]\nttl_seconds = 3600\n[[routes]]\nprefix = "/api"\n'
        'upstream = "http://127.0.0.1:9"\n'
    )
    resources = Resources(gateway_config.load(path))
    await resources.start()
    try:
        app = GatewayApp(resources)
        bare = BareEngine("http://127.0.0.1:9")
        app.upstream.forward = bare.upstream.forward = answer  # type: ignore[method-assign]
        await per_request(app, secret, 500)  # the key cached, the code warm
        gateway, engine = [], []
        for _ in range(rounds):
            gateway.append(await per_request(app, secret, 5000))
            engine.append(await per_request(bare, secret, 5000))
    finally:
        await resources.stop()
    return gateway, engine


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="gateway-micro-") as tmp:
        store = Path(tmp) / "store.db"
        (secret,), _ = fill_store(store, 1, random.Random(1))
        gateway, engine = asyncio.run(measure(store, secret, rounds))
    print(
        f"gateway app {min(gateway):.2f} us, bare engine {min(engine):.2f} us per request: "
        f"the gateway's own work {min(gateway) - min(engine):.2f} us (fastest of {rounds} rounds)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    main(parser.parse_args().rounds)
