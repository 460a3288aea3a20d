"""The CLI as a subprocess, on a real store file."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.tokens import SecretFormat, is_access_key
from tests.support import run_cli, run_demo, spawn_cli, unbuffered_line, wait_for, write_config


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path, "http://127.0.0.1:9")


def cli_json(cfg: Path, *args: str) -> Any:
    return json.loads(run_cli("--config", str(cfg), *args, "--json").stdout)


def test_init_is_idempotent_and_store_is_private(cfg: Path) -> None:
    first = cli_json(cfg, "init")
    assert first["created"] is True
    assert is_access_key(first["access_key"])
    assert SecretFormat().mode_of(first["secret_key"]) == "live"
    for name in ("organization_id", "project_id", "user_id"):
        assert len(first[name]) == 36
    store = cfg.parent / "store.db"
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    again = run_cli("--config", str(cfg), "init")
    assert "already initialised; nothing changed" in again.stdout
    assert f"keys create --user {first['user_id']}" in again.stdout  # how to get an owner key
    assert first["secret_key"] not in again.stdout
    second = cli_json(cfg, "init")
    assert second["created"] is False and second["secret_key"] is None
    assert second["new_owner_key"].endswith(f"keys create --user {first['user_id']}")
    assert second["organization_id"] == first["organization_id"]
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 1
        hashes = db.execute("SELECT secret_hash FROM key_secrets").fetchall()
        assert all(len(h[0]) == 32 for h in hashes)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 1
    assert first["secret_key"].encode() not in store.read_bytes()


def test_key_life_cycle(cfg: Path) -> None:
    init = cli_json(cfg, "init")
    project = cli_json(cfg, "projects", "create", "staging")
    assert project["name"] == "staging"
    user = cli_json(cfg, "users", "create", "ops@example.com", "--permission-set", "IAMManager")
    assert user["permission_sets"] == ["IAMManager"]
    app = cli_json(cfg, "applications", "create", "billing")
    created = cli_json(
        cfg,
        "keys",
        "create",
        "--user",
        init["user_id"],
        "--project",
        project["id"],
        "--description",
        "ci",
        "--expires-in",
        "7d",
        "--mode",
        "test",
    )
    access = created["access_key"]
    assert created["secret_key"].startswith("gws_test_")
    assert created["secret_prefix"] == created["secret_key"][:12]
    assert created["default_project_id"] == project["id"] and created["expires_at"]
    app_key = cli_json(cfg, "keys", "create", "--application", app["id"])
    assert app_key["bearer_type"] == "application" and app_key["user_id"] is None

    listing = cli_json(cfg, "keys", "list")
    assert listing["total_count"] == 3
    assert all("secret_key" not in k and "secret_hash" not in k for k in listing["api_keys"])
    shown = cli_json(cfg, "keys", "show", access)
    assert shown["description"] == "ci" and "secret_key" not in shown

    edited = cli_json(
        cfg,
        "keys",
        "edit",
        access,
        "--description",
        "nightly",
        "--project",
        init["project_id"],
        "--expires-in",
        "never",
    )
    assert edited["description"] == "nightly" and edited["expires_at"] is None
    assert edited["default_project_id"] == init["project_id"]

    rolled = cli_json(cfg, "keys", "roll", access, "--grace", "1h")
    assert rolled["access_key"] == access and rolled["secret_key"] != created["secret_key"]
    assert rolled["previous_secret_expires_at"]

    assert cli_json(cfg, "keys", "revoke", access) == {"access_key": access, "revoked": True}
    gone = run_cli("--config", str(cfg), "keys", "show", access, check=False)
    assert gone.returncode == 2 and "was revoked at" in gone.stderr

    human = run_cli("--config", str(cfg), "keys", "list").stdout
    assert app_key["access_key"] in human and access not in human


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "--user", "nobody"], "no user has the id or email 'nobody'"),
        (
            ["keys", "create", "--user", "{user_id}", "--project", "nope"],
            "no project has the id or name 'nope'",
        ),
        (
            ["keys", "create", "--user", "{user_id}", "--description", "d" * 201],
            "description must be at most 200 characters",
        ),
        (
            ["keys", "create", "--user", "{user_id}", "--expires-in", "soon"],
            "'soon' is not a duration",
        ),
        (["keys", "roll", "{access_key}", "--grace", "2w"], "grace period must be between"),
        (["keys", "revoke", "GWKNOTAKEY0000000000"], "does not exist"),
        (["users", "create", "not-an-email"], "must be an email address"),
        (["projects", "create", "default"], "already exists"),
    ],
)
def test_bad_input_is_a_sentence_and_changes_nothing(
    cfg: Path, args: list[str], message: str
) -> None:
    init = cli_json(cfg, "init")
    before = dump(cfg.parent / "store.db")
    result = run_cli("--config", str(cfg), *(a.format(**init) for a in args), check=False)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert dump(cfg.parent / "store.db") == before
    with sqlite3.connect(cfg.parent / "store.db") as db:
        outcomes = {row[0] for row in db.execute("SELECT outcome FROM audit_events")}
    assert outcomes <= {"success", "denied"}


def dump(store: Path) -> list[str]:
    """Everything in the store but the audit log, which records denied attempts by design."""
    with sqlite3.connect(store) as db:
        return [line for line in db.iterdump() if "audit_events" not in line]


def test_json_errors(cfg: Path) -> None:
    cli_json(cfg, "init")
    result = run_cli(
        "--config", str(cfg), "keys", "show", "GWKNOTAKEY0000000000", "--json", check=False
    )
    error = json.loads(result.stderr)["error"]
    assert error["type"] == "not_found" and "does not exist" in error["message"]


def test_commands_before_init_say_so(cfg: Path) -> None:
    result = run_cli("--config", str(cfg), "keys", "list", check=False)
    assert result.returncode == 1
    assert f"gateway --config {cfg} init" in result.stderr and "Traceback" not in result.stderr
    assert not (cfg.parent / "store.db").exists()


def test_serve_refuses_to_start_without_a_store(cfg: Path) -> None:
    """Serving an empty store would answer 401 to everyone: say so instead, and create nothing."""
    for extra in ([], ["--json"]):
        result = run_cli("--config", str(cfg), "serve", *extra, check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert str(cfg.parent / "store.db") in result.stderr
        assert f"gateway --config {cfg} init" in result.stderr
    assert json.loads(result.stderr)["error"]["type"] == "store_missing"
    assert not (cfg.parent / "store.db").exists()


def test_the_demo_store_is_not_the_configured_one(tmp_path: Path) -> None:
    """`make demo` then `gateway init` must still create the owner key."""
    cfg, text = run_demo(tmp_path)
    store = re.search(r"store +(\S+)", text)
    assert store is not None and "gateway-demo-" in store.group(1), text
    assert not Path(store.group(1)).exists()  # removed when the demo stopped
    assert not (cfg.parent / "gateway.db").exists()
    assert cli_json(cfg, "init")["created"] is True


@pytest.mark.parametrize("flag", [[], ["--json"]])
def test_a_directory_the_user_cannot_write_is_one_sentence(tmp_path: Path, flag: list[str]) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9")
    locked = tmp_path / "locked"
    locked.mkdir()
    cfg.write_text(cfg.read_text().replace('path = "store.db"', 'path = "locked/store.db"'))
    locked.chmod(0o555)
    try:
        result = run_cli("--config", str(cfg), "init", *flag, check=False, unprivileged=True)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = json.loads(result.stderr)["error"]["message"] if flag else result.stderr
    assert f"permission denied on the directory {locked}" in message
    assert len(message.strip().splitlines()) == 1
    assert not (locked / "store.db").exists()


@pytest.mark.parametrize("flag", [[], ["--json"]])
def test_a_store_the_user_cannot_read_is_one_sentence(cfg: Path, flag: list[str]) -> None:
    cli_json(cfg, "init")
    store = cfg.parent / "store.db"
    store.chmod(0o000)
    try:
        result = run_cli(
            "--config", str(cfg), "keys", "list", *flag, check=False, unprivileged=True
        )
    finally:
        store.chmod(0o600)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = json.loads(result.stderr)["error"]["message"] if flag else result.stderr
    assert f"{store}: permission denied" in message and "cannot read this file" in message
    assert "gateway init" not in message  # it exists: creating it is not the fix
    assert len(message.strip().splitlines()) == 1


def test_revoking_twice_says_already_revoked_and_audits_no_denial(cfg: Path) -> None:
    init = cli_json(cfg, "init")
    key = cli_json(cfg, "keys", "create", "--user", init["user_id"])["access_key"]
    cli_json(cfg, "keys", "revoke", key)
    again = run_cli("--config", str(cfg), "keys", "revoke", key, check=False)
    assert again.returncode == 2 and "already revoked at" in again.stderr
    assert "does not exist" not in again.stderr
    with sqlite3.connect(cfg.parent / "store.db") as db:
        denied = db.execute(
            "SELECT count(*) FROM audit_events WHERE outcome = 'denied' AND target_id = ?", (key,)
        ).fetchone()[0]
    assert denied == 0


def test_keys_list_shows_each_keys_bearer(cfg: Path) -> None:
    init = cli_json(cfg, "init")
    app = cli_json(cfg, "applications", "create", "billing")
    cli_json(cfg, "keys", "create", "--application", app["id"])
    listing = run_cli("--config", str(cfg), "keys", "list").stdout
    assert "bearer" in listing.splitlines()[0]
    assert "user owner@localhost" in listing and "application billing" in listing
    assert init["access_key"] in listing


def test_serve_says_each_thing_once(cfg: Path) -> None:
    """Where it listens, once per listener, on stderr, and no start-up line twice (uvicorn logs
    its own once per listener: the proxy's and the admin's)."""
    cfg.write_text(
        cfg.read_text().replace('[admin]\nlisten = ""', '[admin]\nlisten = "127.0.0.1:0"')
    )
    cli_json(cfg, "init")
    process = spawn_cli("--config", str(cfg), "serve")
    assert process.stderr is not None
    try:
        first = unbuffered_line(process.stderr.fileno())
        second = unbuffered_line(process.stderr.fileno())
        assert "proxy listening on" in first and "admin listening on" in second
        url = first.split("listening on ", 1)[1].split()[0]
        wait_for(lambda: httpx.get(url + "/echo/x").status_code == 401, timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0
    assert out == ""  # stdout is the access log's (here a file): nothing else is written there
    lines = [line for line in (first + second + err).splitlines() if line.strip()]
    assert len(lines) == len(set(lines)), lines
    assert not any("Started server process" in line for line in lines), lines
