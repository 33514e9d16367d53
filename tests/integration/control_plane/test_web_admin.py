"""The administration pages in a real Chromium, against the real control plane: an
administrator sets up a location, a node (and reads its agent config and install command),
its ports and a user, disables the user (whose session ends at once) and resets their second
factor; someone who is not an administrator is refused every page and sees no Admin link.

Every page is watched for CSP violations, console errors and JavaScript dialogs: names such
as ``<img src=x onerror=alert(1)>`` are shown as text and fire nothing. Confirmations use
the page's own ``<dialog>``, never ``window.confirm`` (which would count as a dialog here).
The node health of a real agent is in ``test_web_admin_agent.py``.
"""

from __future__ import annotations

import re
import secrets
import uuid
from pathlib import Path
from urllib.parse import quote

import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.async_api import Browser, Page, ViewportSize, expect
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.api.registry import PAGE_TABLES
from control_plane.api.routing import Access
from control_plane.app import create_app
from control_plane.db.engine import session_factory
from control_plane.db.models import OAuthIdentity, PasskeyCredential, User
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.settings import load_settings
from shared.command_keys import key_id, write_private_key
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.integration.control_plane.test_route_walks import concrete
from tests.support.chromium import Watched, watched_page
from tests.support.panel import PASSWORD, Panel
from tests.support.world import World

pytestmark = pytest.mark.browser
XSS = "<img src=x onerror=alert(1)>"
# Out of an attribute (a confirmation's text), then markup.
QUOTED = '"><img src=x onerror=alert(1)>'
PHONE: ViewportSize = {"width": 360, "height": 740}
ADMIN_PAGES = [
    endpoint
    for table in PAGE_TABLES
    for endpoint in table.endpoints
    if endpoint.path == "/admin" or endpoint.path.startswith("/admin/")
]


@pytest.fixture
def signing_key(tmp_path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    write_private_key(tmp_path / "signing.key", key)
    return key


@pytest.fixture
async def admin_panel(
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    signing_key: Ed25519PrivateKey,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> Panel:
    """The real app with a signing key (nodes can be added) and encryption keys (2FA)."""
    settings = load_settings(
        {
            "STELLAR_DATABASE_URL": database_url,
            "STELLAR_AUTH_SECRET": AUTH_SECRET,
            "STELLAR_BCRYPT_COST": "10",
            "STELLAR_RATE_LIMITS": UNLIMITED,
            "STELLAR_SIGNING_KEY_FILE": str(tmp_path / "signing.key"),
            "STELLAR_ENCRYPTION_KEYS": "k1:" + "5e" * 8 + "a1b2c3d4e5f60718" * 3,
        }
    )
    server = await aiohttp_server(create_app(settings, background_jobs=False))
    return Panel(server, aiohttp_client)


async def add_passkeys(panel: Panel, email: str, count: int) -> None:
    """Stored passkeys of ``email`` (what the users page counts and removes; signing in with
    real ones is tests/integration/control_plane/test_passkeys.py's)."""
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        user_id = await db.scalar(select(User.id).where(User.email == email))
        assert user_id is not None
        for number in range(count):
            db.add(
                PasskeyCredential(
                    user_id=user_id,
                    credential_id=secrets.token_urlsafe(32),
                    public_key=secrets.token_bytes(77),
                    sign_count=0,
                    name=f"device {number}",
                    transports=[],
                )
            )


def base_url(panel: Panel) -> str:
    return f"http://localhost:{panel.server.port}"


async def signed_in_page(panel: Panel, browser: Browser, email: str, where: str) -> Watched:
    """A browser page signed in as ``email`` through the sign-in page, then at ``where``."""
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    await page.goto(f"/login?next={quote(where, safe='/')}")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base_url(panel)}{where}")
    return watched


async def confirm(page: Page, expected: str) -> None:
    """Answer the page's confirmation dialog after reading its question."""
    dialog = page.locator("dialog[data-confirm-dialog]")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("[data-confirm-text]")).to_contain_text(expected)
    await dialog.get_by_role("button", name="Confirm").click()


async def fits_a_phone(page: Page, path: str) -> None:
    """``path`` at 360 px wide: nothing sticks out sideways (long text wraps or scrolls)."""
    await page.set_viewport_size(PHONE)
    await page.goto(path)
    wide = await page.evaluate(
        "[...document.querySelectorAll('body *')]"
        ".filter(e => e.getBoundingClientRect().right > innerWidth + 1)"
        ".map(e => `${e.tagName}.${e.className}`)"
    )
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], (path, width, wide)


async def status(page: Page, text: str) -> None:
    await expect(page.locator("[data-admin-status]")).to_have_text(text)


async def test_an_admin_sets_up_a_location_a_node_and_its_ports(
    admin_panel: Panel, browser: Browser, signing_key: Ed25519PrivateKey
) -> None:
    await admin_panel.create_user("root@example.org", admin=True)
    watched = await signed_in_page(admin_panel, browser, "root@example.org", "/")
    page = watched.page
    await page.get_by_role("navigation", name="Account").get_by_role("link", name="Admin").click()
    await page.wait_for_url("**/admin")
    await expect(page.get_by_text("No node yet.")).to_be_visible()
    tabs = page.get_by_role("navigation", name="Administration")
    for tab in ("Overview", "Users", "Locations", "Nodes", "Blueprints", "Servers", "Audit log"):
        await expect(tabs.get_by_role("link", name=tab, exact=True)).to_be_visible()
    await expect(tabs.get_by_role("link", name="Overview")).to_have_attribute(
        "aria-current", "page"
    )
    await watched.assert_clean()

    # Locations: a wrong code is explained next to its field; a right one is listed.
    await tabs.get_by_role("link", name="Locations").click()
    await expect(page.get_by_text("No location yet.")).to_be_visible()
    form = page.locator("form", has=page.get_by_role("button", name="Create location"))
    await form.get_by_label("Code").fill("Not Valid")
    await form.get_by_label("Description").fill(XSS)
    await form.get_by_role("button", name="Create location").click()
    await expect(form.locator('[data-error-for="code"]')).to_contain_text("pattern")
    await form.get_by_label("Code").fill("eu-west")
    await form.get_by_role("button", name="Create location").click()
    await status(page, "Location created.")
    row = page.locator('#location-table tr[data-location="eu-west"]')
    await expect(row.locator("td").nth(1)).to_have_text(XSS)
    assert await page.locator("#location-table img").count() == 0
    await row.get_by_text("Rename").click()
    await row.get_by_label("Code").fill("eu-central")
    await row.get_by_role("button", name="Save").click()
    await status(page, "Location saved.")
    await expect(page.locator('#location-table tr[data-location="eu-central"]')).to_have_count(1)
    await watched.assert_clean()

    # A node: its page shows the agent config and the install command to copy.
    await tabs.get_by_role("link", name="Nodes").click()
    form = page.locator("form", has=page.get_by_role("button", name="Add node"))
    await form.get_by_label("Name").fill("node1")
    await form.get_by_label("Agent URL").fill("ftp://nowhere")
    await form.get_by_label("Location").select_option(label=f"eu-central – {XSS}")  # noqa: RUF001
    await form.get_by_role("button", name="Add node").click()
    await expect(form.get_by_role("alert")).to_have_text("node URL must be http(s)://host:port")
    await form.get_by_label("Agent URL").fill("http://127.0.0.1:9")
    await form.get_by_label("Memory for servers (MiB)").fill("4096")
    await form.get_by_role("button", name="Add node").click()
    await page.wait_for_url(re.compile(r"/admin/nodes/[0-9a-f-]{36}$"))
    node_id = page.url.rsplit("/", 1)[1]
    await status(page, "Node added. Install the agent on it with the config and command below.")
    await expect(page.get_by_role("heading", name="node1")).to_be_visible()
    await expect(page.locator('[data-fact="status"]')).to_have_text("unknown")
    await expect(page.locator('[data-fact="last-seen"]')).to_have_text("never")
    await expect(page.locator('[data-fact="memory"]')).to_contain_text("0 MiB of 4.0 GiB")
    config = page.get_by_label("Agent config")
    await expect(config).to_contain_text(f'node_id = "{node_id}"')
    await expect(config).to_contain_text(f'"{key_id(signing_key.public_key())}" = ')
    await expect(page.get_by_label("Install command")).to_have_text(
        "sudo deploy/install-agent.sh --bundle node1.toml --control-plane CONTROL_PLANE_IP"
    )
    await page.get_by_role("button", name="Copy config").click()
    await expect(page.get_by_role("button", name=re.compile("^(Copied|Selected)"))).to_be_visible()
    await watched.assert_clean()

    # The location is in use: deleting it is refused with the reason.
    await tabs.get_by_role("link", name="Locations").click()
    row = page.locator('#location-table tr[data-location="eu-central"]')
    await row.get_by_role("button", name="Delete").click()
    await confirm(page, "Delete the location eu-central?")
    await expect(page.locator("[data-admin-error]")).to_have_text(
        "the location still has nodes (node1); move or delete them first"
    )
    await expect(row).to_have_count(1)
    await watched.assert_clean()

    # Ports: a range, a refused range, one deleted.
    await page.goto(f"/admin/nodes/{node_id}")
    await page.get_by_role("link", name="manage ports").click()
    await page.wait_for_url(f"**/admin/nodes/{node_id}/allocations")
    await expect(page.get_by_text("This node has no ports yet.")).to_be_visible()
    form = page.locator("form", has=page.get_by_role("button", name="Add ports"))
    await expect(form.get_by_label("IP address")).to_have_value("127.0.0.1")
    await form.get_by_label("First port").fill("30000")
    await form.get_by_label("Last port (optional)").fill("31500")
    await form.get_by_role("button", name="Add ports").click()
    await expect(form.get_by_role("alert")).to_contain_text("at most 1000 ports")
    await form.get_by_label("Last port (optional)").fill("30004")
    await form.get_by_role("button", name="Add ports").click()
    await status(page, "Ports added.")
    rows = page.locator("#allocation-table tbody tr")
    await expect(rows).to_have_count(5)
    await page.get_by_role("button", name="Delete 127.0.0.1:30002").click()
    await confirm(page, "Remove 127.0.0.1:30002?")
    await status(page, "Allocation removed.")
    await expect(rows).to_have_count(4)
    await expect(page.locator('tr[data-port="30002"]')).to_have_count(0)
    await page.goto(f"/admin/nodes/{node_id}")
    await expect(page.get_by_text("0 used of 4")).to_be_visible()
    await watched.assert_clean()

    # The overview counts it all.
    await page.goto("/admin")
    await expect(page.locator('[data-count="nodes-up"]')).to_have_text("0")
    await expect(page.locator('[data-count="locations"]')).to_have_text("1")
    await expect(page.locator("#overview-nodes")).to_contain_text("node1")
    await watched.assert_clean()
    for path in (
        "/admin", "/admin/locations", "/admin/nodes", f"/admin/nodes/{node_id}",
        f"/admin/nodes/{node_id}/allocations",
    ):  # fmt: skip
        await fits_a_phone(page, path)
    await watched.assert_clean()


async def test_an_admin_creates_disables_and_resets_the_second_factor_of_a_user(
    admin_panel: Panel, browser: Browser
) -> None:
    await admin_panel.create_user("root@example.org", admin=True)
    watched = await signed_in_page(admin_panel, browser, "root@example.org", "/admin/users")
    page = watched.page
    form = page.locator("form", has=page.get_by_role("button", name="Create user"))
    await form.get_by_label("E-mail").fill("player@example.org")
    await form.get_by_label("Password").fill("short")
    await form.get_by_role("button", name="Create user").click()
    await expect(form.locator('[data-error-for="password"]')).to_be_visible()
    await expect(form.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    await form.get_by_label("Password").fill(PASSWORD)
    await form.get_by_role("button", name="Create user").click()
    await status(page, "User created.")
    row = page.locator('#user-table tr[data-user="player@example.org"]')
    await expect(row).to_contain_text("active")
    await watched.assert_clean()

    # The new user signs in elsewhere (a browser, and a client of the API) and turns on an
    # authenticator app.
    player_page = await signed_in_page(admin_panel, browser, "player@example.org", "/")
    player = await admin_panel.browser()
    await player.login("player@example.org")
    setup = await player.json("POST", "/api/v1/account/2fa/setup")
    await player.json(
        "POST",
        "/api/v1/account/2fa/enable",
        json={"code": pyotp.TOTP(setup["secret"]).now(), "password": PASSWORD},
    )

    await page.get_by_label("Search users by e-mail").fill("PLAYER")
    await page.get_by_role("button", name="Search").click()
    await page.wait_for_url("**/admin/users?search=PLAYER")
    await expect(page.locator("#user-table tbody tr")).to_have_count(1)
    await expect(row.locator("td").nth(3)).to_have_text("on")

    # Disabled: their session is refused on its very next request.
    await row.get_by_role("button", name="Disable").click()
    await confirm(page, "Disable player@example.org?")
    await status(page, "player@example.org is disabled.")
    await expect(row).to_contain_text("disabled")
    refused = await player.request("GET", "/api/v1/auth/session")
    assert refused.status == 401
    # …and in their browser too: their next page is the sign-in page.
    await player_page.page.reload()
    await player_page.page.wait_for_url("**/login?next=/")
    await player_page.assert_clean()
    await row.get_by_role("button", name="Enable").click()
    await status(page, "player@example.org can sign in again.")
    await expect(row).to_contain_text("active")

    # Second factor reset: the password alone signs in again.
    await row.get_by_role("button", name="Reset 2FA").click()
    await confirm(page, "Turn off two-factor authentication of player@example.org?")
    await status(page, "Two-factor authentication of player@example.org is off.")
    await expect(row.locator("td").nth(3)).to_have_text("off")
    await expect(row.get_by_role("button", name="Reset 2FA")).to_have_count(0)
    again = await admin_panel.browser()
    signed = await again.login("player@example.org")
    assert signed["mfa_pending"] is False

    # Passkeys (two, say a laptop that was stolen and a phone): removed together, and the
    # user's sessions end with them.
    await expect(row.locator("td").nth(4)).to_have_text("0")
    await expect(row.get_by_role("button", name="Remove passkeys")).to_have_count(0)
    await add_passkeys(admin_panel, "player@example.org", 2)
    await page.reload()
    await expect(row.locator("td").nth(4)).to_have_text("2")
    await row.get_by_role("button", name="Remove passkeys").click()
    await confirm(page, "Remove every passkey of player@example.org")
    await status(page, "The passkeys of player@example.org are removed.")
    await expect(row.locator("td").nth(4)).to_have_text("0")
    await expect(row.get_by_role("button", name="Remove passkeys")).to_have_count(0)
    assert (await again.request("GET", "/api/v1/auth/session")).status == 401

    # Cancelled: nothing changes.
    await row.get_by_role("button", name="Make admin").click()
    await page.locator("dialog[data-confirm-dialog]").get_by_role("button", name="Cancel").click()
    await expect(row.locator("td").nth(1)).to_have_text("user")
    # The administrator cannot act on themselves from here.
    await page.goto("/admin/users?search=root")
    await expect(page.locator('#user-table tr[data-user="root@example.org"] button')).to_have_count(
        0
    )

    # A search is text, on the page and in the box.
    await page.goto(f"/admin/users?search={quote(XSS)}")
    empty = f"No user’s e-mail contains “{XSS}”."  # noqa: RUF001
    await expect(page.get_by_text(empty)).to_be_visible()
    await expect(page.get_by_label("Search users by e-mail")).to_have_value(XSS)
    assert await page.locator("main img").count() == 0
    await watched.assert_clean()

    # At 360 px wide the list and the form still fit.
    await fits_a_phone(page, "/admin/users")
    await watched.assert_clean()


async def test_an_admin_takes_back_the_keys_links_and_sessions_of_a_user(
    admin_panel: Panel, browser: Browser
) -> None:
    """A user's account page for administrators: where they are signed in, their API keys
    and linked accounts, each taken back with a button, each refused on its next use."""
    root_id = await admin_panel.create_user("root@example.org", admin=True)
    player = await admin_panel.signed_in("player@example.org")
    made = await player.json(
        "POST", "/api/v1/account/api-keys", 201, json={"name": QUOTED, "scopes": ["read"]}
    )
    bot = await admin_panel.browser()
    bot.api_key = made["key"]
    public = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    )
    ssh_key = await player.json(
        "POST",
        "/api/v1/account/ssh-keys",
        201,
        json={"name": QUOTED, "public_key": public.decode() + " player@laptop"},
    )
    async with transaction(session_factory(admin_panel.server.app[ENGINE])) as db:
        player_id = await db.scalar(select(User.id).where(User.email == "player@example.org"))
        assert player_id is not None
        db.add(OAuthIdentity(user_id=player_id, provider="github", subject="7", email=QUOTED))

    watched = await signed_in_page(admin_panel, browser, "root@example.org", "/admin/users")
    page = watched.page
    await page.get_by_role("link", name="player@example.org").click()
    await page.wait_for_url(f"**/admin/users/{player_id}")
    await expect(page.get_by_role("heading", name="player@example.org", exact=True)).to_be_visible()
    await expect(page.locator('[data-fact="password"]')).to_have_text("set")
    await expect(page.locator("#session-table tbody tr")).to_have_count(1)
    key_row = page.locator(f'#key-table tr[data-key="{made["prefix"]}"]')
    await expect(key_row.locator("td").first).to_have_text(QUOTED)  # a name is text
    link_row = page.locator('#identity-table tr[data-identity="github"]')
    await expect(link_row).to_contain_text(QUOTED)
    assert await page.locator("main img").count() == 0

    await key_row.get_by_role("button", name="Revoke").click()
    await confirm(page, f"Revoke the API key “{QUOTED}”")
    await status(page, f"The API key “{QUOTED}” is revoked.")
    await expect(page.locator("#key-table")).to_have_count(0)
    await expect(page.get_by_text("No API key.")).to_be_visible()
    assert (await bot.request("GET", "/api/v1/servers")).status == 401

    ssh_row = page.locator(f'#ssh-key-table tr[data-ssh-key="{ssh_key["fingerprint"]}"]')
    await expect(ssh_row.locator("td").first).to_have_text(QUOTED)
    await ssh_row.get_by_role("button", name="Remove").click()
    await confirm(page, f"Remove the SSH key “{QUOTED}” of player@example.org?")
    await status(page, f"The SSH key “{QUOTED}” is removed.")
    await expect(page.get_by_text("No SSH key.")).to_be_visible()
    assert (await player.json("GET", "/api/v1/account/ssh-keys"))["data"] == []
    await expect(page.get_by_text("No SFTP password.")).to_be_visible()

    await link_row.get_by_role("button", name="Unlink").click()
    await confirm(page, "every session of player@example.org ends")
    await status(page, "The github account is unlinked from player@example.org.")
    await expect(page.get_by_text("No provider account is linked.")).to_be_visible()
    await expect(page.get_by_text("Not signed in anywhere.")).to_be_visible()
    assert (await player.request("GET", "/api/v1/auth/session")).status == 401

    again = await admin_panel.browser()
    await again.login("player@example.org")
    await page.reload()
    await page.get_by_role("button", name="Sign out everywhere").click()
    await confirm(page, "Sign player@example.org out everywhere?")
    await status(page, "player@example.org is signed out everywhere.")
    await expect(page.get_by_text("Not signed in anywhere.")).to_be_visible()
    assert (await again.request("GET", "/api/v1/auth/session")).status == 401
    await watched.assert_clean()

    # Their trail: what they did (their key, their sign-ins), and what was done to them.
    await page.get_by_role("link", name="what player@example.org did").click()
    await page.wait_for_url(f"**/admin/audit?actor={player_id}")
    await expect(page.locator("main")).to_contain_text("api_key.created")
    await expect(page.locator("main")).to_contain_text("user.login.succeeded")
    await page.go_back()
    await page.get_by_role("link", name="what was done to the account").click()
    await expect(page.locator("main")).to_contain_text("user.sessions.ended")
    await expect(page.locator("main")).to_contain_text("user.oauth.unlinked")
    await expect(page.locator("main")).to_contain_text("user.api_key.revoked")
    await expect(page.locator("main")).to_contain_text("user.ssh_key.removed")
    await watched.assert_clean()

    # One's own account: read, managed on one's own account pages.
    root_api = await admin_panel.browser()
    await root_api.login("root@example.org")
    await root_api.json(
        "POST", "/api/v1/account/api-keys", 201, json={"name": "mine", "scopes": ["read"]}
    )
    await page.goto(f"/admin/users/{root_id}")
    await expect(page.get_by_text("This is your own account")).to_be_visible()
    await expect(page.locator("#key-table tbody tr")).to_have_count(1)
    await expect(page.locator("main section button")).to_have_count(0)
    missing = await page.goto(f"/admin/users/{uuid.uuid4()}")
    assert missing is not None
    assert missing.status == 404
    await fits_a_phone(page, f"/admin/users/{player_id}")
    await watched.assert_clean()


async def test_someone_not_an_admin_gets_403_on_every_admin_page_and_no_admin_link(
    world: World, browser: Browser
) -> None:
    assert len(ADMIN_PAGES) >= 6
    watched = await watched_page(browser, base_url(world.panel))
    page = watched.page
    await page.goto("/login")
    await page.get_by_label("E-mail").fill("alice@example.org")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base_url(world.panel)}/")
    await expect(page.get_by_role("link", name="Servers")).to_be_visible()
    await expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    for endpoint in ADMIN_PAGES:
        assert endpoint.access is Access.ADMIN, endpoint.path
        path = concrete(endpoint, world)
        response = await page.goto(path)
        assert response is not None
        assert response.status == 403, path
        await expect(page.get_by_role("heading", name="403")).to_be_visible()
        await expect(page.get_by_text("administrators only")).to_be_visible()
        # Nothing of the page leaks: no admin tabs, no node of the world.
        await expect(page.get_by_role("navigation", name="Administration")).to_have_count(0)
        await expect(page.get_by_text("dead-node")).to_have_count(0)
        # An id that names nothing is refused the same way (no probing for ids).
        elsewhere = re.sub(r"[0-9a-f-]{36}", str(uuid.uuid4()), path)
        assert (await world.alice.request("GET", elsewhere)).status == 403, elsewhere
    await watched.assert_clean()
    # The administrator's own view of the same pages works.
    for endpoint in ADMIN_PAGES:
        assert (await world.admin.request("GET", concrete(endpoint, world))).status == 200
