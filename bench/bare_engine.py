"""Row 3e of the benchmark: the floor of the gateway's own engine, a pass-through with no auth.

    python bench/bare_engine.py UPSTREAM_URL HOST:PORT

The same uvicorn settings as the gateway (``gatewaycli.server.uvicorn_config``) and the same
upstream engine (``gateway.proxy.Upstream`` over ``gateway.http.upstream``), with nothing else: no
routing, no token, no identity or forwarding headers added, hop-by-hop headers dropped. Row 5
(the gateway with one key) is held to 0.95 of this: what auth and the contract cost on the engine.
Like the gateway under `gateway serve`, a request without a body on a kept-alive connection is
answered by callbacks (``gateway.relay``), the rest as ASGI in a task.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from core.config import Route, parse_listen
from gateway.exchange import Exchange
from gateway.headers import HOP_BY_HOP, filter_response
from gateway.http.client import RequestBody, Upstream
from gateway.http.cycle import Cycle
from gateway.plan import Forward, Start, Step
from gateway.proxy import origin
from gateway.relay import Relay
from gatewaycli import server

DROPPED = HOP_BY_HOP | {b"host"}


class BareEngine:
    def __init__(self, upstream: str) -> None:
        self.route = Route(prefix="/", upstream=upstream)
        self.where = origin(self.route)
        self.upstream = Upstream()

    def step(self, scope: dict[str, Any]) -> Forward:
        headers = [(k, v) for k, v in scope["headers"] if k not in DROPPED]
        chunked = any(k == b"transfer-encoding" for k, _ in scope["headers"])
        framed = chunked or any(k == b"content-length" for k, _ in headers)
        query = scope["query_string"]
        target = scope["raw_path"] + (b"?" + query if query else b"")
        return Forward(
            self.route, self.where, scope["method"], target, headers, [], framed, chunked, ""
        )

    def serve_by_callbacks(self, scope: dict[str, Any], cycle: Cycle, start: Start) -> None:
        """`GatewayApp.serve_by_callbacks` without the gateway: the relay, or a task."""
        step = self.step(scope)
        if not step.framed and Relay(self, step, scope, cycle, start, Exchange()).begin():
            return
        start(cycle, self.resume(step, scope, cycle.receive, cycle.send, Exchange()))

    def closed(self, scope: dict[str, Any], exchange: Exchange) -> None:
        pass  # nothing counted

    async def resume(
        self,
        step: Step | None,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        exchange: Exchange,
    ) -> None:
        assert isinstance(step, Forward), step  # a failure in the bench is an error
        await self.upstream.forward(
            method=step.method,
            where=step.where,
            target=step.target,
            headers=step.headers,
            body=RequestBody(receive, 1 << 40) if step.framed else None,
            chunked=step.chunked,
            timeout=30.0,
            shape=filter_response,
            receive=receive,
            send=send,
            sent=step.sent,
            fresh=step.fresh,
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await self.resume(self.step(scope), scope, receive, send, Exchange())


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
