"""The account's keys, profile and activity pages in a real Chromium against the real
control plane, and what a second user sees of (and can do to) the first one's keys,
passkeys and sessions: nothing."""

from __future__ import annotations

import re

import asyncssh
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, expect
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.control_plane.soft_authenticator import SoftAuthenticator
from tests.integration.control_plane.web_account_support import (
    XSS,
    base_url,
    localhost_panel,
    sign_in,
)
from tests.support.chromium import watched_page
from tests.support.clocks import WallClock
from tests.support.panel import PASSWORD, Panel

pytestmark = pytest.mark.browser
EMAIL = "alice@example.org"


@pytest.fixture
async def panel(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> Panel:
    return await localhost_panel(database_url, aiohttp_server, aiohttp_client, wall_clock)


def ssh_public_key() -> str:
    return str(asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip())


async def test_an_api_key_is_shown_once_works_and_is_refused_once_revoked(
    panel: Panel, browser: Browser
) -> None:
    await panel.create_user(EMAIL)
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    await sign_in(watched, EMAIL)
    await page.goto("/account/api-keys")
    await expect(page.get_by_text("You have no API keys.")).to_be_visible()
    # Only what the API would accept from a customer is offered.
    assert await page.locator("input[name=scopes]").evaluate_all("l => l.map(i => i.value)") == [
        "read",
        "write",
    ]

    await page.get_by_label("Name").fill(XSS)
    await page.get_by_label("write").check()
    await page.get_by_label("Allowed addresses").fill("not an address")
    await page.get_by_role("button", name="Create key").click()
    # The API's refusal, next to the field that caused it.
    ips_error = page.locator('[data-error-for="allowed_ips"]')
    await expect(ips_error).to_contain_text("does not appear to be an IPv4 or IPv6")
    await page.get_by_label("Allowed addresses").fill("127.0.0.1\n10.0.0.0/8")
    await page.get_by_label("Expires").fill("2035-06-01T12:00")
    await page.get_by_role("button", name="Create key").click()
    secret_box = page.locator("[data-new-key-secret]")
    await expect(secret_box).to_have_text(re.compile(r"^stl_\S+$"))
    secret = (await secret_box.inner_text()).strip()
    await expect(page.get_by_role("heading", name="Your new key")).to_be_focused()
    await watched.assert_clean()

    # It works against the API, from an allowed address.
    program = await panel.browser()
    program.api_key = secret
    me = await program.json("GET", "/api/v1/auth/session")
    assert me["via"] == "api_key"
    assert me["user"]["email"] == EMAIL

    # Shown once: the page again lists it without its secret.
    await page.reload()
    assert secret not in await page.content()
    row = page.locator("#key-table tbody tr")
    await expect(row).to_have_count(1)
    await expect(row.locator("td").first).to_have_text(XSS)
    await expect(row).to_contain_text("read, write")
    await expect(row).to_contain_text("127.0.0.1/32, 10.0.0.0/8")
    await expect(row.locator("td").nth(4).locator("time")).to_have_attribute(
        "datetime", re.compile(r"^2035-06-01T")
    )

    await row.get_by_role("button", name="Revoke").click()
    await row.get_by_role("button", name="Really revoke?").click()
    await expect(page.get_by_text("You have no API keys.")).to_be_visible()
    refused = await program.request("GET", "/api/v1/auth/session")
    assert refused.status == 401
    await watched.assert_clean()


async def test_profile_ssh_keys_and_activity(panel: Panel, browser: Browser) -> None:
    await panel.create_user(EMAIL)
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    await sign_in(watched, EMAIL)

    await page.goto("/account/ssh-keys")
    await expect(page.get_by_text("You have no SSH keys.")).to_be_visible()
    await expect(page.get_by_text("alice.")).to_have_count(1)  # the SFTP account name
    await page.get_by_label("Name").fill(XSS)
    await page.get_by_label("Public key").fill("ssh-ed25519 AAAA!!!! not a key")
    await page.get_by_role("button", name="Add key").click()
    await expect(page.get_by_role("alert").first).to_be_visible()
    key = ssh_public_key()
    await page.get_by_label("Public key").fill(key)
    await page.get_by_role("button", name="Add key").click()
    rows = page.locator("#ssh-key-table tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("td").first).to_have_text(XSS)
    await expect(rows.first).to_contain_text("SHA256:")
    await rows.first.get_by_role("button", name="Remove").click()
    await rows.first.get_by_role("button", name="Really remove?").click()
    await expect(page.get_by_text("You have no SSH keys.")).to_be_visible()
    await watched.assert_clean()

    await page.goto("/account")
    zone = page.locator("#time-zone")
    await zone.get_by_label("Time zone").fill("Mars/Olympus_Mons")
    await zone.get_by_role("button", name="Save time zone").click()
    await expect(zone.locator('[data-error-for="timezone"]')).to_be_visible()
    await zone.get_by_label("Time zone").fill("Europe/Berlin")
    await zone.get_by_role("button", name="Save time zone").click()
    await expect(zone.get_by_role("status")).to_have_text("Saved: Europe/Berlin.")

    password = page.locator("#change-password")
    await password.get_by_label("Current password").fill(PASSWORD)
    await password.get_by_label("New password", exact=True).fill("a new and long passphrase")
    await password.get_by_label("New password again").fill("a different passphrase!")
    await password.get_by_role("button", name="Change password").click()
    await expect(password.locator('[data-error-for="repeat_password"]')).to_be_visible()
    await password.get_by_label("Current password").fill("not my password at all")
    await password.get_by_label("New password again").fill("a new and long passphrase")
    await password.get_by_role("button", name="Change password").click()
    await expect(password.get_by_role("alert").first).to_be_visible()
    await password.get_by_label("Current password").fill(PASSWORD)
    await password.get_by_label("New password", exact=True).fill("a new and long passphrase")
    await password.get_by_label("New password again").fill("a new and long passphrase")
    await password.get_by_role("button", name="Change password").click()
    await expect(password.get_by_role("status")).to_contain_text("Password changed.")
    # The session was replaced: the page carries on with the new one's CSRF token.
    await zone.get_by_label("Time zone").fill("Asia/Tokyo")
    await zone.get_by_role("button", name="Save time zone").click()
    await expect(zone.get_by_role("status")).to_have_text("Saved: Asia/Tokyo.")

    email = page.locator("#change-email")
    await email.get_by_label("New e-mail address").fill("alice.new@example.org")
    await email.get_by_label("Current password").fill("a new and long passphrase")
    await email.get_by_role("button", name="Change e-mail address").click()
    await expect(email.get_by_role("status")).to_have_text(
        "your address is now alice.new@example.org (unverified)"
    )
    await watched.assert_clean()

    await page.goto("/account/activity")
    table = page.locator("#activity-table")
    for action in (
        "ssh_key.added",
        "ssh_key.removed",
        "user.settings.updated",
        "user.password.changed",
        "user.email.changed",
    ):
        await expect(table.get_by_text(action, exact=True).first).to_be_visible()
    # The name given to a key is shown as text in the entry's details.
    await expect(table.get_by_text(f"name: {XSS}")).to_be_visible()
    assert await table.locator("img").count() == 0
    await watched.assert_clean()


async def test_a_second_user_sees_and_reaches_nothing_of_the_first_ones(
    panel: Panel, browser: Browser
) -> None:
    # Alice's key, SSH key, passkey and session, made through the API.
    await panel.create_user(EMAIL)
    alice = await panel.browser()
    await alice.login(EMAIL)
    key = await alice.json(
        "POST",
        "/api/v1/account/api-keys",
        status=201,
        json={"name": "alice's key", "scopes": ["read"]},
    )
    ssh = await alice.json(
        "POST",
        "/api/v1/account/ssh-keys",
        status=201,
        json={"name": "alice's ssh key", "public_key": ssh_public_key()},
    )
    device = SoftAuthenticator(rp_id="localhost", origin=base_url(panel))
    options = (await alice.json("POST", "/api/v1/account/passkeys/options"))["options"]
    passkey = await alice.json(
        "POST",
        "/api/v1/account/passkeys",
        status=201,
        json={"name": "alice's passkey", "credential": device.create(options)},
    )
    [alice_session] = (await alice.json("GET", "/api/v1/auth/sessions"))["data"]

    await panel.create_user("bob@example.org")
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    await sign_in(watched, "bob@example.org")
    for path, empty in (
        ("/account/api-keys", "You have no API keys."),
        ("/account/ssh-keys", "You have no SSH keys."),
        ("/account/passkeys", "You have no passkeys yet."),
        ("/account/sessions", "This is your only session."),
    ):
        await page.goto(path)
        await expect(page.get_by_text(empty)).to_be_visible()
        html = await page.content()
        for hers in ("alice", key["prefix"], ssh["fingerprint"], alice_session["id"]):
            assert hers not in html, (path, hers)
    await page.goto("/account/activity")
    assert "alice" not in await page.content()
    await watched.assert_clean()

    # Bob's own session, through the API: every one of alice's things is not found.
    bob = await panel.browser()
    await bob.login("bob@example.org")
    for method, path, body in (
        ("DELETE", f"/api/v1/account/api-keys/{key['id']}", None),
        ("DELETE", f"/api/v1/account/ssh-keys/{ssh['id']}", None),
        ("PATCH", f"/api/v1/account/passkeys/{passkey['id']}", {"name": "mine now"}),
        ("DELETE", f"/api/v1/account/passkeys/{passkey['id']}", None),
        ("DELETE", f"/api/v1/auth/sessions/{alice_session['id']}", None),
    ):
        response = await bob.request(method, path, json=body)
        assert response.status == 404, (method, path, response.status)
    assert [k["id"] for k in (await alice.json("GET", "/api/v1/account/api-keys"))["data"]] == [
        key["id"]
    ]
    assert [p["name"] for p in (await alice.json("GET", "/api/v1/account/passkeys"))["data"]] == [
        "alice's passkey"
    ]
    assert len((await alice.json("GET", "/api/v1/account/ssh-keys"))["data"]) == 1
    assert len((await alice.json("GET", "/api/v1/auth/sessions"))["data"]) == 1


async def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    results = await Axe().run(page)
    return [
        f"{violation['id']}: {[node['target'] for node in violation['nodes']]}"
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]


async def test_every_account_page_is_accessible_and_fits_a_phone(
    panel: Panel, browser: Browser
) -> None:
    await panel.create_user(EMAIL)
    alice = await panel.browser()
    await alice.login(EMAIL)
    await alice.json(
        "POST",
        "/api/v1/account/api-keys",
        status=201,
        json={"name": "deploy", "scopes": ["read"], "allowed_ips": ["192.0.2.0/24"]},
    )
    await alice.json(
        "POST",
        "/api/v1/account/ssh-keys",
        status=201,
        json={"name": "laptop", "public_key": ssh_public_key()},
    )
    device = SoftAuthenticator(rp_id="localhost", origin=base_url(panel))
    options = (await alice.json("POST", "/api/v1/account/passkeys/options"))["options"]
    await alice.json(
        "POST",
        "/api/v1/account/passkeys",
        status=201,
        json={"name": "phone", "credential": device.create(options)},
    )
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    await sign_in(watched, EMAIL)
    paths = [
        "/account",
        "/account/two-factor",
        "/account/passkeys",
        "/account/sessions",
        "/account/api-keys",
        "/account/ssh-keys",
        "/account/activity",
        "/login",
    ]
    for width, height in ((1280, 800), (360, 740)):
        await page.set_viewport_size({"width": width, "height": height})
        for path in paths:
            if path == "/login":
                await page.context.clear_cookies()
            await page.goto(path)
            assert await serious_violations(page) == [], (width, path)
            overflow = await page.evaluate("document.scrollingElement.scrollWidth")
            assert overflow <= width, (width, path, overflow)
        await sign_in(watched, EMAIL)
    # The states a page reaches by itself: enrolment (QR code, secret) and a key shown once.
    await page.goto("/account/two-factor")
    await page.get_by_role("button", name="Set up an authenticator app").click()
    await expect(page.locator("[data-secret]")).not_to_be_empty()
    assert await serious_violations(page) == []
    await page.goto("/account/api-keys")
    await page.get_by_label("Name").fill("another")
    await page.get_by_role("button", name="Create key").click()
    await expect(page.locator("[data-new-key-secret]")).not_to_be_empty()
    assert await serious_violations(page) == []
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= 360
    await watched.assert_clean()
