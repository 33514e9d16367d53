"""The page a mailed invitation opens, in a real Chromium with the real mail: the owner
invites on the server's users page, the invitee follows the link from the captured message,
registers and comes back (``?next=``), accepts, and holds exactly what was granted. A used
link and a link opened by someone else are refused on the page, with no button.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.models import Subuser, User
from control_plane.db.session import transaction
from control_plane.keys import SESSIONS
from tests.integration.control_plane.mail_support import local, mail_world
from tests.integration.control_plane.web_support import base_url, register_on_page, sign_in
from tests.support.chromium import watched_page
from tests.support.panel import PASSWORD
from tests.support.smtp import MailCatcher
from tests.support.world import World

pytestmark = pytest.mark.browser
INVITEE = "newcomer@example.org"
DEAD = "This link is invalid, used or expired; ask for a new one."


@pytest.fixture
def catcher() -> MailCatcher:
    return MailCatcher()


@pytest.fixture
async def world(
    engine: AsyncEngine,
    database_url: str,
    catcher: MailCatcher,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[World]:
    async with mail_world(
        database_url, catcher, aiohttp_server, aiohttp_client, STELLAR_REGISTRATION="open"
    ) as world:
        yield world


async def invite_on_the_users_page(page: Page, server_id: str, email: str) -> None:
    """As the owner: console only (read and write)."""
    await page.goto(f"/servers/{server_id}/users")
    form = page.locator("#invite-form")
    await form.get_by_label("E-mail address").fill(email)
    await form.get_by_label("console.read").check()
    await form.get_by_label("console.write").check()
    await form.get_by_role("button", name="Invite").click()
    await expect(page.locator("[data-invitations]")).to_contain_text(email)


async def test_an_invitee_registers_from_the_mailed_link_and_accepts_console_only(
    world: World, catcher: MailCatcher, browser: Browser
) -> None:
    server_id = world.ids["alice_server"]
    owner = await watched_page(browser, base_url(world.panel))
    await owner.page.goto("/login")
    await sign_in(owner.page, "alice@example.org")
    await owner.page.wait_for_url(base_url(world.panel) + "/")
    await invite_on_the_users_page(owner.page, server_id, INVITEE)
    await owner.assert_clean()
    link = local((await catcher.next()).link())
    assert link.startswith("/invitation?token="), link

    watched = await watched_page(browser, base_url(world.panel))
    page = watched.page
    await page.goto(link)
    # What is offered, in words: the server, who invites, the permissions.
    main = page.locator("[data-invitation]")
    await expect(main.locator("[data-server-name]")).to_have_text("alice's server")
    await expect(main).to_contain_text("alice@example.org invites newcomer@example.org")
    grants = main.locator("[data-grants]")
    await expect(grants).to_contain_text("See the console's output")
    await expect(grants).to_contain_text("Send commands to the console")
    await expect(grants).not_to_contain_text("Files")
    await watched.assert_clean()
    # Signed out: register first, and come back to the invitation.
    await page.get_by_role("link", name="register").click()
    await page.get_by_label("E-mail").fill(INVITEE)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Password again").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await page.wait_for_url("**/invitation?token=*")
    await page.get_by_role("button", name="Accept").click()
    await page.wait_for_url(base_url(world.panel) + "/")
    await expect(page.get_by_role("link", name="alice's server")).to_be_visible()
    await watched.assert_clean()

    # Exactly the grant: the console tab and no Files tab; the files page refused.
    async with transaction(world.panel.server.app[SESSIONS]) as db:
        user_id = await db.scalar(select(User.id).where(User.email == INVITEE))
        held = await db.scalar(
            select(Subuser.permissions).where(
                Subuser.user_id == user_id, Subuser.server_id == uuid.UUID(server_id)
            )
        )
    assert held == ["console.read", "console.write"]
    await page.goto(f"/servers/{server_id}")
    await expect(page.get_by_role("heading", name="alice's server")).to_be_visible()
    await expect(page.get_by_role("button", name="Reconnect now")).to_be_visible()
    # The console is the only tab it may open: no tab bar, no Files link anywhere.
    await expect(page.get_by_role("navigation", name="Server")).to_have_count(0)
    await expect(page.get_by_role("link", name="Files")).to_have_count(0)
    refused = await page.goto(f"/servers/{server_id}/files")
    assert refused is not None
    assert refused.status in (403, 404)

    # The link used twice: refused on the page, no button.
    again = await watched_page(browser, base_url(world.panel))
    response = await again.page.goto(link)
    assert response is not None
    assert response.status == 400
    await expect(again.page.get_by_role("alert")).to_have_text(DEAD)
    await expect(again.page.get_by_role("button")).to_have_count(0)
    await again.assert_clean()


async def test_someone_else_signed_in_is_refused_and_the_invitation_stays_open(
    world: World, catcher: MailCatcher, browser: Browser
) -> None:
    invited = await world.alice.json(
        "POST",
        f"/api/v1/servers/{world.ids['alice_server']}/invitations",
        201,
        json={"email": INVITEE, "permissions": ["console.read"]},
    )
    link = local((await catcher.next()).link())
    watched = await watched_page(browser, base_url(world.panel))
    page = watched.page
    await page.goto("/login")
    await sign_in(page, "bob@example.org")
    await page.wait_for_url(base_url(world.panel) + "/")
    response = await page.goto(link)
    assert response is not None
    assert response.status == 403
    await expect(page.get_by_role("alert")).to_have_text(
        "This invitation is for another e-mail address: you are signed in as "
        "bob@example.org; sign out, then open the link again."
    )
    await expect(page.locator("[data-invitation]").get_by_role("button")).to_have_count(0)
    await watched.assert_clean()
    # The API refuses bob too (the page's refusal is not the only one), and uses nothing up.
    token = link.rsplit("token=", 1)[1]
    await world.bob.json("POST", "/api/v1/invitations/join", 403, json={"token": token})
    pending = await world.alice.json(
        "GET", f"/api/v1/servers/{world.ids['alice_server']}/invitations"
    )
    assert invited["id"] in [row["id"] for row in pending["data"]]

    # Withdrawn: the same link is dead on the page.
    await world.alice.json(
        "DELETE",
        f"/api/v1/servers/{world.ids['alice_server']}/invitations/{invited['id']}",
        204,
    )
    stranger = await watched_page(browser, base_url(world.panel))
    response = await stranger.page.goto(link)
    assert response is not None
    assert response.status == 400
    await expect(stranger.page.get_by_role("alert")).to_have_text(DEAD)
    await expect(stranger.page.locator("form")).to_have_count(0)
    await stranger.assert_clean()


async def test_a_signed_out_invitee_creates_the_account_on_the_page(
    world: World, catcher: MailCatcher, browser: Browser
) -> None:
    await world.alice.json(
        "POST",
        f"/api/v1/servers/{world.ids['alice_server']}/invitations",
        201,
        json={"email": INVITEE, "permissions": ["files.*"]},
    )
    link = local((await catcher.next()).link())
    watched = await watched_page(browser, base_url(world.panel))
    page = watched.page
    await page.goto(link)
    # ``files.*`` in words, every one of its permissions.
    await expect(page.locator("[data-grants]")).to_contain_text("List files and read their")
    form = page.locator("#accept-invitation")
    await form.get_by_label("Password", exact=True).fill(PASSWORD)
    await form.get_by_label("Password again").fill(PASSWORD + "?")
    await form.get_by_role("button", name="Create account and accept").click()
    await expect(form.locator('[data-error-for="password_again"]')).to_have_text(
        "The two passwords differ."
    )
    await form.get_by_label("Password again").fill(PASSWORD)
    await form.get_by_role("button", name="Create account and accept").click()
    await page.wait_for_url(base_url(world.panel) + "/")
    await expect(page.locator(".who")).to_have_text(INVITEE)
    await expect(page.get_by_role("link", name="alice's server")).to_be_visible()
    await watched.assert_clean()


async def test_an_invitee_who_registered_alone_joins_from_the_page_and_is_verified(
    verifying_world: World, catcher: MailCatcher, browser: Browser
) -> None:
    """Addresses must be verified, and the invitee made their account on the register page
    (not through the link) before opening the invitation: the panel holds them at *verify
    your address*, and the invitation's page, its link mailed to that address, lets them
    accept — which verifies the address."""
    world = verifying_world
    await world.alice.json(
        "POST",
        f"/api/v1/servers/{world.ids['alice_server']}/invitations",
        201,
        json={"email": INVITEE, "permissions": ["console.read"]},
    )
    link = local((await catcher.next()).link())
    watched = await watched_page(browser, base_url(world.panel))
    page = watched.page
    await register_on_page(page, INVITEE)
    await page.wait_for_load_state("networkidle")
    assert (await catcher.next()).to == INVITEE  # the verification mail, not opened
    # Held on the profile page, which says why and how.
    await page.goto("/")
    await page.wait_for_url("**/account")
    await expect(page.locator("[data-must-verify]")).to_contain_text(
        "A server invitation mailed to this address verifies it when you accept."
    )
    await expect(page.get_by_role("link", name="alice's server")).to_have_count(0)

    await page.goto(link)
    await page.get_by_role("button", name="Accept").click()
    await page.wait_for_url(base_url(world.panel) + "/")
    await expect(page.get_by_role("link", name="alice's server")).to_be_visible()
    await watched.assert_clean()
    verified = await world.admin.json("GET", "/api/v1/audit?action=user.email.verified")
    assert [entry["details"] for entry in verified["data"]] == [
        {"email": INVITEE, "by": "invitation"}
    ]
