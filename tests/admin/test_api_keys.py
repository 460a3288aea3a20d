"""The admin API's key endpoints: validation, listing, conflicts, and effect on the proxy."""

from __future__ import annotations

import concurrent.futures
import json
import logging
from dataclasses import replace

import jsonschema_rs
import pytest

from admin.openapi import document
from core.store import StoreConflict
from core.store import directory as store_dir
from core.store.records import Project
from tests.support import BOTH_STORES, BOUND, Gateway, wait_for

BACKENDS = BOTH_STORES  # the store-facing suites run on SQLite and PostgreSQL


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ({"expires_at": "2001-01-01T00:00:00Z"}, 422, "expires_at", "in the future"),
        ({"expires_at": "tomorrow"}, 400, "expires_at", "RFC 3339"),
        ({"expires_at": "2031-01-01T00:00:00"}, 400, "expires_at", "RFC 3339"),
        ({"default_project_id": "no-such-project"}, 404, "default_project_id", "does not exist"),
        ({"description": "d" * 201}, 400, "description", "at most 200 characters"),
        ({"description": 5}, 400, "description", "must be a string"),
        ({"description": None}, 400, "description", "not null"),
        ({"mode": "prod"}, 400, "mode", "one of live, test"),
        ({"colour": "red"}, 400, "colour", "is not accepted here"),
        ({"user_id": "u", "application_id": "a"}, 400, "application_id", "not both"),
    ],
)
def test_create_validation(
    module_gateway: Gateway, body: dict[str, object], status: int, field: str, words: str
) -> None:
    with module_gateway.admin() as admin:
        before = admin.get("/v1/api-keys").json()["total_count"]
        response = admin.post("/v1/api-keys", json=body)
        assert response.status_code == status
        error = response.json()
        assert error["request_id"] == response.headers["x-request-id"]
        if status == 404:
            assert error["type"] == "not_found" and words in error["message"]
        else:
            assert error["type"] == "invalid_arguments"
            assert error["details"][0]["field"] == field
            assert words in error["details"][0]["message"]
        assert admin.get("/v1/api-keys").json()["total_count"] == before  # nothing was created


@pytest.mark.parametrize(
    ("method", "path", "raw", "field"),
    [
        ("POST", "/v1/api-keys", b"[" * 100_000, "body"),  # deeper than any parser's stack
        ("POST", "/v1/api-keys", b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, "body"),
        ("POST", "/v1/api-keys", b'{"description": "\\ud800"}', "description"),  # lone surrogate
        ("POST", "/v1/api-keys", b'{"description": "a\\udfffb"}', "description"),
        ("POST", "/v1/api-keys", b'{"\\ud800": 1}', "body"),
        ("PATCH", "/v1/api-keys/{ak}", b'{"description": "\\ud800"}', "description"),
        ("POST", "/v1/api-keys", b'{"allowed_ips": ["\\udc80"]}', "allowed_ips"),
        ("POST", "/v1/projects", b'{"name": "\\ud800"}', "name"),
    ],
)
def test_bodies_no_parser_or_store_can_hold_are_400(
    module_gateway: Gateway,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    raw: bytes,
    field: str,
) -> None:
    with module_gateway.admin() as admin, caplog.at_level(logging.DEBUG):
        path = path.replace("{ak}", module_gateway.access_key)
        headers = {"Content-Type": "application/json"}
        response = admin.request(method, path, content=raw, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "invalid_arguments" and error["details"][0]["field"] == field
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


SCHEMAS = document()["components"]["schemas"]
# (method, path, request body schema, body): the API refuses with 400 exactly what its document
# forbids, and accepts (or refuses for another reason than the shape) what it allows.
AGREEMENT = [
    ("POST", "/v1/api-keys/{ak}/roll", "ApiKeyRoll", {"expire_current_in_seconds": 36881.0}),
    ("POST", "/v1/api-keys/{ak}/roll", "ApiKeyRoll", {"expire_current_in_seconds": 1.5}),
    ("POST", "/v1/api-keys/{ak}/roll", "ApiKeyRoll", {"expire_current_in_seconds": True}),
    ("POST", "/v1/api-keys/{ak}/roll", "ApiKeyRoll", {"expire_current_in_seconds": 604801}),
    ("POST", "/v1/api-keys/{ak}/roll", "ApiKeyRoll", None),
    ("POST", "/v1/api-keys", "ApiKeyCreate", None),
    ("POST", "/v1/api-keys", "ApiKeyCreate", {"user_id": "{owner}", "application_id": "x"}),
    ("POST", "/v1/api-keys", "ApiKeyCreate", {"user_id": "{owner}", "application_id": None}),
    ("POST", "/v1/api-keys", "ApiKeyCreate", {"description": "d" * 200}),
    ("POST", "/v1/api-keys", "ApiKeyCreate", {"expires_at": None, "mode": "test"}),
    ("PATCH", "/v1/api-keys/{ak}", "ApiKeyUpdate", None),
    ("PATCH", "/v1/api-keys/{ak}", "ApiKeyUpdate", {"default_project_id": None}),
    ("POST", "/v1/projects", "ProjectCreate", {"name": ""}),
    ("POST", "/v1/projects", "ProjectCreate", {"name": " \t"}),
    ("POST", "/v1/projects", "ProjectCreate", {"name": "\u001c"}),
    ("POST", "/v1/projects", "ProjectCreate", {"name": "p" * 101}),
    ("POST", "/v1/projects", "ProjectCreate", None),
    ("POST", "/v1/users", "UserCreate", {"email": "a@b\n"}),
    ("POST", "/v1/users", "UserCreate", {"email": "ops@example.com", "permission_sets": ["X"]}),
    ("POST", "/v1/users", "UserCreate", {"email": "\u001e@b"}),
    ("PATCH", "/v1/applications/{app}", "ApplicationUpdate", {"permission_sets": []}),
    ("PATCH", "/v1/applications/{app}", "ApplicationUpdate", {"name": None}),
]


@pytest.mark.parametrize(("method", "path", "schema", "body"), AGREEMENT)
def test_the_api_and_its_document_agree(
    module_gateway: Gateway, method: str, path: str, schema: str, body: dict[str, object] | None
) -> None:
    gateway = module_gateway
    with gateway.admin() as admin:
        app = admin.post("/v1/applications", json={"name": "agreement"}).json()["id"]
        target = path.format(ak=gateway.new_key().key.access_key, app=app)
        text = json.dumps(body).replace("{owner}", gateway.owner_id) if body is not None else ""
        response = admin.request(method, target, content=text)
    allowed = jsonschema_rs.Draft202012Validator(SCHEMAS[schema]).is_valid(
        json.loads(text) if text else {}
    )
    assert allowed == (response.status_code != 400), (allowed, response.text)
    assert response.status_code < 500


def test_a_missing_body_is_an_empty_object_only_where_nothing_is_required() -> None:
    paths = document()["paths"]
    assert paths["/v1/api-keys"]["post"]["requestBody"]["required"] is False
    assert paths["/v1/projects"]["post"]["requestBody"]["required"] is True


def test_renaming_a_project_to_a_taken_name_is_a_conflict(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        first = admin.post("/v1/projects", json={"name": "first"}).json()
        admin.post("/v1/projects", json={"name": "second"})
        response = admin.patch(f"/v1/projects/{first['id']}", json={"name": "second"})
        assert response.status_code == 409 and "already exists" in response.json()["message"]
        same = admin.patch(f"/v1/projects/{first['id']}", json={"name": "first"})
        assert same.status_code == 200


def test_every_admin_error_carries_the_request_id(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        mine = admin.get("/v1/api-keys/GWKNOSUCHKEY00000000", headers={"X-Request-ID": "req-42"})
        assert mine.status_code == 404 and mine.json()["request_id"] == "req-42"
        assert mine.headers["x-request-id"] == "req-42"
        for response in (
            admin.get("/v1/nothing-here"),
            admin.delete("/v1/whoami"),
            admin.get("/v1/api-keys?page=0"),
            admin.get("/v1/whoami", headers={"X-Auth-Token": "gws_live_typo"}),
        ):
            body = response.json()
            assert len(body["request_id"]) == 32, response.text
            assert body["request_id"] == response.headers["x-request-id"]


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


def test_racing_creations_of_one_name_are_one_201_and_conflicts_never_500(
    gateway: Gateway,
) -> None:
    def create(_: int) -> int:
        with gateway.admin() as admin:
            return admin.post("/v1/projects", json={"name": "racing"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(create, range(8)))
    assert statuses.count(201) == 1 and set(statuses) <= {201, 409}, statuses


def test_a_uniqueness_rule_broken_inside_a_write_is_a_store_conflict(gateway: Gateway) -> None:
    """What the race above may hit: the store's own rule, after the service's check passed."""
    db = gateway.resources.db
    project = Project("p-dup", gateway.loop.run(_org(gateway)), "dup", 0.0, 0.0)

    async def insert_twice() -> None:
        async with db.transaction() as w:
            await store_dir.insert_project(w, project)
            await store_dir.insert_project(w, replace(project, id="p-dup-2"))

    with pytest.raises(StoreConflict):
        gateway.loop.run(insert_twice())
    assert gateway.loop.run(store_dir.get_project(db, "p-dup")) is None  # nothing was written


async def _org(gateway: Gateway) -> str:
    org = await store_dir.first_organization(gateway.resources.db)
    assert org is not None
    return org.id


def test_a_revoked_key_is_said_to_be_revoked_only_to_who_could_see_it(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        user = admin.post("/v1/users", json={"email": "plain2@example.com"}).json()
        key = gateway.new_key().key.access_key  # the owner's
        assert admin.delete(f"/v1/api-keys/{key}").status_code == 204
        again = admin.delete(f"/v1/api-keys/{key}")
        assert again.status_code == 409 and again.json()["reason"] == "already_revoked"
        assert "already revoked at" in again.json()["message"]
        read = admin.get(f"/v1/api-keys/{key}")
        assert read.status_code == 404 and "was revoked at" in read.json()["message"]
        events = admin.get("/v1/audit-events", params={"access_key": key}).json()["audit_events"]
        assert [e["outcome"] for e in events] == ["success", "success"]  # create, one delete
    plain = gateway.new_key(user_id=user["id"])
    with gateway.admin(plain.secret_key) as admin:  # not theirs: existence does not leak
        hidden = admin.delete(f"/v1/api-keys/{key}")
        assert hidden.status_code == 404 and "does not exist" in hidden.json()["message"]


def test_a_body_of_white_space_is_not_taken_for_no_body(module_gateway: Gateway) -> None:
    """Found by schemathesis: the document allows no body, or a JSON object; " " is neither."""
    with module_gateway.admin() as admin:
        response = admin.post("/v1/api-keys", content=b" ")
    assert response.status_code == 400 and response.json()["details"][0]["field"] == "body"


def test_a_roll_may_set_the_expiry(gateway: Gateway) -> None:
    new = gateway.new_key()
    with gateway.admin() as admin:
        path = f"/v1/api-keys/{new.key.access_key}/roll"
        rolled = admin.post(path, json={"expires_at": "2031-01-01T00:00:00Z"})
        assert rolled.status_code == 200 and rolled.json()["expires_at"] == "2031-01-01T00:00:00Z"
        past = admin.post(path, json={"expires_at": "2001-01-01T00:00:00Z"})
        assert past.status_code == 422 and past.json()["details"][0]["field"] == "expires_at"
        assert admin.post(path, json={"expires_at": None}).status_code == 400


def test_a_secret_in_the_path_is_not_repeated_or_audited(gateway: Gateway) -> None:
    new = gateway.new_key()
    with gateway.admin() as admin:
        for method, suffix in (("GET", ""), ("DELETE", ""), ("PATCH", ""), ("POST", "/roll")):
            answer = admin.request(method, f"/v1/api-keys/{new.secret_key}{suffix}", json={})
            assert answer.status_code == 400, answer.text
            assert answer.json()["details"][0]["field"] == "access_key"
            assert "secret key, not an access key" in answer.json()["message"]
            assert new.secret_key not in answer.text
        events = admin.get("/v1/audit-events").json()["audit_events"]
    assert new.secret_key not in json.dumps(events)
