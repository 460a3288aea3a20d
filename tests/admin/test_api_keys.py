"""The admin API's key endpoints: validation, listing, conflicts, and effect on the proxy."""

from __future__ import annotations

import json

import pytest

from tests.support import BOUND, Gateway, wait_for


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at", "in the future"),
        ({"expires_at": "tomorrow"}, "expires_at", "RFC 3339"),
        ({"expires_at": "2031-01-01T00:00:00"}, "expires_at", "time zone"),
        ({"default_project_id": "no-such-project"}, "default_project_id", "does not exist"),
        ({"description": "d" * 201}, "description", "at most 200 characters"),
        ({"description": 5}, "description", "must be a string"),
        ({"mode": "prod"}, "mode", "'live' or 'test'"),
        ({"colour": "red"}, "colour", "is not accepted here"),
    ],
)
def test_create_validation(
    gateway: Gateway, body: dict[str, object], field: str, words: str
) -> None:
    with gateway.admin() as admin:
        response = admin.post("/v1/api-keys", json=body)
        assert response.status_code == 400
        error = response.json()
        assert error["type"] == "invalid_arguments"
        assert error["details"][0]["field"] == field and words in error["details"][0]["message"]
        assert admin.get("/v1/api-keys").json()["total_count"] == 1  # nothing was created


def test_body_must_be_a_json_object(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        for raw in (b"{", b"[1]", b"\xff"):
            response = admin.post("/v1/api-keys", content=raw)
            assert response.status_code == 400
            assert response.json()["details"][0]["field"] == "body"


def test_patch_accepts_only_three_fields(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        response = admin.patch(f"/v1/api-keys/{gateway.access_key}", json={"mode": "test"})
        assert response.status_code == 400 and response.json()["details"][0]["field"] == "mode"
        ok = admin.patch(
            f"/v1/api-keys/{gateway.access_key}",
            json={"description": "ops", "expires_at": "2099-01-01T00:00:00Z"},
        )
        assert ok.status_code == 200
        assert ok.json()["description"] == "ops"
        assert ok.json()["expires_at"] == "2099-01-01T00:00:00Z"
        cleared = admin.patch(f"/v1/api-keys/{gateway.access_key}", json={"expires_at": None})
        assert cleared.json()["expires_at"] is None


def test_list_filters_order_and_paging(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        made = [
            admin.post("/v1/api-keys", json={"mode": "test", "description": str(i)}).json()
            for i in range(5)
        ]
        page = admin.get(
            "/v1/api-keys",
            params={"mode": "test", "page_size": 2, "page": 2, "order_by": "created_at_asc"},
        ).json()
        assert page["total_count"] == 5
        assert [k["access_key"] for k in page["api_keys"]] == [m["access_key"] for m in made[2:4]]
        assert admin.get("/v1/api-keys", params={"mode": "live"}).json()["total_count"] == 1
        assert admin.get("/v1/api-keys", params={"expired": "true"}).json()["total_count"] == 0
        assert (
            admin.get("/v1/api-keys", params={"bearer_type": "application"}).json()["total_count"]
            == 0
        )
        for params in ({"page_size": 101}, {"order_by": "name"}, {"expired": "maybe"}):
            assert admin.get("/v1/api-keys", params=params).status_code == 400
        for key in page["api_keys"]:
            assert "secret_key" not in key and "secret_hash" not in key
            assert len(key["secret_prefix"]) == 12


def test_api_changes_reach_the_proxy(gateway: Gateway) -> None:
    with gateway.admin() as admin, gateway.client() as proxy:
        created = admin.post("/v1/api-keys", json={"description": "to roll"}).json()
        first = {"X-Auth-Token": created["secret_key"]}
        assert proxy.get("/echo/x", headers=first).status_code == 200
        rolled = admin.post(
            f"/v1/api-keys/{created['access_key']}/roll", json={"expire_current_in_seconds": 0}
        ).json()
        assert rolled["access_key"] == created["access_key"]
        assert rolled["secret_prefix"] == rolled["secret_key"][:12]
        wait_for(lambda: proxy.get("/echo/x", headers=first).status_code == 401, timeout=BOUND)
        second = {"X-Auth-Token": rolled["secret_key"]}
        assert proxy.get("/echo/x", headers=second).status_code == 200
        assert admin.delete(f"/v1/api-keys/{created['access_key']}").status_code == 204
        wait_for(lambda: proxy.get("/echo/x", headers=second).status_code == 401, timeout=BOUND)
        assert admin.get(f"/v1/api-keys/{created['access_key']}").status_code == 404


def test_roll_grace_is_bounded(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        for grace in (-1, 604801, "1h", True):
            response = admin.post(
                f"/v1/api-keys/{gateway.access_key}/roll", json={"expire_current_in_seconds": grace}
            )
            assert response.status_code == 400, grace


def test_project_in_use_cannot_be_deleted(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        project = admin.post("/v1/projects", json={"name": "staging"}).json()
        key = admin.post("/v1/api-keys", json={"default_project_id": project["id"]}).json()
        conflict = admin.delete(f"/v1/projects/{project['id']}")
        assert conflict.status_code == 409 and key["access_key"] in conflict.json()["message"]
        admin.patch(
            f"/v1/api-keys/{key['access_key']}", json={"default_project_id": gateway.project_id}
        )
        assert admin.delete(f"/v1/projects/{project['id']}").status_code == 204
        assert admin.delete(f"/v1/projects/{gateway.project_id}").status_code == 409


def test_deleting_a_user_revokes_its_keys(gateway: Gateway) -> None:
    with gateway.admin() as admin, gateway.client() as proxy:
        user = admin.post("/v1/users", json={"email": "leaver@example.com"}).json()
        secret = gateway.new_key(user_id=user["id"]).secret_key
        assert proxy.get("/echo/x", headers={"X-Auth-Token": secret}).status_code == 200
        assert admin.delete(f"/v1/users/{user['id']}").status_code == 204
        wait_for(
            lambda: proxy.get("/echo/x", headers={"X-Auth-Token": secret}).status_code == 401,
            timeout=BOUND,
        )
        assert admin.delete(f"/v1/users/{gateway.owner_id}").status_code == 409


def test_unknown_route_and_method_are_json(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        missing = admin.get("/v1/nothing")
        assert missing.status_code == 404 and missing.json()["type"] == "not_found"
        wrong = admin.put("/v1/whoami")
        assert wrong.status_code == 405 and json.loads(wrong.text)["type"]


def test_plain_user_lists_only_its_own_keys(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        user = admin.post("/v1/users", json={"email": "plain@example.com"}).json()
    mine = gateway.new_key(user_id=user["id"])
    gateway.new_key()  # another owner key
    with gateway.admin(mine.secret_key) as admin:
        for params in ({}, {"user_id": gateway.owner_id}, {"bearer_type": "user"}):
            listed = admin.get("/v1/api-keys", params=params).json()
            assert [k["access_key"] for k in listed["api_keys"]] == [mine.key.access_key]
            assert listed["total_count"] == 1
