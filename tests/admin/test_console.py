"""The admin web console, driven in a real headless Chromium through Playwright.

Chromium is Debian's (`/usr/bin/chromium`, or $CHROMIUM); `.ci/run` installs it where absent.
Outside CI, with no Chromium at all, these tests skip and say so; in CI they fail instead.
The 3 a.m. flow takes the README's screenshots on the way: into a temporary directory, or into
$GATEWAY_SCREENSHOTS (`make screenshots` sets it to docs/), so `make test` writes no tracked file.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright import sync_api
from playwright.sync_api import expect

from admin import access, directory, fields
from tests.support import BOUND, Gateway, wait_for

# What the probe of this machine found necessary: root needs --no-sandbox, and the closed network
# refuses Chromium's background connections unless they are turned off.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    if os.environ.get("CI"):
        pytest.fail("no Chromium at /usr/bin/chromium: .ci/run should have installed it")
    pytest.skip("no Chromium found (apt-get install chromium, or set CHROMIUM=/path)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 760})
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    alerts: list[str] = []
    opened.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
    opened.alerts = alerts
    yield opened
    context.close()


def sign_in(page: Any, gateway: Gateway, secret: str) -> None:
    page.goto(gateway.admin_url + "/")
    page.locator("#sign-in").get_by_label("Secret key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_be_visible()


def row(page: Any, access_key: str) -> Any:
    return page.locator(f'#keys-table tr[data-access-key="{access_key}"]')


def choose(page: Any, access_key: str, action: str) -> None:
    row(page, access_key).get_by_role("button", name=f"More actions for {access_key}").click()
    page.get_by_role("menuitem", name=action).click()


def proxy_status(gateway: Gateway, secret: str) -> int:
    return httpx.get(gateway.url + "/echo/console", headers={"X-Auth-Token": secret}).status_code


def test_the_3am_flow_generate_use_edit_roll_delete(
    page: Any, gateway: Gateway, tmp_path: Path
) -> None:
    shots = Path(os.environ.get("GATEWAY_SCREENSHOTS") or tmp_path)
    sign_in(page, gateway, gateway.secret_key)
    expect(page.locator("#who")).to_contain_text("Owner")
    assert page.evaluate("document.cookie") == ""
    assert gateway.secret_key not in page.url

    page.get_by_role("button", name="Generate API key").click()
    dialog = page.locator("#generate-dialog")
    dialog.get_by_label("Description").fill("billing service")
    dialog.get_by_label("Expires", exact=True).select_option(label="In 30 days")
    dialog.get_by_role("button", name="Generate API key").click()
    secret_dialog = page.locator("#secret-dialog")
    expect(secret_dialog).to_be_visible()
    expect(secret_dialog).to_contain_text("will not be shown again")
    secret = secret_dialog.get_by_label("Secret key").input_value()
    access_key = secret_dialog.get_by_label("Access key").input_value()
    assert secret.startswith("gws_live_") and access_key.startswith("GWK")
    secret_dialog.get_by_role("button", name="Copy").last.click()
    expect(secret_dialog.locator("#secret-copied")).to_have_text("Secret key copied.")
    page.screenshot(path=str(shots / "console-secret.png"))
    assert proxy_status(gateway, secret) == 200

    secret_dialog.get_by_role("button", name="I have copied the secret key").click()
    expect(row(page, access_key)).to_contain_text("billing service")
    assert secret not in page.content()  # the secret left the page with its dialog
    page.screenshot(path=str(shots / "console-credentials.png"))

    choose(page, access_key, "Edit")
    edit = page.locator("#edit-dialog")
    edit.get_by_label("Description").fill("billing service (edited)")
    edit.get_by_role("button", name="Validate").click()
    expect(row(page, access_key)).to_contain_text("billing service (edited)")

    choose(page, access_key, "Roll")
    roll = page.locator("#roll-dialog")
    roll.get_by_label("Current secret stops working").select_option("0")
    roll.get_by_role("button", name="Roll API key").click()
    expect(secret_dialog).to_be_visible()
    rolled = secret_dialog.get_by_label("Secret key").input_value()
    assert rolled.startswith("gws_live_") and rolled != secret
    secret_dialog.get_by_role("button", name="I have copied the secret key").click()
    wait_for(lambda: proxy_status(gateway, secret) == 401, timeout=BOUND)
    assert proxy_status(gateway, rolled) == 200

    choose(page, access_key, "Delete")
    delete = page.locator("#delete-dialog")
    expect(delete).to_contain_text("permanent")
    submit = delete.get_by_role("button", name="Submit")
    confirm = delete.get_by_label("Type DELETE to confirm")
    expect(submit).to_be_disabled()
    confirm.fill("delete")
    expect(submit).to_be_disabled()
    confirm.fill("DELETE")
    expect(submit).to_be_enabled()
    submit.click()
    deleted_at = time.monotonic()
    expect(row(page, access_key)).to_have_count(0)
    wait_for(lambda: proxy_status(gateway, rolled) == 401, timeout=BOUND)
    assert time.monotonic() - deleted_at < BOUND + 1.0  # the bound, plus the page reload

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#sign-in").get_by_label("Secret key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert page.alerts == []


def test_descriptions_stay_text(page: Any, gateway: Gateway) -> None:
    hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    new = gateway.new_key(description=hostile)
    sign_in(page, gateway, gateway.secret_key)
    cell = row(page, new.key.access_key).locator("td.description")
    expect(cell).to_have_text(hostile)
    assert page.locator("#keys-table img, #keys-table script").count() == 0
    choose(page, new.key.access_key, "Edit")
    expect(page.locator("#edit-dialog").get_by_label("Description")).to_have_value(hostile)
    assert page.alerts == []


def test_a_plain_user_sees_only_credentials(page: Any, gateway: Gateway) -> None:
    db, op = gateway.resources.db, access.LOCAL_OPERATOR
    plain = gateway.loop.run(directory.create_user(db, op, "plain@example.com"))
    mine = gateway.new_key(user_id=plain.id, description="plain's key")
    lapsing = gateway.new_key(user_id=plain.id, expires_at=time.time() + 0.3)
    time.sleep(0.4)
    sign_in(page, gateway, mine.secret_key)
    expect(page.locator("#who")).to_contain_text("plain@example.com")
    expect(row(page, mine.key.access_key)).to_be_visible()
    expect(row(page, gateway.access_key)).to_have_count(0)
    expect(row(page, lapsing.key.access_key).locator(".badge.expired")).to_have_text("Expired")
    expect(row(page, mine.key.access_key).locator(".badge.expired")).to_have_count(0)
    for view in ("Users", "Applications", "Audit log"):
        expect(page.get_by_role("button", name=view, exact=True)).to_be_hidden()


def test_managers_open_a_users_keys_and_the_audit_log(page: Any, gateway: Gateway) -> None:
    db, op = gateway.resources.db, access.LOCAL_OPERATOR
    other = gateway.loop.run(directory.create_user(db, op, "other@example.com"))
    theirs = gateway.new_key(user_id=other.id, description="other's key")
    sign_in(page, gateway, gateway.secret_key)
    page.get_by_role("button", name="Users", exact=True).click()
    page.get_by_role("button", name="API keys of other@example.com").click()
    expect(page.locator("#credentials-title")).to_have_text("API keys of other@example.com")
    lit = page.locator('#nav button[aria-current="page"]')
    expect(lit).to_have_text("Users")  # the view it was reached from stays lit
    expect(row(page, theirs.key.access_key)).to_be_visible()
    # Nobody creates a key for another user (admin/access.py), so the button is not offered...
    expect(page.get_by_role("button", name="Generate API key")).to_be_hidden()
    choose(page, theirs.key.access_key, "Edit")  # ...but managers edit, roll and delete theirs
    page.locator("#edit-dialog").get_by_label("Description").fill("checked by the owner")
    page.locator("#edit-dialog").get_by_role("button", name="Validate").click()
    expect(row(page, theirs.key.access_key)).to_contain_text("checked by the owner")

    robot = gateway.loop.run(directory.create_application(db, op, "billing-robot"))
    page.get_by_role("button", name="Applications", exact=True).click()
    page.get_by_role("button", name="API keys of billing-robot").click()
    expect(page.locator("#credentials-title")).to_have_text("API keys of billing-robot")
    expect(lit).to_have_text("Applications")
    expect(lit).to_have_count(1)
    page.get_by_role("button", name="Generate API key").click()
    page.locator("#generate-dialog").get_by_role("button", name="Generate API key").click()
    expect(page.locator("#secret-dialog")).to_be_visible()
    made_for_robot = page.locator("#secret-access-key").input_value()
    page.get_by_role("button", name="I have copied the secret key").click()
    expect(row(page, made_for_robot)).to_be_visible()
    with gateway.admin() as admin:
        assert admin.get(f"/v1/api-keys/{made_for_robot}").json()["application_id"] == robot.id

    page.get_by_role("button", name="Audit log").click()
    audit = page.locator("#audit-filters")
    audit.get_by_label("Access key").fill(made_for_robot)
    audit.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#audit-table tbody tr")).to_have_count(1)
    expect(page.locator("#audit-table tbody")).to_contain_text("api_key.create")
    page.get_by_role("button", name="Credentials").click()
    expect(lit).to_have_text("Credentials")
    expect(page.locator("#credentials-title")).to_have_text("Credentials")


def test_api_errors_are_shown_in_words(page: Any, gateway: Gateway) -> None:
    page.goto(gateway.admin_url + "/")
    page.locator("#sign-in").get_by_label("Secret key").fill("gws_live_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in-error")).to_contain_text("not valid")

    new = gateway.new_key(description="gone elsewhere")
    sign_in(page, gateway, gateway.secret_key)
    with gateway.admin() as admin:  # another admin deletes it while this page shows it
        assert admin.delete(f"/v1/api-keys/{new.key.access_key}").status_code == 204
    choose(page, new.key.access_key, "Edit")
    page.locator("#edit-dialog").get_by_role("button", name="Validate").click()
    error = page.locator("#edit-error")
    expect(error).to_contain_text("was revoked at")
    assert "{" not in error.inner_text()

    page.locator("#edit-dialog").get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Generate API key").click()
    generate = page.locator("#generate-dialog")
    generate.get_by_label("Expires", exact=True).select_option(label="Custom…")
    generate.get_by_label("Expires at (your local time)").fill("2001-01-01T00:00")
    generate.get_by_role("button", name="Generate API key").click()
    expect(page.locator("#generate-error")).to_have_text("The expiry must be in the future.")


def test_keyboard_alone(page: Any, gateway: Gateway) -> None:
    page.goto(gateway.admin_url + "/")
    page.locator("#sign-in").get_by_label("Secret key").focus()
    page.keyboard.type(gateway.secret_key)
    page.keyboard.press("Enter")
    expect(page.locator("#who")).to_be_visible()

    def tab_to(name: str) -> None:
        for _ in range(40):
            page.keyboard.press("Tab")
            focused = page.evaluate(
                "document.activeElement.getAttribute('aria-label')"
                " || document.activeElement.textContent.trim()"
            )
            if focused == name:
                return
        raise AssertionError(f"{name!r} cannot be reached with Tab")

    tab_to("Generate API key")
    page.keyboard.press("Enter")
    page.keyboard.type("typed key")
    page.keyboard.press("Enter")  # submits the form from the description field
    expect(page.locator("#secret-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#secret-dialog")).to_be_hidden()
    # The list is redrawn once the new key is in it: tab through the redrawn one, not the old.
    expect(page.locator("#keys-table tbody tr")).to_have_count(2)
    access_key = page.locator("#keys-table tbody tr").first.get_attribute("data-access-key")
    tab_to(f"More actions for {access_key}")
    page.keyboard.press("Enter")
    expect(page.get_by_role("menuitem", name="Edit")).to_be_focused()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")  # Roll
    expect(page.locator("#roll-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#roll-dialog")).to_be_hidden()


def test_usable_at_360_px(page: Any, gateway: Gateway) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    sign_in(page, gateway, gateway.secret_key)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.get_by_role("button", name="Generate API key").click()
    box = page.locator("#generate-dialog").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    expect(
        page.locator("#generate-dialog").get_by_role("button", name="Generate API key")
    ).to_be_in_viewport()
    page.locator("#generate-dialog").get_by_role("button", name="Cancel").click()
    # The table scrolls sideways; its actions column stays in sight at the right edge.
    more = row(page, gateway.access_key).get_by_role(
        "button", name=f"More actions for {gateway.access_key}"
    )
    expect(more).to_be_in_viewport(ratio=1)
    button = more.bounding_box()
    assert button is not None and button["x"] + button["width"] <= 360
    more.click()  # no scrolling needed: a person sees it and taps it
    expect(page.get_by_role("menuitem", name="Edit")).to_be_in_viewport()


def test_console_headers(gateway: Gateway) -> None:
    for path in ("/", "/console.js", "/console.css"):
        response = httpx.get(gateway.admin_url + path)
        assert response.status_code == 200
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy and "frame-ancestors 'none'" in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
    page = httpx.get(gateway.admin_url + "/").text
    assert "<script>" not in page and not re.search(r"<[^>]*\son[a-z]+\s*=", page)  # no inline JS


def test_the_forms_take_their_limits_from_the_api(page: Any, gateway: Gateway) -> None:
    """The console types no limit of its own: it reads the API's declarations."""
    sign_in(page, gateway, gateway.secret_key)
    for field in ("#generate-description", "#edit-description"):
        assert page.locator(field).get_attribute("maxlength") == str(fields.DESCRIPTION.max_length)
    graces = page.locator("#roll-grace option").evaluate_all("els => els.map(e => Number(e.value))")
    assert graces and max(graces) <= (fields.GRACE.maximum or 0)


def test_policies_in_generate_and_edit(page: Any, make_gateway: Any, upstream: Any) -> None:
    """A manager sets a key's rate limit, allowlist and permissions in the forms; the proxy
    holds them; a plain user is not offered them."""
    billing = (
        f'[[routes]]\nprefix = "/billing"\nupstream = "{upstream.url}"\nresource = "billing"\n'
    )
    gateway: Gateway = make_gateway(extra=billing)
    sign_in(page, gateway, gateway.secret_key)
    page.get_by_role("button", name="Generate API key").click()
    dialog = page.locator("#generate-dialog")
    expect(dialog.get_by_role("group", name="Policies")).to_be_visible()
    dialog.get_by_label("Description").fill("restricted reader")
    dialog.get_by_label("Rate limits").fill("2/1h")
    expect(dialog.get_by_label("Permissions", exact=True)).to_be_hidden()
    dialog.get_by_label("Restricted key").check()
    dialog.get_by_label("Permissions", exact=True).fill("billing:read")
    dialog.get_by_role("button", name="Generate API key").click()
    secret_dialog = page.locator("#secret-dialog")
    expect(secret_dialog).to_be_visible()
    secret = secret_dialog.get_by_label("Secret key").input_value()
    access_key = secret_dialog.get_by_label("Access key").input_value()
    assert secret.startswith("gws_rk_live_")
    secret_dialog.get_by_role("button", name="I have copied the secret key").click()
    expect(row(page, access_key).locator(".badge.restricted")).to_have_text("restricted")

    headers = {"X-Auth-Token": secret}
    assert httpx.get(gateway.url + "/billing/x", headers=headers).status_code == 200
    assert httpx.post(gateway.url + "/billing/x", headers=headers).status_code == 403
    assert httpx.get(gateway.url + "/billing/x", headers=headers).status_code == 200
    limited = httpx.get(gateway.url + "/billing/x", headers=headers)
    assert limited.status_code == 429  # 2/1h held (the refused POST counted toward nothing)

    choose(page, access_key, "Edit")
    edit = page.locator("#edit-dialog")
    expect(edit.get_by_label("Rate limits")).to_have_value("2/3600s")
    expect(edit.get_by_label("Permissions", exact=True)).to_have_value("billing:read")
    edit.get_by_label("Rate limits").fill("")
    edit.get_by_label("Allowed IPs").fill("10.0.0.0/8")
    edit.get_by_label("Permissions", exact=True).fill("billing:write")
    edit.get_by_role("button", name="Validate").click()
    expect(edit).to_be_hidden()
    wait_for(
        lambda: (
            httpx.post(gateway.url + "/billing/x", headers=headers).status_code == 403
            and "allowed_ips"
            in httpx.post(gateway.url + "/billing/x", headers=headers).json()["message"]
        ),
        timeout=BOUND,
    )
    with gateway.admin() as admin:
        key = admin.get(f"/v1/api-keys/{access_key}").json()
    assert key["rate_limits"] == [] and key["allowed_ips"] == ["10.0.0.0/8"]
    assert key["permissions"] == ["billing:write"]

    choose(page, access_key, "Edit")
    edit.get_by_label("Rate limits").fill("ten per second")
    edit.get_by_role("button", name="Validate").click()
    expect(edit.locator("#edit-error")).to_contain_text('"ten" is not like 100/60s')
    edit.get_by_role("button", name="Cancel").click()

    db, op = gateway.resources.db, access.LOCAL_OPERATOR
    plain = gateway.loop.run(directory.create_user(db, op, "plain@example.com"))
    mine = gateway.new_key(user_id=plain.id)
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, gateway, mine.secret_key)
    page.get_by_role("button", name="Generate API key").click()
    expect(page.locator("#generate-dialog").get_by_role("group", name="Policies")).to_be_hidden()
    assert page.alerts == []


def test_usage_chart(page: Any, gateway: Gateway) -> None:
    new = gateway.new_key(description="busy")
    headers = {"X-Auth-Token": new.secret_key}
    for _ in range(3):
        assert httpx.get(gateway.url + "/echo/x", headers=headers).status_code == 200
    gateway.loop.run(gateway.resources.usage.flush(gateway.resources.db))
    sign_in(page, gateway, gateway.secret_key)
    choose(page, new.key.access_key, "Usage")
    dialog = page.locator("#usage-dialog")
    expect(dialog.locator("#usage-hourly-total")).to_have_text(
        "Last 24 hours: 3 allowed, 0 denied, 0 rate limited."
    )
    expect(dialog.locator("#usage-daily-total")).to_contain_text("3 allowed")
    expect(dialog.locator("#usage-hourly g.bucket")).to_have_count(24)
    expect(dialog.locator("#usage-daily g.bucket")).to_have_count(30)
    expect(dialog.locator("#usage-hourly rect.bar-allowed")).to_have_count(1)
    expect(dialog.locator("#usage-hourly svg")).to_have_attribute(
        "aria-label", "Requests per hour, last 24 hours"
    )
    title = dialog.locator("#usage-hourly g.bucket").last.locator("title")
    expect(title).to_contain_text("3 allowed")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    assert page.alerts == []


def test_projects_view(page: Any, gateway: Gateway) -> None:
    """List, create, rename and delete projects; a project some key prefers cannot be deleted,
    and the refusal names the keys."""
    sign_in(page, gateway, gateway.secret_key)
    page.get_by_role("button", name="Projects", exact=True).click()
    view = page.locator("#view-projects")
    expect(view.locator("tbody tr")).to_have_count(1)  # the default project
    expect(view.locator("tbody")).to_contain_text("default")

    page.get_by_role("button", name="Create project").click()
    dialog = page.locator("#project-dialog")
    dialog.get_by_label("Name").fill("shop")
    dialog.get_by_role("button", name="Create project").click()
    expect(view.locator("tbody tr")).to_have_count(2)
    page.get_by_role("button", name="Create project").click()
    dialog.get_by_label("Name").fill("default")
    dialog.get_by_role("button", name="Create project").click()
    expect(dialog.locator("#project-error")).to_contain_text("already exists")
    dialog.get_by_role("button", name="Cancel").click()

    page.get_by_role("button", name="Rename shop").click()
    expect(dialog.get_by_label("Name")).to_have_value("shop")
    dialog.get_by_label("Name").fill("shop-eu")
    dialog.get_by_role("button", name="Rename project").click()
    expect(view.locator("tbody")).to_contain_text("shop-eu")
    with gateway.admin() as admin:
        projects = admin.get("/v1/projects").json()["projects"]
    shop = next(p for p in projects if p["name"] == "shop-eu")

    held = gateway.new_key(default_project_id=shop["id"], description="in the shop")
    page.get_by_role("button", name="Delete shop-eu").click()
    delete = page.locator("#project-delete-dialog")
    delete.get_by_role("button", name="Delete project").click()
    expect(delete.locator("#project-delete-error")).to_contain_text(held.key.access_key)
    delete.get_by_role("button", name="Cancel").click()

    # Moved with the Edit dialog (which offers the new name), it can go.
    page.get_by_role("button", name="Credentials").click()
    expect(row(page, held.key.access_key)).to_contain_text("shop-eu")
    choose(page, held.key.access_key, "Edit")
    page.locator("#edit-dialog").get_by_label("Preferred project").select_option(label="default")
    page.locator("#edit-dialog").get_by_role("button", name="Validate").click()
    expect(row(page, held.key.access_key)).not_to_contain_text("shop-eu")
    page.get_by_role("button", name="Projects", exact=True).click()
    page.get_by_role("button", name="Delete shop-eu").click()
    delete.get_by_role("button", name="Delete project").click()
    expect(delete).to_be_hidden()
    expect(view.locator("tbody tr")).to_have_count(1)
    with gateway.admin() as admin:
        assert [p["name"] for p in admin.get("/v1/projects").json()["projects"]] == ["default"]
    assert page.alerts == []


def test_expiry_in_the_edit_dialog(page: Any, gateway: Gateway) -> None:
    forever = gateway.new_key(description="forever")
    lapsed = gateway.new_key(description="lapsed", expires_at=time.time() + 0.3)
    time.sleep(0.4)
    sign_in(page, gateway, gateway.secret_key)
    edit = page.locator("#edit-dialog")

    choose(page, forever.key.access_key, "Edit")
    expect(edit.locator("#edit-expiry-now")).to_have_text("Never expires now.")
    edit.get_by_label("Expires", exact=True).select_option(label="In 30 days")
    edit.get_by_role("button", name="Validate").click()
    expect(edit).to_be_hidden()
    with gateway.admin() as admin:
        key = admin.get(f"/v1/api-keys/{forever.key.access_key}").json()
    expires = fields.parse_time(key["expires_at"])
    assert 29.9 * 86400 < expires - time.time() <= 30 * 86400
    expires_cell = row(page, forever.key.access_key).locator("td").nth(6)
    expect(expires_cell).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$"))

    choose(page, forever.key.access_key, "Edit")  # unchanged unless chosen
    edit.get_by_label("Description").fill("forever again")
    edit.get_by_role("button", name="Validate").click()
    expect(row(page, forever.key.access_key)).to_contain_text("forever again")
    with gateway.admin() as admin:
        assert (
            admin.get(f"/v1/api-keys/{forever.key.access_key}").json()["expires_at"]
            == (key["expires_at"])
        )
    choose(page, forever.key.access_key, "Edit")
    edit.get_by_label("Expires", exact=True).select_option(label="Never")
    edit.get_by_role("button", name="Validate").click()
    expect(edit).to_be_hidden()
    with gateway.admin() as admin:
        assert admin.get(f"/v1/api-keys/{forever.key.access_key}").json()["expires_at"] is None

    expect(row(page, lapsed.key.access_key).locator(".badge.expired")).to_have_text("Expired")
    choose(page, lapsed.key.access_key, "Edit")
    expect(edit.locator("#edit-expiry-now")).to_contain_text("Expired")
    edit.get_by_label("Expires", exact=True).select_option(label="Custom…")
    edit.get_by_label("New expiry (your local time)").fill("2001-01-01T00:00")
    edit.get_by_role("button", name="Validate").click()
    expect(edit.locator("#edit-error")).to_have_text("The expiry must be in the future.")
    edit.get_by_label("Expires", exact=True).select_option(label="In 1 day")
    edit.get_by_role("button", name="Validate").click()
    expect(row(page, lapsed.key.access_key).locator(".badge.expired")).to_have_count(0)
    wait_for(lambda: proxy_status(gateway, lapsed.secret_key) == 200, timeout=BOUND)
    assert page.alerts == []
