"""Lifetime policies per organization: the maximum lifetime held on creation and edits (422
naming the limit), keys that break a new policy listed (API, CLI) but left working, and keys
unused too long disabled by housekeeping, audited, with their webhook events."""

from __future__ import annotations

import json
import time

from admin import access, service
from admin.serialize import rfc3339
from core.store import keys as store_keys
from tests.support import BOTH_STORES, BOUND, Gateway, wait_for

BACKENDS = BOTH_STORES
DAY = 86400.0


def org_of(gateway: Gateway) -> str:
    with gateway.admin() as admin:
        found: str = admin.get("/v1/whoami").json()["organization_id"]
    return found


def test_the_maximum_lifetime_is_held(gateway: Gateway) -> None:
    org = org_of(gateway)
    with gateway.admin() as admin:
        assert admin.get(f"/v1/organizations/{org}/policy").json()["max_key_lifetime_days"] is None
        set_to = admin.patch(f"/v1/organizations/{org}/policy", json={"max_key_lifetime_days": 90})
        assert set_to.status_code == 200 and set_to.json()["max_key_lifetime_days"] == 90
        forever = admin.post("/v1/api-keys", json={})
        assert forever.status_code == 422
        assert "90 days (max_key_lifetime_days)" in forever.json()["message"]
        assert forever.json()["details"][0]["field"] == "expires_at"
        too_long = admin.post("/v1/api-keys", json={"expires_at": "2999-01-01T00:00:00Z"})
        assert too_long.status_code == 422 and "limit of 90 days" in too_long.json()["message"]
        from admin.serialize import rfc3339

        within = rfc3339(gateway.clock() + 30 * DAY)
        made = admin.post("/v1/api-keys", json={"expires_at": within})
        assert made.status_code == 201, made.text
        access_key = made.json()["access_key"]
        cleared = admin.patch(f"/v1/api-keys/{access_key}", json={"expires_at": None})
        assert cleared.status_code == 422
        longer = admin.patch(
            f"/v1/api-keys/{access_key}", json={"expires_at": rfc3339(gateway.clock() + 100 * DAY)}
        )
        assert longer.status_code == 422
        assert admin.patch(f"/v1/api-keys/{access_key}", json={"description": "ok"}).is_success
        # The CLI goes through the same rule.
    refused = gateway.cli("keys", "create", "--user", gateway.owner_id, check=False)
    assert refused.returncode == 2 and "max_key_lifetime_days" in refused.stderr
    gateway.cli("keys", "create", "--user", gateway.owner_id, "--expires-in", "7d")


def test_a_roll_is_held_to_the_maximum_lifetime(gateway: Gateway) -> None:
    """A roll that gives a new expiry is an edit of it: past the limit, 422 and nothing changed.
    An expired key renewed by a roll gets the lifetime it was created with, cut to the limit."""
    org = org_of(gateway)
    older = gateway.new_key(expires_at=time.time() + 90 * DAY)  # made before the policy
    fresh = gateway.new_key(expires_at=time.time() + 10 * DAY)
    access_key = fresh.key.access_key
    with gateway.admin() as admin:
        admin.patch(f"/v1/organizations/{org}/policy", json={"max_key_lifetime_days": 30})
        too_long = admin.post(
            f"/v1/api-keys/{access_key}/roll",
            json={"expires_at": rfc3339(time.time() + 100 * DAY)},
        )
        assert too_long.status_code == 422, too_long.text
        assert "limit of 30 days (max_key_lifetime_days)" in too_long.json()["message"]
        kept = admin.get(f"/v1/api-keys/{access_key}").json()
        assert kept["expires_at"] == rfc3339(fresh.key.expires_at)
        assert kept["secret_prefix"] == fresh.key.secret_prefix  # not rolled either
        within = admin.post(
            f"/v1/api-keys/{access_key}/roll",
            json={"expires_at": rfc3339(time.time() + 20 * DAY)},
        )
        assert within.status_code == 200, within.text
    refused = gateway.cli("keys", "roll", access_key, "--expires-in", "60d", check=False)
    assert refused.returncode == 2 and "max_key_lifetime_days" in refused.stderr
    db = gateway.resources.db

    async def expire_older() -> None:  # made 100 days ago for 90 days: expired 10 days ago
        async with db.transaction() as w:
            await w.execute(
                "UPDATE api_keys SET created_at = created_at - ?, expires_at = expires_at - ? "
                "WHERE access_key = ?",
                (100 * DAY, 100 * DAY, older.key.access_key),
            )
            await store_keys.event(w, older.key.access_key, "update", time.time())

    gateway.loop.run(expire_older())
    renewed = gateway.loop.run(
        service.roll_key(
            db, access.LOCAL_OPERATOR, gateway.resources.secret_format, older.key.access_key
        )
    )
    assert renewed.key.expires_at is not None
    assert 29 * DAY < renewed.key.expires_at - time.time() <= 30 * DAY


def test_keys_breaking_a_new_policy_are_listed_and_keep_working(gateway: Gateway) -> None:
    org = org_of(gateway)
    old = gateway.new_key(description="made before the policy")
    with gateway.admin() as admin:
        admin.patch(f"/v1/organizations/{org}/policy", json={"max_key_lifetime_days": 30})
        found = admin.get(f"/v1/organizations/{org}/policy/violations").json()["violations"]
    assert {(v["access_key"], v["reason"]) for v in found} == {
        (old.key.access_key, "no_expiry"),
        (gateway.access_key, "no_expiry"),
    }
    with gateway.client() as client:
        assert client.get("/echo/x", headers={"X-Auth-Token": old.secret_key}).status_code == 200
    audited = json.loads(gateway.cli("keys", "audit-policy", "--json").stdout)
    assert audited["policy"]["max_key_lifetime_days"] == 30
    assert {v["access_key"] for v in audited["violations"]} == {
        old.key.access_key,
        gateway.access_key,
    }
    assert old.key.access_key in gateway.cli("keys", "audit-policy").stdout


def test_who_may_read_and_change_the_policy(gateway: Gateway) -> None:
    org = org_of(gateway)
    user = json.loads(gateway.cli("users", "create", "plain@example.com", "--json").stdout)
    plain = gateway.new_key(user_id=user["id"])
    with gateway.admin(plain.secret_key) as admin:
        assert admin.get(f"/v1/organizations/{org}/policy").status_code == 200
        refused = admin.patch(f"/v1/organizations/{org}/policy", json={"max_key_lifetime_days": 1})
        assert refused.status_code == 403
        assert admin.get("/v1/organizations/elsewhere/policy").status_code == 404
    with gateway.admin() as admin:
        bad = admin.patch(f"/v1/organizations/{org}/policy", json={"max_key_lifetime_days": 0})
        assert bad.status_code == 400
        assert admin.get(f"/v1/organizations/{org}/policy").json()["max_key_lifetime_days"] is None
    shown = json.loads(
        gateway.cli("policy", "set", "--disable-unused-after-days", "45", "--json").stdout
    )
    assert shown["disable_unused_after_days"] == 45
    cleared = json.loads(
        gateway.cli("policy", "set", "--disable-unused-after-days", "0", "--json").stdout
    )
    assert cleared["disable_unused_after_days"] is None


def test_unused_keys_are_disabled_by_housekeeping(gateway: Gateway) -> None:
    org = org_of(gateway)
    unused = gateway.new_key(description="never used")
    used = gateway.new_key(description="used")
    with gateway.admin() as admin:
        admin.patch(f"/v1/organizations/{org}/policy", json={"disable_unused_after_days": 30})
        hook = admin.post(
            "/v1/webhooks",
            json={"url": "http://127.0.0.1:1/h", "events": ["key.updated", "key.disabled"]},
        ).json()
    gateway.clock.advance(31 * DAY)
    with gateway.client() as client, gateway.admin() as admin:
        assert client.get("/echo/x", headers={"X-Auth-Token": used.secret_key}).status_code == 200
        assert admin.get("/v1/whoami").status_code == 200  # the owner key, used now too
    resources = gateway.resources
    gateway.loop.run(resources.verifier.flush_last_used())
    retired = gateway.loop.run(
        resources.housekeeping.notices.retire_unused(resources.db, gateway.clock())
    )
    assert retired == 1
    with gateway.client() as client:
        wait_for(
            lambda: (
                client.get("/echo/x", headers={"X-Auth-Token": unused.secret_key}).status_code
                == 403
            ),
            timeout=BOUND,
        )
        assert client.get("/echo/x", headers={"X-Auth-Token": used.secret_key}).status_code == 200
    with gateway.admin() as admin:
        audit = admin.get("/v1/audit-events", params={"access_key": unused.key.access_key}).json()[
            "audit_events"
        ]
        log = admin.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
        kept = admin.get(f"/v1/api-keys/{unused.key.access_key}").json()
    assert kept["disabled"] is True  # kept, restorable with the same secret
    [disabled] = [e for e in audit if e["action"] == "api_key.disable"]
    assert disabled["actor"]["type"] == "housekeeping" and "unused" in disabled["detail"]
    assert [(d["access_key"], d["event_type"]) for d in reversed(log)] == [
        (unused.key.access_key, "key.updated"),
        (unused.key.access_key, "key.disabled"),
    ]
    # Already disabled: the next round leaves it alone.
    again = gateway.loop.run(
        resources.housekeeping.notices.retire_unused(resources.db, gateway.clock())
    )
    assert again == 0


def test_housekeeping_runs_it(gateway: Gateway) -> None:
    """The round itself calls it (once a minute, with the prune)."""
    org = org_of(gateway)
    unused = gateway.new_key()
    with gateway.admin() as admin:
        admin.patch(f"/v1/organizations/{org}/policy", json={"disable_unused_after_days": 1})
        admin.get("/v1/whoami")
    gateway.clock.advance(2 * DAY)
    with gateway.admin() as admin:
        admin.get("/v1/whoami")
    housekeeping = gateway.resources.housekeeping
    housekeeping._pruned_at = None
    gateway.loop.run(housekeeping.round())
    with gateway.admin() as admin:
        assert admin.get(f"/v1/api-keys/{unused.key.access_key}").json()["disabled"] is True


def test_an_expiry_no_time_can_say_is_refused(gateway: Gateway) -> None:
    """Past 9999-12-31T23:59:59Z no RFC 3339 time can show an expiry (a key's JSON, its webhook
    events): 400 naming the field, not a 500 with nothing written."""
    made = gateway.new_key()
    with gateway.admin() as admin:
        for far in ("9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.9999999Z"):
            for answer in (
                admin.post("/v1/api-keys", json={"expires_at": far}),
                admin.patch(f"/v1/api-keys/{made.key.access_key}", json={"expires_at": far}),
                admin.post(f"/v1/api-keys/{made.key.access_key}/roll", json={"expires_at": far}),
            ):
                assert answer.status_code == 400, (far, answer.text)
                assert answer.json()["details"][0]["field"] == "expires_at"
        last = admin.post("/v1/api-keys", json={"expires_at": "9999-12-31T23:59:59Z"})
        assert last.status_code == 201 and last.json()["expires_at"] == "9999-12-31T23:59:59Z"


def test_a_key_enabled_again_counts_as_unused_from_then(gateway: Gateway) -> None:
    """A key disabled for disuse and enabled again by its owner is not disabled by the next
    round (within a minute, before any client could use it): its unused time starts again."""
    org = org_of(gateway)
    idle = gateway.new_key(description="idle")
    access_key = idle.key.access_key
    db = gateway.resources.db
    notices = gateway.resources.housekeeping.notices

    async def made_long_ago() -> None:
        async with db.transaction() as w:
            await w.execute(
                "UPDATE api_keys SET created_at = created_at - ? WHERE access_key = ?",
                (31 * DAY, access_key),
            )

    gateway.loop.run(made_long_ago())
    with gateway.admin() as admin:
        admin.patch(f"/v1/organizations/{org}/policy", json={"disable_unused_after_days": 30})
    assert gateway.loop.run(notices.retire_unused(db, gateway.clock())) == 1
    with gateway.admin() as admin:
        enabled = admin.patch(f"/v1/api-keys/{access_key}", json={"disabled": False})
        assert enabled.status_code == 200 and enabled.json()["disabled"] is False
        found = admin.get(f"/v1/organizations/{org}/policy/violations").json()["violations"]
    assert access_key not in {v["access_key"] for v in found}
    assert gateway.loop.run(notices.retire_unused(db, gateway.clock())) == 0
    with gateway.admin() as admin:
        assert admin.get(f"/v1/api-keys/{access_key}").json()["disabled"] is False
    gateway.clock.advance(31 * DAY)  # unused for 30 days since it was enabled: disabled again
    with gateway.admin() as admin:
        assert admin.get("/v1/whoami").status_code == 200  # the owner key, used now
    gateway.loop.run(gateway.resources.verifier.flush_last_used())
    assert gateway.loop.run(notices.retire_unused(db, gateway.clock())) == 1
    with gateway.admin() as admin:
        assert admin.get(f"/v1/api-keys/{access_key}").json()["disabled"] is True
