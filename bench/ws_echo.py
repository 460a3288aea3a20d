"""Row 11's upstream: a WebSocket echo server (the `websockets` package), on its own port.

    python bench/ws_echo.py HOST:PORT

Prints its address, then echoes every message on every connection until stopped.
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve


async def echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


async def main(listen: str) -> None:
    host, port = listen.rsplit(":", 1)
    async with serve(echo, host, int(port), compression=None) as server:
        address = next(iter(server.sockets)).getsockname()
        print(f"http://{address[0]}:{address[1]}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
