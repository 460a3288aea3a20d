"""The ASGI middleware: a Starlette app through httpx's ASGI transport, and the docs' example
service under uvicorn, revoked by the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.middleware import APIKeyMiddleware
from tests.support import (
    BOUND,
    ROOT,
    LoopThread,
    Upstream,
    free_socket,
    run_cli,
    wait_for,
    write_config,
)

RESTRICTED = """
[[routes]]
prefix = "/billing"
upstream = "http://127.0.0.1:9"
resource = "billing"
rate_limits = [{limit = 2, window_seconds = 60}]

[[routes]]
prefix = "/public"
upstream = "http://127.0.0.1:9"
auth = "optional"
"""


async def echo(request: Request) -> JSONResponse:
    key = request.state.api_key
    return JSONResponse(
        {
            "access_key": key.access_key if key is not None else None,
            "headers": dict(request.headers),
        }
    )


def made(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    config = write_config(tmp_path, "http://127.0.0.1:9", extra=RESTRICTED)
    init: dict[str, Any] = json.loads(run_cli("--config", str(config), "init", "--json").stdout)
    return config, init


def test_through_the_asgi_transport(tmp_path: Path, loop_thread: LoopThread) -> None:
    config, init = made(tmp_path)
    inner = Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST"])])
    app = APIKeyMiddleware(inner, config=config, exempt=["/healthz"])
    secret = init["secret_key"]
    # The last character changed: to "x", unless it was one already (then the key was valid).
    wrong = secret[:-1] + ("y" if secret.endswith("x") else "x")

    async def exchange() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        try:
            return await requests(transport)
        finally:
            await app.resources.stop()

    async def requests(transport: httpx.ASGITransport) -> dict[str, httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            forged = {"X-Auth-Access-Key": "GWKFORGED", "X_Auth_Bearer_Id": "forged"}
            answers = {
                "none": await client.get("/orders"),
                "key": await client.get("/orders", headers={"X-Auth-Token": secret, **forged}),
                "bearer": await client.get(
                    "/orders", headers={"Authorization": f"Bearer {secret}"}
                ),
                "wrong": await client.get("/orders", headers={"X-Auth-Token": wrong}),
                "odd": await client.get(
                    "/orders",
                    headers={
                        "X-Auth-Token": secret,
                        "Authorization": f"Token {secret}",
                        "Proxy-Authorization": f"Bearer {secret}",
                    },
                ),
                "exempt": await client.get("/healthz", headers=forged),
                "optional": await client.get("/public/x"),
            }
            for n in range(3):
                answers[f"limited{n}"] = await client.get(
                    "/billing/x", headers={"X-Auth-Token": secret}
                )
        return answers

    answers = loop_thread.run(exchange())
    none = answers["none"]
    assert none.status_code == 401 and none.json()["reason"] == "missing_token"
    assert none.headers["www-authenticate"] == "X-Auth-Token" and none.json()["request_id"]
    for name in ("key", "bearer"):
        body = answers[name].json()
        assert answers[name].status_code == 200 and body["access_key"] == init["access_key"]
        seen = body["headers"]
        assert seen["x-auth-access-key"] == init["access_key"]
        assert "x-auth-token" not in seen and "authorization" not in seen
        assert "x_auth_bearer_id" not in seen and "GWKFORGED" not in json.dumps(seen)
    assert answers["wrong"].json()["reason"] == "malformed_token"
    odd = answers["odd"].json()
    assert answers["odd"].status_code == 200 and secret[9:] not in json.dumps(odd["headers"])
    exempt = answers["exempt"].json()
    assert answers["exempt"].status_code == 200 and exempt["access_key"] is None
    assert "x-auth-access-key" not in exempt["headers"]  # forged ones removed even here
    assert answers["optional"].json()["access_key"] is None
    # the owner key is unrestricted; the route's own limit holds: 2 a minute
    assert [answers[f"limited{n}"].status_code for n in range(3)] == [200, 200, 429]
    assert answers["limited0"].headers["ratelimit-policy"] == '"route-2-per-60s";q=2;w=60'


def docs_example() -> str:
    """The middleware example of the docs (docs/integration.md), as written there."""
    text = (ROOT / "docs" / "integration.md").read_text()
    section = text.split("## The ASGI middleware", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "the docs' middleware section has no python example"
    return found.group(1)


def test_the_docs_example_under_uvicorn(tmp_path: Path, upstream: Upstream) -> None:
    config, init = made(tmp_path)
    (tmp_path / "service.py").write_text(docs_example())
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "service:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"X-Auth-Token": init["secret_key"]}
    try:

        def up() -> bool:
            try:
                return httpx.get(url + "/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=15, interval=0.1)
        assert httpx.get(url + "/whoami").status_code == 401
        me = httpx.get(url + "/whoami", headers=headers)
        assert me.status_code == 200 and me.json()["access_key"] == init["access_key"]
        run_cli("--config", str(config), "keys", "revoke", init["access_key"])
        wait_for(lambda: httpx.get(url + "/whoami", headers=headers).status_code == 401, BOUND)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert "Traceback" not in stderr, stderr
    del upstream


@pytest.mark.parametrize("path", ["/healthz", "/healthz/deep", "/healthzz"])
def test_exempt_paths_are_segments(tmp_path: Path, path: str) -> None:
    config, _ = made(tmp_path)
    app = APIKeyMiddleware(Starlette(), config=config, exempt=["/healthz/"])
    assert app._exempt(path) is (path != "/healthzz")


async def served(request: Request) -> JSONResponse:
    """Which handler ran, on which path, for whom."""
    key = request.state.api_key
    return JSONResponse(
        {
            "handler": request.scope["route"].path,
            "path": request.url.path,
            "access_key": key.access_key if key is not None else None,
        }
    )


async def asgi(app: Any, raw_path: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """One request as uvicorn hands it over (``path`` the percent-decoded ``raw_path``)."""
    from urllib.parse import unquote

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"app"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return {"status": sent[0]["status"], **json.loads(body)}


TRAVERSALS = [
    b"/api/internal/report/../../../healthz",
    b"/api/internal/report/..%2F..%2F..%2Fhealthz",
    b"/api/internal/report/..;/..;/..;/healthz",
    b"/api/internal/report/%2e%2e/%2E%2E/%2e%2e/healthz",
]


def test_the_app_routes_the_path_the_decision_was_made_on(
    tmp_path: Path, loop_thread: LoopThread
) -> None:
    config, init = made(tmp_path)
    inner = Starlette(
        routes=[Route("/healthz", served), Route("/api/{rest:path}", served)],
    )
    app = APIKeyMiddleware(inner, config=config, exempt=["/healthz"])
    key = [(b"x-auth-token", init["secret_key"].encode())]

    async def run() -> list[dict[str, Any]]:
        try:
            answers = [await asgi(app, raw, []) for raw in TRAVERSALS]
            answers.append(await asgi(app, b"/api/a%20b/./c", key))
            answers.append(await asgi(app, b"/api/%FF", key))  # no UTF-8 path to route
            answers.append(await asgi(app, b"/api/internal;x/y", key))
            answers.append(await asgi(app, b"/healthz.", []))
            return answers
        finally:
            await app.resources.stop()

    *escapes, keyed, undecodable, parameters, dotted = loop_thread.run(run())
    for raw, answer in zip(TRAVERSALS, escapes, strict=True):
        # The exempt path's own handler, never the protected one without a key.
        assert answer == {
            "status": 200,
            "handler": "/healthz",
            "path": "/healthz",
            "access_key": None,
        }, raw
    assert keyed["handler"] == "/api/{rest:path}" and keyed["path"] == "/api/a b/c"
    assert keyed["access_key"] == init["access_key"]
    for ambiguous in (undecodable, parameters, dotted):
        assert ambiguous["status"] == 400 and ambiguous["reason"] == "ambiguous_path"
