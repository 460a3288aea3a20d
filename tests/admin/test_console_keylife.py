"""The console's "Key life" view in a real Chromium: leaked keys with where they leaked, the
lifetime policy and the keys that break it, webhooks (secret shown once) and their delivery log,
and imported keys marked in the credentials list."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import expect

from admin import leaks
from tests.admin.test_console import browser, page, row, sign_in  # noqa: F401 (fixtures)
from tests.support import Gateway


def test_key_life_view(page: Any, gateway: Gateway) -> None:  # noqa: F811
    leaked = gateway.new_key(description="pushed by mistake")
    where = "https://github.com/someone/repo/blob/abc/settings.py"
    gateway.loop.run(
        leaks.handle(
            gateway.resources.db,
            gateway.resources.secret_format,
            [leaks.Report(leaked.secret_key, where, "content")],
            "github",
            "192.0.2.1",
            time.time(),
        )
    )
    sign_in(page, gateway, gateway.secret_key)
    page.get_by_role("button", name="Key life").click()
    leak_row = page.locator(f'#leaks-table tr[data-access-key="{leaked.key.access_key}"]')
    expect(leak_row).to_contain_text(where)
    expect(leak_row).to_contain_text("leaked")

    # The policy: saved, and the owner key (no expiry) listed as breaking it.
    policy = page.locator("#policy-form")
    policy.get_by_label("Maximum key lifetime (days)").fill("90")
    policy.get_by_role("button", name="Save policy").click()
    expect(page.locator("#policy-saved")).to_have_text("Policy saved.")
    expect(page.locator("#violations-table tbody")).to_contain_text(gateway.access_key)
    expect(page.locator("#violations-table tbody")).to_contain_text("no_expiry")
    with gateway.admin() as admin:
        org = admin.get("/v1/whoami").json()["organization_id"]
        assert admin.get(f"/v1/organizations/{org}/policy").json()["max_key_lifetime_days"] == 90

    # A webhook: its secret shown once; a test event in its delivery log.
    form = page.locator("#webhook-form")
    form.get_by_label("URL").fill("http://127.0.0.1:1/hook")
    form.get_by_label("key.revoked").check()
    form.get_by_role("button", name="Add webhook").click()
    expect(page.locator("#webhook-secret")).to_contain_text("whsec_")
    hook_row = page.locator("#webhooks-table tbody tr")
    expect(hook_row).to_have_count(1)
    expect(hook_row).to_contain_text("key.revoked")
    hook_row.get_by_role("button", name="Send test").click()
    expect(page.locator("#deliveries-table tbody")).to_contain_text("webhook.test")
    expect(page.locator("#deliveries-table tbody")).to_contain_text("pending")
    with gateway.admin() as admin:
        [hook] = admin.get("/v1/webhooks").json()["webhooks"]
        assert hook["events"] == ["key.revoked"] and "secret" not in hook
    page.get_by_role("button", name="Credentials").click()
    page.get_by_role("button", name="Key life").click()
    expect(page.locator("#webhook-secret")).to_have_text("")  # shown once, then gone
    hook_row.get_by_role("button", name="Delete").click()
    expect(hook_row).to_have_count(0)
    with gateway.admin() as admin:
        assert admin.get("/v1/webhooks").json()["webhooks"] == []


def test_imported_keys_are_marked(page: Any, make_gateway: Any, tmp_path: Any) -> None:  # noqa: F811
    gateway: Gateway = make_gateway()
    table = tmp_path / "keys.csv"
    table.write_text("secret,bearer\nlegacy-secret-1234567890,user:owner@localhost\n")
    gateway.cli("keys", "import", "--from", "csv", str(table), "--apply")
    sign_in(page, gateway, gateway.secret_key)
    imported = [k for k in gateway.cli("keys", "list").stdout.split() if k.startswith("GWK")]
    assert len(imported) == 2
    marked = next(k for k in imported if k != gateway.access_key)
    expect(row(page, marked)).to_have_count(1)
    expect(row(page, marked).locator(".badge.imported")).to_have_text("imported")
    expect(row(page, gateway.access_key).locator(".badge.imported")).to_have_count(0)
