"""Disabled keys, metadata, plans and a bearer's shared budget, through the admin API, the CLI
and the proxy, on both stores: each change held by every key within the revocation bound."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.support import BOTH_STORES, BOUND, Gateway, Upstream, wait_for

BACKENDS = BOTH_STORES


def headers_of(response: httpx.Response) -> dict[str, str]:
    """The headers the upstream received, as its echo says."""
    return dict(response.json()["headers"])


def get(gateway: Gateway, secret: str, path: str = "/echo/x", **extra: str) -> httpx.Response:
    with gateway.client() as client:
        return client.get(path, headers={"X-Auth-Token": secret, **extra})


def patch(gateway: Gateway, access_key: str, body: dict[str, Any]) -> dict[str, Any]:
    with gateway.admin() as admin:
        response = admin.patch(f"/v1/api-keys/{access_key}", json=body)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def create_plan(gateway: Gateway, **body: Any) -> dict[str, Any]:
    with gateway.admin() as admin:
        response = admin.post("/v1/plans", json=body)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


# -- disabled ---------------------------------------------------------------------------------


def test_a_disabled_key_is_refused_and_enabled_again_with_the_same_secret(
    gateway: Gateway,
) -> None:
    new = gateway.new_key()
    secret, access_key = new.secret_key, new.key.access_key
    assert get(gateway, secret).status_code == 200  # cached
    assert patch(gateway, access_key, {"disabled": True})["disabled"] is True
    wait_for(lambda: get(gateway, secret).status_code == 403, BOUND + 1)
    refused = get(gateway, secret).json()
    assert refused["reason"] == "key_disabled" and refused["type"] == "permission_denied"
    patch(gateway, access_key, {"disabled": False})
    wait_for(lambda: get(gateway, secret).status_code == 200, BOUND + 1)
    with gateway.admin() as admin:
        events = admin.get("/v1/audit-events", params={"access_key": access_key}).json()
    actions = [e["action"] for e in events["audit_events"]]
    assert "api_key.disable" in actions and "api_key.enable" in actions


def test_the_cli_disables_and_enables_a_key(gateway: Gateway) -> None:
    new = gateway.new_key()
    assert get(gateway, new.secret_key).status_code == 200
    shown = json.loads(gateway.cli("keys", "disable", new.key.access_key, "--json").stdout)
    assert shown["disabled"] is True
    wait_for(lambda: get(gateway, new.secret_key).status_code == 403, BOUND + 1)
    gateway.cli("keys", "enable", new.key.access_key)
    wait_for(lambda: get(gateway, new.secret_key).status_code == 200, BOUND + 1)


def test_a_disabled_key_is_refused_by_the_admin_api_too(gateway: Gateway) -> None:
    """An unpaid invoice, a leak report with action "disable", an unused key: none of them may
    go on managing keys or verifying them, nor enable itself again."""
    manager = gateway.new_key()
    verifier = gateway.new_key(permissions=["keys:verify"])
    with gateway.admin(manager.secret_key) as admin:
        assert admin.get("/v1/plans").status_code == 200  # cached
    for new in (manager, verifier):
        patch(gateway, new.key.access_key, {"disabled": True})
    wait_for(lambda: get(gateway, manager.secret_key).status_code == 403, BOUND + 1)
    with gateway.admin(manager.secret_key) as admin:
        listed = admin.get("/v1/plans")
        itself = admin.patch(f"/v1/api-keys/{manager.key.access_key}", json={"disabled": False})
    with gateway.admin(verifier.secret_key) as admin:
        asked = admin.post("/v1/keys/verify", json={"secret_key": gateway.secret_key})
    for refused in (listed, itself, asked):
        assert refused.status_code == 403, refused.text
        assert refused.json()["reason"] == "key_disabled"
    with gateway.admin() as admin:
        assert admin.get(f"/v1/api-keys/{manager.key.access_key}").json()["disabled"] is True


def test_only_a_manager_disables_a_key(gateway: Gateway) -> None:
    with gateway.admin() as admin:
        user = admin.post("/v1/users", json={"email": "plain@example.com"}).json()
    plain = gateway.new_key(user_id=user["id"])
    with gateway.admin(plain.secret_key) as admin:
        response = admin.patch(f"/v1/api-keys/{plain.key.access_key}", json={"disabled": True})
    assert response.status_code == 403


# -- metadata ---------------------------------------------------------------------------------


def test_metadata_goes_upstream_as_compact_ascii_json(gateway: Gateway) -> None:
    new = gateway.new_key(metadata={"tier": "gold", "name": "Zoë"})
    seen = headers_of(get(gateway, new.secret_key, **{"X-Auth-Key-Metadata": '{"tier":"x"}'}))
    assert seen["x-auth-key-metadata"] == '{"name":"Zo\\u00eb","tier":"gold"}'
    bare = gateway.new_key()
    assert "x-auth-key-metadata" not in headers_of(get(gateway, bare.secret_key))


@pytest.mark.parametrize(
    ("body", "status"),
    [({"metadata": {"a": "x" * 1100}}, 422), ({"metadata": ["a"]}, 400), ({"metadata": {}}, 200)],
)
def test_metadata_is_an_object_of_at_most_1_kb(
    gateway: Gateway, body: dict[str, Any], status: int
) -> None:
    with gateway.admin() as admin:
        response = admin.patch(f"/v1/api-keys/{gateway.access_key}", json=body)
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    ("metadata", "why"),
    [
        ('{"a": NaN}', "NaN and Infinity"),
        ('{"a": Infinity}', "NaN and Infinity"),
        ('{"a": 1e999}', "NaN and Infinity"),  # a float too large: Infinity
        ('{"a": "\\ud800"}', "lone surrogate"),
    ],
)
def test_metadata_is_json_the_upstream_can_read(gateway: Gateway, metadata: str, why: str) -> None:
    """What is not JSON (NaN, Infinity) or not text (a lone surrogate) is refused by the API
    and the CLI alike: stored, it would go upstream as a header no JSON parser reads, and every
    listing of the plans (or reading of the key) would fail."""
    asks = [
        ("POST", "/v1/plans", f'{{"name": "odd", "metadata": {metadata}}}'),
        ("PATCH", f"/v1/api-keys/{gateway.access_key}", f'{{"metadata": {metadata}}}'),
    ]
    with gateway.admin() as admin:
        for method, path, body in asks:
            response = admin.request(method, path, content=body.encode())
            assert response.status_code in (400, 422), response.text
        assert admin.get("/v1/plans").json()["plans"] == []
    for args in (("plans", "create", "odd"), ("keys", "edit", gateway.access_key)):
        made = gateway.cli(*args, "--metadata", metadata, check=False)
        assert made.returncode != 0 and why in made.stderr, made.stderr
        assert "Traceback" not in made.stderr
    deep = gateway.cli("plans", "create", "deep", "--metadata", "[" * 50_000, check=False)
    assert deep.returncode != 0 and "Traceback" not in deep.stderr, deep.stderr
    with gateway.admin() as admin:
        assert admin.get("/v1/plans").json()["plans"] == []
        assert admin.get(f"/v1/api-keys/{gateway.access_key}").json()["metadata"] == {}


def test_metadata_is_in_the_assertion(make_gateway: Any, upstream: Upstream) -> None:
    gateway: Gateway = make_gateway(
        extra=f'[[routes]]\nprefix = "/signed"\nupstream = "{upstream.url}"\nassertion = true\n'
    )
    from gatewaycli.assertion_key import first_key

    first_key(gateway.config, gateway.clock())
    gateway.resources.assertions.refresh()
    new = gateway.new_key(metadata={"customer": "c-42"})
    token = headers_of(get(gateway, new.secret_key, "/signed/x"))["x-auth-assertion"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["meta"] == {"customer": "c-42"}


# -- plans ------------------------------------------------------------------------------------


def test_a_plans_name_never_splits_a_header_upstream(gateway: Gateway) -> None:
    """The name goes upstream in X-Auth-Plan: a line break in it would be a header of the
    manager's choosing (or a second request) that the upstream trusts as the gateway's."""
    with gateway.admin() as admin:
        for name in ("gold\r\nX-Auth-Access-Key: GWKFORGED", "gold\n", "nul\x00", "esc\x1b[2J"):
            refused = admin.post("/v1/plans", json={"name": name})
            assert refused.status_code == 400, refused.text
            assert "control characters" in refused.json()["message"]
    made = gateway.cli("plans", "create", "gold\r\nX-Evil: 1", check=False)
    assert made.returncode != 0 and "control characters" in made.stderr
    plan = create_plan(gateway, name="gold")

    async def renamed_by_an_older_gateway() -> None:
        async with gateway.resources.db.transaction() as w:
            await w.execute(
                "UPDATE plans SET name = ? WHERE id = ?", ("gold\r\nX-Evil: 1", plan["id"])
            )

    gateway.loop.run(renamed_by_an_older_gateway())
    new = gateway.new_key(plan_id=plan["id"])
    seen = {name.lower(): value for name, value in headers_of(get(gateway, new.secret_key)).items()}
    assert seen["x-auth-plan"] == "gold  X-Evil: 1" and "x-evil" not in seen


def test_plans_are_managed_through_the_api(gateway: Gateway) -> None:
    plan = create_plan(
        gateway,
        name="Starter",
        rate_limits=[{"limit": 5, "window_seconds": 60}],
        credits={"amount": 50000, "refill": "monthly"},
        metadata={"tier": "starter"},
    )
    with gateway.admin() as admin:
        assert admin.post("/v1/plans", json={"name": "Starter"}).status_code == 409
        listed = admin.get("/v1/plans").json()
        assert [p["name"] for p in listed["plans"]] == ["Starter"]
        changed = admin.patch(f"/v1/plans/{plan['id']}", json={"name": "Starter+"}).json()
        assert changed["name"] == "Starter+" and changed["credits"]["amount"] == 50000
        new = gateway.new_key(plan_id=plan["id"])
        assert admin.delete(f"/v1/plans/{plan['id']}").status_code == 409  # in use
        patch(gateway, new.key.access_key, {"plan_id": None})
        assert admin.delete(f"/v1/plans/{plan['id']}").status_code == 204
        assert admin.get(f"/v1/plans/{plan['id']}").status_code == 404


def test_a_plan_change_reaches_every_key_on_it(gateway: Gateway) -> None:
    plan = create_plan(gateway, name="Gold", metadata={"tier": "gold"})
    on_plan = gateway.new_key(plan_id=plan["id"], metadata={"customer": "c-1"})
    seen = headers_of(get(gateway, on_plan.secret_key))
    assert seen["x-auth-plan"] == "Gold"
    assert json.loads(seen["x-auth-key-metadata"]) == {"customer": "c-1", "tier": "gold"}
    with gateway.admin() as admin:
        body = {"name": "Platinum", "metadata": {"tier": "platinum"}}
        assert admin.patch(f"/v1/plans/{plan['id']}", json=body).status_code == 200
    wait_for(
        lambda: headers_of(get(gateway, on_plan.secret_key))["x-auth-plan"] == "Platinum",
        BOUND + 1,
    )
    metadata = headers_of(get(gateway, on_plan.secret_key))["x-auth-key-metadata"]
    assert json.loads(metadata) == {"customer": "c-1", "tier": "platinum"}


def limited_statuses(gateway: Gateway, secrets: list[str], count: int) -> list[int]:
    return [get(gateway, secrets[i % len(secrets)]).status_code for i in range(count)]


def test_a_bearers_rate_limits_are_one_budget_for_all_its_keys(gateway: Gateway) -> None:
    gateway.clock.freeze()
    with gateway.admin() as admin:
        app = admin.post("/v1/applications", json={"name": "shared"}).json()
        limits = {"rate_limits": [{"limit": 3, "window_seconds": 60}]}
        assert admin.patch(f"/v1/applications/{app['id']}", json=limits).status_code == 200
    keys = [gateway.new_key(user_id=None, application_id=app["id"]) for _ in range(2)]
    statuses = limited_statuses(gateway, [k.secret_key for k in keys], 6)
    assert statuses.count(200) == 3 and statuses.count(429) == 3


def test_precedence_the_keys_plan_over_its_bearers(gateway: Gateway) -> None:
    """The key's plan's limits (per key) win over its bearer's plan's (shared); the key's own
    limits apply on top of either."""
    gateway.clock.freeze()
    wide = create_plan(gateway, name="wide", rate_limits=[{"limit": 4, "window_seconds": 60}])
    narrow = create_plan(gateway, name="narrow", rate_limits=[{"limit": 2, "window_seconds": 60}])
    with gateway.admin() as admin:
        app = admin.post("/v1/applications", json={"name": "tiered"}).json()
        body = {"plan_id": narrow["id"]}
        assert admin.patch(f"/v1/applications/{app['id']}", json=body).status_code == 200
    own_plan = gateway.new_key(user_id=None, application_id=app["id"], plan_id=wide["id"])
    bearer_plan = gateway.new_key(user_id=None, application_id=app["id"])
    assert limited_statuses(gateway, [own_plan.secret_key], 5).count(200) == 4
    assert limited_statuses(gateway, [bearer_plan.secret_key], 3).count(200) == 2
    assert headers_of(get(gateway, own_plan.secret_key, "/open/x")) is not None
    capped = gateway.new_key(
        user_id=None,
        application_id=app["id"],
        plan_id=wide["id"],
        rate_limits=[_limit(1)],
    )
    assert limited_statuses(gateway, [capped.secret_key], 3).count(200) == 1


def _limit(limit: int) -> Any:
    from core.policies import RateLimit

    return RateLimit(limit, 60)


def test_the_cli_manages_plans_and_a_bearers_plan(gateway: Gateway) -> None:
    made = json.loads(
        gateway.cli(
            "plans",
            "create",
            "Pro",
            "--rate-limit",
            "100/60s",
            "--credits",
            "1000",
            "--refill",
            "monthly",
            "--metadata",
            '{"tier": "pro"}',
            "--json",
        ).stdout
    )
    assert made["credits"] == {"amount": 1000, "refill": "monthly"}
    assert "Pro" in gateway.cli("plans", "list").stdout
    user = gateway.cli("users", "edit", gateway.owner_id, "--plan", "Pro", "--json").stdout
    assert json.loads(user)["plan_id"] == made["id"]
    shown = json.loads(gateway.cli("plans", "show", "Pro", "--json").stdout)
    assert shown["metadata"] == {"tier": "pro"}
    refused = gateway.cli("plans", "delete", "Pro", check=False)
    assert refused.returncode == 2 and "used by" in refused.stderr
    wait_for(
        lambda: headers_of(get(gateway, gateway.secret_key)).get("x-auth-plan") == "Pro",
        BOUND + 1,
    )
