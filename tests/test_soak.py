"""Soak: sustained load over many keys while a tenth of them are revoked.

Short by default (part of `make test`); `make soak` runs the full version: 60 s over 1,000 keys,
100 revoked through the admin API. Loopback only, bounded in time, stops by itself.
"""

from __future__ import annotations

import os
import random
import threading
import time

import httpx

from tests.support import BOTH_STORES, BOUND, Gateway

BACKENDS = BOTH_STORES  # the store-facing suites run on SQLite and PostgreSQL

SECONDS = float(os.environ.get("SOAK_SECONDS", "5"))
KEYS = int(os.environ.get("SOAK_KEYS", "100"))


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


def test_soak_with_revocations(gateway: Gateway) -> None:
    keys = [gateway.new_key() for _ in range(KEYS)]
    doomed = random.sample(keys, KEYS // 10)
    revoked_at: dict[str, float] = {}
    results: list[tuple[str, float, int]] = []  # (access key, start time, status)
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            while not stop.is_set():
                key = random.choice(keys)
                started = time.monotonic()
                status = client.get("/api/ok", headers={"X-Auth-Token": key.secret_key}).status_code
                results.append((key.key.access_key, started, status))

    def revoke() -> None:
        with gateway.admin() as admin:
            for key in doomed:
                if stop.wait(SECONDS * 0.8 / len(doomed)):
                    return
                assert admin.delete(f"/v1/api-keys/{key.key.access_key}").status_code == 204
                revoked_at[key.key.access_key] = time.monotonic()

    with httpx.Client(base_url=gateway.url) as client:  # warm up: every key cached once
        for key in keys:
            client.get("/api/ok", headers={"X-Auth-Token": key.secret_key})
    workers = [threading.Thread(target=load) for _ in range(4)]
    revoker = threading.Thread(target=revoke)
    for thread in (*workers, revoker):
        thread.start()
    # Both samples are taken under the same load: one after warm-up, one at the end.
    time.sleep(SECONDS * 0.3)
    fds, rss = len(os.listdir("/proc/self/fd")), rss_kib()
    time.sleep(SECONDS * 0.7)
    fds_end, rss_end = len(os.listdir("/proc/self/fd")), rss_kib()
    stop.set()
    for thread in (*workers, revoker):
        thread.join(30)

    assert len(results) > 100 and len(revoked_at) >= len(doomed) * 0.8
    assert not [r for r in results if r[2] >= 500]
    late = [
        (ak, started - revoked_at[ak])
        for ak, started, status in results
        if status == 200 and ak in revoked_at and started > revoked_at[ak] + BOUND
    ]
    assert not late, f"accepted after revocation + {BOUND} s: {late[:5]}"
    assert {s for _, _, s in results} <= {200, 401}
    assert fds_end <= fds * 1.1 + 1
    assert rss_end <= rss * 1.1
