"""Forward-auth: the check endpoint asked the way each proxy asks it, then real nginx
(auth_request) and real Caddy (forward_auth) in front of a real upstream, each running the
configuration in docs/forward-auth/ as written (with this test's ports)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from core import assertion_keys
from core.identity import IDENTITY_HEADERS
from gateway.forward_auth import ForwardAuthApp
from gatewaycli.server import _Server, uvicorn_config
from tests.support import BOUND, ROOT, Gateway, Upstream, free_socket, unavailable, wait_for

DOCS = ROOT / "docs" / "forward-auth"
IDENTITY = IDENTITY_HEADERS


def extra(upstream: Upstream, rate_limited_status: int = 429) -> str:
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

[forward_auth]
path_prefix = "/check"
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


def test_each_proxys_question_is_understood(checked: tuple[Gateway, Endpoint]) -> None:
    gateway, endpoint = checked
    key = {"X-Auth-Token": gateway.secret_key}
    shapes = {
        "traefik/caddy": (
            "GET",
            "/",
            {
                "X-Forwarded-Method": "POST",
                "X-Forwarded-Uri": "/echo/orders?page=2",
                "X-Forwarded-Host": "api.example",
                "X-Forwarded-For": "203.0.113.9",
                **key,
            },
        ),
        "nginx": (
            "GET",
            "/",
            {"X-Original-Method": "DELETE", "X-Original-URI": "/echo/x", **key},
        ),
        "envoy": (
            "PUT",
            "/check/echo/x?y=1",
            {"Authorization": f"Bearer {gateway.secret_key}", "X-Forwarded-For": "10.0.0.1"},
        ),
    }
    for name, (method, path, headers) in shapes.items():
        response = httpx.request(method, endpoint.url + path, headers=headers)
        assert response.status_code == 200, (name, response.text)
        assert response.content == b""
        assert response.headers["x-auth-access-key"] == gateway.access_key, name
        assert response.headers["x-project-id"] == gateway.project_id, name
        assert response.headers["x-request-id"]


def test_every_refusal(checked: tuple[Gateway, Endpoint]) -> None:
    gateway, endpoint = checked

    def ask(uri: str, secret: str | None = None, **more: str) -> httpx.Response:
        headers = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": uri, **more}
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
    gateway: Gateway = make_gateway(extra=extra(upstream, rate_limited_status=403))
    endpoint = Endpoint(gateway)
    try:
        headers = {"X-Original-URI": "/limited/x", "X-Auth-Token": gateway.secret_key}
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
        .replace(":8000 {", f"http://127.0.0.1:{front} {{")
        .replace("127.0.0.1:9000", f"127.0.0.1:{upstream_port}")
        .replace("127.0.0.1:8082", f"127.0.0.1:{auth_port}")
    )


def binary(name: str, package: str) -> str:
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if found is None:
        unavailable(f"no {name} (apt-get install {package})")
    return found


def start_nginx(directory: Path, site: str, front: int) -> subprocess.Popen[bytes]:
    (directory / "site.conf").write_text(site)
    for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / temp).mkdir(exist_ok=True)
    (directory / "nginx.conf").write_text(
        f"""
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/site.conf;
}}
"""
    )
    process = subprocess.Popen(
        [
            binary("nginx", "nginx-light"),
            "-p",
            str(directory),
            "-c",
            str(directory / "nginx.conf"),
            "-e",
            str(directory / "error.log"),
            "-g",
            "daemon off;",
        ]
    )
    wait_port(front)
    return process


def start_caddy(directory: Path, site: str, front: int) -> subprocess.Popen[bytes]:
    caddyfile = directory / "Caddyfile"
    caddyfile.write_text("{\n\tadmin off\n\tauto_https off\n}\n\n" + site)
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
    assertion_keys.create(tmp_path / "assertion-keys.json", time.time())  # as `gateway init` does
    gateway: Gateway = make_gateway(extra=extra(upstream, rate_limited_status=status))
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

        gateway.cli("keys", "revoke", new.key.access_key)
        wait_for(lambda: httpx.get(url + "/echo/x", headers=headers).status_code == 401, BOUND)
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        endpoint.stop()
