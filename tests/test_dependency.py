"""The FastAPI dependency beside the middleware: a real FastAPI app through httpx's ASGI
transport, keys made by the CLI, and the app's OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from core.identity import Identity
from gateway.dependency import require_key
from gateway.middleware import APIKeyMiddleware
from tests.support import LoopThread, run_cli, write_config

ROUTES = """
[[routes]]
prefix = "/invoices"
upstream = "http://127.0.0.1:9"
resource = "billing"
"""  # and the test config's own: /maybe is `optional`

Key = Annotated[Identity, Depends(require_key())]
Reader = Annotated[Identity, Depends(require_key("billing", "read"))]
Writer = Annotated[Identity, Depends(require_key("billing", "write"))]


def service() -> FastAPI:
    api = FastAPI()

    @api.get("/invoices")
    async def listed(key: Reader) -> dict[str, str]:
        return {"access_key": key.access_key}

    @api.post("/invoices")
    async def created(key: Writer) -> dict[str, str]:
        return {"access_key": key.access_key}

    @api.get("/maybe/me")
    async def me(key: Key) -> dict[str, str]:
        return {"access_key": key.access_key}

    return api


def keys(config: Path, owner: str, *permissions: str) -> str:
    options = [f"--permission={p}" for p in permissions]
    made = run_cli("--config", str(config), "keys", "create", "--user", owner, "--json", *options)
    secret: str = json.loads(made.stdout)["secret_key"]
    return secret


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    config = write_config(tmp_path, "http://127.0.0.1:9", extra=ROUTES)
    init: dict[str, Any] = json.loads(run_cli("--config", str(config), "init", "--json").stdout)
    return config, init


def test_require_key_in_a_fastapi_app(
    made: tuple[Path, dict[str, Any]], loop_thread: LoopThread
) -> None:
    config, init = made
    owner, secret = init["user_id"], init["secret_key"]
    reader = keys(config, owner, "billing:read")
    writer = keys(config, owner, "billing:write")
    app = APIKeyMiddleware(service(), config=config)
    cases = [
        # method, path, secret, status, reason
        ("GET", "/invoices", secret, 200, None),  # unrestricted: every permission
        ("POST", "/invoices", secret, 200, None),
        ("GET", "/invoices", reader, 200, None),
        ("GET", "/invoices", writer, 200, None),  # write includes read
        ("POST", "/invoices", writer, 200, None),
        ("GET", "/maybe/me", secret, 200, None),
        ("GET", "/maybe/me", None, 401, "missing_token"),  # the route lets it through; not here
    ]

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                answers = []
                for method, path, key, _, _ in cases:
                    headers = {"X-Auth-Token": key} if key else {}
                    answers.append(await client.request(method, path, headers=headers))
                return answers
        finally:
            await app.resources.stop()

    for (method, path, _, status, reason), answer in zip(
        cases, loop_thread.run(run()), strict=True
    ):
        assert answer.status_code == status, (method, path, answer.text)
        if reason is not None:  # the gateway's JSON error, as the proxy answers it
            body = answer.json()
            assert body["reason"] == reason and body["request_id"] and body["message"]
            assert answer.headers["www-authenticate"] == "X-Auth-Token"


def test_a_restricted_key_lacking_the_permission(
    made: tuple[Path, dict[str, Any]], loop_thread: LoopThread
) -> None:
    config, init = made
    reader = keys(config, init["user_id"], "billing:read")
    api = FastAPI()

    @api.get("/invoices/export")  # a read the route allows, a write this handler asks for
    async def export(key: Writer) -> dict[str, str]:
        return {"access_key": key.access_key}

    app = APIKeyMiddleware(api, config=config)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                return await client.get("/invoices/export", headers={"X-Auth-Token": reader})
        finally:
            await app.resources.stop()

    answer = loop_thread.run(run())
    assert answer.status_code == 403, answer.text
    assert answer.json()["reason"] == "insufficient_permissions"
    assert "billing:write" in answer.json()["message"]


def test_the_openapi_document_names_the_keys_schemes() -> None:
    document = service().openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["APIKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Auth-Token",
        "description": schemes["APIKey"]["description"],
    }
    assert schemes["APIKeyBearer"]["type"] == "http"
    assert schemes["APIKeyBearer"]["scheme"] == "bearer"
    # Either carrier: two security requirements, each enough alone (OpenAPI 3.1 §4.8.10).
    security = document["paths"]["/invoices"]["get"]["security"]
    assert {"APIKey": []} in security and {"APIKeyBearer": []} in security


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (("billing", None), "together"),
        (("Billing!", "read"), "name such as"),
        (("billing", "delete"), "'read' or 'write'"),
    ],
)
def test_require_key_is_told_plainly_what_is_wrong(arguments: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        require_key(*arguments)
