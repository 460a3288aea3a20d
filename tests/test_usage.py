"""Usage per key and hour: counted by the proxy, written in batches, read back per hour and per
day by the admin API and the CLI, pruned after 90 days."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from admin import access
from admin import usage as admin_usage
from core.store import StoreUnavailable
from core.store import keys as store_keys
from core.store import usage as store_usage
from tests.support import BOTH_STORES, Gateway, Upstream

BACKENDS = BOTH_STORES


@pytest.fixture
def counted(make_gateway: Any, upstream: Upstream) -> Gateway:
    extra = f"""
[[routes]]
prefix = "/limited"
upstream = "{upstream.url}"
rate_limits = [{{{{limit = 2, window_seconds = 60}}}}]
"""
    gateway: Gateway = make_gateway(extra=extra)
    gateway.clock.freeze()
    return gateway


def flush(gateway: Gateway) -> None:
    gateway.loop.run(gateway.resources.usage.flush(gateway.resources.db))


def usage(gateway: Gateway, access_key: str) -> dict[str, Any]:
    with gateway.admin() as admin:
        response = admin.get(f"/v1/api-keys/{access_key}/usage")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def usage_at(gateway: Gateway, access_key: str) -> dict[str, Any]:
    """What the API answers, at the gateway's (advanced) clock: the admin app reads the wall
    clock, so a test that moves time asks the service function the API calls."""
    found: dict[str, Any] = gateway.loop.run(
        admin_usage.key_usage(
            gateway.resources.db, access.LOCAL_OPERATOR, access_key, now=gateway.clock()
        )
    )
    return found


def counts(bucket: dict[str, Any]) -> tuple[int, int, int]:
    return bucket["allowed"], bucket["denied"], bucket["rate_limited"]


def total(found: dict[str, Any]) -> tuple[int, int, int]:
    """The last 24 hours' counts added up (what the API answers at the wall clock, whichever
    hour the frozen test clock is in)."""
    rows = [counts(b) for b in found["hourly"]]
    return sum(r[0] for r in rows), sum(r[1] for r in rows), sum(r[2] for r in rows)


def traffic(gateway: Gateway, secret: str) -> None:
    headers = {"X-Auth-Token": secret}
    with gateway.client() as client:
        for _ in range(3):
            assert client.get("/echo/x", headers=headers).status_code == 200
        for _ in range(4):  # two pass, two are refused
            client.get("/limited/x", headers=headers)
        # refused 401s of unknown secrets belong to no key; they are not counted anywhere
        assert client.get("/echo/x", headers={"X-Auth-Token": "gws_live_x"}).status_code == 401


def test_requests_are_counted_per_hour_and_day(counted: Gateway) -> None:
    key = counted.new_key()
    traffic(counted, key.secret_key)
    flush(counted)
    found = usage_at(counted, key.key.access_key)
    assert len(found["hourly"]) == 24 and len(found["daily"]) == 30
    assert counts(found["hourly"][-1]) == (5, 0, 2)
    assert counts(found["daily"][-1]) == (5, 0, 2)
    assert all(counts(b) == (0, 0, 0) for b in found["hourly"][:-1])
    assert found["hourly"][-1]["start"].endswith(":00:00Z")
    assert found["daily"][-1]["start"].endswith("T00:00:00Z")

    # an hour later: a new bucket; both are in today's (or yesterday's and today's) total
    counted.clock.advance(3600)
    traffic(counted, key.secret_key)  # the rate limit's window has passed: two pass again
    flush(counted)
    found = usage_at(counted, key.key.access_key)
    assert counts(found["hourly"][-1]) == (5, 0, 2) and counts(found["hourly"][-2]) == (5, 0, 2)
    assert sum(b["allowed"] for b in found["daily"]) == 10

    # a day later: out of the hourly chart, still in the daily one
    counted.clock.advance(86_400)
    found = usage_at(counted, key.key.access_key)
    assert sum(b["allowed"] for b in found["hourly"]) == 0
    assert sum(b["allowed"] for b in found["daily"]) == 10


def test_the_cli_shows_what_the_api_shows(counted: Gateway) -> None:
    key = counted.new_key()
    traffic(counted, key.secret_key)
    flush(counted)
    cli = json.loads(counted.cli("keys", "usage", key.key.access_key, "--json").stdout)
    assert cli == usage(counted, key.key.access_key)
    text = counted.cli("keys", "usage", key.key.access_key).stdout
    assert "per day, last 30 days (UTC):" in text and "rate_limited" in text


def test_denials_of_a_known_key_are_counted(counted: Gateway) -> None:
    fenced = counted.new_key()
    with counted.admin() as admin:
        admin.patch(f"/v1/api-keys/{fenced.key.access_key}", json={"allowed_ips": ["10.0.0.0/8"]})
    for _ in range(2):
        response = httpx.get(counted.url + "/echo/x", headers={"X-Auth-Token": fenced.secret_key})
        assert response.status_code == 403
    flush(counted)
    assert total(usage(counted, fenced.key.access_key)) == (0, 2, 0)


def test_gateways_add_up_and_nothing_is_lost_while_the_store_is_away(counted: Gateway) -> None:
    key = counted.new_key()
    gateway_usage = counted.resources.usage
    for status in (200, 200, 403, 429):
        gateway_usage.count(key.key.access_key, status)
    flush(counted)
    for status in (200, 429):  # another gateway, the same hour
        gateway_usage.count(key.key.access_key, status)
    flush(counted)
    assert total(usage(counted, key.key.access_key)) == (3, 1, 2)
    path = counted.config.store.path
    if path is None:
        return  # the store-away half needs the SQLite file
    gateway_usage.count(key.key.access_key, 200)
    aside = path.with_name("away.db")
    path.rename(aside)
    try:
        with pytest.raises(StoreUnavailable):
            flush(counted)
    finally:
        aside.rename(path)
    gateway_usage.count(key.key.access_key, 200)
    flush(counted)
    assert total(usage(counted, key.key.access_key)) == (5, 1, 2)


def test_old_hours_are_pruned_after_90_days(counted: Gateway) -> None:
    key = counted.new_key()
    counted.resources.usage.count(key.key.access_key, 200)
    flush(counted)

    async def prune_and_count(now: float) -> int:
        db = counted.resources.db
        async with db.transaction() as w:
            await store_usage.prune(w, now)
        row = await db.fetchone(
            "SELECT count(*) FROM key_usage WHERE access_key = ?", (key.key.access_key,)
        )
        return int(row[0]) if row else 0

    assert counted.loop.run(prune_and_count(counted.clock() + 89 * 86_400)) == 1
    assert counted.loop.run(prune_and_count(counted.clock() + 91 * 86_400)) == 0


def test_usage_is_seen_only_by_who_may_see_the_key(counted: Gateway) -> None:
    with counted.admin() as admin:
        user = admin.post("/v1/users", json={"email": "plain@example.com"}).json()
    mine = counted.new_key(user_id=user["id"])
    with counted.admin(mine.secret_key) as admin:
        assert admin.get(f"/v1/api-keys/{mine.key.access_key}/usage").status_code == 200
        assert admin.get(f"/v1/api-keys/{counted.access_key}/usage").status_code == 404


def test_a_large_batch_is_written_whole_in_few_statements(gateway: Gateway) -> None:
    """2,500 usage rows and last-used times in one flush: every row added (sums, never a time
    moved backwards), and on SQLite in one statement per thousand rows, not one step per row
    (core.store.database.json_batches says why)."""
    db = gateway.resources.db
    statements: list[str] = []
    if db.dialect == "sqlite":
        writer = db._writer  # type: ignore[attr-defined]
        gateway.loop.run(writer.set_trace_callback(statements.append))
    hour = int(gateway.clock() // 3600)
    rows = [(f"GWKBATCH{n:012d}", hour, n % 3, 1, 0, 0) for n in range(2500)]
    key, when = gateway.access_key, 1_700_000_000.123456
    uses = [(when, key)] + [(when, f"GWKNONE{n:013d}") for n in range(2499)]

    async def write() -> None:
        for _ in range(2):
            async with db.transaction() as w:
                await store_usage.add(w, rows)
        async with db.transaction() as w:
            await store_keys.touch_last_used(w, uses)
            await store_keys.touch_last_used(w, [(when - 60, key)])  # older: ignored

    gateway.loop.run(write())
    if db.dialect == "sqlite":
        gateway.loop.run(writer.set_trace_callback(None))
        writes = [s for s in statements if s.startswith(("INSERT INTO key_usage", "UPDATE"))]
        assert len(writes) == 2 * 3 + 3 + 1, writes
    found = gateway.loop.run(store_usage.since(db, "GWKBATCH000000000007", hour))
    assert found == {hour: (2 * (7 % 3), 2, 0)}
    stored = gateway.loop.run(
        db.fetchone("SELECT last_used_at FROM api_keys WHERE access_key = ?", (key,))
    )
    assert stored is not None and stored[0] == when
