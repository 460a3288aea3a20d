"""The CLI by name: users, applications and projects named by id, email or name; the filters of
`keys list`; editing and deleting them; help on every command and option. The CLI as a
subprocess, on a real store file."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest

from gatewaycli.cli import build_parser
from tests.support import cli_json, run_cli, write_config
from tests.support import cli_refused as refused


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path, "http://127.0.0.1:9")


def denials(cfg: Path) -> int:
    with sqlite3.connect(cfg.parent / "store.db") as db:
        return int(
            db.execute("SELECT count(*) FROM audit_events WHERE outcome = 'denied'").fetchone()[0]
        )


def test_bearers_and_projects_by_email_and_name(cfg: Path) -> None:
    cli_json(cfg, "init")
    alice = cli_json(cfg, "users", "create", "alice@example.com")
    job = cli_json(cfg, "applications", "create", "billing-job")
    shop = cli_json(cfg, "projects", "create", "shop")
    by_email = cli_json(cfg, "keys", "create", "--user", "alice@example.com", "--project", "shop")
    assert by_email["user_id"] == alice["id"] and by_email["default_project_id"] == shop["id"]
    by_name = cli_json(cfg, "keys", "create", "--application", "billing-job")
    assert by_name["application_id"] == job["id"]
    by_case = cli_json(cfg, "keys", "create", "--user", "Alice@Example.com")
    assert by_case["user_id"] == alice["id"]
    by_id = cli_json(cfg, "keys", "create", "--user", alice["id"], "--project", shop["id"])
    assert by_id["user_id"] == alice["id"]
    moved = cli_json(cfg, "keys", "edit", by_id["access_key"], "--project", "default")
    assert moved["default_project_id"] != shop["id"]


def test_a_name_that_names_nothing_says_so_and_audits_nothing(cfg: Path) -> None:
    cli_json(cfg, "init")
    before = denials(cfg)
    message = refused(cfg, "keys", "create", "--user", "bob@example.com")
    assert "no user has the id or email 'bob@example.com'" in message
    assert "no application has the id or name 'nope'" in refused(
        cfg, "keys", "create", "--application", "nope"
    )
    owner = cli_json(cfg, "users", "list")["users"][0]["email"]
    assert "no project has the id or name 'shop'" in refused(
        cfg, "keys", "create", "--user", owner, "--project", "shop"
    )
    assert denials(cfg) == before  # a lookup is not a refused attempt


def test_an_ambiguous_name_is_refused_with_the_candidates(cfg: Path) -> None:
    cli_json(cfg, "init")
    first = cli_json(cfg, "applications", "create", "billing-job")
    second = cli_json(cfg, "applications", "create", "billing-job")
    message = refused(cfg, "keys", "create", "--application", "billing-job")
    assert "2 applications have the name 'billing-job'" in message
    assert first["id"] in message and second["id"] in message and "give the id" in message
    json_error = run_cli(
        "--config",
        str(cfg),
        "keys",
        "create",
        "--application",
        "billing-job",
        "--json",
        check=False,
    )
    assert json.loads(json_error.stderr)["error"]["field"] == "application_id"
    made = cli_json(cfg, "keys", "create", "--application", first["id"])
    assert made["application_id"] == first["id"]


def test_keys_list_filters(cfg: Path) -> None:
    init = cli_json(cfg, "init")
    cli_json(cfg, "users", "create", "alice@example.com")
    cli_json(cfg, "applications", "create", "billing-job")
    cli_json(cfg, "projects", "create", "shop")
    alice_shop = cli_json(cfg, "keys", "create", "--user", "alice@example.com", "--project", "shop")
    alice = cli_json(cfg, "keys", "create", "--user", "alice@example.com", "--expires-in", "1h")
    job = cli_json(cfg, "keys", "create", "--application", "billing-job")

    def listed(*args: str) -> set[str]:
        return {k["access_key"] for k in cli_json(cfg, "keys", "list", *args)["api_keys"]}

    assert listed("--user", "alice@example.com") == {alice_shop["access_key"], alice["access_key"]}
    assert listed("--application", "billing-job") == {job["access_key"]}
    assert listed("--project", "shop") == {alice_shop["access_key"]}
    assert listed("--user", "owner@localhost") == {init["access_key"]}
    assert listed("--expired") == set()
    with sqlite3.connect(cfg.parent / "store.db") as db:
        db.execute(
            "UPDATE api_keys SET expires_at = 1 WHERE access_key = ?", (alice["access_key"],)
        )
    assert listed("--expired") == {alice["access_key"]}
    assert listed("--expired", "--user", "owner@localhost") == set()

    cli_json(cfg, "keys", "revoke", job["access_key"])
    revoked = cli_json(cfg, "keys", "list", "--revoked")
    assert [k["access_key"] for k in revoked["revoked_keys"]] == [job["access_key"]]
    assert revoked["total_count"] == 1 and revoked["revoked_keys"][0]["revoked_at"]
    assert cli_json(cfg, "keys", "list", "--revoked", "--user", "alice@example.com") == {
        "revoked_keys": [],
        "total_count": 0,
    }
    text = run_cli("--config", str(cfg), "keys", "list", "--revoked").stdout
    assert job["access_key"] in text and "application billing-job" in text
    assert job["access_key"] not in listed()
    assert "keeps no project" in refused(cfg, "keys", "list", "--revoked", "--project", "shop")


@pytest.mark.parametrize("kind", ["project", "user", "application"])
def test_edit_and_delete_from_the_cli(cfg: Path, kind: str) -> None:
    cli_json(cfg, "init")
    plural = f"{kind}s"
    label = {"project": "shop", "user": "alice@example.com", "application": "billing-job"}[kind]
    created = cli_json(cfg, plural, "create", label)
    shown = cli_json(cfg, plural, "show", label)
    assert shown["id"] == created["id"]
    if kind == "user":
        edited = cli_json(cfg, plural, "edit", label, "--permission-set", "IAMManager")
        assert edited["permission_sets"] == ["IAMManager"]
        cleared = cli_json(cfg, plural, "edit", created["id"], "--no-permission-sets")
        assert cleared["permission_sets"] == []
    else:
        edited = cli_json(cfg, plural, "edit", label, "--name", f"{label}-2")
        assert edited["name"] == f"{label}-2"
        label = f"{label}-2"
    assert "nothing to change" in refused(cfg, plural, "edit", label)
    key = None
    if kind != "project":
        key = cli_json(cfg, "keys", "create", f"--{kind}", label)["access_key"]
    else:
        owner = cli_json(cfg, "users", "list")["users"][0]["id"]
        held = cli_json(cfg, "keys", "create", "--user", owner, "--project", label)["access_key"]
        message = refused(cfg, plural, "delete", label)
        assert held in message and "move or delete them first" in message  # the 409 names them
        cli_json(cfg, "keys", "edit", held, "--project", "default")
    deleted = cli_json(cfg, plural, "delete", label)
    assert deleted["deleted"] == created["id"]
    assert deleted["revoked_keys"] == ([key] if key else [])
    assert f"no {kind} has the id" in refused(cfg, plural, "show", label)
    if key is not None:
        assert key in {
            k["access_key"] for k in cli_json(cfg, "keys", "list", "--revoked")["revoked_keys"]
        }


def test_the_owner_cannot_be_deleted(cfg: Path) -> None:
    cli_json(cfg, "init")
    assert "owner cannot be deleted" in refused(cfg, "users", "delete", "owner@localhost")


def _parsers(
    parser: argparse.ArgumentParser, path: str
) -> list[tuple[str, argparse.ArgumentParser, str | None]]:
    """Every parser under ``parser``, with the help its parent lists it with."""
    found: list[tuple[str, argparse.ArgumentParser, str | None]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                found.append((f"{path} {name}", child, helps.get(name)))
                found += _parsers(child, f"{path} {name}")
    return found


def test_every_command_and_option_has_help() -> None:
    parsers = _parsers(build_parser(), "gateway")
    assert len(parsers) > 30
    missing = [path for path, _, listed in parsers if not listed]
    for path, parser, _ in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            if not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


@pytest.mark.parametrize("words", [[], ["keys"], ["keys", "list"], ["users", "edit"]])
def test_help_is_printed(words: list[str]) -> None:
    result = run_cli(*words, "--help")
    assert "usage: gateway" in result.stdout and result.stderr == ""
