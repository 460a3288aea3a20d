"""Importing keys from Kong, Unkey and a CSV: a dry run by default, one transaction, a report of
what was taken and refused and why; the old secrets keep working where imported keys are
accepted, and nowhere else; an imported key rolls into our format."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import BOTH_STORES, BOUND, Gateway, run_cli, wait_for

BACKENDS = BOTH_STORES
ACCEPT = "[keys]\naccept_imported = true"
KONG_SECRET = "kong-secret-0123456789abcdef"
UNKEY_SECRET = "uk_3ZpQ8m2bXvR7tLw9sYc4Nd"
CSV_SECRET = "legacy-csv-secret-000111222"
CSV_HASHED = "legacy-csv-hashed-999888777"


def sha256(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def files(tmp_path: Path, gateway: Gateway) -> dict[str, tuple[Path, list[str]]]:
    """Each format's file, and the secrets it should bring in."""
    kong = tmp_path / "kong.yaml"
    kong.write_text(
        "_format_version: '3.0'\n"
        "consumers:\n"
        "- username: billing-service\n"
        "  keyauth_credentials:\n"
        f"  - key: {KONG_SECRET}\n"
        "- custom_id: no-keys\n"
    )
    unkey = tmp_path / "unkey.json"
    unkey.write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "id": "key_1",
                        "hash": base64.b64encode(sha256(UNKEY_SECRET)).decode(),
                        "start": "uk_3Zp",
                        "name": "mobile app",
                        "ownerId": "acme",
                        "expires": None,
                    }
                ]
            }
        )
    )
    table = tmp_path / "keys.csv"
    table.write_text(
        "secret,sha256,bearer,project,description\n"
        f"{CSV_SECRET},,user:owner@localhost,default,from the old system\n"
        f",{sha256(CSV_HASHED).hex()},application:reports,{gateway.project_id},hashed\n"
    )
    return {
        "kong": (kong, [KONG_SECRET]),
        "unkey": (unkey, [UNKEY_SECRET]),
        "csv": (table, [CSV_SECRET, CSV_HASHED]),
    }


def status(gateway: Gateway, secret: str) -> int:
    with gateway.client() as client:
        return client.get("/echo/x", headers={"X-Auth-Token": secret}).status_code


@pytest.mark.parametrize("source", ["kong", "unkey", "csv"])
def test_import_keeps_the_old_secrets_working(
    make_gateway: Any, tmp_path: Path, source: str
) -> None:
    gateway: Gateway = make_gateway(ACCEPT)
    path, secrets = files(tmp_path, gateway)[source]
    dry = json.loads(gateway.cli("keys", "import", "--from", source, str(path), "--json").stdout)
    assert dry["applied"] is False and len(dry["taken"]) == len(secrets) and dry["refused"] == []
    assert all(status(gateway, s) == 401 for s in secrets)  # a dry run writes nothing
    listed = json.loads(gateway.cli("keys", "list", "--json").stdout)
    assert listed["total_count"] == 1  # the owner key alone
    done = json.loads(
        gateway.cli("keys", "import", "--from", source, str(path), "--apply", "--json").stdout
    )
    assert done["applied"] is True and len(done["taken"]) == len(secrets)
    # The dry run's 401s are remembered as unknown secrets until the key feed says keys
    # changed: the imported secrets work within the revocation bound, as any change does.
    wait_for(lambda: [status(gateway, s) for s in secrets] == [200] * len(secrets), BOUND + 2)
    access_key = done["taken"][0]["access_key"]
    shown = json.loads(gateway.cli("keys", "show", access_key, "--json").stdout)
    assert shown["imported"] is True
    # Rolled, it is a key of ours: the new secret has our prefix and checksum.
    rolled = json.loads(gateway.cli("keys", "roll", access_key, "--json").stdout)
    assert rolled["imported"] is False and rolled["secret_key"].startswith("gws_live_")
    assert status(gateway, rolled["secret_key"]) == 200
    again = gateway.cli("keys", "import", "--from", source, str(path), "--json")
    assert {r["reason"] for r in json.loads(again.stdout)["refused"]} <= {
        "the store holds this secret already"
    }


def test_imported_secrets_are_refused_unless_accepted(gateway: Gateway, tmp_path: Path) -> None:
    path, secrets = files(tmp_path, gateway)["kong"]
    gateway.cli("keys", "import", "--from", "kong", str(path), "--apply")
    queries = gateway.resources.verifier.store_queries
    assert status(gateway, secrets[0]) == 401
    assert gateway.resources.verifier.store_queries == queries  # refused before any lookup
    assert status(gateway, gateway.secret_key) == 200  # our own keys as ever


def test_the_report_says_what_was_refused_and_why(gateway: Gateway, tmp_path: Path) -> None:
    table = tmp_path / "bad.csv"
    table.write_text(
        "secret,sha256,bearer,project,expires_at\n"
        "good-secret-1234567890,,application:svc,,\n"
        "good-secret-1234567890,,application:svc,,\n"
        ",abc,application:svc,,\n"
        "another-secret-123456,,user:nobody@example.com,,\n"
        "third-secret-1234567,,application:svc,nowhere,\n"
        "fourth-secret-123456,,someone,,\n"
        "fifth-secret-1234567,,application:svc,,2001-01-01T00:00:00Z\n"
        "short,,application:svc,,\n"
    )
    report = json.loads(
        gateway.cli("keys", "import", "--from", "csv", str(table), "--apply", "--json").stdout
    )
    assert [t["ref"] for t in report["taken"]] == ["row 2"]
    assert report["applications_created"] == ["svc"]
    assert report["refused"] == [
        {"ref": "row 3", "reason": "the same secret is earlier in the file"},
        {"ref": "row 4", "reason": "the hash is not a SHA-256 (64 hex digits or base64)"},
        {"ref": "row 5", "reason": "user 'nobody@example.com' does not exist: create it first"},
        {"ref": "row 6", "reason": "project 'nowhere' does not exist"},
        {
            "ref": "row 7",
            "reason": "bearer must be user:<email or id> or application:<name>",
        },
        {"ref": "row 8", "reason": "expired already"},
        {"ref": "row 9", "reason": "the secret must be 8 to 256 ASCII characters"},
    ]
    text = gateway.cli("keys", "import", "--from", "csv", str(table)).stdout
    assert "Dry run" in text and "the store holds this secret already" in text


def test_a_file_of_another_format_is_refused(gateway: Gateway, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"hello": 1}')
    refused = gateway.cli("keys", "import", "--from", "unkey", str(wrong), check=False)
    assert refused.returncode == 2 and "not an Unkey export" in refused.stderr
    assert "Traceback" not in refused.stderr
    missing = gateway.cli("keys", "import", "--from", "csv", str(tmp_path / "nope"), check=False)
    assert missing.returncode == 2 and "cannot be read" in missing.stderr


def test_an_expiry_no_time_can_say_is_refused(gateway: Gateway, tmp_path: Path) -> None:
    """Past 9999-12-31T23:59:59Z (or not a number at all) no RFC 3339 time can show it: such an
    entry is refused, not a stack trace that takes the whole import down."""
    hashed = [base64.b64encode(sha256(f"unkey-far-secret-{n}")).decode() for n in range(4)]
    unkey = tmp_path / "far.json"
    unkey.write_text(
        "["
        + ", ".join(
            f'{{"hash": "{h}", "ownerId": "acme", "expires": {expires}}}'
            for h, expires in zip(hashed, ["1e20", "1e400", "NaN", "4102444800000"], strict=True)
        )
        + "]"
    )
    report = json.loads(
        gateway.cli("keys", "import", "--from", "unkey", str(unkey), "--apply", "--json").stdout
    )
    assert [t["ref"] for t in report["taken"]] == ["keys[3]"]  # 2100-01-01
    assert [r["reason"] for r in report["refused"]] == ["expires is not a time"] * 3
    table = tmp_path / "far.csv"
    table.write_text(
        "secret,bearer,expires_at\n"
        "far-csv-secret-0001,application:svc,9999-12-31T23:59:59-01:00\n"
        "far-csv-secret-0002,application:svc,2030-01-01\n"
        "far-csv-secret-0003,application:svc,2030-01-01T00:00:00+01:00\n"
    )
    done = gateway.cli("keys", "import", "--from", "csv", str(table), "--apply", "--json")
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert [t["ref"] for t in report["taken"]] == ["row 4"]
    assert report["refused"] == [
        {"ref": "row 2", "reason": "expires_at is not an RFC 3339 time"},
        {"ref": "row 3", "reason": "expires_at is not an RFC 3339 time"},  # no zone: whose?
    ]


def test_a_kong_credential_keeps_its_time_to_live(gateway: Gateway, tmp_path: Path) -> None:
    """Kong's key-auth credentials may carry a ``ttl`` (seconds left when dumped): such a key
    expires here then too, not never."""
    kong = tmp_path / "kong.yaml"
    kong.write_text(
        "_format_version: '3.0'\n"
        "consumers:\n"
        "- username: billing-service\n"
        "  keyauth_credentials:\n"
        "  - key: kong-lasting-secret-01\n"
        "  - key: kong-hour-left-secret-02\n"
        "    ttl: 3600\n"
        "  - key: kong-gone-secret-03\n"
        "    ttl: 0\n"
        "  - key: kong-odd-ttl-secret-04\n"
        "    ttl: soon\n"
    )
    report = json.loads(
        gateway.cli("keys", "import", "--from", "kong", str(kong), "--apply", "--json").stdout
    )
    lasting, hour = (t["access_key"] for t in report["taken"])
    assert report["refused"] == [
        {"ref": "consumers[0].keyauth_credentials[2]", "reason": "expired already"},
        {
            "ref": "consumers[0].keyauth_credentials[3]",
            "reason": "ttl is not a number of seconds",
        },
    ]
    shown = [json.loads(gateway.cli("keys", "show", k, "--json").stdout) for k in (lasting, hour)]
    assert shown[0]["expires_at"] is None
    from admin.fields import parse_time

    left = parse_time(shown[1]["expires_at"]) - time.time()
    assert 3500 < left <= 3600


def test_a_csv_saved_with_a_byte_order_mark_is_read(gateway: Gateway, tmp_path: Path) -> None:
    """Spreadsheets save "CSV UTF-8" with a byte order mark before the header: it is not part
    of the first column's name."""
    table = tmp_path / "excel.csv"
    table.write_bytes(
        b"\xef\xbb\xbfsecret,bearer,project\r\nbom-csv-secret-0001,application:svc,default\r\n"
    )
    done = gateway.cli("keys", "import", "--from", "csv", str(table), "--json", check=False)
    assert done.returncode == 0, done.stderr
    assert [t["ref"] for t in json.loads(done.stdout)["taken"]] == ["row 2"]


@pytest.mark.parametrize(
    ("command", "actions"), [("keys", ("import", "audit-policy")), ("webhooks", ("deliveries",))]
)
def test_the_help_names_every_action(command: str, actions: tuple[str, ...]) -> None:
    """A group's one line of help (its --help, and its line in `gateway --help`) names all of
    its actions."""
    described = run_cli(command, "--help").stdout.split("\n\n")[1]
    for action in actions:
        assert action in described, described


def test_bearers_and_projects_are_named_as_every_command_names_them(
    gateway: Gateway, tmp_path: Path
) -> None:
    """An exact match, else one ignoring case (docs/cli.md); a name several applications have
    is refused with them listed, never taken for one of them at random."""
    for name in ("svc", "twin", "twin"):
        gateway.cli("applications", "create", name)
    table = tmp_path / "names.csv"
    table.write_text(
        "secret,bearer,project\n"
        "named-case-secret-1,application:SVC,DEFAULT\n"
        "named-case-secret-2,user:OWNER@LOCALHOST,default\n"
        "named-twin-secret-3,application:twin,\n"
        "named-new-secret-4,application:fresh,\n"
        "named-new-secret-5,application:FRESH,\n"
    )
    report = json.loads(
        gateway.cli("keys", "import", "--from", "csv", str(table), "--apply", "--json").stdout
    )
    assert [t["ref"] for t in report["taken"]] == ["row 2", "row 3", "row 5", "row 6"]
    [refused] = report["refused"]
    assert refused["ref"] == "row 4"
    assert refused["reason"].startswith("2 applications have the name 'twin': ")
    assert report["applications_created"] == ["fresh"]  # once: FRESH is the same one
    listed = json.loads(gateway.cli("applications", "list", "--json").stdout)["applications"]
    assert sorted(a["name"] for a in listed) == ["fresh", "svc", "twin", "twin"]
    svc_keys = json.loads(gateway.cli("keys", "list", "--application", "svc", "--json").stdout)
    assert svc_keys["total_count"] == 1


def test_an_application_is_made_only_with_a_name_the_api_would_take(
    gateway: Gateway, tmp_path: Path
) -> None:
    """A Kong consumer (or Unkey owner) becomes an application: with a blank name, or one past
    100 characters, the API would refuse it; so is the entry, rather than an application named
    blank or cut short (where a second entry naming it in full would make another)."""
    long_name = "c" * 101
    kong = tmp_path / "kong.yaml"
    kong.write_text(
        "_format_version: '3.0'\n"
        "consumers:\n"
        "- username: '   '\n"
        "  keyauth_credentials:\n"
        "  - key: blank-consumer-secret-01\n"
        f"- username: {long_name}\n"
        "  keyauth_credentials:\n"
        "  - key: long-consumer-secret-02\n"
        "- username: fine\n"
        "  keyauth_credentials:\n"
        "  - key: fine-consumer-secret-03\n"
    )
    report = json.loads(
        gateway.cli("keys", "import", "--from", "kong", str(kong), "--apply", "--json").stdout
    )
    assert [t["ref"] for t in report["taken"]] == ["consumers[2].keyauth_credentials[0]"]
    assert [(r["ref"], r["reason"]) for r in report["refused"]] == [
        ("consumers[0].keyauth_credentials[0]", "the application's name must not be blank"),
        (
            "consumers[1].keyauth_credentials[0]",
            "the application's name must be at most 100 characters (it has 101)",
        ),
    ]
    assert report["applications_created"] == ["fine"]


def test_a_short_secret_shows_little_of_itself(gateway: Gateway, tmp_path: Path) -> None:
    """An imported key's secret_prefix (in the API, the CLI, the console and every webhook
    event) shows at most an eighth of its secret: 4 characters of an 8-character one would be
    half of it, leaving a search a client can run against the proxy."""
    kong = tmp_path / "kong.yaml"
    kong.write_text(
        "_format_version: '3.0'\n"
        "consumers:\n"
        "- username: short-and-long\n"
        "  keyauth_credentials:\n"
        "  - key: k8charsX\n"
        f"  - key: {'L' * 32}\n"
    )
    report = json.loads(
        gateway.cli("keys", "import", "--from", "kong", str(kong), "--apply", "--json").stdout
    )
    shown = [
        json.loads(gateway.cli("keys", "show", t["access_key"], "--json").stdout)["secret_prefix"]
        for t in report["taken"]
    ]
    assert shown == ["k", "LLLL"]
