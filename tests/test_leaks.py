"""The leak-response loop: GitHub's secret-scanning reports (ECDSA-signed; the test stands in its
own key pair) and the public revocation endpoint revoke our keys at once, say where they leaked,
and change nothing when the signature is wrong."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from admin.github_keys import GitHubKeys, KeysUnavailable
from core import config as config_module
from core.config import ConfigError
from core.lifeconfig import LeaksConfig
from core.tokens import generate_secret_key, hash_secret
from gatewaycli.server import _Server, leaks_app, uvicorn_config
from tests.support import (
    BOTH_STORES,
    BOUND,
    FakeClock,
    Gateway,
    LoopThread,
    free_socket,
    run_cli,
    spawn_cli,
    stop_serve,
    unbuffered_line,
    wait_for,
    write_config,
)

BACKENDS = BOTH_STORES
KEY_ID = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"


def public_keys(*keys: tuple[str, ec.EllipticCurvePrivateKey]) -> str:
    return json.dumps(
        {
            "public_keys": [
                {
                    "key_identifier": name,
                    "key": key.public_key()
                    .public_bytes(
                        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                    )
                    .decode(),
                    "is_current": True,
                }
                for name, key in keys
            ]
        }
    )


@pytest.fixture(scope="module")
def github_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def signed(key: ec.EllipticCurvePrivateKey, body: bytes, key_id: str = KEY_ID) -> dict[str, str]:
    signature = base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
    return {
        "Github-Public-Key-Identifier": key_id,
        "Github-Public-Key-Signature": signature,
        "Content-Type": "application/json",
    }


@pytest.fixture
def leaky(
    make_gateway: Any, tmp_path: Path, github_key: ec.EllipticCurvePrivateKey
) -> Iterator[tuple[Gateway, str]]:
    """A gateway and its leak listener (a real socket on the gateway's loop)."""
    keys = tmp_path / "github-keys.json"
    keys.write_text(public_keys((KEY_ID, github_key)))
    gateway: Gateway = make_gateway(
        f'[leaks]\nlisten = "127.0.0.1:0"\ngithub_keys_file = "{keys}"\n'
        "revoke_requests_per_minute = 5"
    )
    sock = free_socket()
    server = _Server(uvicorn_config(leaks_app(gateway.resources)))
    serving = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), gateway.loop.loop)
    wait_for(lambda: server.started, timeout=10, interval=0.005)
    yield gateway, f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    serving.result(15)
    sock.close()


def subscribe(gateway: Gateway) -> str:
    with gateway.admin() as admin:
        made = admin.post(
            "/v1/webhooks",
            json={"url": "http://127.0.0.1:1/h", "events": ["key.leaked", "key.revoked"]},
        )
    hook_id: str = made.json()["id"]
    return hook_id


def proxy_status(gateway: Gateway, secret: str) -> int:
    with gateway.client() as client:
        return client.get("/echo/x", headers={"X-Auth-Token": secret}).status_code


def test_a_github_report_revokes_our_key_and_says_where(
    leaky: tuple[Gateway, str], github_key: ec.EllipticCurvePrivateKey
) -> None:
    gateway, url = leaky
    hook_id = subscribe(gateway)
    leaked = gateway.new_key(description="pushed by mistake")
    assert proxy_status(gateway, leaked.secret_key) == 200
    stranger = generate_secret_key("gws")  # well formed, checksum right, not ours
    where = "https://github.com/someone/repo/blob/abc/config.py"
    report = [
        {"token": leaked.secret_key, "type": "gateway_key", "url": where, "source": "content"},
        {"token": stranger, "type": "gateway_key", "url": where, "source": "content"},
        {"token": "gws_live_typo", "type": "gateway_key", "url": where, "source": "commit"},
    ]
    body = json.dumps(report).encode()
    answer = httpx.post(
        url + "/v1/github/secret-scanning", content=body, headers=signed(github_key, body)
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == [
        {
            "token_hash": hash_secret(token).hex(),
            "token_type": "gateway_key",
            "label": label,
        }
        for token, label in (
            (leaked.secret_key, "true_positive"),
            (stranger, "false_positive"),
            ("gws_live_typo", "false_positive"),
        )
    ]
    assert leaked.secret_key not in answer.text  # hashes only
    wait_for(lambda: proxy_status(gateway, leaked.secret_key) == 401, timeout=BOUND)
    access_key = leaked.key.access_key
    with gateway.admin() as admin:
        audit = admin.get("/v1/audit-events", params={"access_key": access_key}).json()
        leaks = admin.get("/v1/leaks").json()["leaks"]
        log = admin.get(f"/v1/webhooks/{hook_id}/deliveries").json()["deliveries"]
        gone = admin.get(f"/v1/api-keys/{access_key}")
    detail = {e["action"]: e["detail"] for e in audit["audit_events"]}
    assert where in detail["api_key.leaked"] and detail["api_key.delete"] == "leaked"
    assert [(x["access_key"], x["url"], x["reporter"]) for x in leaks] == [
        (access_key, where, "github")
    ]
    assert [d["event_type"] for d in reversed(log)] == ["key.leaked", "key.revoked"]
    assert gone.status_code == 404 and gone.json()["reason"] == "revoked"
    assert f"reported leaked at {where}" in gone.json()["message"]  # the key says where


@pytest.mark.parametrize(
    "forge",
    ["another key pair", "tampered body", "unknown key id", "no signature", "not base64"],
)
def test_a_badly_signed_report_changes_nothing(
    leaky: tuple[Gateway, str], github_key: ec.EllipticCurvePrivateKey, forge: str
) -> None:
    gateway, url = leaky
    leaked = gateway.new_key()
    body = json.dumps([{"token": leaked.secret_key, "type": "t", "url": "u", "source": "s"}])
    raw = body.encode()
    headers = signed(github_key, raw)
    if forge == "another key pair":
        headers = signed(ec.generate_private_key(ec.SECP256R1()), raw)
    elif forge == "tampered body":
        raw = body.replace('"s"', '"x"').encode()
    elif forge == "unknown key id":
        headers = signed(github_key, raw, key_id="somebody-else")
    elif forge == "no signature":
        headers = {"Content-Type": "application/json"}
    else:
        headers["Github-Public-Key-Signature"] = "%%%"
    answer = httpx.post(url + "/v1/github/secret-scanning", content=raw, headers=headers)
    assert answer.status_code == 401 and answer.json()["type"] == "invalid_signature"
    assert proxy_status(gateway, leaked.secret_key) == 200
    with gateway.admin() as admin:
        assert admin.get("/v1/leaks").json()["leaks"] == []
        audit = admin.get("/v1/audit-events", params={"access_key": leaked.key.access_key}).json()
    assert [e["action"] for e in audit["audit_events"]] == ["api_key.create"]


def test_the_public_revocation_endpoint(leaky: tuple[Gateway, str]) -> None:
    gateway, url = leaky
    gateway.clock.freeze()  # every request below in one minute of the rate limit
    found = gateway.new_key()
    kept = gateway.new_key()
    endpoint = url + "/v1/credentials/revoke"
    bogus = httpx.post(endpoint, json={"credentials": [generate_secret_key("gws"), "nonsense"]})
    ours = httpx.post(endpoint, json={"credentials": [found.secret_key]})
    # The same answer whether a secret existed or not.
    assert bogus.status_code == ours.status_code == 202
    assert bogus.json() == ours.json()
    wait_for(lambda: proxy_status(gateway, found.secret_key) == 401, timeout=BOUND)
    assert proxy_status(gateway, kept.secret_key) == 200
    with gateway.admin() as admin:
        [leak] = admin.get("/v1/leaks").json()["leaks"]
    assert leak["access_key"] == found.key.access_key and leak["reporter"] == "public"
    too_many = httpx.post(endpoint, json={"credentials": ["x"] * 1001})
    assert too_many.status_code == 400 and "at most 1000" in too_many.json()["message"]
    malformed = httpx.post(endpoint, content=b"{not json")
    assert malformed.status_code == 400
    assert httpx.post(endpoint, json={"credentials": []}).status_code == 202
    # revoke_requests_per_minute = 5: the sixth in the minute is refused, whatever it holds.
    limited = httpx.post(endpoint, json={"credentials": [kept.secret_key]})
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert proxy_status(gateway, kept.secret_key) == 200
    gateway.clock.advance(60)
    assert httpx.post(endpoint, json={"credentials": []}).status_code == 202  # a new minute


@contextlib.contextmanager
def writes_held(gateway: Gateway) -> Iterator[None]:
    """Another connection holds the store's writes (reads go on), as a busy store would."""
    if gateway.config.store.url is None:
        assert gateway.config.store.path is not None
        lock = sqlite3.connect(gateway.config.store.path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return
    url = gateway.config.store.url
    conn = gateway.loop.run(asyncpg.connect(url))
    gateway.loop.run(conn.execute("BEGIN; LOCK TABLE api_keys IN EXCLUSIVE MODE"))
    try:
        yield
    finally:
        gateway.loop.run(conn.execute("ROLLBACK"))
        gateway.loop.run(conn.close())


def test_a_revocation_request_answers_alike_while_the_store_is_busy(
    leaky: tuple[Gateway, str],
) -> None:
    """The answer never says whether a secret existed, not even by its time: it is given
    before any key is looked up or revoked, so a found secret (a write) is answered as fast as
    noise, and a store too busy to write answers no differently (no 503 that noise never gets).
    The key is revoked once the store can write."""
    gateway, url = leaky
    gateway.clock.freeze()
    found = gateway.new_key()
    endpoint = url + "/v1/credentials/revoke"
    with writes_held(gateway):
        answers = [
            httpx.post(endpoint, json={"credentials": [secret]}, timeout=3)
            for secret in (generate_secret_key("gws"), found.secret_key)
        ]
        assert [a.status_code for a in answers] == [202, 202]
        assert answers[0].json() == answers[1].json()
        assert proxy_status(gateway, found.secret_key) == 200  # not written yet
    wait_for(lambda: proxy_status(gateway, found.secret_key) == 401, timeout=BOUND + 5)
    with gateway.admin() as admin:
        [leak] = admin.get("/v1/leaks").json()["leaks"]
    assert leak["access_key"] == found.key.access_key and leak["reporter"] == "public"


def test_action_disable_disables_the_key_instead(
    make_gateway: Any, tmp_path: Path, github_key: ec.EllipticCurvePrivateKey
) -> None:
    """[leaks] action = "disable": the reported key is refused (403 key_disabled) but kept, its
    owner told key.leaked, key.updated and key.disabled; enabling it restores the same secret."""
    keys = tmp_path / "github-keys.json"
    keys.write_text(public_keys((KEY_ID, github_key)))
    gateway: Gateway = make_gateway(
        f'[leaks]\nlisten = "127.0.0.1:0"\ngithub_keys_file = "{keys}"\naction = "disable"'
    )
    with gateway.admin() as admin:
        hook = admin.post(
            "/v1/webhooks",
            json={
                "url": "http://127.0.0.1:1/h",
                "events": ["key.leaked", "key.updated", "key.disabled", "key.revoked"],
            },
        ).json()
    leaked = gateway.new_key()
    body = json.dumps(
        [{"token": leaked.secret_key, "type": "gateway_key", "url": "https://x.test/a"}]
    ).encode()
    sock = free_socket()
    server = _Server(uvicorn_config(leaks_app(gateway.resources)))
    serving = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), gateway.loop.loop)
    try:
        wait_for(lambda: server.started, timeout=10, interval=0.005)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/github/secret-scanning"
        answer = httpx.post(url, content=body, headers=signed(github_key, body))
    finally:
        server.should_exit = True
        serving.result(15)
        sock.close()
    assert answer.json()[0]["label"] == "true_positive"
    wait_for(lambda: proxy_status(gateway, leaked.secret_key) == 403, timeout=BOUND)
    access_key = leaked.key.access_key
    with gateway.admin() as admin:
        kept = admin.get(f"/v1/api-keys/{access_key}").json()
        audit = admin.get("/v1/audit-events", params={"access_key": access_key}).json()
        log = admin.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
        admin.patch(f"/v1/api-keys/{access_key}", json={"disabled": False})
    assert kept["disabled"] is True
    actions = {e["action"]: e["detail"] for e in audit["audit_events"]}
    assert actions["api_key.disable"] == "leaked" and "api_key.delete" not in actions
    assert [d["event_type"] for d in reversed(log)] == ["key.leaked", "key.updated", "key.disabled"]
    wait_for(lambda: proxy_status(gateway, leaked.secret_key) == 200, timeout=BOUND)


def test_an_unknown_action_is_refused_in_the_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:9", extra='[leaks]\naction = "delete"')
    with pytest.raises(ConfigError, match=r'must be "revoke" or "disable"'):
        config_module.load(path)


@pytest.mark.sqlite_only
def test_serve_opens_the_leak_listener(
    tmp_path: Path, github_key: ec.EllipticCurvePrivateKey
) -> None:
    keys = tmp_path / "github-keys.json"
    keys.write_text(public_keys((KEY_ID, github_key)))
    config = write_config(
        tmp_path,
        "http://127.0.0.1:9",
        extra=f'[leaks]\nlisten = "127.0.0.1:0"\ngithub_keys_file = "{keys}"',
    )
    run_cli("--config", str(config), "init")
    process = spawn_cli("--config", str(config), "serve")
    try:
        assert process.stderr is not None  # serve says where it listens on stderr
        leaks_line = ""
        while "leaks listening on" not in leaks_line:
            leaks_line = unbuffered_line(process.stderr.fileno())
            assert leaks_line, "serve exited"
        url = leaks_line.split("listening on ", 1)[1].split()[0]
        assert httpx.get(url + "/healthz").json() == {"status": "ok"}
        body = b"[]"
        answer = httpx.post(
            url + "/v1/github/secret-scanning", content=body, headers=signed(github_key, body)
        )
        assert answer.status_code == 200 and answer.json() == []
    finally:
        stop_serve(process)


def test_the_documented_pattern_matches_our_secrets_only() -> None:
    import re

    from tests.support import ROOT

    # The README shows it too, for who registers with GitHub: the same one.
    patterns = {
        (ROOT / name).read_text().split("<!-- secret-pattern -->\n```\n", 1)[1].split("\n```")[0]
        for name in ("README.md", "docs/key-life.md")
    }
    [pattern] = patterns
    compiled = re.compile(pattern)
    for restricted in (False, True):
        for mode in ("live", "test"):
            secret = generate_secret_key("gws", mode, restricted)
            assert compiled.fullmatch(secret), secret
    assert not compiled.fullmatch("gws_live_short")
    assert not compiled.fullmatch(generate_secret_key("abc"))


@contextlib.contextmanager
def published_keys(
    loop: LoopThread, github_key: ec.EllipticCurvePrivateKey, answers: list[int]
) -> Iterator[tuple[str, list[int]]]:
    """GitHub's key URL on loopback: each GET answered with the last of ``answers``; yields the
    URL and the statuses it answered."""
    served: list[int] = []

    async def published(request: web.Request) -> web.Response:
        served.append(answers[-1])
        return web.Response(status=answers[-1], text=public_keys((KEY_ID, github_key)))

    app = web.Application()
    app.router.add_get("/keys", published)
    runner = web.AppRunner(app, access_log=None)
    sock = free_socket()
    loop.run(runner.setup())
    loop.run(web.SockSite(runner, sock).start())
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/keys", served
    finally:
        loop.run(runner.cleanup())
        sock.close()


def test_github_keys_are_kept_while_their_url_fails(
    github_key: ec.EllipticCurvePrivateKey,
) -> None:
    """Past the hour the keys are fetched again; while GitHub's API cannot give them, the keys
    had go on verifying GitHub's reports (keys rotate seldom), and the URL is asked at most once
    a minute, whatever anyone sends (not once per request, each up to 10 s)."""
    loop = LoopThread()
    answers = [200]
    clock = FakeClock()
    clock.freeze()
    body = b"[]"
    signature = signed(github_key, body)["Github-Public-Key-Signature"]
    try:
        with published_keys(loop, github_key, answers) as (url, served):
            keys = GitHubKeys(LeaksConfig(github_keys_url=url), clock)

            def verify(key_id: str = KEY_ID) -> bool:
                return loop.run(keys.verify(key_id, signature, body))

            assert verify() and served == [200]
            answers.append(503)  # GitHub's API is down
            clock.advance(3600)
            assert all(verify() for _ in range(5))
            assert not any(verify("unknown-key-id") for _ in range(5))
            assert served == [200, 503]
            clock.advance(60)
            assert verify() and served == [200, 503, 503]
            answers.append(200)
            clock.advance(60)
            assert verify() and verify() and served == [200, 503, 503, 200]
    finally:
        loop.close()


def test_without_github_keys_reports_wait_and_the_url_is_not_hammered(
    github_key: ec.EllipticCurvePrivateKey,
) -> None:
    """No keys yet and the URL failing: 503 for GitHub to retry, the URL asked once a minute."""
    loop = LoopThread()
    clock = FakeClock()
    clock.freeze()
    try:
        with published_keys(loop, github_key, [503]) as (url, served):
            keys = GitHubKeys(LeaksConfig(github_keys_url=url), clock)
            for _ in range(3):
                with pytest.raises(KeysUnavailable):
                    loop.run(keys.verify(KEY_ID, "c2ln", b"[]"))
            assert served == [503]
            clock.advance(60)
            with pytest.raises(KeysUnavailable):
                loop.run(keys.verify(KEY_ID, "c2ln", b"[]"))
            assert served == [503, 503]
    finally:
        loop.close()
