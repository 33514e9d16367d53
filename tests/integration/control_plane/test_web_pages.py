"""The panel's pages in a real Chromium, against the real control plane.

Each test watches its pages for CSP violations, console errors and JavaScript dialogs (an
injected script would open one): a page that shows a server named like an XSS payload must
show it as text and fire nothing.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.async_api import Browser, expect

from control_plane.settings import ControlPlaneSettings, load_settings
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.support.chromium import Watched, watched_page
from tests.support.panel import PASSWORD, Panel
from tests.support.world import World

pytestmark = pytest.mark.browser
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def settings(database_url: str) -> ControlPlaneSettings:
    return load_settings(
        {
            "STELLAR_DATABASE_URL": database_url,
            "STELLAR_AUTH_SECRET": AUTH_SECRET,
            "STELLAR_BCRYPT_COST": "10",
            "STELLAR_RATE_LIMITS": UNLIMITED,
            # Second factors are stored encrypted.
            "STELLAR_ENCRYPTION_KEYS": "k1:" + "5e" * 8 + "a1b2c3d4e5f60718" * 3,
        }
    )


def base_url(panel: Panel) -> str:
    # "localhost", not an IP: browsers refuse passkeys on an IP origin.
    return f"http://localhost:{panel.server.port}"


async def sign_in(watched: Watched, email: str, password: str = PASSWORD) -> None:
    page = watched.page
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def test_a_visitor_signs_in_sees_their_servers_as_text_and_signs_out(
    world: World, browser: Browser
) -> None:
    alice_server = world.ids["alice_server"]
    await world.alice.json("PATCH", f"/api/v1/servers/{alice_server}", json={"name": XSS})
    watched = await watched_page(browser, base_url(world.panel))
    page = watched.page

    await page.goto("/")
    # Not signed in: the sign-in page, which brings the visitor back afterwards.
    assert urlsplit(page.url).path == "/login"
    await sign_in(watched, "alice@example.org", "wrong password, surely")
    await expect(page.get_by_role("alert")).to_have_text("invalid e-mail or password")
    await sign_in(watched, "alice@example.org")
    await page.wait_for_url(f"{base_url(world.panel)}/")

    rows = page.locator("#server-table tbody tr")
    await expect(rows).to_have_count(1)
    # The name is text: the payload is shown, nothing was injected, no dialog fired.
    await expect(rows.first.locator("td").first).to_have_text(XSS)
    assert await page.locator("#server-table img").count() == 0
    await expect(rows.first).to_contain_text("offline")
    # Bob's server is not alice's to see.
    await expect(page.get_by_text("bob's server")).to_have_count(0)

    # The search runs on the server, the query in the URL (a link to it shows the same).
    search = page.get_by_label("Search servers by name")
    await search.fill("no such thing")
    await search.press("Enter")
    await page.wait_for_url("**/?q=no+such+thing")
    await expect(rows).to_have_count(0)
    await expect(page.get_by_text("No server's name contains “no such thing”.")).to_be_visible()
    await page.get_by_label("Search servers by name").fill("IMG SRC")  # any case
    await page.get_by_role("button", name="Search").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("td").first).to_have_text(XSS)
    await watched.assert_clean()

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/login")
    await page.goto("/")
    assert urlsplit(page.url).path == "/login"
    await watched.assert_clean()


async def test_the_second_factor_is_asked_for_on_the_page(world: World, browser: Browser) -> None:
    setup = await world.alice.json("POST", "/api/v1/account/2fa/setup")
    secret = setup["secret"]
    enabled = await world.alice.json(
        "POST",
        "/api/v1/account/2fa/enable",
        json={"code": pyotp.TOTP(secret).now(), "password": PASSWORD},
    )
    watched = await watched_page(browser, base_url(world.panel))
    page = watched.page
    await page.goto("/login?next=/%3Fpage%3D1")
    await sign_in(watched, "alice@example.org")
    await page.get_by_label("Code").fill("000000")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("alert")).to_have_text("invalid or already used code")
    # The enrolment used this time step's code: a recovery code signs in (once).
    await page.get_by_label("Code").fill(enabled["recovery_codes"][0])
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_url(lambda url: url.endswith("/?page=1"))
    await expect(page.locator("#server-table tbody tr")).to_have_count(1)
    await watched.assert_clean()


async def test_an_empty_list_says_what_to_expect_and_elsewhere_is_never_a_next_page(
    panel: Panel, browser: Browser
) -> None:
    await panel.create_user("new@example.org")
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    # A "next" that leaves the site is ignored: after signing in the visitor stays here.
    await page.goto("/login?next=//evil.example/")
    await sign_in(watched, "new@example.org")
    await page.wait_for_url(f"{base_url(panel)}/")
    await expect(page.get_by_text("You have no servers yet.")).to_be_visible()
    await page.goto("/no/such/page")
    await expect(page.get_by_role("heading", name="404")).to_be_visible()
    await watched.assert_clean()


async def test_pages_carry_the_strict_csp_and_files_are_cached_by_content(panel: Panel) -> None:
    visitor = await panel.browser()
    response = await visitor.request("GET", "/login")
    assert response.status == 200
    csp = response.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'",
        "base-uri 'none'", "form-action 'self'", "object-src 'none'",
    ):  # fmt: skip
        assert directive in csp
    assert "unsafe" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    html = await response.text()
    [script] = re.findall(r'src="(/static/app\.[0-9a-f]{12}\.js)"', html)
    [style] = re.findall(r'href="(/static/app\.[0-9a-f]{12}\.css)"', html)
    for path in (script, style):
        asset = await visitor.request("GET", path)
        assert asset.status == 200
        assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    # Another hash, the plain name, a way out of the folder: not found, as JSON (not a page).
    for path in (script.replace(".js", "x.js"), "/static/app.js", "/static/../app.py"):
        missing = await visitor.request("GET", path)
        assert missing.status == 404, path
    # The API keeps its own policy.
    api = await visitor.request("GET", "/api/v1/auth/session")
    assert api.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


@pytest.mark.parametrize("whitespace", ["%09", "%0A", "%0D"])
async def test_a_next_that_a_browser_reads_as_another_host_is_ignored(
    panel: Panel, browser: Browser, whitespace: str
) -> None:
    # Browsers drop tabs and newlines from a URL before parsing it: "/<TAB>/host/" is
    # "//host/", another site. 127.0.0.1 is another origin than localhost, and it answers.
    await panel.create_user("tab@example.org")
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    elsewhere = f"127.0.0.1:{panel.server.port}"
    await page.goto(f"/login?next=/{whitespace}/{elsewhere}/")
    await sign_in(watched, "tab@example.org")
    await page.wait_for_url(f"{base_url(panel)}/")
    assert urlsplit(page.url).netloc == f"localhost:{panel.server.port}"
    await watched.assert_clean()
