"""Signed identity for upstreams: the X-Auth-Assertion JWT, verified the way an upstream would,
with an independent library (PyJWT) and the keys it fetches from the gateway's JWKS."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from core import assertion_keys
from core.assertion_keys import KeyFileError
from gateway.assertions import REUSE_FRACTION
from tests.support import (
    ROOT,
    Gateway,
    Upstream,
    build_gateway,
    run_cli,
    write_config,
)
from tests.test_forward_auth import Endpoint

ISSUER = "https://gateway.test"
TTL = 60


def routes(upstream: Upstream) -> str:
    return f"""
[[routes]]
prefix = "/signed"
upstream = "{upstream.url}"
assertion = true

[[routes]]
prefix = "/billing"
upstream = "{upstream.url}"
assertion = true
audience = "https://billing.internal"

[forward_auth]
shape = "nginx"

[assertion]
issuer = "{ISSUER}"
ttl_seconds = {TTL}
jwks_on_proxy = true
"""


def keyed(directory: Path, upstream: Upstream) -> tuple[Gateway, Any]:
    """A gateway whose key file exists, as `gateway init` leaves it."""
    assertion_keys.create(directory / "assertion-keys.json", time.time())
    return build_gateway(directory, upstream.url, routes(upstream))


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Gateway]:
    gateway, running = keyed(Path(tmp_path_factory.mktemp("assertions")), upstream)
    yield gateway
    running.stop()


def call(gateway: Gateway, path: str, secret: str | None = None, **headers: str) -> httpx.Response:
    if secret is not None:
        headers["X-Auth-Token"] = secret
    response = httpx.get(gateway.url + path, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response


def received(response: httpx.Response) -> list[str]:
    """Every X-Auth-Assertion the upstream received (the echo upstream says what it saw)."""
    return [v for k, v in response.json()["headers"] if k == "x-auth-assertion"]


def assertion_of(response: httpx.Response) -> str:
    [token] = received(response)
    return token


def verify(gateway: Gateway, token: str, audience: str, **options: Any) -> dict[str, Any]:
    """What an upstream does: the key named by the token's kid, from the gateway's JWKS."""
    client = jwt.PyJWKClient(gateway.admin_url + "/.well-known/jwks.json", cache_keys=False)
    key = client.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["ES256"], audience=audience, issuer=ISSUER, **options
    )
    return claims


def test_an_upstream_verifies_who_is_calling(signed: Gateway, upstream: Upstream) -> None:
    response = call(signed, "/signed/orders", signed.secret_key)
    token = assertion_of(response)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    claims = verify(signed, token, audience=upstream.url)  # default audience: upstream origin
    assert claims["iss"] == ISSUER and claims["aud"] == upstream.url
    assert claims["sub"] == signed.owner_id and claims["bearer_type"] == "user"
    assert claims["project_id"] == signed.project_id
    assert claims["access_key"] == signed.access_key and claims["mode"] == "live"
    assert claims["organization_id"] == dict(response.json()["headers"])["x-organization-id"]
    assert claims["exp"] - claims["iat"] == TTL
    assert abs(claims["iat"] - signed.clock()) < 5
    assert re.fullmatch(r"[0-9a-f]{32}", claims["jti"])
    # The identity headers still arrive beside it, for upstreams that do not verify.
    assert dict(response.json()["headers"])["x-auth-access-key"] == signed.access_key


def test_the_jti_is_the_gateways_never_the_clients(signed: Gateway, upstream: Upstream) -> None:
    fresh = signed.new_key().secret_key  # no assertion held for it yet: signed for this request
    chosen = "a-request-id-the-client-chose"
    response = call(signed, "/signed/x", fresh, **{"X-Request-ID": chosen})
    assert response.headers["x-request-id"] == chosen  # the request keeps its id
    claims = verify(signed, assertion_of(response), audience=upstream.url)
    assert claims["jti"] != chosen and re.fullmatch(r"[0-9a-f]{32}", claims["jti"])


def test_each_route_names_its_audience(signed: Gateway, upstream: Upstream) -> None:
    token = assertion_of(call(signed, "/billing/invoices", signed.secret_key))
    assert verify(signed, token, audience="https://billing.internal")["aud"] == (
        "https://billing.internal"
    )
    with pytest.raises(jwt.InvalidAudienceError):
        verify(signed, token, audience=upstream.url)  # replayed to another upstream: refused


def test_a_tampered_assertion_is_refused(signed: Gateway, upstream: Upstream) -> None:
    token = assertion_of(call(signed, "/signed/x", signed.secret_key))
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["project_id"] = "prj_someone_else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(jwt.InvalidSignatureError):
        verify(signed, f"{header}.{forged}.{signature}", audience=upstream.url)
    with pytest.raises(jwt.InvalidTokenError):  # signed by someone else's key, same kid
        other = assertion_keys.new_key(time.time()).private_key
        fake = jwt.encode(claims, other, algorithm="ES256", headers={"kid": _kid(token)})
        verify(signed, fake, audience=upstream.url)


def _kid(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def test_an_expired_assertion_is_refused(signed: Gateway, upstream: Upstream) -> None:
    made = signed.new_key()  # a key with no assertion held yet, signed an hour ago
    signed.clock.advance(-3600)
    try:
        token = assertion_of(call(signed, "/signed/x", made.secret_key))
    finally:
        signed.clock.advance(3600)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(signed, token, audience=upstream.url)


def test_an_assertion_is_reused_for_most_of_its_life(signed: Gateway) -> None:
    made = signed.new_key()
    first = call(signed, "/signed/a", made.secret_key)
    second = call(signed, "/signed/b", made.secret_key)
    assert assertion_of(first) == assertion_of(second)  # signed once
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    other_route = assertion_of(call(signed, "/billing/a", made.secret_key))
    assert other_route != assertion_of(first)  # another audience: another assertion
    signed.clock.advance(TTL * REUSE_FRACTION)
    try:
        renewed = assertion_of(call(signed, "/signed/c", made.secret_key))
    finally:
        signed.clock.advance(-TTL * REUSE_FRACTION)
    assert renewed != assertion_of(first)
    claims = jwt.decode(renewed, options={"verify_signature": False})
    assert (
        claims["iat"]
        >= jwt.decode(assertion_of(first), options={"verify_signature": False})["iat"]
        + TTL * REUSE_FRACTION
        - 1
    )


def test_a_changed_key_gets_a_new_assertion_at_once(signed: Gateway, upstream: Upstream) -> None:
    made = signed.new_key()
    before = assertion_of(call(signed, "/signed/x", made.secret_key))
    project = json.loads(signed.cli("projects", "create", "elsewhere", "--json").stdout)
    signed.cli("keys", "edit", made.key.access_key, "--project", project["id"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        after = assertion_of(call(signed, "/signed/x", made.secret_key))
        if after != before:
            break
        time.sleep(0.05)
    assert verify(signed, after, audience=upstream.url)["project_id"] == project["id"]
    signed.cli("keys", "revoke", made.key.access_key)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        refused = httpx.get(signed.url + "/signed/x", headers={"X-Auth-Token": made.secret_key})
        if refused.status_code == 401:
            break
        time.sleep(0.05)
    assert refused.status_code == 401  # a revoked key gets no assertion, held or new


def test_a_client_sent_assertion_never_reaches_an_upstream(signed: Gateway) -> None:
    forged = {"X-Auth-Assertion": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."}
    ours = assertion_of(call(signed, "/signed/x", signed.secret_key, **forged))
    assert ours != forged["X-Auth-Assertion"]  # exactly one: the gateway's
    for path, secret in (("/echo/x", signed.secret_key), ("/open/x", None), ("/maybe/x", None)):
        assert received(call(signed, path, secret, **forged)) == []
        assert received(call(signed, path, secret, **{"X_Auth_Assertion": "forged"})) == []
        seen = dict(call(signed, path, secret, **{"X_Auth_Assertion": "x"}).json()["headers"])
        assert "x_auth_assertion" not in seen


def test_the_jwks_is_served_on_both_listeners(signed: Gateway) -> None:
    admin = httpx.get(signed.admin_url + "/.well-known/jwks.json")
    proxy = httpx.get(signed.url + "/.well-known/jwks.json")  # [assertion] jwks_on_proxy
    assert admin.status_code == proxy.status_code == 200
    assert admin.json() == proxy.json()
    [key] = admin.json()["keys"]
    assert set(key) == {"kty", "crv", "x", "y", "kid", "use", "alg"}  # no "d": public only
    assert key["alg"] == "ES256" and key["crv"] == "P-256"


def test_forward_auth_hands_the_assertion_to_the_proxy(signed: Gateway, upstream: Upstream) -> None:
    endpoint = Endpoint(signed)
    try:
        answer = httpx.get(
            endpoint.url + "/",
            headers={
                "X-Original-Method": "GET",
                "X-Original-URI": "/signed/x",
                "X-Real-IP": "192.0.2.1",
                "X-Auth-Token": signed.secret_key,
            },
        )
    finally:
        endpoint.stop()
    assert answer.status_code == 200
    assert verify(signed, answer.headers["x-auth-assertion"], audience=upstream.url)["sub"] == (
        signed.owner_id
    )


def test_a_rotation_keeps_the_old_key_until_its_assertions_expire(
    tmp_path: Path, upstream: Upstream
) -> None:
    gateway, running = keyed(tmp_path, upstream)
    try:
        old = assertion_of(call(gateway, "/signed/x", gateway.secret_key))
        rotated = json.loads(gateway.cli("assertion-key", "rotate", "--json").stdout)
        assert rotated["retired"][0]["kid"] == _kid(old) != rotated["kid"]
        gateway.loop.run(gateway.resources.housekeeping.round())  # the round that notices it
        new = assertion_of(call(gateway, "/signed/x", gateway.secret_key))
        assert _kid(new) == rotated["kid"]
        published = {
            key["kid"]
            for key in httpx.get(gateway.admin_url + "/.well-known/jwks.json").json()["keys"]
        }
        assert published == {_kid(old), _kid(new)}
        verify(gateway, old, audience=upstream.url)  # what was signed before still verifies
        gateway.clock.advance(TTL + assertion_keys.PUBLISH_SLACK_SECONDS + 1)
        published_later = httpx.get(gateway.admin_url + "/.well-known/jwks.json").json()["keys"]
        assert [key["kid"] for key in published_later] == [rotated["kid"]]
        listed = json.loads(gateway.cli("assertion-key", "list", "--json").stdout)["keys"]
        assert [key["state"] for key in listed] == ["signing", "retired"]
    finally:
        running.stop()


def test_without_a_signing_key_a_signing_route_answers_503(
    make_gateway: Any, upstream: Upstream
) -> None:
    gateway: Gateway = make_gateway(routes(upstream))  # no key file made
    refused = httpx.get(gateway.url + "/signed/x", headers={"X-Auth-Token": gateway.secret_key})
    assert refused.status_code == 503 and refused.json()["reason"] == "assertion_unavailable"
    assert call(gateway, "/echo/x", gateway.secret_key)  # routes that do not sign are served


# -- the key file ---------------------------------------------------------------------------------


def test_the_key_file_is_private_and_whole(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    made = assertion_keys.create(path, 1000.0)
    assert made is not None and assertion_keys.create(path, 2000.0) is None  # kept
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [key.kid for key in assertion_keys.load(path)] == [made.kid]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left beside it
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        assertion_keys.load(path)
    path.chmod(0o600)
    path.write_text('{"keys": [{"private_key": "not a key"}]}')
    with pytest.raises(KeyFileError, match="not an assertion key file"):
        assertion_keys.load(path)


def test_rotations_drop_keys_nobody_can_need(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = assertion_keys.create(path, 1000.0)
    assert first is not None
    second = assertion_keys.rotate(path, 2000.0, TTL)
    assert [key.kid for key in second.retired] == [first.kid] and second.dropped == ()
    keys = assertion_keys.load(path)
    signer = assertion_keys.signing_key(keys)
    assert signer is not None and signer.kid == second.new.kid
    shown = [key["kid"] for key in assertion_keys.public_keys(keys, 2000.0 + TTL, TTL)]
    assert shown == [second.new.kid, first.kid]  # its assertions may still be valid
    gone = 2000.0 + TTL + assertion_keys.PUBLISH_SLACK_SECONDS
    assert [key["kid"] for key in assertion_keys.public_keys(keys, gone, TTL)] == [second.new.kid]
    third = assertion_keys.rotate(path, gone, TTL)
    assert third.dropped == (first.kid,)
    assert {key.kid for key in assertion_keys.load(path)} == {second.new.kid, third.new.kid}


def test_init_makes_the_key_and_serve_needs_it(tmp_path: Path, upstream: Upstream) -> None:
    config = write_config(tmp_path, upstream.url, routes(upstream))
    made = json.loads(run_cli("--config", str(config), "init", "--json").stdout)
    key_file = tmp_path / "assertion-keys.json"
    assert made["assertion_key"] == {
        "key_file": str(key_file),
        "created": True,
        "kid": made["assertion_key"]["kid"],
    }
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    again = run_cli("--config", str(config), "init")
    assert "(kept)" in again.stdout and "PRIVATE" not in again.stdout + again.stderr
    listed = run_cli("--config", str(config), "assertion-key", "list")
    assert made["assertion_key"]["kid"] in listed.stdout and "PRIVATE" not in listed.stdout
    key_file.unlink()
    refused = run_cli("--config", str(config), "serve", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"gateway: {key_file}: no assertion key file; create it with `gateway init` or "
        "`gateway assertion-key rotate`"
    )


def docs_blocks() -> tuple[str, str]:
    """The docs' assertion configuration and upstream verifier, as written there."""
    text = (ROOT / "docs" / "integration.md").read_text()
    section = text.split("## Signed identity for upstreams", 1)[1]
    section = section.split("\n## ", 1)[0]
    toml = re.search(r"```toml\n(.*?)```", section, re.S)
    python = re.search(r"```python\n(.*?)```", section, re.S)
    assert toml is not None and python is not None, "the docs' assertion section lost a block"
    return toml.group(1), python.group(1)


def test_the_docs_configuration_and_verifier(tmp_path: Path, upstream: Upstream) -> None:
    toml, python = docs_blocks()
    assertion_keys.create(tmp_path / "assertion-keys.json", time.time())
    extra = toml.replace("http://127.0.0.1:9000", upstream.url)
    gateway, running = build_gateway(tmp_path, upstream.url, extra)
    try:
        namespace: dict[str, Any] = {}
        exec(python.replace("http://127.0.0.1:8081", gateway.admin_url), namespace)
        seen = dict(call(gateway, "/billing/invoices", gateway.secret_key).json()["headers"])
        claims = namespace["caller"](seen)
        assert claims["access_key"] == gateway.access_key
        assert claims["aud"] == "https://billing.internal" and claims["iss"] == (
            "https://gateway.example"
        )
        jwks = httpx.get(gateway.url + "/.well-known/jwks.json")  # jwks_on_proxy = true
        assert jwks.status_code == 200 and jwks.json()["keys"]
        with pytest.raises(jwt.InvalidTokenError):
            namespace["caller"]({"x-auth-assertion": seen["x-auth-assertion"][:-4] + "AAAA"})
    finally:
        running.stop()
