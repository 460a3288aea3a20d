"""The demo's upstream: answers every request with what it received, as JSON.

It shows what an upstream behind the gateway sees: the forwarded path and query, and the trusted
identity headers (never the secret).
"""

from __future__ import annotations

import json

from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    payload = {
        "method": request.method,
        "path": request.raw_path.split("?", 1)[0],
        "query": request.query_string,
        "headers": {k: v for k, v in request.headers.items()},
        "body_bytes": len(body),
    }
    return web.Response(text=json.dumps(payload, indent=2) + "\n", content_type="application/json")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def start(host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
