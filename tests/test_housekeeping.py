"""Housekeeping keeps the store from growing with every change, and never prunes what a
follower can still need."""

from __future__ import annotations

import sqlite3

from admin import access, service
from gateway.verifier import EVENT_RETENTION_SECONDS
from tests.support import Gateway


def counts(gateway: Gateway) -> tuple[int, int]:
    with sqlite3.connect(gateway.config.store.path) as db:
        events = db.execute("SELECT count(*) FROM key_events").fetchone()[0]
        secrets = db.execute("SELECT count(*) FROM key_secrets").fetchone()[0]
    return int(events), int(secrets)


def test_pruning_after_many_changes(gateway: Gateway) -> None:
    db, fmt, op = gateway.resources.db, gateway.resources.secret_format, access.LOCAL_OPERATOR
    keys = [gateway.new_key() for _ in range(5)]
    for key in keys:
        for n in range(8):
            gateway.loop.run(service.roll_key(db, op, fmt, key.key.access_key, 60))
            gateway.loop.run(
                service.update_key(db, op, key.key.access_key, description=f"edit {n}")
            )
    events, secrets = counts(gateway)
    assert events >= 5 * 17 and secrets == 1 + 5 * 9  # every change is a row today
    housekeeping = gateway.resources.housekeeping

    # Within the grace and the retention: nothing anyone may need goes.
    gateway.loop.run(housekeeping.round())
    assert counts(gateway) == (events, secrets)

    # Past the grace: the rolled-out secrets go, the feed stays (followers may need it).
    gateway.clock.advance(61)
    housekeeping._pruned_at = None
    gateway.loop.run(housekeeping.round())
    assert counts(gateway) == (events, 1 + 5)

    # Past the retention: the feed goes too; each key keeps its current secret and works.
    gateway.clock.advance(EVENT_RETENTION_SECONDS)
    housekeeping._pruned_at = None
    gateway.loop.run(housekeeping.round())
    assert counts(gateway) == (0, 1 + 5)
    with gateway.client() as client:
        response = client.get("/echo/x", headers={"X-Auth-Token": gateway.secret_key})
    assert response.status_code == 200


def test_pruning_runs_once_a_minute_not_every_round(gateway: Gateway) -> None:
    housekeeping = gateway.resources.housekeeping
    gateway.loop.run(housekeeping.round())
    pruned = housekeeping._pruned_at
    gateway.clock.advance(30)
    gateway.loop.run(housekeeping.round())
    assert housekeeping._pruned_at == pruned
    gateway.clock.advance(31)
    gateway.loop.run(housekeeping.round())
    assert housekeeping._pruned_at != pruned


def test_a_follower_cut_off_past_the_retention_starts_afresh(gateway: Gateway) -> None:
    """Events it missed may be pruned: it cannot trust the feed to tell it what to evict."""
    verifier = gateway.resources.verifier
    new = gateway.new_key()
    assert gateway.loop.run(verifier.verify(new.secret_key)) != "invalid_token"
    gateway.clock.advance(EVENT_RETENTION_SECONDS / 2 + 1)  # the follower saw nothing since
    gateway.loop.run(verifier.poll_events())
    assert len(verifier._positive) == 0
