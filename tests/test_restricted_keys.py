"""Restricted keys (Stripe's rk_): permissions RESOURCE:read / RESOURCE:write, held on routes that
name a resource, refused elsewhere; the secret says what the key is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import config as config_module
from core.config import ConfigError
from core.tokens import SecretFormat
from tests.support import BOTH_STORES, BOUND, Gateway, Upstream, wait_for

BACKENDS = BOTH_STORES
METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
HELD = {
    "none": [],
    "read": ["billing:read"],
    "write": ["billing:write"],
    "both": ["billing:read", "billing:write"],
    "other": ["reports:write"],
}


def routes(upstream: Upstream) -> str:
    return f"""
[[routes]]
prefix = "/billing"
upstream = "{upstream.url}"
resource = "billing"
"""


@pytest.fixture(scope="module")
def keys(module_gateway_with_billing: Gateway) -> dict[str, dict[str, Any]]:
    gateway = module_gateway_with_billing
    made = {}
    for name, held in HELD.items():
        options = [f"--permission={p}" for p in held] or ["--restricted"]
        result = gateway.cli("keys", "create", "--user", gateway.owner_id, "--json", *options)
        made[name] = json.loads(result.stdout)
    return made


@pytest.fixture(scope="module")
def module_gateway_with_billing(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, store_backend: Any
) -> Any:
    from tests.support import build_gateway

    gateway, running = build_gateway(
        Path(tmp_path_factory.mktemp("restricted")),
        upstream.url,
        routes(upstream),
        store_url=store_backend(),
    )
    yield gateway
    running.stop()


def test_the_secret_says_it_is_restricted(
    module_gateway_with_billing: Gateway, keys: dict[str, dict[str, Any]]
) -> None:
    fmt = SecretFormat()
    for name, key in keys.items():
        secret = key["secret_key"]
        assert secret.startswith("gws_rk_live_") and fmt.mode_of(secret) == "live", name
        assert key["permissions"] == sorted(HELD[name])
        assert key["secret_prefix"] == secret[:15]  # as many random characters as any key's
    unrestricted = json.loads(
        module_gateway_with_billing.cli(
            "keys", "create", "--user", module_gateway_with_billing.owner_id, "--json"
        ).stdout
    )
    assert unrestricted["secret_key"].startswith("gws_live_")
    assert unrestricted["permissions"] is None


@pytest.mark.sqlite_only  # the rule is the proxy's; the store round trip is tested below on both
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("held", list(HELD))
def test_every_method_and_permission(
    module_gateway_with_billing: Gateway,
    keys: dict[str, dict[str, Any]],
    method: str,
    held: str,
) -> None:
    gateway = module_gateway_with_billing
    secret = keys[held]["secret_key"]
    reading = method in ("GET", "HEAD", "OPTIONS")
    allowed = "billing:write" in HELD[held] or (reading and "billing:read" in HELD[held])
    response = httpx.request(
        method, gateway.url + "/billing/invoices", headers={"X-Auth-Token": secret}
    )
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 403
        if method != "HEAD":
            body = response.json()
            assert body["reason"] == "insufficient_permissions"
            needed = "'billing:read'" if reading else "'billing:write'"
            assert needed in body["message"] and method in body["message"]
    # a route that names no resource is closed to every restricted key
    plain = httpx.request(method, gateway.url + "/echo/x", headers={"X-Auth-Token": secret})
    assert plain.status_code == 403
    if method != "HEAD":
        assert "names no resource" in plain.json()["message"]


def test_unrestricted_keys_are_not_held_to_resources(module_gateway_with_billing: Gateway) -> None:
    gateway = module_gateway_with_billing
    for method in METHODS:
        response = httpx.request(
            method, gateway.url + "/billing/x", headers={"X-Auth-Token": gateway.secret_key}
        )
        assert response.status_code == 200


def test_a_bearer_restricted_secret_is_ours_and_never_forwarded(
    module_gateway_with_billing: Gateway, keys: dict[str, dict[str, Any]], upstream: Upstream
) -> None:
    secret = keys["read"]["secret_key"]
    response = httpx.get(
        module_gateway_with_billing.url + "/billing/x",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 200
    assert "gws_rk_" not in json.dumps(upstream.last())


def test_restricted_keys_stay_off_the_admin_api(
    module_gateway_with_billing: Gateway, keys: dict[str, dict[str, Any]]
) -> None:
    with module_gateway_with_billing.admin(keys["write"]["secret_key"]) as admin:
        response = admin.get("/v1/whoami")
    assert response.status_code == 403 and response.json()["reason"] == "restricted_key"
    message = response.json()["message"]
    assert "gws_rk_" in message and "<prefix>" not in message  # the configured prefix


def test_permissions_change_within_the_bound_and_only_on_restricted_keys(
    module_gateway_with_billing: Gateway, keys: dict[str, dict[str, Any]]
) -> None:
    gateway = module_gateway_with_billing
    key = keys["other"]
    headers = {"X-Auth-Token": key["secret_key"]}
    assert httpx.get(gateway.url + "/billing/x", headers=headers).status_code == 403
    with gateway.admin() as admin:
        changed = admin.patch(
            f"/v1/api-keys/{key['access_key']}", json={"permissions": ["billing:read"]}
        )
        assert changed.status_code == 200 and changed.json()["permissions"] == ["billing:read"]
        wait_for(
            lambda: httpx.get(gateway.url + "/billing/x", headers=headers).status_code == 200,
            timeout=BOUND,
        )
        assert httpx.post(gateway.url + "/billing/x", headers=headers).status_code == 403
        refused = admin.patch(
            f"/v1/api-keys/{gateway.access_key}", json={"permissions": ["billing:read"]}
        )
        assert refused.status_code == 422 and "is not restricted" in refused.json()["message"]
        bad = admin.patch(f"/v1/api-keys/{key['access_key']}", json={"permissions": ["Billing"]})
        assert bad.status_code == 400
        rolled = admin.post(f"/v1/api-keys/{key['access_key']}/roll", json={})
        assert rolled.json()["secret_key"].startswith("gws_rk_live_")  # still restricted


def test_a_bad_resource_is_refused_in_the_config(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[[routes]]\nprefix = "/a"\nupstream = "http://127.0.0.1:9"\nresource = "A b"\n'
    )
    with pytest.raises(ConfigError, match="must be a lowercase name"):
        config_module.load(config)
