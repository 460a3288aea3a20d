"""Pauses of the event loop under bench row 8's load: one connection, every request a cache miss.

    python bench/stalls.py [--keys 200000] [--seconds 16] [--runs 3]

Fills a store, starts the gateway as `gateway serve` runs it (bench/gateway_server.py) in front
of a small upstream, and times every request from a client on one kept-alive connection, each
with a key not seen before. Prints p50, p99 and the slowest, and when the slow ones (over 5 ms)
happened: periodic ones point at housekeeping (every 5 s), growing ones at full garbage
collections (docs/architecture.md, "The upstream engine").
"""

from __future__ import annotations

import argparse
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from run import PYTHON, fill_store

BENCH = Path(__file__).resolve().parent


class Upstream(BaseHTTPRequestHandler):
    """Answers "ok" in one write, without Nagle's delay (two writes met the gateway's delayed
    ACK and cost 40 ms a request)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def timed(port: int, secrets: list[str], seconds: float) -> list[tuple[float, float]]:
    """(when, how long) of each request: a new key each time, one connection."""
    sock = socket.create_connection(("127.0.0.1", port))
    started, out = time.monotonic(), []
    for secret in secrets:
        if time.monotonic() - started > seconds:
            break
        sent = time.monotonic()
        sock.sendall(f"GET /api/x HTTP/1.1\r\nHost: b\r\nX-Auth-Token: {secret}\r\n\r\n".encode())
        answer = b""
        while not answer.endswith(b"ok"):
            answer += sock.recv(65536)
        out.append((sent - started, time.monotonic() - sent))
    sock.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="gateway-stalls-") as tmp:
        work = Path(tmp)
        secrets, _ = fill_store(work / "store.db", args.keys, random.Random(8))
        config = work / "gateway.toml"
        config.write_text(
            '[server]\nlisten = "127.0.0.1:0"\n[admin]\nlisten = ""\n'
            f'[store]\npath = "{work / "store.db"}"\n[log]\naccess = "off"\n'
            f'[[routes]]\nprefix = "/api"\nupstream = "http://127.0.0.1:{upstream.server_port}"\n'
        )
        per_run = len(secrets) // args.runs
        for run in range(args.runs):
            gateway = subprocess.Popen(
                [PYTHON, str(BENCH / "gateway_server.py"), str(config)],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert gateway.stdout is not None
                port = int(gateway.stdout.readline().rsplit(":", 1)[1])
                time.sleep(0.5)
                chunk = secrets[run * per_run : (run + 1) * per_run]
                found = timed(port, chunk, args.seconds)
            finally:
                gateway.terminate()
                gateway.wait(10)
            ms = sorted(took * 1000 for _, took in found)
            slow = [(round(at, 2), round(took * 1000, 1)) for at, took in found if took > 0.005]
            print(
                f"run {run + 1}: {len(ms):,} requests, p50 {ms[len(ms) // 2]:.2f} ms, "
                f"p99 {ms[int(len(ms) * 0.99)]:.2f} ms, max {ms[-1]:.1f} ms; over 5 ms at "
                f"(s, ms): {slow[:20]}",
                flush=True,
            )
    upstream.shutdown()


if __name__ == "__main__":
    sys.exit(main())
