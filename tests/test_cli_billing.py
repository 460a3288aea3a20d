"""The CLI of plans and budgets: `plans ...` by name, a key's plan, credits and metadata on `keys
create|edit`, a bearer's plan, shared limits and credits on `users|applications edit` (named by
email or name), and `usage export`. The CLI as a subprocess, on a real store file; what the
gateway does with a plan or credits is in test_plans.py and test_credits.py."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.support import cli_json, run_cli, write_config
from tests.support import cli_refused as refused


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    run_cli("--config", str(config), "init")
    return config


def test_plans_are_edited_and_named_ignoring_case(cfg: Path) -> None:
    made = cli_json(cfg, "plans", "create", "Pro", "--rate-limit", "100/60s", "--credits", "50")
    assert made["credits"] == {"amount": 50, "refill": None}
    edited = cli_json(
        cfg, "plans", "edit", "pro", "--name", "Gold", "--credits", "9", "--refill", "daily"
    )
    assert edited["id"] == made["id"] and edited["name"] == "Gold"
    assert edited["credits"] == {"amount": 9, "refill": "daily"}
    assert edited["rate_limits"] == [{"limit": 100, "window_seconds": 60}]
    cleared = cli_json(cfg, "plans", "edit", made["id"], "--no-rate-limits", "--no-credits")
    assert cleared["rate_limits"] == [] and cleared["credits"] is None
    text = run_cli("--config", str(cfg), "plans", "edit", "GOLD", "--metadata", '{"t": 1}').stdout
    assert "Every key on it follows within" in text and '{"t": 1}' in text
    assert "nothing to change" in refused(cfg, "plans", "edit", "Gold")
    assert "--refill goes with --credits" in refused(
        cfg, "plans", "edit", "Gold", "--refill", "daily"
    )
    cli_json(cfg, "plans", "create", "gold")
    assert cli_json(cfg, "plans", "show", "gold")["id"] != made["id"]  # the exact name wins
    assert "2 plans have the name 'GOLD'" in refused(cfg, "plans", "show", "GOLD")
    assert "no plan has the id or name 'Silver'" in refused(cfg, "plans", "show", "Silver")
    deleted = cli_json(cfg, "plans", "delete", "Gold")
    assert deleted == {"id": made["id"], "deleted": True}
    assert [p["name"] for p in cli_json(cfg, "plans", "list")["plans"]] == ["gold"]


def test_a_keys_plan_credits_and_metadata_from_create_and_edit(cfg: Path) -> None:
    plan = cli_json(cfg, "plans", "create", "Starter")
    owner = cli_json(cfg, "users", "list")["users"][0]["id"]
    key = cli_json(
        cfg,
        "keys",
        "create",
        "--user",
        owner,
        "--plan",
        "starter",
        "--credits",
        "10",
        "--refill",
        "100/monthly",
        "--metadata",
        '{"tier": "gold"}',
    )
    assert key["plan_id"] == plan["id"] and key["metadata"] == {"tier": "gold"}
    assert key["credits"] == {"remaining": 10, "refill": {"amount": 100, "interval": "monthly"}}
    shown = run_cli("--config", str(cfg), "keys", "show", key["access_key"]).stdout
    assert "10, back to 100 each UTC month" in shown and '{"tier": "gold"}' in shown
    ak = key["access_key"]
    edited = cli_json(cfg, "keys", "edit", ak, "--no-plan", "--credits", "3", "--metadata", "{}")
    assert edited["plan_id"] is None and edited["metadata"] == {}
    assert edited["credits"] == {"remaining": 3, "refill": None}
    assert cli_json(cfg, "keys", "edit", ak, "--no-credits")["credits"] is None
    assert cli_json(cfg, "keys", "edit", ak, "--plan", plan["id"])["plan_id"] == plan["id"]
    assert "not allowed with" in refused(cfg, "keys", "edit", ak, "--plan", "x", "--no-plan")
    assert "no plan has the id or name 'Gold'" in refused(cfg, "keys", "edit", ak, "--plan", "Gold")
    assert "not a JSON object" in refused(cfg, "keys", "edit", ak, "--metadata", "[1]")
    assert "whole number" in refused(cfg, "keys", "create", "--user", owner, "--credits", "-1")
    assert "like 1000/monthly" in refused(
        cfg, "keys", "create", "--user", owner, "--credits", "1", "--refill", "weekly"
    )


def test_disable_and_enable_a_key(cfg: Path) -> None:
    owner = cli_json(cfg, "users", "list")["users"][0]["id"]
    ak = cli_json(cfg, "keys", "create", "--user", owner)["access_key"]
    text = run_cli("--config", str(cfg), "keys", "disable", ak).stdout
    assert f"Disabled {ak}" in text and cli_json(cfg, "keys", "show", ak)["disabled"] is True
    assert cli_json(cfg, "keys", "enable", ak)["disabled"] is False
    assert "secret key, not an access key" in refused(cfg, "keys", "disable", "gws_live_x")


@pytest.mark.parametrize("kind", ["user", "application"])
def test_a_bearers_budget_by_its_email_or_name(cfg: Path, kind: str) -> None:
    label = {"user": "alice@example.com", "application": "billing-job"}[kind]
    plural = f"{kind}s"
    created = cli_json(cfg, plural, "create", label)
    plan = cli_json(cfg, "plans", "create", "Team")
    edited = cli_json(
        cfg,
        plural,
        "edit",
        label,
        "--plan",
        "team",
        "--rate-limit",
        "10/1s",
        "--rate-limit",
        "100/1m",
        "--credits",
        "500",
        "--refill",
        "500/daily",
    )
    assert edited["id"] == created["id"] and edited["plan_id"] == plan["id"]
    assert edited["rate_limits"] == [
        {"limit": 10, "window_seconds": 1},
        {"limit": 100, "window_seconds": 60},
    ]
    assert edited["credits"] == {"remaining": 500, "refill": {"amount": 500, "interval": "daily"}}
    assert cli_json(cfg, plural, "show", label)["credits"]["remaining"] == 500
    cleared = cli_json(cfg, plural, "edit", label, "--no-plan", "--no-rate-limits", "--no-credits")
    assert (cleared["plan_id"], cleared["rate_limits"], cleared["credits"]) == (None, [], None)
    assert "--plan, --no-plan" in refused(cfg, plural, "edit", label)
    assert f"no {kind} has the id" in refused(cfg, plural, "edit", "nobody", "--plan", "Team")


def test_usage_export_as_csv_or_json(cfg: Path) -> None:
    days = ("--from", "2026-12-01", "--to", "2026-12-07")
    as_csv = run_cli("--config", str(cfg), "usage", "export", *days, "--group-by", "bearer")
    assert next(csv.reader(io.StringIO(as_csv.stdout))) == [
        "day",
        "group",
        "allowed",
        "denied",
        "rate_limited",
        "credits_spent",
    ]
    as_json = cli_json(cfg, "usage", "export", *days)  # --json alone: JSON
    assert (as_json["group_by"], as_json["rows"]) == ("key", [])
    assert "to must not be before from" in refused(
        cfg, "usage", "export", "--from", "2026-12-07", "--to", "2026-12-01"
    )
    assert "not a day of the calendar" in refused(
        cfg, "usage", "export", "--from", "2026-02-30", "--to", "2026-03-01"
    )
