"""A key's own policies: rate limits and an IP allowlist, set by the CLI and the admin API, held
on the proxy (and the allowlist on the admin API too), changed within the revocation bound."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import httpx
import pytest

from core.policies import PolicyError, allowed_ips, allows, networks
from tests.support import BOTH_STORES, BOUND, Gateway, wait_for

BACKENDS = BOTH_STORES


def cli_key(gateway: Gateway, *options: str) -> dict[str, Any]:
    made = gateway.cli("keys", "create", "--user", gateway.owner_id, "--json", *options)
    found: dict[str, Any] = json.loads(made.stdout)
    return found


def get(gateway: Gateway, secret: str, path: str = "/echo/x", **headers: str) -> httpx.Response:
    return httpx.get(gateway.url + path, headers={"X-Auth-Token": secret, **headers}, timeout=10)


def test_a_keys_own_rate_limit_from_the_cli(gateway: Gateway) -> None:
    gateway.clock.freeze()
    key = cli_key(gateway, "--rate-limit", "2/10s", "--rate-limit", "100/1h")
    assert key["rate_limits"] == [
        {"limit": 2, "window_seconds": 10},
        {"limit": 100, "window_seconds": 3600},
    ]
    secret = key["secret_key"]
    first = get(gateway, secret)
    assert first.status_code == 200
    assert first.headers["ratelimit-policy"] == (
        '"key-2-per-10s";q=2;w=10, "key-100-per-3600s";q=100;w=3600'
    )
    # the key's limit holds across routes: one log for the key
    assert get(gateway, secret, "/keep/x").status_code == 200
    refused = get(gateway, secret)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "10"
    shown = gateway.cli("keys", "show", key["access_key"]).stdout
    assert "2/10s, 100/3600s" in shown and "(anywhere)" in shown


def test_a_tightened_limit_holds_within_the_revocation_bound(gateway: Gateway) -> None:
    gateway.clock.freeze()
    key = cli_key(gateway, "--rate-limit", "100/60s")
    secret = key["secret_key"]
    for _ in range(3):
        assert get(gateway, secret).status_code == 200  # cached with its old policy
    with gateway.admin() as admin:
        changed = admin.patch(
            f"/v1/api-keys/{key['access_key']}",
            json={"rate_limits": [{"limit": 2, "window_seconds": 60}]},
        )
    assert changed.status_code == 200
    assert changed.json()["rate_limits"] == [{"limit": 2, "window_seconds": 60}]
    # the three already sent count against the new limit of two
    wait_for(lambda: get(gateway, secret).status_code == 429, timeout=BOUND)
    gateway.cli("keys", "edit", key["access_key"], "--no-rate-limits")
    wait_for(lambda: get(gateway, secret).status_code == 200, timeout=BOUND)
    assert "ratelimit" not in get(gateway, secret).headers


def test_an_allowlist_is_held_and_names_the_address_seen(gateway: Gateway) -> None:
    outside = cli_key(gateway, "--allow-ip", "10.0.0.0/8", "--allow-ip", "2001:db8::/32")
    assert outside["allowed_ips"] == ["10.0.0.0/8", "2001:db8::/32"]
    refused = get(gateway, outside["secret_key"])
    assert refused.status_code == 403
    body = refused.json()
    assert body["type"] == "permission_denied" and body["reason"] == "ip_not_allowed"
    assert "127.0.0.1" in body["message"]
    # a client-sent X-Forwarded-For changes nothing without [server] trusted_proxies
    spoofed = get(gateway, outside["secret_key"], **{"X-Forwarded-For": "10.1.2.3"})
    assert spoofed.status_code == 403 and "127.0.0.1" in spoofed.json()["message"]
    inside = cli_key(gateway, "--allow-ip", "127.0.0.0/31")
    assert get(gateway, inside["secret_key"]).status_code == 200
    # the admin API holds it too
    with gateway.admin(outside["secret_key"]) as admin:
        whoami = admin.get("/v1/whoami")
    assert whoami.status_code == 403 and whoami.json()["reason"] == "ip_not_allowed"


def test_an_allowlist_behind_a_trusted_proxy(make_gateway: Any) -> None:
    """With the peer trusted, the address is X-Forwarded-For's (the last hop the proxy added)."""
    gateway: Gateway = make_gateway(server='trusted_proxies = ["127.0.0.1"]')
    key = cli_key(gateway, "--allow-ip", "2001:db8::/64", "--allow-ip", "192.0.2.7")
    secret = key["secret_key"]
    for address, status in [
        ("2001:db8::5", 200),
        ("2001:db8:0:0:ffff:ffff:ffff:ffff", 200),
        ("2001:db8:0:1::", 403),
        ("192.0.2.7", 200),
        ("192.0.2.8", 403),
    ]:
        response = get(gateway, secret, **{"X-Forwarded-For": address})
        assert response.status_code == status, address
        if status == 403:
            assert address in response.json()["message"]


def test_edits_through_the_api_are_checked(gateway: Gateway) -> None:
    key = cli_key(gateway)
    path = f"/v1/api-keys/{key['access_key']}"
    with gateway.admin() as admin:
        for body, status, words in [
            ({"rate_limits": [{"limit": 0, "window_seconds": 1}]}, 400, "limit"),
            ({"rate_limits": [{"limit": 1}]}, 400, "window_seconds"),
            ({"rate_limits": "10/1s"}, 400, "list"),
            ({"rate_limits": [{"limit": 1, "window_seconds": 5}] * 2}, 422, "same window"),
            ({"allowed_ips": ["not an address"]}, 400, "allowed_ips"),
            ({"allowed_ips": ["10.0.0.300"]}, 422, "not an IPv4 or IPv6 address"),
            ({"allowed_ips": ["10.0.0.0/33"]}, 422, "not an IPv4 or IPv6 address"),
            ({"allowed_ips": ["10.0.0.0/8"] * 101}, 400, "at most 100"),
        ]:
            response = admin.patch(path, json=body)
            assert response.status_code == status, (body, response.text)
            assert words in response.json()["message"], response.text
        made = admin.patch(path, json={"allowed_ips": ["10.1.2.3/8", "2001:DB8::1/128"]})
        assert made.json()["allowed_ips"] == ["10.0.0.0/8", "2001:db8::1"]
        cleared = admin.patch(path, json={"allowed_ips": []})
        assert cleared.json()["allowed_ips"] == []
        audit = admin.get("/v1/audit-events", params={"access_key": key["access_key"]}).json()
    details = [e["detail"] for e in audit["audit_events"] if e["action"] == "api_key.update"]
    assert "allowed_ips" in details


def test_the_cli_refuses_a_bad_policy_with_one_sentence(gateway: Gateway) -> None:
    bad = gateway.cli(
        "keys", "create", "--user", gateway.owner_id, "--rate-limit", "ten", check=False
    )
    assert bad.returncode == 2 and "is not a rate limit like 100/60s" in bad.stderr
    assert "Traceback" not in bad.stderr
    worse = gateway.cli(
        "keys", "create", "--user", gateway.owner_id, "--allow-ip", "10.0.0.300", check=False
    )
    assert worse.returncode != 0 and "not an IPv4 or IPv6 address" in worse.stderr
    assert "Traceback" not in worse.stderr


@pytest.mark.parametrize(
    ("entries", "client", "allowed"),
    [
        (["10.0.0.0/8"], "10.255.255.255", True),
        (["10.0.0.0/8"], "11.0.0.0", False),
        (["10.0.0.0/8"], "9.255.255.255", False),
        (["192.0.2.7"], "192.0.2.7", True),
        (["192.0.2.7"], "192.0.2.6", False),
        (["0.0.0.0/0"], "203.0.113.9", True),
        (["0.0.0.0/0"], "2001:db8::1", False),  # an IPv4 range holds no IPv6 address
        (["192.0.2.0/24"], "::ffff:192.0.2.9", True),  # IPv4-mapped: the IPv4 address
        (["2001:db8::/32"], "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", True),
        (["2001:db8::/32"], "2001:db9::", False),
        (["::/0"], "::1", True),
        (["fe80::/10"], "fe80::1%eth0", True),  # a zone is not part of the address
        (["10.0.0.0/8"], "unknown", False),
    ],
)
def test_allowlist_edges(entries: list[str], client: str, allowed: bool) -> None:
    assert allows(networks(allowed_ips(list(entries))), client) is allowed


def test_allowlist_entries_are_written_canonically() -> None:
    assert allowed_ips(["10.1.2.3/8", "10.0.0.7/32", "2001:0DB8::/32", "10.0.0.0/8"]) == (
        "10.0.0.0/8",
        "10.0.0.7",
        "2001:db8::/32",
    )
    for bad in (["10.0.0.0/33"], ["example.com"], [7], ["10.0.0.0/8"] * 101):
        with pytest.raises(PolicyError):
            allowed_ips(bad)
    assert ipaddress.ip_network("10.0.0.0/8") in networks(("10.0.0.0/8",))
