"""Micro-benchmark of verification without HTTP (issue #4's "cached verification <= 5 us").

    .venv/bin/python bench/micro_verify.py [--keys 200]

Prints the cost of a cache hit, of an offline rejection, and the latency of cold lookups
(cache misses against a real SQLite file). Numbers vary on a noisy 2-core machine: compare runs.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import timeit
from pathlib import Path

from admin import access, service
from gateway.config import CacheConfig
from gateway.store import Database
from gateway.tokens import SecretFormat
from gateway.verifier import Verifier


async def main(keys: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        db = await Database(Path(directory) / "bench.db").open()
        fmt = SecretFormat()
        init = await service.init(db, fmt)
        assert init.secret_key is not None
        verifier = Verifier(db, CacheConfig(), fmt)
        await verifier.verify(init.secret_key)
        n = 200_000
        hit = timeit.timeit(lambda: verifier.cached(init.secret_key), number=n) / n
        bad = "gws_live_" + "A" * 38
        miss = timeit.timeit(lambda: verifier.cached(bad), number=n) / n
        print(f"cached verification (hit):   {hit * 1e6:6.2f} us")
        print(f"malformed token (offline):   {miss * 1e6:6.2f} us")
        secrets = [
            (
                await service.create_key(db, access.LOCAL_OPERATOR, fmt, user_id=init.user.id)
            ).secret_key
            for _ in range(keys)
        ]
        latencies = []
        for secret in secrets:
            started = time.perf_counter()
            await verifier.verify(secret)
            latencies.append(time.perf_counter() - started)
        latencies.sort()
        p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1]
        print(f"cold lookup ({keys} keys):     p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us")
        await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200)
    asyncio.run(main(parser.parse_args().keys))
