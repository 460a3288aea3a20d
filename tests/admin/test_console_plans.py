"""The console's plans view and its disable/enable action, in a real headless Chromium."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.admin.test_console import browser, choose, page, proxy_status, row, sign_in
from tests.support import BOUND, Gateway, wait_for

__all__ = ["browser", "page"]  # the fixtures, shared with the console's other tests


def test_a_manager_creates_and_deletes_a_plan(page: Any, gateway: Gateway) -> None:
    sign_in(page, gateway, gateway.secret_key)
    page.get_by_role("button", name="Plans").click()
    expect(page.locator("#plans-empty")).to_be_visible()
    form = page.locator("#plan-form")
    form.get_by_label("Name").fill("Starter")
    form.get_by_label("Rate limits").fill("100/60s")
    form.get_by_label("Credits").fill("50000")
    form.get_by_label("Refill").select_option("monthly")
    form.get_by_role("button", name="Create plan").click()
    plan = page.locator('#plans-table tr[data-plan="Starter"]')
    expect(plan).to_contain_text("100/60s")
    expect(plan).to_contain_text("refilled monthly")
    with gateway.admin() as admin:
        assert [p["name"] for p in admin.get("/v1/plans").json()["plans"]] == ["Starter"]
    form.get_by_label("Name").fill("Starter")
    form.get_by_role("button", name="Create plan").click()
    expect(page.locator("#plans-error")).to_contain_text("already exists")
    page.get_by_role("button", name="Delete plan Starter").click()
    expect(page.locator("#plans-empty")).to_be_visible()


def test_a_manager_disables_and_enables_a_key(page: Any, gateway: Gateway) -> None:
    new = gateway.new_key(description="unpaid")
    assert proxy_status(gateway, new.secret_key) == 200
    sign_in(page, gateway, gateway.secret_key)
    choose(page, new.key.access_key, "Disable")
    expect(row(page, new.key.access_key)).to_contain_text("Disabled")
    wait_for(lambda: proxy_status(gateway, new.secret_key) == 403, BOUND + 1)
    choose(page, new.key.access_key, "Enable")
    expect(row(page, new.key.access_key)).not_to_contain_text("Disabled")
    wait_for(lambda: proxy_status(gateway, new.secret_key) == 200, BOUND + 1)
