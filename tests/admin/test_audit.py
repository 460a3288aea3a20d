"""The audit log: every mutation and every denied attempt, from the API and the CLI alike."""

from __future__ import annotations

import json
import sqlite3

import httpx

from tests.support import Gateway, send_raw


def events(gateway: Gateway, **params: str) -> list[dict[str, object]]:
    with gateway.admin() as admin:
        response = admin.get("/v1/audit-events", params={"page_size": "100", **params})
    assert response.status_code == 200
    found: list[dict[str, object]] = response.json()["audit_events"]
    return found


def test_api_and_cli_mutations_and_denials_are_recorded(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        key = admin.post("/v1/api-keys", json={"description": "audited"}).json()
        admin.patch(f"/v1/api-keys/{key['access_key']}", json={"description": "again"})
        admin.post(f"/v1/api-keys/{key['access_key']}/roll", json={})
        user = admin.post("/v1/users", json={"email": "plain@example.com"}).json()
    plain = gateway.new_key(user_id=user["id"])
    with gateway.admin(plain.secret_key) as admin:
        assert admin.delete(f"/v1/api-keys/{key['access_key']}").status_code == 404
        assert admin.post("/v1/projects", json={"name": "nope"}).status_code == 403
    gateway.cli("keys", "revoke", key["access_key"])

    trail = events(gateway, access_key=key["access_key"])
    actions = [(e["action"], e["outcome"], e["actor"]["type"]) for e in reversed(trail)]  # type: ignore[index]
    assert actions == [
        ("api_key.create", "success", "user"),
        ("api_key.update", "success", "user"),
        ("api_key.roll", "success", "user"),
        ("api_key.delete", "denied", "user"),
        ("api_key.delete", "success", "cli"),
    ]
    first = trail[-1]
    assert first["actor"] == {
        "type": "user",
        "id": gateway.owner_id,
        "access_key": gateway.access_key,
    }
    assert first["source_ip"] == "127.0.0.1" and str(first["created_at"]).endswith("Z")
    denied = events(gateway, actor_id=user["id"])
    assert {(e["action"], e["outcome"]) for e in denied} == {
        ("api_key.delete", "denied"),
        ("project.create", "denied"),
    }
    assert events(gateway, action="user.create")[0]["target"] == {"type": "user", "id": user["id"]}
    with gateway.admin() as admin:
        assert admin.get("/v1/audit-events", params={"since": "soon"}).status_code == 400
        later = admin.get("/v1/audit-events", params={"since": "2999-01-01T00:00:00Z"}).json()
        assert later["total_count"] == 0


def test_audit_log_is_append_only(gateway: Gateway) -> None:
    with sqlite3.connect(gateway.config.store.path) as db:
        for statement in (
            "UPDATE audit_events SET outcome = 'success'",
            "DELETE FROM audit_events",
        ):
            try:
                db.execute(statement)
            except sqlite3.DatabaseError as exc:
                assert "append-only" in str(exc)
            else:
                raise AssertionError(f"{statement} was allowed")


def test_whoami(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        me = admin.get("/v1/whoami").json()
    assert me["bearer_type"] == "user" and me["bearer_id"] == gateway.owner_id
    assert me["is_owner"] is True and me["access_key"] == gateway.access_key
    assert json.dumps(me).count(gateway.secret_key) == 0


def test_the_admin_listener_reads_the_key_as_the_proxy_does(gateway: Gateway) -> None:
    """One extraction for both listeners: padded X-Auth-Token, Authorization: Bearer, and two
    different keys refused alike."""
    padded = (
        f"GET /v1/whoami HTTP/1.1\r\nHost: a\r\nX-Auth-Token:  {gateway.secret_key} \r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    assert send_raw(gateway.admin_url, padded).startswith(b"HTTP/1.1 200")
    bearer = {"Authorization": f"Bearer {gateway.secret_key}"}
    with httpx.Client(base_url=gateway.admin_url) as client:
        assert client.get("/v1/whoami", headers=bearer).json()["access_key"] == gateway.access_key
        other = gateway.new_key().secret_key
        both = client.get("/v1/whoami", headers={**bearer, "X-Auth-Token": other})
        assert both.status_code == 401 and both.json()["reason"] == "duplicate_token"
        basic = client.get("/v1/whoami", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert basic.status_code == 401 and basic.json()["reason"] == "missing_token"
