"""Forward-auth: the check endpoint asked the way each proxy asks it, then real nginx
(auth_request) and real Caddy (forward_auth) in front of a real upstream, each running the
configuration in docs/forward-auth/ as written (with this test's ports)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml

from core import assertion_keys
from core import config as config_module
from core.config import ConfigError
from core.identity import IDENTITY_HEADERS
from gateway.forward_auth import ForwardAuthApp
from gatewaycli.server import _Server, uvicorn_config
from tests.support import (
    BOUND,
    ROOT,
    Gateway,
    Upstream,
    config_text,
    free_socket,
    unavailable,
    wait_for,
)

DOCS = ROOT / "docs" / "forward-auth"
IDENTITY = IDENTITY_HEADERS


def extra(upstream: Upstream, rate_limited_status: int = 429, shape: str = "traefik") -> str:
    prefix = 'path_prefix = "/check"' if shape == "envoy" else ""
    return f"""
[[routes]]
prefix = "/limited"
upstream = "{upstream.url}"
rate_limits = [{{{{limit = 1, window_seconds = 60}}}}]

[[routes]]
prefix = "/elsewhere"
upstream = "{upstream.url}"
projects = ["not-this-one"]

[[routes]]
prefix = "/signed"
upstream = "{upstream.url}"
assertion = true

[[routes]]
prefix = "/billing"
upstream = "{upstream.url}"
resource = "billing"

[forward_auth]
shape = "{shape}"
{prefix}
rate_limited_status = {rate_limited_status}
"""


class Endpoint:
    """The forward-auth app on a port of its own, in the gateway's event loop."""

    def __init__(self, gateway: Gateway) -> None:
        self.sock = free_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = _Server(uvicorn_config(ForwardAuthApp(gateway.resources)))
        self.loop = gateway.loop
        self.serving = asyncio.run_coroutine_threadsafe(
            self.server.serve(sockets=[self.sock]), gateway.loop.loop
        )
        wait_for(lambda: self.server.started, timeout=10, interval=0.005)

    def stop(self) -> None:
        self.server.should_exit = True
        self.serving.result(timeout=10)
        self.sock.close()


@pytest.fixture
def checked(make_gateway: Any, upstream: Upstream) -> Iterator[tuple[Gateway, Endpoint]]:
    gateway: Gateway = make_gateway(extra=extra(upstream))
    endpoint = Endpoint(gateway)
    yield gateway, endpoint
    endpoint.stop()


SHAPED = {
    "traefik": (
        "GET",
        "/",
        {
            "X-Forwarded-Method": "POST",
            "X-Forwarded-Uri": "/echo/orders?page=2",
            "X-Forwarded-Host": "api.example",
            "X-Forwarded-For": "203.0.113.9",
        },
    ),
    "nginx": (
        "GET",
        "/",
        {"X-Original-Method": "DELETE", "X-Original-URI": "/echo/x", "X-Real-IP": "10.0.0.1"},
    ),
    "envoy": ("PUT", "/check/echo/x?y=1", {"X-Forwarded-For": "10.0.0.1"}),
}


@pytest.mark.parametrize("shape", SHAPED)
def test_each_proxys_question_is_understood(
    shape: str, make_gateway: Any, upstream: Upstream
) -> None:
    gateway: Gateway = make_gateway(extra=extra(upstream, shape=shape))
    endpoint = Endpoint(gateway)
    try:
        method, path, headers = SHAPED[shape]
        for key in (
            {"X-Auth-Token": gateway.secret_key},
            {"Authorization": f"Bearer {gateway.secret_key}"},
        ):
            response = httpx.request(method, endpoint.url + path, headers={**headers, **key})
            assert response.status_code == 200, (shape, response.text)
            assert response.content == b""
            assert response.headers["x-auth-access-key"] == gateway.access_key
            assert response.headers["x-project-id"] == gateway.project_id
            assert response.headers["x-request-id"]
        # Without what its proxy always sends, the check is not guessed at.
        bare = httpx.request(method, endpoint.url + "/", headers={"X-Auth-Token": "x"})
        assert bare.status_code == 400 and bare.json()["reason"] == "bad_check_request", bare.text
    finally:
        endpoint.stop()


def forged(uri: str, method: str, address: str) -> dict[str, str]:
    """What a client may send under every shape's names: each proxy passes the client's own
    headers to the check beside the ones it sets."""
    return {
        "x-forwarded-uri": uri,
        "x-forwarded-method": method,
        "x-original-uri": uri,
        "x-original-method": method,
        "x-real-ip": address,
        "x-forwarded-for": address,
    }


def asked(
    shape: str, method: str, uri: str, client: str, sent: dict[str, str]
) -> tuple[str, str, dict[str, str]]:
    """The check request ``shape``'s proxy makes for ``method uri`` from ``client`` with the
    client's headers ``sent``: the proxy's own headers replace (or, Envoy's X-Forwarded-For,
    extend) the client's."""
    if shape == "nginx":
        ours = {"x-original-method": method, "x-original-uri": uri, "x-real-ip": client}
        return "GET", "/", {**sent, **ours}
    if shape == "traefik":
        ours = {"x-forwarded-method": method, "x-forwarded-uri": uri, "x-forwarded-for": client}
        return "GET", "/", {**sent, **ours}
    chain = f"{sent['x-forwarded-for']}, {client}" if "x-forwarded-for" in sent else client
    return method, "/check" + uri, {**sent, "x-forwarded-for": chain}


@pytest.mark.parametrize("shape", SHAPED)
def test_only_the_configured_shape_is_believed(
    shape: str, make_gateway: Any, upstream: Upstream
) -> None:
    """The proxy's question, with every other shape's headers forged by the client: the answer
    is the one for the request the proxy serves."""
    gateway: Gateway = make_gateway(extra=extra(upstream, shape=shape))
    endpoint = Endpoint(gateway)
    reader = gateway.new_key(permissions=["billing:read"]).secret_key
    fenced = gateway.new_key(allowed_ips=["10.0.0.0/8"]).secret_key
    owner = gateway.secret_key
    cases = [
        # method, uri, client, key, forged (uri, method, address), status, reason
        ("GET", "/echo/x", "192.0.2.1", None, ("/open/x", "GET", "10.1.1.1"), 401),
        ("POST", "/billing/x", "192.0.2.1", reader, ("/billing/x", "GET", "10.1.1.1"), 403),
        ("GET", "/elsewhere/x", "192.0.2.1", owner, ("/echo/x", "GET", "10.1.1.1"), 403),
        ("GET", "/echo/x", "192.0.2.1", fenced, ("/echo/x", "GET", "10.1.1.1"), 403),
        ("GET", "/echo/x", "10.1.1.1", fenced, ("/echo/x", "GET", "192.0.2.1"), 200),
        ("GET", "/open/x", "192.0.2.1", None, ("/echo/x", "DELETE", "10.1.1.1"), 200),
    ]
    try:
        for method, uri, client, key, lie, status in cases:
            sent = forged(*lie)
            if key is not None:
                sent["x-auth-token"] = key
            verb, path, headers = asked(shape, method, uri, client, sent)
            answer = httpx.request(verb, endpoint.url + path, headers=headers)
            assert answer.status_code == status, (shape, method, uri, lie, answer.text)
    finally:
        endpoint.stop()


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ('listen = "127.0.0.1:0"', "shape is required"),
        ('listen = "127.0.0.1:0"\nshape = "caddy"', "must be one of nginx, traefik, envoy"),
        ('shape = "nginx"\npath_prefix = "/check"', 'for shape = "envoy"'),
    ],
)
def test_the_config_names_the_proxy_in_front(tmp_path: Path, table: str, complaint: str) -> None:
    text = config_text("http://127.0.0.1:9", extra=f"[forward_auth]\n{table}\n")
    with pytest.raises(ConfigError, match=re.escape(complaint)):
        config_module.parse(tomllib.loads(text), tmp_path / "gateway.toml")


def test_no_endpoint_without_a_shape(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway()  # no [forward_auth] shape
    with pytest.raises(ConfigError, match="shape is required"):
        ForwardAuthApp(gateway.resources)


def test_every_refusal(checked: tuple[Gateway, Endpoint]) -> None:
    gateway, endpoint = checked

    def ask(uri: str, secret: str | None = None, **more: str) -> httpx.Response:
        headers = {
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Uri": uri,
            "X-Forwarded-For": "192.0.2.9",
            **more,
        }
        if secret is not None:
            headers["X-Auth-Token"] = secret
        return httpx.get(endpoint.url + "/", headers=headers)

    missing = ask("/echo/x")
    assert missing.status_code == 401 and missing.json()["reason"] == "missing_token"
    assert missing.headers["www-authenticate"] == "X-Auth-Token"
    unknown = ask("/echo/x", gateway.resources.secret_format.generate())
    assert unknown.status_code == 401 and unknown.json()["reason"] == "invalid_token"
    project = ask("/elsewhere/x", gateway.secret_key)
    assert project.status_code == 403 and project.json()["reason"] == "project_not_allowed"
    plain = ("/open/x", "/open/%C3%A9", "/open/%c3%a9", "/open/a%20b", "/open/", "/open/~u")
    for path in plain:
        assert ask(path).status_code == 200, path
    for ambiguous in (
        "/open/internal;x/y",
        "/open/x.",
        "/open/x%3Bv=1",
        # What the proxy forwards as sent would be another path upstream than the one decided.
        "/echo/x/..%2F..%2Fopen/y",
        "/echo/x/../../open/y",
        "/echo/%2e%2e/open/y",
        "/echo/x\\..\\..\\open",
        "//open/x",
        "/open/%7Eu",
    ):
        answer = ask(ambiguous, gateway.secret_key)
        assert answer.status_code == 400 and answer.json()["reason"] == "ambiguous_path"
    nowhere = ask("/nowhere", gateway.secret_key)
    assert nowhere.status_code == 403 and nowhere.json()["reason"] == "no_route"
    assert ask("/limited/x", gateway.secret_key).status_code == 200
    limited = ask("/limited/x", gateway.secret_key)
    assert limited.status_code == 429 and limited.headers["retry-after"]
    fenced = gateway.new_key()
    with gateway.admin() as admin:
        admin.patch(f"/v1/api-keys/{fenced.key.access_key}", json={"allowed_ips": ["10.0.0.0/8"]})
    outside = ask("/echo/x", fenced.secret_key, **{"X-Forwarded-For": "10.1.1.1, 192.0.2.1"})
    assert outside.status_code == 403 and "192.0.2.1" in outside.json()["message"]
    inside = ask("/echo/x", fenced.secret_key, **{"X-Forwarded-For": "192.0.2.1, 10.1.1.1"})
    assert inside.status_code == 200
    anonymous = ask("/open/x")
    assert anonymous.status_code == 200 and "x-auth-access-key" not in anonymous.headers


def test_nginx_may_be_told_403_for_a_rate_limit(make_gateway: Any, upstream: Upstream) -> None:
    gateway: Gateway = make_gateway(extra=extra(upstream, rate_limited_status=403, shape="nginx"))
    endpoint = Endpoint(gateway)
    try:
        headers = {
            "X-Original-Method": "GET",
            "X-Original-URI": "/limited/x",
            "X-Real-IP": "192.0.2.1",
            "X-Auth-Token": gateway.secret_key,
        }
        assert httpx.get(endpoint.url, headers=headers).status_code == 200
        refused = httpx.get(endpoint.url, headers=headers)
        assert refused.status_code == 403 and refused.json()["reason"] == "rate_limited"
    finally:
        endpoint.stop()


# -- real proxies in front --------------------------------------------------------------------


def port() -> int:
    sock = free_socket()
    number: int = sock.getsockname()[1]
    sock.close()
    return number


def wait_port(number: int) -> None:
    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", number), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(answers, timeout=10)


def ours(text: str, front: int, upstream: Upstream, endpoint: Endpoint) -> str:
    """A documented configuration with this test's ports in place of the documented ones."""
    upstream_port = upstream.url.rsplit(":", 1)[1]
    auth_port = endpoint.url.rsplit(":", 1)[1]
    return (
        text.replace("127.0.0.1:8000", f"127.0.0.1:{front}")
        .replace("127.0.0.1:9000", f"127.0.0.1:{upstream_port}")
        .replace("127.0.0.1:8082", f"127.0.0.1:{auth_port}")
        .replace("127.0.0.1:2019", f"127.0.0.1:{port()}")  # Caddy's admin endpoint
    )


def binary(name: str, package: str) -> str:
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if found is None:
        unavailable(f"no {name} (apt-get install {package})")
    return found


def start_nginx(directory: Path, config: str, front: int) -> subprocess.Popen[bytes]:
    """nginx on the documented file (a whole configuration), its prefix ``directory``."""
    (directory / "nginx.conf").write_text(config)
    with (directory / "nginx.stderr").open("wb") as errors:
        process = subprocess.Popen(
            [
                binary("nginx", "nginx-light"),
                "-p",
                f"{directory}/",
                "-c",
                str(directory / "nginx.conf"),
                "-e",
                str(directory / "error.log"),
                "-g",
                "daemon off;",
            ],
            stderr=errors,
        )
    wait_port(front)
    return process


def start_caddy(directory: Path, config: str, front: int) -> subprocess.Popen[bytes]:
    """Caddy on the documented file, as written."""
    caddyfile = directory / "Caddyfile"
    caddyfile.write_text(config)
    env = {**os.environ, "XDG_DATA_HOME": str(directory), "XDG_CONFIG_HOME": str(directory)}
    process = subprocess.Popen(
        [binary("caddy", "caddy"), "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(front)
    return process


@pytest.mark.parametrize("proxy", ["nginx", "caddy"])
def test_a_real_proxy_in_front(
    proxy: str, make_gateway: Any, upstream: Upstream, tmp_path: Path
) -> None:
    status = 403 if proxy == "nginx" else 429
    shape = "nginx" if proxy == "nginx" else "traefik"  # Caddy asks as Traefik does
    assertion_keys.create(tmp_path / "assertion-keys.json", time.time())  # as `gateway init` does
    gateway: Gateway = make_gateway(extra=extra(upstream, status, shape))
    endpoint = Endpoint(gateway)
    front = port()
    documented = (DOCS / ("nginx.conf" if proxy == "nginx" else "Caddyfile")).read_text()
    site = ours(documented, front, upstream, endpoint)
    started = start_nginx if proxy == "nginx" else start_caddy
    url = f"http://127.0.0.1:{front}"
    spoofed = {name: "forged" for name in (*IDENTITY, "x-auth-assertion")}
    process = None
    try:
        process = started(tmp_path, site, front)
        new = gateway.new_key()
        headers = {"X-Auth-Token": new.secret_key, **spoofed}
        allowed = httpx.get(url + "/echo/x", headers=headers)
        assert allowed.status_code == 200, allowed.text
        seen = dict(upstream.last()["headers"])
        assert seen["x-auth-access-key"] == new.key.access_key  # ours, not the forged one
        assert seen["x-project-id"] == gateway.project_id
        assert "forged" not in str(upstream.last()) and "gws_live_" not in str(upstream.last())
        assert "x-auth-assertion" not in seen  # this route does not sign

        assert httpx.get(url + "/signed/x", headers=headers).status_code == 200
        signed = [v for k, v in upstream.last()["headers"] if k == "x-auth-assertion"]
        assert len(signed) == 1 and signed[0] != "forged"
        assert jwt.get_unverified_header(signed[0])["alg"] == "ES256"

        anonymous = httpx.get(url + "/open/x", headers=spoofed)
        assert anonymous.status_code == 200
        assert not any(name in dict(upstream.last()["headers"]) for name in spoofed), (
            upstream.last()
        )

        missing = httpx.get(url + "/echo/x")
        assert missing.status_code == 401
        assert missing.headers.get("www-authenticate") == "X-Auth-Token"
        wrong = {"X-Auth-Token": gateway.resources.secret_format.generate()}
        assert httpx.get(url + "/echo/x", headers=wrong).status_code == 401
        assert httpx.get(url + "/elsewhere/x", headers=headers).status_code == 403
        assert httpx.get(url + "/limited/x", headers=headers).status_code == 200
        limited = httpx.get(url + "/limited/x", headers=headers)
        assert limited.status_code == status
        if proxy == "caddy":  # Caddy passes the gateway's answer on as it is
            assert limited.json()["reason"] == "rate_limited" and limited.headers["retry-after"]

        # Every shape's headers forged by the client: each answer is the one for the request
        # the proxy serves, and none of these reaches the upstream.
        before = len(upstream.requests)
        reader = gateway.new_key(permissions=["billing:read"]).secret_key
        fenced = gateway.new_key(allowed_ips=["10.0.0.0/8"]).secret_key
        lies = [
            # nginx answers 500 for any status of its check but 401 and 403 (here a 400)
            ("GET", "/echo/x/..%2F..%2Fopen/y", None, {}, 500 if proxy == "nginx" else 400),
            ("GET", "/echo/x", None, forged("/open/x", "GET", "10.1.1.1"), 401),
            ("POST", "/billing/x", reader, forged("/billing/x", "GET", "10.1.1.1"), 403),
            ("GET", "/elsewhere/x", new.secret_key, forged("/echo/x", "GET", "10.1.1.1"), 403),
            ("GET", "/echo/x", fenced, forged("/echo/x", "GET", "10.1.1.1"), 403),
        ]
        for method, path, secret, lie, refused in lies:
            sent = {**lie, **({"X-Auth-Token": secret} if secret else {})}
            answer = httpx.request(method, url + path, headers=sent)
            assert answer.status_code == refused, (method, path, answer.text)
        assert len(upstream.requests) == before
        home = gateway.new_key(allowed_ips=["127.0.0.1/32"]).secret_key  # the proxy's own word
        lie = forged("/echo/x", "GET", "10.1.1.1")
        assert httpx.get(url + "/echo/x", headers={**lie, "X-Auth-Token": home}).status_code == 200

        gateway.cli("keys", "revoke", new.key.access_key)
        wait_for(lambda: httpx.get(url + "/echo/x", headers=headers).status_code == 401, BOUND)
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        endpoint.stop()


OVERRIDE_HEADERS = (
    "x-http-method-override",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
)


def test_the_traefik_and_envoy_files_hold_what_their_shape_needs() -> None:
    """Neither proxy is packaged here: their files are read for the settings the endpoint's
    shape relies on (its check requests are sent as they send them above)."""
    cleared = {*(h.lower() for h in IDENTITY), "x-auth-assertion", *OVERRIDE_HEADERS}
    static = yaml.safe_load((DOCS / "traefik.yml").read_text())
    assert static["entryPoints"]["web"]["address"] == "127.0.0.1:8000"
    assert "forwardedHeaders" not in static["entryPoints"]["web"]  # a client's X-Forwarded-*: no
    dynamic = static["providers"]["file"]["filename"]
    traefik = yaml.safe_load((DOCS / dynamic).read_text())["http"]
    assert traefik["routers"]["api"]["entryPoints"] == ["web"]
    assert traefik["routers"]["api"]["middlewares"] == ["strip-identity", "gateway-auth"]
    emptied = traefik["middlewares"]["strip-identity"]["headers"]["customRequestHeaders"]
    assert {k.lower() for k, v in emptied.items() if v == ""} >= cleared
    assert traefik["middlewares"]["gateway-auth"]["forwardAuth"]["trustForwardHeader"] is False

    envoy = yaml.safe_load((DOCS / "envoy.yaml").read_text())["static_resources"]
    manager = envoy["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["use_remote_address"] is True  # the last X-Forwarded-For entry is Envoy's
    filters = {f["name"].rsplit(".", 1)[1]: f["typed_config"] for f in manager["http_filters"]}
    assert list(filters) == ["header_mutation", "ext_authz", "router"]  # cleared, then asked
    removed = {m["remove"] for m in filters["header_mutation"]["mutations"]["request_mutations"]}
    assert removed >= cleared
    assert filters["ext_authz"]["http_service"]["path_prefix"] == "/check"
    assert filters["ext_authz"]["failure_mode_allow"] is False
    route = manager["route_config"]["virtual_hosts"][0]["routes"][0]
    assert {"x-auth-token", "authorization"} <= set(route["request_headers_to_remove"])


def test_a_reload_without_a_shape_keeps_the_running_one(
    checked: tuple[Gateway, Endpoint], caplog: pytest.LogCaptureFixture
) -> None:
    gateway, _ = checked
    app = ForwardAuthApp(gateway.resources)
    unnamed = dataclasses.replace(
        gateway.config, forward_auth=dataclasses.replace(gateway.config.forward_auth, shape="")
    )
    app.apply(unnamed)
    assert app.settings.shape == "traefik"
    assert "shape is required" in caplog.text
