"""Row 3e of the benchmark: the floor of the gateway's own engine, a pass-through with no auth.

    python bench/bare_engine.py UPSTREAM_URL HOST:PORT

The same uvicorn settings as the gateway (``gatewaycli.server.uvicorn_config``) and the same
upstream engine (``gateway.proxy.Upstream`` over ``gateway.upstream``), with nothing else: no
routing, no token, no identity or forwarding headers added, hop-by-hop headers dropped. Row 5
(the gateway with one key) is held to 0.95 of this: what auth and the contract cost on the engine.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from core.config import Route, parse_listen
from gateway.headers import HOP_BY_HOP
from gateway.proxy import RequestBody, Upstream, origin
from gatewaycli import server

DROPPED = HOP_BY_HOP | {b"host"}


class BareEngine:
    def __init__(self, upstream: str) -> None:
        self.where = origin(Route(prefix="/", upstream=upstream))
        self.upstream = Upstream()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        headers = [(k, v) for k, v in scope["headers"] if k not in DROPPED]
        chunked = any(k == b"transfer-encoding" for k, _ in scope["headers"])
        framed = chunked or any(k == b"content-length" for k, _ in headers)
        query = scope["query_string"]
        await self.upstream.forward(
            method=scope["method"],
            where=self.where,
            target=scope["raw_path"] + (b"?" + query if query else b""),
            headers=headers,
            body=RequestBody(receive, 1 << 40) if framed else None,
            chunked=chunked,
            timeout=30.0,
            response_headers=[],
            receive=receive,
            send=send,
        )


async def main(upstream: str, listen: str) -> None:
    app = BareEngine(upstream.rstrip("/"))
    sock = server.bind(parse_listen(listen, "listen"))
    await app.upstream.start()
    print(server.address(sock), flush=True)
    try:
        await uvicorn.Server(server.uvicorn_config(app)).serve(sockets=[sock])
    finally:
        await app.upstream.close()


if __name__ == "__main__":
    server.run(main(sys.argv[1], sys.argv[2]))
