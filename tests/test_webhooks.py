"""Webhooks end to end: the admin API, the outbox written with each change, Standard Webhooks
signatures checked by an existing verifier (the `standardwebhooks` package), delivery in order
per key through retries, the 24-hour give-up, and the events housekeeping writes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook as Verifier

from core.store.webhooks import EVENT_TYPES
from tests.support import BOTH_STORES, Gateway, LoopThread, wait_for
from tests.support.receiver import Receiver, run_receiver

BACKENDS = BOTH_STORES
DELIVER = "deliver = true\npoll_interval_seconds = 0.05\ntimeout_seconds = 2"
ALL = list(EVENT_TYPES)


@pytest.fixture
def receiver(loop_thread: LoopThread) -> Iterator[Receiver]:
    with run_receiver(loop_thread) as found:
        yield found


def subscribe(gateway: Gateway, url: str, events: list[str] = ALL) -> dict[str, Any]:
    with gateway.admin() as admin:
        made = admin.post("/v1/webhooks", json={"url": url, "events": events})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    assert body["secret"].startswith("whsec_")
    return body


def verified(secret: str, receiver: Receiver) -> list[dict[str, Any]]:
    """Every delivery, checked by the verifier library as a receiver would."""
    verifier = Verifier(secret)
    return [verifier.verify(r.body, r.headers) for r in receiver.delivered()]


def pump(gateway: Gateway, done: Any, step: float = 40.0, timeout: float = 20) -> None:
    """Let the delivery task run, moving the clock on past each backoff, until done()."""

    def advanced() -> bool:
        if done():
            return True
        gateway.clock.advance(step)
        return False

    wait_for(advanced, timeout=timeout, interval=0.1)


def test_every_change_arrives_signed_in_order_after_two_500s(
    make_gateway: Any, receiver: Receiver
) -> None:
    gateway: Gateway = make_gateway(webhooks=DELIVER)
    hook = subscribe(gateway, receiver.url)
    receiver.statuses = [500, 500]  # the receiver fails the first two attempts
    with gateway.admin() as admin:
        made = admin.post("/v1/api-keys", json={"description": "first"}).json()
        access_key = made["access_key"]
        assert admin.patch(f"/v1/api-keys/{access_key}", json={"description": "second"}).is_success
        assert admin.post(f"/v1/api-keys/{access_key}/roll", json={}).is_success
        assert admin.delete(f"/v1/api-keys/{access_key}").status_code == 204
    pump(gateway, lambda: len(receiver.delivered()) == 4)
    events = verified(hook["secret"], receiver)
    assert [e["type"] for e in events] == [
        "key.created",
        "key.updated",
        "key.rolled",
        "key.revoked",
    ]
    assert all(e["data"]["access_key"] == access_key for e in events)
    assert events[1]["data"]["description"] == "second"
    assert events[1]["data"]["changes"] == ["description"]
    # The first event was tried three times (two 500s), and nothing overtook it.
    first = [r for r in receiver.received if r.event["type"] == "key.created"]
    assert [r.answered for r in first] == [500, 500, 200]
    assert len({r.headers["webhook-id"] for r in first}) == 1  # the same message each time
    assert receiver.received[:3] == first
    # No secret in any event: the key as the API shows it.
    assert all("secret_key" not in e["data"] for e in events)
    assert made["secret_key"] not in b"".join(r.body for r in receiver.received).decode()
    with gateway.admin() as admin:
        log = admin.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
    assert [d["event_type"] for d in log] == [
        "key.revoked",
        "key.rolled",
        "key.updated",
        "key.created",
    ]
    assert log[-1]["attempts"] == 3 and log[-1]["last_status_code"] == 200
    assert all(d["status"] == "delivered" for d in log)


def test_a_tampered_delivery_fails_verification(make_gateway: Any, receiver: Receiver) -> None:
    gateway: Gateway = make_gateway(webhooks=DELIVER)
    hook = subscribe(gateway, receiver.url, ["key.created"])
    gateway.new_key(description="x")
    wait_for(lambda: len(receiver.delivered()) == 1, timeout=10)
    [got] = receiver.delivered()
    Verifier(hook["secret"]).verify(got.body, got.headers)
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        Verifier(hook["secret"]).verify(got.body.replace(b"x", b"y"), got.headers)


def test_only_subscribed_events_and_the_test_event(make_gateway: Any, receiver: Receiver) -> None:
    gateway: Gateway = make_gateway(webhooks=DELIVER)
    hook = subscribe(gateway, receiver.url, ["key.revoked"])
    new = gateway.new_key()
    with gateway.admin() as admin:
        assert admin.delete(f"/v1/api-keys/{new.key.access_key}").status_code == 204
        sent = admin.post(f"/v1/webhooks/{hook['id']}/test")
        assert sent.status_code == 202
    wait_for(lambda: len(receiver.delivered()) == 2, timeout=10)
    assert sorted(receiver.types()) == ["key.revoked", "webhook.test"]
    test_event = next(r for r in receiver.delivered() if r.event["type"] == "webhook.test")
    assert test_event.headers["webhook-id"] == sent.json()["message_id"]


def test_failed_after_24_hours_of_retries(make_gateway: Any, receiver: Receiver) -> None:
    gateway: Gateway = make_gateway(webhooks=DELIVER)
    hook = subscribe(gateway, receiver.url, ["key.created"])
    receiver.statuses = [503] * 100
    gateway.new_key()

    def log() -> list[dict[str, Any]]:
        with gateway.admin() as admin:
            found: list[dict[str, Any]] = admin.get(f"/v1/webhooks/{hook['id']}/deliveries").json()[
                "deliveries"
            ]
        return found

    pump(gateway, lambda: log()[0]["status"] == "failed", step=4 * 3600.0)
    [entry] = log()
    assert entry["last_status_code"] == 503 and entry["last_error"] == "answered HTTP 503"
    # Backoff, not a retry per poll: a handful of attempts over the day.
    assert 5 <= entry["attempts"] <= 20
    count = len(receiver.received)
    gateway.clock.advance(86400)
    wait_for(lambda: True, timeout=1)
    assert len(receiver.received) == count  # failed for good


def test_a_url_the_client_cannot_use_fails_the_attempt_not_the_event(
    make_gateway: Any,
) -> None:
    """A URL stored before the checks it now meets (a host label over 63 characters, which the
    HTTP client refuses with a UnicodeError, not one of its own errors) is an attempt that
    failed, in the delivery log and retried with backoff: not an event claimed and dropped
    again every lease, never counted, holding the key's later events back for ever."""
    gateway: Gateway = make_gateway(webhooks=DELIVER)
    hook = subscribe(gateway, "http://127.0.0.1:1/h", ["key.created"])
    db = gateway.resources.db

    async def stored_long_ago() -> None:
        async with db.transaction() as w:
            await w.execute(
                "UPDATE webhooks SET url = ? WHERE id = ?",
                (f"http://{'a' * 64}.example/h", hook["id"]),
            )

    gateway.loop.run(stored_long_ago())
    gateway.new_key()

    def log() -> list[dict[str, Any]]:
        with gateway.admin() as admin:
            found: list[dict[str, Any]] = admin.get(f"/v1/webhooks/{hook['id']}/deliveries").json()[
                "deliveries"
            ]
        return found

    wait_for(lambda: log()[0]["attempts"] >= 1, timeout=20)
    [entry] = log()
    assert entry["status"] == "pending" and entry["next_attempt_at"] is not None
    assert "UnicodeError" in entry["last_error"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"url": "ftp://x", "events": ["key.created"]}, 400, "url"),
        ({"url": "http://127.0.0.1:1/h", "events": ["key.nothing"]}, 400, "events"),
        ({"url": "http://127.0.0.1:1/h", "events": []}, 422, "events"),
        ({"events": ["key.created"]}, 400, "url"),
        # URLs the deliverer could never send to: refused now, not failed for 24 hours.
        ({"url": "http://[::1/h", "events": ["key.created"]}, 422, "url"),
        ({"url": "http://127.0.0.1:99999/h", "events": ["key.created"]}, 422, "url"),
        ({"url": "http://127.0.0.1:port/h", "events": ["key.created"]}, 422, "url"),
        ({"url": "http://:8080/h", "events": ["key.created"]}, 422, "url"),
        ({"url": f"http://{'a' * 64}.example/h", "events": ["key.created"]}, 422, "url"),
    ],
)
def test_refused_webhooks(gateway: Gateway, body: dict[str, Any], status: int, field: str) -> None:
    with gateway.admin() as admin:
        refused = admin.post("/v1/webhooks", json=body)
        assert refused.status_code == status, refused.text
        assert refused.json()["details"][0]["field"] == field
        assert admin.get("/v1/webhooks").json()["total_count"] == 0


def test_manage_webhooks(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        made = admin.post(
            "/v1/webhooks", json={"url": "http://127.0.0.1:1/h", "events": ["key.created"]}
        ).json()
        shown = admin.get(f"/v1/webhooks/{made['id']}").json()
        assert "secret" not in shown and shown["events"] == ["key.created"]
        patched = admin.patch(
            f"/v1/webhooks/{made['id']}", json={"events": ["key.revoked"], "description": "ops"}
        ).json()
        assert patched["events"] == ["key.revoked"] and patched["description"] == "ops"
        assert [h["id"] for h in admin.get("/v1/webhooks").json()["webhooks"]] == [made["id"]]
        assert admin.delete(f"/v1/webhooks/{made['id']}").status_code == 204
        assert admin.get(f"/v1/webhooks/{made['id']}").status_code == 404
    # A plain bearer may not see or manage webhooks.
    user = gateway.cli("users", "create", "plain@example.com", "--json").stdout
    import json

    plain = gateway.new_key(user_id=json.loads(user)["id"])
    with gateway.admin(plain.secret_key) as admin:
        assert admin.get("/v1/webhooks").status_code == 403
        assert admin.post("/v1/webhooks", json={"url": "http://x", "events": []}).status_code in (
            403,
            422,
        )


def test_no_event_without_its_change(gateway: Gateway) -> None:
    """An edit refused (an expiry in the past) writes no event; a change writes exactly one."""
    with gateway.admin() as admin:
        hook = admin.post(
            "/v1/webhooks", json={"url": "http://127.0.0.1:1/h", "events": ALL}
        ).json()
        new = gateway.new_key()
        refused = admin.patch(
            f"/v1/api-keys/{new.key.access_key}", json={"expires_at": "2000-01-01T00:00:00Z"}
        )
        assert refused.status_code == 422
        log = admin.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
    assert [d["event_type"] for d in log] == ["key.created"]
    assert log[0]["status"] == "pending"  # nothing delivers here: [webhooks] deliver = false


def test_disabling_a_key_tells_key_disabled_once(gateway: Gateway) -> None:
    """PATCH {"disabled": true}: key.updated then key.disabled; disabling it again, or enabling
    it, is an update only."""
    with gateway.admin() as admin:
        hook = admin.post(
            "/v1/webhooks",
            json={"url": "http://127.0.0.1:1/h", "events": ["key.updated", "key.disabled"]},
        ).json()
        new = gateway.new_key()
        path = f"/v1/api-keys/{new.key.access_key}"
        for disabled in (True, True, False):
            assert admin.patch(path, json={"disabled": disabled}).status_code == 200
        log = admin.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
    assert [d["event_type"] for d in reversed(log)] == [
        "key.updated",
        "key.disabled",
        "key.updated",
        "key.updated",
    ]


def test_expiring_events_7_days_and_1_day_before(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        hook = admin.post(
            "/v1/webhooks", json={"url": "http://127.0.0.1:1/h", "events": ["key.expiring"]}
        ).json()
    now = gateway.clock()
    gateway.new_key(expires_at=now + 10 * 86400)
    gateway.new_key(expires_at=now + 3 * 86400)  # a 3-day key: only the 1-day notice
    housekeeping = gateway.resources.housekeeping

    def round_at(offset_days: float) -> list[str]:
        housekeeping._pruned_at = None
        gateway.loop.run(
            housekeeping.notices.expiring(gateway.resources.db, now + offset_days * 86400)
        )
        with gateway.admin() as admin:
            log = admin.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
        return [d["event_type"] for d in log]

    assert round_at(0) == []
    assert round_at(3.5) == ["key.expiring"]  # the 10-day key, 6.5 days left
    assert round_at(3.6) == ["key.expiring"]  # once
    assert round_at(2.5) == ["key.expiring"] * 2  # the 3-day key, 0.5 days left
    assert round_at(9.5) == ["key.expiring"] * 3  # the 10-day key's last day
    assert round_at(9.6) == ["key.expiring"] * 3


def test_rate_limited_once_per_key_and_hour(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        hook = admin.post(
            "/v1/webhooks",
            json={"url": "http://127.0.0.1:1/h", "events": ["key.rate_limited"]},
        ).json()
    from core.policies import RateLimit

    new = gateway.new_key(rate_limits=[RateLimit(1, 3600)])
    housekeeping = gateway.resources.housekeeping

    def limited_twice() -> list[dict[str, Any]]:
        with gateway.client() as client:
            statuses = [
                client.get("/echo/x", headers={"X-Auth-Token": new.secret_key}).status_code
                for _ in range(3)
            ]
        assert statuses[-1] == 429
        gateway.loop.run(housekeeping.round())
        with gateway.admin() as admin:
            found: list[dict[str, Any]] = admin.get(f"/v1/webhooks/{hook['id']}/deliveries").json()[
                "deliveries"
            ]
        return found

    first = limited_twice()
    assert [(d["event_type"], d["access_key"]) for d in first] == [
        ("key.rate_limited", new.key.access_key)
    ]
    assert limited_twice() == first  # the same hour: not again


def test_delivery_never_on_the_request_path(make_gateway: Any, receiver: Receiver) -> None:
    """A receiver that never answers: keys are created and used at once all the same."""
    gateway: Gateway = make_gateway(webhooks=DELIVER)
    subscribe(gateway, receiver.url)
    receiver.hang = True
    with gateway.admin() as admin:
        for _ in range(5):
            made = admin.post("/v1/api-keys", json={}, timeout=2)
            assert made.status_code == 201
    wait_for(lambda: len(receiver.received) >= 1, timeout=5)
    with httpx.Client(base_url=gateway.url, timeout=2) as client:
        answer = client.get("/echo/x", headers={"X-Auth-Token": made.json()["secret_key"]})
    assert answer.status_code == 200


def test_the_cli_manages_webhooks(gateway: Gateway) -> None:
    import json

    made = json.loads(
        gateway.cli(
            "webhooks", "create", "http://127.0.0.1:1/h", "--event", "key.created", "--json"
        ).stdout
    )
    assert made["secret"].startswith("whsec_") and made["events"] == ["key.created"]
    listed = gateway.cli("webhooks", "list").stdout
    assert made["id"] in listed and made["secret"] not in listed
    gateway.cli("webhooks", "edit", made["id"], "--event", "key.revoked", "--event", "key.leaked")
    shown = json.loads(gateway.cli("webhooks", "show", made["id"], "--json").stdout)
    assert shown["events"] == ["key.revoked", "key.leaked"]
    gateway.cli("webhooks", "test", made["id"])
    log = json.loads(gateway.cli("webhooks", "deliveries", made["id"], "--json").stdout)
    assert [d["event_type"] for d in log["deliveries"]] == ["webhook.test"]
    for url in ("ftp://x", "http://127.0.0.1:99999/h"):
        bad = gateway.cli("webhooks", "create", url, "--event", "key.created", check=False)
        assert bad.returncode == 2 and "url must be an http:// or https:// URL" in bad.stderr
        assert "Traceback" not in bad.stderr
    moved = gateway.cli("webhooks", "edit", made["id"], "--url", "http://[::1/h", check=False)
    assert moved.returncode == 2 and "url must be" in moved.stderr
    gateway.cli("webhooks", "delete", made["id"])
    gone = gateway.cli("webhooks", "show", made["id"], check=False)
    assert gone.returncode == 2 and "does not exist" in gone.stderr


def test_an_empty_outbox_costs_one_read_and_no_write(gateway: Gateway) -> None:
    """Every delivering process asks every poll interval: with nothing due the answer is one
    read on the due index, no write transaction (what a fleet at rest costs the database)."""
    from core.store import webhooks as outbox

    db = gateway.resources.db
    reads, writes = db.reads, db.writes
    assert gateway.loop.run(outbox.claim(db, gateway.clock(), 30.0, 8)) == []
    assert (db.reads - reads, db.writes - writes) == (1, 0)
