"""The CLI's answers to wrong or unclear input: each says what is wrong and what to write, never
repeats a secret, and leaves the store as it was. The CLI as a subprocess, on a real store file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import POSTGRES_URL, ROOT, require_postgres, run_cli, write_config

BILLING = """
[[routes]]
prefix = "/billing"
upstream = "http://127.0.0.1:9"
resource = "billing"
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = write_config(tmp_path, "http://127.0.0.1:9", BILLING)
    run_cli("--config", str(path), "init")
    return path


def cli_json(cfg: Path, *args: str) -> Any:
    return json.loads(run_cli("--config", str(cfg), *args, "--json").stdout)


def create(cfg: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`keys create` for the owner, with ``extra`` options."""
    return run_cli(
        "--config", str(cfg), "keys", "create", "--user", "owner@localhost", *extra, check=check
    )


def key_count(cfg: Path) -> int:
    with sqlite3.connect(cfg.parent / "store.db") as db:
        return int(db.execute("SELECT count(*) FROM api_keys").fetchone()[0])


@pytest.mark.parametrize(
    ("expires_in", "message"),
    [
        ("0s", "'0s' would expire the key as it is made; give a positive duration"),
        ("-5m", "'-5m' is negative; a duration counts forward from now"),
        ("soon", "'soon' is not a duration like 30m"),
        # An expiry no date can hold was written, then every listing of keys failed.
        ("99999999w", "'99999999w' is past the longest lifetime a key may have"),
    ],
)
def test_an_expiry_that_is_no_lifetime_is_refused(cfg: Path, expires_in: str, message: str) -> None:
    """`--expires-in 0s` made a key that never expired; it is refused (a key nobody could use
    is no more use than none; revoke to stop one now). `-5m` was taken for an option."""
    before = key_count(cfg)
    for args in (["--expires-in", expires_in], [f"--expires-in={expires_in}"]):
        result = create(cfg, *args, check=False)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "expected one argument" not in result.stderr
    as_json = create(cfg, "--expires-in", expires_in, "--json", check=False)
    assert as_json.returncode == 2 and message in json.loads(as_json.stderr)["error"]["message"]
    assert key_count(cfg) == before
    access_key = cli_json(cfg, "keys", "list")["api_keys"][0]["access_key"]
    edit = run_cli(
        "--config", str(cfg), "keys", "edit", access_key, "--expires-in", expires_in, check=False
    )
    assert edit.returncode == 2 and message in edit.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--rate-limit", "-1/1s", "'-1/1s' is not a rate limit like 100/60s"),
        ("--refill", "-5/daily", "-5/daily"),
    ],
)
def test_a_negative_value_is_read_and_refused(
    cfg: Path, option: str, value: str, message: str
) -> None:
    """A value starting with "-" was taken for an option ("expected one argument")."""
    extra = ["--credits", "5"] if option == "--refill" else []
    result = create(cfg, *extra, option, value, check=False)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "expected one argument" not in result.stderr


def test_a_roll_of_an_expired_key_renews_it(cfg: Path) -> None:
    made = cli_json(cfg, "keys", "create", "--user", "owner@localhost", "--expires-in", "1h")
    with sqlite3.connect(cfg.parent / "store.db") as db:  # made two hours ago: expired
        db.execute(
            "UPDATE api_keys SET created_at = created_at - 7200, expires_at = expires_at - 7200 "
            "WHERE access_key = ?",
            (made["access_key"],),
        )
    text = run_cli("--config", str(cfg), "keys", "roll", made["access_key"], "--grace", "1h")
    assert "The key had expired at" in text.stdout and "now expires at" in text.stdout
    assert "previous secret no longer works" in text.stdout
    listed = cli_json(cfg, "keys", "list", "--expired")["api_keys"]
    assert made["access_key"] not in {k["access_key"] for k in listed}
    shown = cli_json(cfg, "keys", "show", made["access_key"])
    with sqlite3.connect(cfg.parent / "store.db") as db:
        expires_at, secrets = db.execute(
            "SELECT k.expires_at, count(s.secret_hash) FROM api_keys k JOIN key_secrets s "
            "USING (access_key) WHERE access_key = ?",
            (made["access_key"],),
        ).fetchone()
    assert 3500 < expires_at - time.time() <= 3600 and shown["expires_at"]
    assert secrets == 1  # the old secret is gone, grace or not
    given = cli_json(cfg, "keys", "roll", made["access_key"], "--expires-in", "2h")
    assert given["expires_at"] > shown["expires_at"]


@pytest.mark.parametrize("action", ["show", "usage", "revoke", "roll", "edit"])
def test_a_secret_given_for_an_access_key_is_not_repeated(cfg: Path, action: str) -> None:
    secret = cli_json(cfg, "keys", "create", "--user", "owner@localhost")["secret_key"]
    extra = ["--description", "x"] if action == "edit" else []
    for flag in ([], ["--json"]):
        result = run_cli("--config", str(cfg), "keys", action, secret, *extra, *flag, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "that is a secret key, not an access key" in result.stderr
        assert secret not in result.stderr + result.stdout
        assert secret[:20] not in result.stderr
    with sqlite3.connect(cfg.parent / "store.db") as db:
        audited = " ".join(str(row) for row in db.execute("SELECT * FROM audit_events"))
    assert secret not in audited


@pytest.mark.parametrize(
    ("option", "value", "form"),
    [
        ("--permission", "billing:admin", "write RESOURCE:read or RESOURCE:write"),
        ("--allow-ip", "localhost", "write an IPv4 or IPv6 address or CIDR network"),
    ],
)
def test_a_policy_in_the_wrong_form_shows_the_form(
    cfg: Path, option: str, value: str, form: str
) -> None:
    result = create(cfg, option, value, check=False)
    assert result.returncode == 2 and form in result.stderr and repr(value) in result.stderr


def test_a_permission_no_route_names_is_warned_about(cfg: Path) -> None:
    """Warned, not refused: routes may come later, or live in another gateway's config."""
    result = create(cfg, "--permission", "billng:read", "--permission", "billing:write")
    assert "warning: no route in" in result.stderr and "billng:read" in result.stderr
    assert "billing:write" not in result.stderr and "resources of its routes: billing" in (
        result.stderr
    )
    made = json.loads(create(cfg, "--permission", "billng:read", "--json").stdout)
    assert made["permissions"] == ["billng:read"] and "billng:read" in made["warnings"][0]
    quiet = create(cfg, "--permission", "billing:read")
    assert quiet.stderr == ""


def test_a_store_url_of_another_scheme_is_named_as_such(cfg: Path) -> None:
    result = run_cli("--config", str(cfg), "--store", "mysql://x", "keys", "list", check=False)
    assert result.returncode == 2
    assert "the mysql:// scheme is not supported" in result.stderr
    assert "there is no store here" not in result.stderr and "mysql:/x" not in result.stderr
    copy = run_cli("--config", str(cfg), "store", "copy", "--to", "mysql://u:pw@x/db", check=False)
    assert copy.returncode == 2 and "scheme is not supported" in copy.stderr
    assert "pw" not in copy.stderr  # a password in the URL is not repeated


def test_a_missing_postgresql_database_is_advised_once(cfg: Path) -> None:
    require_postgres()
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/gw_absent_{os.getpid()}"
    result = run_cli("--config", str(cfg), "--store", url, "keys", "list", check=False)
    assert result.returncode == 1 and "the database does not exist" in result.stderr
    assert result.stderr.count("createdb") == 1 and result.stderr.count(" init`") == 1
    assert "create the database (createdb), then create the store with" in result.stderr


@pytest.mark.parametrize("flag", [[], ["--json"]])
def test_a_reader_that_goes_away_ends_it_quietly(cfg: Path, flag: list[str]) -> None:
    """`gateway keys list | head -1`: head exits after one line; so does the gateway, silently.
    The pipe's reading end is closed before the gateway writes, so every write fails."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "gatewaycli", "--config", str(cfg), "keys", "list", *flag],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
    finally:
        os.close(write)
    assert result.returncode == 0 and result.stderr == ""
