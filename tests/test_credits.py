"""Credits: spent per route cost, refused at zero with when the refill comes, refilled at the UTC
day, shared by a bearer's keys, reserved from the store in blocks and given back; usage export."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.plans import Credits, Refill, next_refill
from core.policies import RateLimit
from core.store import credits as store_credits
from gateway.credits import EMPTY, Wallet
from tests.support import BOTH_STORES, BOUND, Gateway, Upstream, wait_for

BACKENDS = BOTH_STORES


@pytest.fixture
def priced(make_gateway: Any, upstream: Upstream) -> Gateway:
    extra = f"""
[[routes]]
prefix = "/free"
upstream = "{upstream.url}"
cost = 0

[[routes]]
prefix = "/dear"
upstream = "{upstream.url}"
cost = 2
"""
    gateway: Gateway = make_gateway(extra=extra)
    gateway.clock.freeze()
    return gateway


def get(gateway: Gateway, secret: str, path: str = "/echo/x") -> httpx.Response:
    with gateway.client() as client:
        return client.get(path, headers={"X-Auth-Token": secret})


def test_each_request_spends_its_routes_cost_until_none_is_left(
    priced: Gateway, upstream: Upstream
) -> None:
    new = priced.new_key(credits=Credits(5, Refill(5, "daily")))
    remaining = [int(get(priced, new.secret_key).headers["x-credits-remaining"]) for _ in range(3)]
    assert remaining == [4, 3, 2]
    assert get(priced, new.secret_key, "/dear/x").headers["x-credits-remaining"] == "0"
    before = len(upstream.requests)
    refused = get(priced, new.secret_key)
    assert refused.status_code == 429 and refused.headers["x-credits-remaining"] == "0"
    body = refused.json()
    assert body["reason"] == "usage_exceeded" and body["type"] == "usage_exceeded"
    assert "refill at" in body["message"] and "T00:00:00Z" in body["message"]
    assert len(upstream.requests) == before  # nothing forwarded
    assert get(priced, new.secret_key, "/free/x").status_code == 200  # a free route


def test_a_request_dearer_than_what_is_left_says_what_is_left(priced: Gateway) -> None:
    """Refused because it costs more than is left, not because nothing is: the header and the
    verify API say what is left (a cheaper request still passes), and the message says both."""
    new = priced.new_key(credits=Credits(2, Refill(2, "monthly")))
    assert get(priced, new.secret_key).headers["x-credits-remaining"] == "1"
    refused = get(priced, new.secret_key, "/dear/x")  # costs 2
    assert refused.status_code == 429 and refused.headers["x-credits-remaining"] == "1"
    message = refused.json()["message"]
    assert "costs 2 credits" in message and "1 left" in message and "refill at" in message
    with priced.admin() as admin:
        body = {"secret_key": new.secret_key, "cost": 2}
        answer = admin.post("/v1/keys/verify", json=body).json()
    assert (answer["code"], answer["credits_remaining"]) == ("usage_exceeded", 1)
    assert get(priced, new.secret_key).headers["x-credits-remaining"] == "0"
    spent = get(priced, new.secret_key, "/dear/x")
    assert spent.headers["x-credits-remaining"] == "0" and "spent all" in spent.json()["message"]


def test_a_request_refused_for_credits_counts_toward_no_rate_limit(priced: Gateway) -> None:
    """Also the first refusal, which waits for the store to say the balance is empty (this
    process had reserved nothing yet): the rate limit's slot stays free."""
    new = priced.new_key(credits=Credits(0), rate_limits=[RateLimit(3, 60)])
    refused = [get(priced, new.secret_key) for _ in range(2)]
    assert [r.json()["reason"] for r in refused] == ["usage_exceeded"] * 2
    with priced.admin() as admin:
        body = {"credits": {"remaining": 10, "refill": None}}
        assert admin.patch(f"/v1/api-keys/{new.key.access_key}", json=body).status_code == 200

    def dropped() -> bool:  # the edit reached this gateway (a request would count: not one)
        return isinstance(priced.resources.gate.verifier.cached(new.secret_key), bytes)

    wait_for(dropped, BOUND + 1)
    assert [get(priced, new.secret_key).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_credits_refill_at_the_utc_day(priced: Gateway) -> None:
    new = priced.new_key(credits=Credits(2, Refill(2, "daily")))
    assert [get(priced, new.secret_key).status_code for _ in range(3)] == [200, 200, 429]
    priced.clock.advance(86_400)
    assert [get(priced, new.secret_key).status_code for _ in range(3)] == [200, 200, 429]


def test_credits_refill_to_the_refill_amount_not_the_first_balance(priced: Gateway) -> None:
    """``--credits 2 --refill 5/daily``: 2 today, then 5 each UTC day."""
    new = priced.new_key(credits=Credits(2, Refill(5, "daily")))
    assert [get(priced, new.secret_key).status_code for _ in range(3)] == [200, 200, 429]
    priced.clock.advance(86_400)
    statuses = [get(priced, new.secret_key).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    with priced.admin() as admin:  # a bearer's budget alike
        app = admin.post("/v1/applications", json={"name": "nightly"}).json()
        body = {"credits": {"remaining": 1, "refill": {"amount": 3, "interval": "monthly"}}}
        assert admin.patch(f"/v1/applications/{app['id']}", json=body).status_code == 200
    key = priced.new_key(user_id=None, application_id=app["id"])
    assert [get(priced, key.secret_key).status_code for _ in range(2)] == [200, 429]
    priced.clock.advance(31 * 86_400)
    assert [get(priced, key.secret_key).status_code for _ in range(4)] == [200] * 3 + [429]


def test_clocks_either_side_of_a_refill_never_refill_twice(priced: Gateway) -> None:
    """Two gateways whose clocks disagree about which UTC day it is, around midnight: the one
    ahead refills the balance once, and the one behind may not set it back to its own day
    (and so refill it again at each of its reports): 50 for the old day, 50 for the new."""
    new = priced.new_key(credits=Credits(50, Refill(50, "daily")))
    found = priced.loop.run(priced.resources.gate.verifier.verify(new.secret_key))
    assert not isinstance(found, str) and found.budget is not None
    budget, clock = found.budget, priced.clock
    clock.advance(next_refill("daily", clock()) - clock() - 5)  # 5 s before midnight

    def spend_all(wallet: Wallet) -> int:
        admitted = 0
        priced.loop.run(wallet.sync())  # reports, as every interval does
        while True:
            remaining = wallet.spend(budget, 1)
            if remaining is None:
                remaining = priced.loop.run(wallet.top_up(budget, 1))
            if remaining == EMPTY:
                return admitted
            admitted += 1

    behind = Wallet(priced.resources.db, clock)
    ahead = Wallet(priced.resources.db, lambda: clock() + 10)  # already the next day
    admitted = [spend_all(wallet) for _ in range(4) for wallet in (behind, ahead)]
    assert sum(admitted) == 100, admitted


def test_a_process_gives_back_what_it_reserved_beyond_its_pace(priced: Gateway) -> None:
    """One process reserved ahead for a burst, then spends a trickle (never idle long enough
    to release its lease): what it holds beyond twice its headroom goes back at its next
    report, for another process whose requests it was otherwise refused (usage_exceeded with
    hundreds of credits left)."""
    new = priced.new_key(credits=Credits(1000))
    found = priced.loop.run(priced.resources.gate.verifier.verify(new.secret_key))
    assert not isinstance(found, str) and found.budget is not None
    budget, clock, db = found.budget, priced.clock, priced.resources.db

    def spend(wallet: Wallet, count: int) -> int:
        admitted = 0
        for _ in range(count):
            remaining = wallet.spend(budget, 1)
            if remaining is None:
                remaining = priced.loop.run(wallet.top_up(budget, 1))
            if remaining == EMPTY:
                break
            admitted += 1
        return admitted

    burst, other = Wallet(db, clock), Wallet(db, clock)
    for _ in range(2):  # 300 an interval
        assert spend(burst, 300) == 300
        clock.advance(0.2)
        priced.loop.run(burst.sync())
    for _ in range(3):  # then one an interval
        assert spend(burst, 1) == 1
        clock.advance(0.2)
        priced.loop.run(burst.sync())
    assert spend(other, 300) == 300  # of the 397 left, the burst's pace needs 2 x 32
    assert spend(burst, 100) + spend(other, 100) == 1000 - 603 - 300


def test_a_key_without_credits_is_not_counted(priced: Gateway) -> None:
    response = get(priced, priced.secret_key)
    assert response.status_code == 200 and "x-credits-remaining" not in response.headers


def test_an_applications_credits_are_shared_by_its_keys(priced: Gateway) -> None:
    with priced.admin() as admin:
        app = admin.post("/v1/applications", json={"name": "billing"}).json()
        body = {"credits": {"remaining": 4, "refill": None}}
        assert admin.patch(f"/v1/applications/{app['id']}", json=body).status_code == 200
    keys = [priced.new_key(user_id=None, application_id=app["id"]) for _ in range(2)]
    statuses = [get(priced, keys[i % 2].secret_key).status_code for i in range(6)]
    assert statuses.count(200) == 4 and statuses.count(429) == 2


def test_a_plans_credits_are_a_budget_per_key(priced: Gateway) -> None:
    with priced.admin() as admin:
        body = {"name": "metered", "credits": {"amount": 3, "refill": "monthly"}}
        plan = admin.post("/v1/plans", json=body).json()
    keys = [priced.new_key(plan_id=plan["id"]) for _ in range(2)]
    for key in keys:
        assert [get(priced, key.secret_key).status_code for _ in range(4)] == [200] * 3 + [429]


def remaining_after_the_change(gateway: Gateway, secret: str) -> int | None:
    """What is left after one request, once the change has reached this gateway (None: 429)."""

    def dropped() -> bool:
        return isinstance(gateway.resources.gate.verifier.cached(secret), bytes)

    wait_for(dropped, BOUND + 1)
    response = get(gateway, secret)
    return int(response.headers["x-credits-remaining"]) if response.status_code == 200 else None


def test_a_plans_credits_edited_reach_every_key_on_it(priced: Gateway) -> None:
    """Change a tier once and every key follows: what a key spent this period stays spent, and
    the rest moves with the amount, up or down (below what was spent: nothing left)."""
    with priced.admin() as admin:
        plan = admin.post("/v1/plans", json={"name": "tier", "credits": {"amount": 5}}).json()
    new = priced.new_key(plan_id=plan["id"])
    assert [get(priced, new.secret_key).status_code for _ in range(2)] == [200, 200]

    def amount(credits: int) -> None:
        with priced.admin() as admin:
            body = {"credits": {"amount": credits, "refill": None}}
            assert admin.patch(f"/v1/plans/{plan['id']}", json=body).status_code == 200

    amount(10)
    assert remaining_after_the_change(priced, new.secret_key) == 7  # 10 - 3 spent
    amount(4)
    assert remaining_after_the_change(priced, new.secret_key) == 0  # 4 - 4 spent
    assert get(priced, new.secret_key).status_code == 429
    amount(2)  # below what was spent
    assert remaining_after_the_change(priced, new.secret_key) is None
    amount(6)
    assert remaining_after_the_change(priced, new.secret_key) == 1  # 6 - 5: the debt stayed


def test_a_key_or_bearer_moved_to_another_plan_takes_its_credits(priced: Gateway) -> None:
    """Upgraded from a plan it had spent: the new plan's amount, less what it spent (a key
    still on a spent plan with no refill would be refused for good). A key whose own credits
    are taken away starts on its plan's."""
    with priced.admin() as admin:
        small = admin.post("/v1/plans", json={"name": "small", "credits": {"amount": 2}}).json()
        large = admin.post("/v1/plans", json={"name": "large", "credits": {"amount": 50}}).json()
        app_id = admin.post("/v1/applications", json={"name": "buyer"}).json()["id"]
        on_small = {"plan_id": small["id"]}
        assert admin.patch(f"/v1/applications/{app_id}", json=on_small).status_code == 200
    new = priced.new_key(plan_id=small["id"])
    assert [get(priced, new.secret_key).status_code for _ in range(3)] == [200, 200, 429]
    patch = {"plan_id": large["id"]}
    with priced.admin() as admin:
        assert admin.patch(f"/v1/api-keys/{new.key.access_key}", json=patch).status_code == 200
    assert remaining_after_the_change(priced, new.secret_key) == 47  # 50 - 3 spent

    own = priced.new_key(plan_id=large["id"], credits=Credits(1))
    assert [get(priced, own.secret_key).status_code for _ in range(2)] == [200, 429]
    with priced.admin() as admin:
        body = {"credits": None}
        assert admin.patch(f"/v1/api-keys/{own.key.access_key}", json=body).status_code == 200
    assert remaining_after_the_change(priced, own.secret_key) == 49  # the plan's, from the start

    bought = priced.new_key(user_id=None, application_id=app_id)
    assert [get(priced, bought.secret_key).status_code for _ in range(3)] == [200, 200, 429]
    with priced.admin() as admin:
        assert admin.patch(f"/v1/applications/{app_id}", json=patch).status_code == 200
    assert remaining_after_the_change(priced, bought.secret_key) == 47


def test_setting_a_keys_credits_starts_its_balance_again(priced: Gateway) -> None:
    new = priced.new_key(credits=Credits(1))
    assert [get(priced, new.secret_key).status_code for _ in range(2)] == [200, 429]
    with priced.admin() as admin:
        body = {"credits": {"remaining": 2, "refill": None}}
        response = admin.patch(f"/v1/api-keys/{new.key.access_key}", json=body)
    assert response.json()["credits"] == {"remaining": 2, "refill": None}
    from tests.support import BOUND, wait_for

    wait_for(lambda: get(priced, new.secret_key).status_code == 200, BOUND + 1)


def test_unspent_credits_go_back_and_expired_leases_are_reclaimed(priced: Gateway) -> None:
    """Two wallets on one store stand for two gateways: one releases what it did not spend;
    the other dies holding a lease, and only the part above its ceiling comes back once the
    lease has expired."""
    new = priced.new_key(credits=Credits(1000))
    budget = priced.resources.gate.verifier  # the key's budget, as the verifier loads it
    found = priced.loop.run(budget.verify(new.secret_key))
    assert not isinstance(found, str) and found.budget is not None
    owner, period = found.budget.owner, ""
    db, clock = priced.resources.db, priced.clock
    alive = Wallet(db, clock, lease_seconds=10)
    dead = Wallet(db, clock, lease_seconds=10)

    def unreserved() -> int:
        row = priced.loop.run(
            db.fetchone("SELECT remaining FROM credit_balances WHERE owner = ?", (owner,))
        )
        assert row is not None
        return int(row[0])

    assert priced.loop.run(alive.top_up(found.budget, 1)) >= 0
    assert priced.loop.run(dead.top_up(found.budget, 1)) >= 0
    for _ in range(5):
        assert dead.spend(found.budget, 1) is not None
    held = dead.held[owner]
    assert held.spent == 6 and held.ceiling < held.granted
    priced.loop.run(alive.release_all())
    assert unreserved() == 1000 - 1 - held.granted  # alive gave back all but its 1
    # What is left, as the admin side reads it: unreserved, plus leases' unreported part.
    assert priced.loop.run(store_credits.remaining(db, owner, period)) == 1000 - 1
    clock.advance(11)
    priced.loop.run(alive.sync())  # reclaims the dead wallet's expired lease
    # Never more than held: what the dead one may have spent (its ceiling) stays spent.
    assert unreserved() == 1000 - 1 - held.ceiling


def test_usage_export_by_key_bearer_and_plan(priced: Gateway) -> None:
    new = priced.new_key(credits=Credits(10))
    for path in ("/echo/x", "/dear/x"):
        assert get(priced, new.secret_key, path).status_code == 200
    priced.loop.run(priced.resources.usage.flush(priced.resources.db))
    day = __import__("datetime").datetime.fromtimestamp(priced.clock(), __import__("datetime").UTC)
    query = {"from": day.date().isoformat(), "to": day.date().isoformat()}
    with priced.admin() as admin:
        by_key = admin.get("/v1/usage", params={**query, "group_by": "key"}).json()
        as_csv = admin.get("/v1/usage", params={**query, "group_by": "bearer", "format": "csv"})
        bad = admin.get("/v1/usage", params={**query, "group_by": "moon"})
    row = next(r for r in by_key["rows"] if r["group"] == new.key.access_key)
    assert (row["allowed"], row["credits_spent"]) == (2, 3)
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert any(r["group"] == f"user:{priced.owner_id}" and r["credits_spent"] == "3" for r in rows)
    assert bad.status_code == 400
    exported = priced.cli(
        "usage",
        "export",
        "--from",
        query["from"],
        "--to",
        query["to"],
        "--group-by",
        "plan",
        "--format",
        "json",
    ).stdout
    assert json.loads(exported)["rows"][0]["group"] == "(none)"


def test_a_reload_says_the_credits_settings_wait_for_a_restart(
    priced: Gateway, tmp_path: Path
) -> None:
    """The wallet and its journal are made at start-up: a reload that changed [credits] said
    nothing of it, and the config it kept named a journal_dir no process wrote to."""
    old = priced.resources.config
    credits = dataclasses.replace(old.credits, lease_seconds=4.0, journal_dir=tmp_path / "new")
    new = dataclasses.replace(old, credits=credits)

    async def reload() -> list[str]:
        return priced.resources.reload(new)

    assert "credits" in priced.loop.run(reload())
    assert priced.resources.config.credits == old.credits
