"""The upload sink for row 9 of the benchmark: reads a request body of any size, answers 200.

    python bench/sink.py   (prints its address)

nginx answers a POST to a static location before reading the body; an upload benchmark needs an
upstream that reads every byte first. The same sink serves the nginx and the gateway rows.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from gatewaycli import server


async def sink(request: web.Request) -> web.Response:
    received = 0
    async for chunk in request.content.iter_chunked(1 << 20):
        received += len(chunk)
    return web.json_response({"received": received})


async def main() -> None:
    app = web.Application(client_max_size=0)
    app.router.add_route("*", "/{tail:.*}", sink)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    print(server.address(sock), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    server.run(main())
