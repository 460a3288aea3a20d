"""Row 3 of the benchmark: the Python floor, a pass-through with no auth at all.

    python bench/bare_proxy.py UPSTREAM_URL HOST:PORT

A raw ASGI app with one aiohttp session (the gateway's upstream client until its own engine,
``gateway.http.upstream``, replaced it: this row keeps that floor visible), served by uvicorn with
exactly the gateway's settings (``gatewaycli.server.uvicorn_config``: uvloop, httptools, no
access log). It forwards method, path,
headers and body, streams the answer back, and does nothing else: no routing, no token, no
header filtering beyond hop-by-hop. The gateway's cost is measured against this.
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import uvicorn

from core.config import parse_listen
from gateway import headers
from gatewaycli import server

# Hop-by-hop headers, plus the two aiohttp sets itself.
HOP_BY_HOP = headers.HOP_BY_HOP | {b"host", b"content-length"}


def new_session() -> aiohttp.ClientSession:
    """Set up as a proxy's must be: no shared cookie jar, no redirects, bodies as they are, no
    proxy from the environment, none of the client's default headers."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=60),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=None),
    )


class BareProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http" and self.session is not None
        forward = [(k.decode(), v.decode()) for k, v in scope["headers"] if k not in HOP_BY_HOP]
        url = self.upstream + scope["raw_path"].decode()
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode()

        first = await receive()

        async def rest() -> Any:
            yield first.get("body", b"")
            while True:
                message = await receive()
                if message.get("body"):
                    yield message["body"]
                if not message.get("more_body"):
                    return

        # A body that came whole (or not at all) is sent as bytes; a longer one is streamed.
        data = rest() if first.get("more_body") else (first.get("body") or None)
        async with self.session.request(
            scope["method"], url, headers=forward, data=data, allow_redirects=False
        ) as response:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (k.lower().encode(), v.encode())
                        for k, v in response.headers.items()
                        if k.lower().encode() not in HOP_BY_HOP
                    ],
                }
            )
            async for chunk in response.content.iter_chunked(64 * 1024):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


async def main(upstream: str, listen: str) -> None:
    app = BareProxy(upstream.rstrip("/"))
    sock = server.bind(parse_listen(listen, "listen"))
    async with new_session() as session:
        app.session = session
        print(server.address(sock), flush=True)
        await uvicorn.Server(server.uvicorn_config(app)).serve(sockets=[sock])


if __name__ == "__main__":
    server.run(main(sys.argv[1], sys.argv[2]))
