"""Micro-benchmark of verification without HTTP (the bench's target "cached verification <= 5 us").

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
from core.config import CacheConfig
from core.store import Database
from core.store.sqlite import SQLiteDatabase
from core.tokens import SecretFormat
from gateway.verifier import Verifier

N = 200_000


async def cold_lookups(db: Database, secrets: list[str]) -> dict[str, float]:
    """Row 8 without HTTP: each secret looked up cold through a fresh verifier over ``db`` (open;
    closed here), every one a store query. p50 and p99 in microseconds."""
    verifier = Verifier(db, CacheConfig(), SecretFormat())
    latencies = []
    for secret in secrets:
        started = time.perf_counter()
        identity = await verifier.verify(secret)
        latencies.append(time.perf_counter() - started)
        assert not isinstance(identity, str), identity
    await db.close()
    latencies.sort()
    return {
        "lookups": len(latencies),
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99) - 1] * 1e6,
    }


async def verifier_over(directory: str) -> tuple[Database, Verifier, str, str]:
    """A verifier over a fresh store whose owner key is cached; returns the owner secret and id."""
    db = await SQLiteDatabase(Path(directory) / "bench.db").open()
    init = await service.init(db, SecretFormat())
    assert init.secret_key is not None
    verifier = Verifier(db, CacheConfig(), SecretFormat())
    await verifier.verify(init.secret_key)
    return db, verifier, init.secret_key, init.user.id


async def measure_hit() -> float:
    """Seconds for one cached verification (bench/run.py reports it beside the HTTP rows)."""
    with tempfile.TemporaryDirectory() as directory:
        db, verifier, secret, _ = await verifier_over(directory)
        seconds = timeit.timeit(lambda: verifier.cached(secret), number=N) / N
        await db.close()
        return seconds


def cached_hit_seconds() -> float:
    return asyncio.run(measure_hit())


async def main(keys: int) -> None:
    hit = await measure_hit()
    with tempfile.TemporaryDirectory() as directory:
        db, verifier, _, owner = await verifier_over(directory)
        fmt, n = verifier.format, N
        bad = "gws_live_" + "A" * 38
        miss = timeit.timeit(lambda: verifier.cached(bad), number=n) / n
        print(f"cached verification (hit):   {hit * 1e6:6.2f} us")
        print(f"malformed token (offline):   {miss * 1e6:6.2f} us")
        secrets = [
            (await service.create_key(db, access.LOCAL_OPERATOR, fmt, user_id=owner)).secret_key
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
