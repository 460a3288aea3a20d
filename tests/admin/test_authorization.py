"""One table: every admin endpoint x every kind of caller -> the expected status, and
no secret or secret hash in any response but create and roll."""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from admin import access, directory, service
from core.store import directory as store_dir
from core.store import keys as store_keys
from core.store.records import Organization, Project, User
from core.tokens import hash_secret
from tests.support import BOTH_STORES, Gateway, Upstream, build_gateway

BACKENDS = BOTH_STORES  # the store-facing suites run on SQLite and PostgreSQL

CALLERS = [
    "owner",
    "iam",
    "orgmgr",
    "plain_own",
    "plain_other",
    "app_iam",
    "other_org",
    "revoked",
    "none",
]
MANAGERS = {"owner", "iam", "orgmgr", "app_iam"}


@dataclass
class World:
    gateway: Gateway
    secrets: dict[str, str]
    plain_user: str
    victim_user: str

    def run(self, coro: Any) -> Any:
        return self.gateway.loop.run(coro)

    def key_for(self, user_id: str) -> str:
        return self.gateway.new_key(user_id=user_id).key.access_key


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: Upstream,
    store_backend: Callable[[], str | None],
) -> Iterator[World]:
    gateway, running = build_gateway(
        Path(tmp_path_factory.mktemp("authz")), upstream.url, store_url=store_backend()
    )
    db, op = gateway.resources.db, access.LOCAL_OPERATOR

    def run(coro: Any) -> Any:
        return gateway.loop.run(coro)

    secrets = {"owner": gateway.secret_key}
    users = {}
    for name, sets in (
        ("iam", ("IAMManager",)),
        ("orgmgr", ("OrganizationManager",)),
        ("plain", ()),
        ("victim", ()),
    ):
        users[name] = run(directory.create_user(db, op, f"{name}@example.com", sets)).id
        secrets[name] = gateway.new_key(user_id=users[name]).secret_key
    secrets["plain_own"] = secrets["plain_other"] = secrets.pop("plain")
    app = run(directory.create_application(db, op, "robot", ("IAMManager",)))
    secrets["app_iam"] = gateway.new_key(user_id=None, application_id=app.id).secret_key
    revoked = gateway.new_key()
    run(service.revoke_key(db, op, revoked.key.access_key))
    secrets["revoked"] = revoked.secret_key
    secrets["other_org"] = run(_second_organization(gateway))
    yield World(gateway, secrets, users["plain"], users["victim"])
    running.stop()


async def _second_organization(gateway: Gateway) -> str:
    """Organization B with an owner and a key: built with the store, as `init` would."""
    now = time.time()
    org = Organization(str(uuid.uuid4()), "b", None, now)
    project = Project(str(uuid.uuid4()), org.id, "default", now, now)
    user = User(str(uuid.uuid4()), org.id, "owner@b.example", (), True, now, now)
    secret = gateway.resources.secret_format.generate()
    key = service._key_record(
        org.id, user.id, None, project.id, "", "live", None, None, secret, now
    )
    async with gateway.resources.db.transaction() as w:
        await store_dir.insert_organization(w, org)
        await store_dir.insert_project(w, project)
        await store_dir.set_default_project(w, org.id, project.id)
        await store_dir.insert_user(w, user)
        await store_keys.insert(w, key, hash_secret(secret))
    return secret


def _expect(managers: int, plain_own: int, plain_other: int, other_org: int) -> dict[str, int]:
    table = {name: managers for name in MANAGERS}
    table.update(
        plain_own=plain_own, plain_other=plain_other, other_org=other_org, revoked=401, none=401
    )
    return table


# (method, path, body, expected). In paths: {key} is a key of the plain user for `plain_own`,
# of the owner for `plain_other`, and of another user for everyone else; {victim} another user;
# {project}, {user}, {application} fresh objects of organization A.
ENDPOINTS: list[tuple[str, str, Any, dict[str, int]]] = [
    ("GET", "/v1/whoami", None, _expect(200, 200, 200, 200)),
    ("GET", "/v1/api-keys", None, _expect(200, 200, 200, 200)),
    ("POST", "/v1/api-keys", {"description": "mine"}, _expect(201, 201, 201, 201)),
    ("POST", "/v1/api-keys", {"user_id": "{victim}"}, _expect(403, 403, 403, 404)),
    ("POST", "/v1/api-keys", {"application_id": "{application}"}, _expect(201, 403, 403, 404)),
    (
        "POST",
        "/v1/api-keys",
        {"rate_limits": [{"limit": 10, "window_seconds": 1}]},
        _expect(201, 403, 403, 201),
    ),
    ("POST", "/v1/api-keys", {"allowed_ips": ["10.0.0.0/8"]}, _expect(201, 403, 403, 201)),
    ("GET", "/v1/api-keys/{key}", None, _expect(200, 200, 404, 404)),
    ("PATCH", "/v1/api-keys/{key}", {"description": "edited"}, _expect(200, 200, 404, 404)),
    ("PATCH", "/v1/api-keys/{key}", {"allowed_ips": ["10.0.0.0/8"]}, _expect(200, 403, 404, 404)),
    ("PATCH", "/v1/api-keys/{key}", {"rate_limits": []}, _expect(200, 403, 404, 404)),
    (
        "POST",
        "/v1/api-keys/{key}/roll",
        {"expire_current_in_seconds": 60},
        _expect(200, 200, 404, 404),
    ),
    ("DELETE", "/v1/api-keys/{key}", None, _expect(204, 204, 404, 404)),
    ("GET", "/v1/projects", None, _expect(200, 200, 200, 200)),
    ("POST", "/v1/projects", {"name": "{unique}"}, _expect(201, 403, 403, 201)),
    ("GET", "/v1/projects/{project}", None, _expect(200, 200, 200, 404)),
    ("PATCH", "/v1/projects/{project}", {"name": "{unique}"}, _expect(200, 403, 403, 404)),
    ("DELETE", "/v1/projects/{project}", None, _expect(204, 403, 403, 404)),
    ("GET", "/v1/users", None, _expect(200, 403, 403, 200)),
    ("POST", "/v1/users", {"email": "{unique}@example.com"}, _expect(201, 403, 403, 201)),
    ("GET", "/v1/users/{user}", None, _expect(200, 404, 404, 404)),
    ("PATCH", "/v1/users/{user}", {"permission_sets": ["IAMManager"]}, _expect(200, 404, 404, 404)),
    ("DELETE", "/v1/users/{user}", None, _expect(204, 404, 404, 404)),
    ("GET", "/v1/applications", None, _expect(200, 403, 403, 200)),
    ("POST", "/v1/applications", {"name": "{unique}"}, _expect(201, 403, 403, 201)),
    ("GET", "/v1/applications/{application}", None, _expect(200, 404, 404, 404)),
    ("PATCH", "/v1/applications/{application}", {"name": "{unique}"}, _expect(200, 404, 404, 404)),
    ("DELETE", "/v1/applications/{application}", None, _expect(204, 404, 404, 404)),
    ("GET", "/v1/audit-events", None, _expect(200, 403, 403, 200)),
]
CASES = [
    pytest.param(
        method, path, body, caller, expected[caller], id=f"{method} {path} {body or ''} as {caller}"
    )
    for method, path, body, expected in ENDPOINTS
    for caller in CALLERS
]


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    return value


# The whole table runs on SQLite; on both stores, the requests whose answer rests on the store's
# visibility queries (listing, reading and changing a key, the directory, the audit log): the
# rules are one code path above one SQL text, so the rest would repeat the SQLite run.
ON_BOTH = {
    ("GET", "/v1/api-keys"),
    ("GET", "/v1/api-keys/{key}"),
    ("PATCH", "/v1/api-keys/{key}"),
    ("GET", "/v1/users"),
    ("GET", "/v1/audit-events"),
}
BOTH_CASES = [case for case in CASES if (case.values[0], case.values[1]) in ON_BOTH]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(("method", "path", "body", "caller", "status"), CASES)
def test_authorization(
    world: World, method: str, path: str, body: Any, caller: str, status: int
) -> None:
    check(world, method, path, body, caller, status)


@pytest.mark.parametrize(("method", "path", "body", "caller", "status"), BOTH_CASES)
def test_authorization_on_both_stores(
    world: World, method: str, path: str, body: Any, caller: str, status: int
) -> None:
    check(world, method, path, body, caller, status)


def check(world: World, method: str, path: str, body: Any, caller: str, status: int) -> None:
    gw, op = world.gateway, access.LOCAL_OPERATOR
    db = gw.resources.db
    owner_of_key = {"plain_own": world.plain_user, "plain_other": gw.owner_id}
    names = {"unique": uuid.uuid4().hex[:12], "victim": world.victim_user}
    if "{key}" in path:
        names["key"] = world.key_for(owner_of_key.get(caller, world.victim_user))
    if "{project}" in path:
        names["project"] = world.run(directory.create_project(db, op, names["unique"])).id
    if "{user}" in path:
        names["user"] = world.run(directory.create_user(db, op, f"{names['unique']}@x.org")).id
    if "{application}" in path or "{application}" in str(body):
        names["application"] = world.run(directory.create_application(db, op, "app")).id
    secret = "" if caller == "none" else world.secrets[caller]
    with gw.admin(secret) as client:
        if caller == "none":
            client.headers.pop("X-Auth-Token")
        response = client.request(method, _fill(path, names), json=_fill(body, names))
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.json()["type"]
    if status == 201 and "/api-keys" in path:
        assert response.json()["secret_key"].startswith("gws_")
    issues_secret = response.is_success and (
        (method, path) == ("POST", "/v1/api-keys") or path.endswith("/roll")
    )
    _assert_no_secret_served(response, set(world.secrets.values()), issues_secret)


SECRET_SHAPE = re.compile(r"gws_[a-z0-9]+_[0-9A-Za-z]{38}")


def _assert_no_secret_served(
    response: httpx.Response, known: set[str], issues_secret: bool
) -> None:
    """No response but create and roll carries a secret, and no response carries a
    secret's hash, in any spelling (hex, base64), in the body or a header."""
    served = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    found = SECRET_SHAPE.findall(served)
    if issues_secret:
        assert found == [response.json()["secret_key"]]
        assert found[0] not in known  # a new secret, never an old one
    else:
        assert found == []
    for secret in known | set(found):
        digest = hash_secret(secret)
        for spelling in (
            digest.hex(),
            base64.b64encode(digest).decode(),
            base64.urlsafe_b64encode(digest).decode().rstrip("="),
        ):
            assert spelling.lower() not in served.lower()
