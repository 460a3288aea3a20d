"""The gateway for the benchmark: what `gateway serve --workers 1` runs, plus a stats port.

    python bench/gateway_server.py CONFIG

Prints the proxy address, then the address of a bench-only HTTP port that answers with the
verifier's counters (``store_queries``: lookups sent to the store), so the harness can count the
store queries a flood of unknown tokens costs (row 7). Nothing else differs from
``gateway serve``: same listeners (the proxy, and forward-auth when the config has one), same
uvicorn settings, same resources.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from core import config as gateway_config
from gateway.resources import Resources
from gatewaycli import server


async def main(path: Path) -> None:
    config = gateway_config.load(path)
    resources = Resources(config)
    sock = server.bind(config.listen)

    async def stats(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = json.dumps({"store_queries": resources.verifier.store_queries}).encode()
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        writer.close()

    stats_server = await asyncio.start_server(stats, "127.0.0.1", 0)
    host, port = stats_server.sockets[0].getsockname()[:2]
    print(server.address(sock), flush=True)
    print(f"http://{host}:{port}", flush=True)
    auth = config.forward_auth.listen
    listeners = server.data_plane(resources, sock, server.bind(auth) if auth else None)
    await server.run_listeners(resources, listeners)


if __name__ == "__main__":
    server.setup_logging("WARNING")
    server.run(main(Path(sys.argv[1])))
