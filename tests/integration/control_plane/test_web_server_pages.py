"""A server's backups, users, startup, network, settings and activity pages in a real
Chromium, against the real control plane, a real agent and a real game container (busybox's
fake game).

As a person uses them (click, type, read what is shown), and as an attacker sees them: a
sub-user with the console only has no other tab and is refused those pages and their API, a
second customer gets 404, a server named like markup is shown as text.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from tests.integration.control_plane.stack import Stack, wait_for_state
from tests.integration.control_plane.test_web_console import PHONE, address
from tests.support.chromium import Watched, watched_page
from tests.support.panel import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.docker]
XSS = "<img src=x onerror=alert(1)>"
PAGES = ("backups", "users", "startup", "network", "settings", "activity")
ORIGINAL = b"the original world\n"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


async def signed_in(browser: Browser, stack: Stack, path: str, email: str) -> Watched:
    """A watched page signed in as ``email`` through the sign-in page ``path`` sends to."""
    watched = await watched_page(browser, address(stack))
    page = watched.page
    await page.goto(path)
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"**{path}")
    return watched


async def test_a_backup_is_made_and_restored_in_the_browser(stack: Stack, browser: Browser) -> None:
    server_id, owner = await stack.owned_server("keeper@example.org")
    await wait_for_state(owner, server_id, "offline")
    files = f"/api/v1/servers/{server_id}/files"
    await owner.json("PUT", f"{files}/contents?path=/world.dat", data=ORIGINAL)
    path = f"/servers/{server_id}/backups"
    watched = await signed_in(browser, stack, path, "keeper@example.org")
    page = watched.page
    await expect(page.get_by_role("link", name="Backups")).to_have_attribute("aria-current", "page")
    await expect(page.get_by_text("No backups yet.")).to_be_visible()
    # Retention: the panel's limit (2 in these tests), and the restore rule, before any click.
    await expect(page.get_by_text("keeps up to 2 backups")).to_be_visible()
    await expect(page.get_by_text("The server must be stopped first")).to_be_visible()

    await page.get_by_label("Name").fill("before")
    await page.get_by_role("button", name="Create backup").click()
    row = page.locator("#backup-table tbody tr", has_text="before")
    await expect(row.locator("[data-backup-state]")).to_have_text("completed", timeout=60_000)
    await expect(page.locator("[data-backups-status]")).to_have_text("Backup finished.")
    await expect(row.locator("time")).to_have_attribute("datetime", ISO)
    async with page.expect_download() as download:
        await row.get_by_role("link", name="Download").click()
    assert (await download.value).suggested_filename.endswith(".tar.gz")

    # The game's world changes after the backup; a running server refuses the restore.
    await owner.json("PUT", f"{files}/contents?path=/world.dat", data=b"griefed\n")
    await owner.json(
        "POST", f"/api/v1/servers/{server_id}/power", status=202, json={"action": "start"}
    )
    await wait_for_state(owner, server_id, "running")
    await row.get_by_role("button", name="Restore…").click()
    dialog = page.get_by_role("dialog", name="Confirm")
    await expect(dialog).to_contain_text("must be stopped")
    await dialog.get_by_role("button", name="Restore").click()
    await expect(page.locator("[data-backups-error]")).to_have_text(
        "stop the server before restoring a backup"
    )
    await owner.json(
        "POST", f"/api/v1/servers/{server_id}/power", status=202, json={"action": "stop"}
    )
    await wait_for_state(owner, server_id, "offline")

    await row.get_by_role("button", name="Restore…").click()
    await dialog.get_by_role("button", name="Restore").click()
    await expect(page.locator("[data-backups-status]")).to_have_text(
        "Restored “before”.", timeout=60_000
    )
    assert (stack.volume(server_id) / "world.dat").read_bytes() == ORIGINAL

    # Locked: no delete offered; unlocked: deleted after its confirmation.
    await row.get_by_role("button", name="Lock").click()
    await expect(row.locator(".badge")).to_have_text("locked")
    await expect(row.get_by_role("button", name="Delete…")).to_have_count(0)
    await row.get_by_role("button", name="Unlock").click()
    await row.get_by_role("button", name="Delete…").click()
    await dialog.get_by_role("button", name="Delete").click()
    await expect(page.get_by_text("No backups yet.")).to_be_visible()
    await watched.assert_clean()
    await watched.context.close()


async def test_a_console_only_sub_user_has_no_other_tab_and_is_refused_them(
    stack: Stack, browser: Browser
) -> None:
    server_id, owner = await stack.owned_server("owner@example.org")
    await stack.panel.create_user("helper@example.org")
    base = f"/servers/{server_id}"
    watched = await signed_in(browser, stack, f"{base}/users", "owner@example.org")
    page = watched.page
    await expect(page.get_by_text("Nobody else has access to this server.")).to_be_visible()
    invite = page.locator("#invite-form")
    # Grouped by area, each box with its description.
    console = invite.get_by_role("group", name="Console")
    await expect(console).to_contain_text("See the console's output")
    await invite.get_by_label("E-mail address").fill("helper@example.org")
    await console.get_by_label("console.read").check()
    await invite.get_by_role("button", name="Invite").click()
    row = page.locator("#user-table tbody tr", has_text="helper@example.org")
    await expect(row).to_contain_text("console.read")
    await expect(page.locator("[data-users-status]")).to_have_text("Added helper@example.org.")
    listed = await owner.json("GET", f"/api/v1/servers/{server_id}/users")
    assert [u["permissions"] for u in listed["data"]] == [["console.read"]]
    # Edited in a dialog: the boxes show what they hold; one more is ticked and saved.
    await row.get_by_role("button", name="Edit…").click()
    editor = page.locator("#edit-form")
    await expect(editor.get_by_label("console.read")).to_be_checked()
    await editor.get_by_label("stats.read").check()
    await editor.get_by_role("button", name="Save").click()
    await expect(row).to_contain_text("console.read, stats.read")
    listed = await owner.json("GET", f"/api/v1/servers/{server_id}/users")
    assert [u["permissions"] for u in listed["data"]] == [["console.read", "stats.read"]]
    # Every other tab is there for the owner.
    nav = page.get_by_role("navigation", name="Server")
    for label in ("Console", "Backups", "Users", "Startup", "Network", "Settings", "Activity"):
        await expect(nav.get_by_role("link", name=label, exact=True)).to_be_visible()
    await watched.assert_clean()
    await watched.context.close()

    helper = await signed_in(browser, stack, base, "helper@example.org")
    page = helper.page
    await expect(page.locator("[data-console]")).to_have_attribute("data-connected", "true")
    # One tab only: no tab bar at all, no link to any other page.
    await expect(page.get_by_role("navigation", name="Server")).to_have_count(0)
    for label in ("Backups", "Users", "Startup", "Network", "Settings", "Activity"):
        await expect(page.get_by_role("link", name=label, exact=True)).to_have_count(0)
    await helper.assert_clean()
    for name in PAGES:
        response = await page.goto(f"{base}/{name}")
        assert response is not None
        assert response.status in (403, 404), name
        await expect(page.locator("body")).not_to_contain_text("survival")
    refused = await page.evaluate(
        """async (id) => {
            const token = document.querySelector('meta[name="csrf-token"]')?.content;
            const call = async (method, path, body) => (await fetch(
              `/api/v1/servers/${id}${path}`, {
                method, credentials: "same-origin",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": token || ""},
                body: body === undefined ? undefined : JSON.stringify(body),
              })).status;
            return [
                await call("GET", "/backups"), await call("POST", "/backups", {}),
                await call("GET", "/users"), await call("GET", "/startup"),
                await call("GET", "/allocations"),
                await call("GET", "/activity"), await call("PATCH", "", {name: "mine"}),
                await call("POST", "/reinstall"),
            ];
        }""",
        server_id,
    )
    assert refused == [403] * 8, refused
    assert (await owner.json("GET", f"/api/v1/servers/{server_id}"))["name"] == "survival"
    await helper.context.close()


async def test_another_customer_cannot_open_the_server_pages(
    stack: Stack, browser: Browser
) -> None:
    server_id, _ = await stack.owned_server("first@example.org")
    await stack.panel.create_user("second@example.org")
    watched = await signed_in(browser, stack, "/", "second@example.org")
    page = watched.page
    await expect(page.get_by_text("You have no servers yet.")).to_be_visible()
    for name in ("", *(f"/{p}" for p in PAGES)):
        response = await page.goto(f"/servers/{server_id}{name}")
        assert response is not None
        assert response.status == 404, name
        await expect(page.locator("body")).not_to_contain_text("survival")
    await watched.context.close()


async def test_renaming_shows_the_new_name_and_markup_in_a_name_stays_text(
    stack: Stack, browser: Browser
) -> None:
    server_id, owner = await stack.owned_server("namer@example.org")
    path = f"/servers/{server_id}/settings"
    watched = await signed_in(browser, stack, path, "namer@example.org")
    page = watched.page
    await page.set_viewport_size(PHONE)
    await expect(page.get_by_role("heading", name="survival", exact=True)).to_be_visible()
    await page.get_by_label("Server name").fill("")
    await page.get_by_role("button", name="Rename").click()
    await expect(page.locator('[data-error-for="name"]')).to_be_visible()
    await page.get_by_label("Server name").fill(XSS)
    await page.get_by_role("button", name="Rename").click()
    await expect(page.locator("[data-rename-status]")).to_contain_text("Renamed")
    await expect(page.locator("main h1")).to_have_text(XSS)
    assert (await owner.json("GET", f"/api/v1/servers/{server_id}"))["name"] == XSS
    # Rendered by the server on every page, and in the list: text, never an element.
    for where in (path, f"/servers/{server_id}/backups", f"/servers/{server_id}/activity", "/"):
        await page.goto(where)
        await expect(page.locator("main")).to_contain_text(XSS)
        assert await page.locator("main img").count() == 0
    await page.goto(f"/servers/{server_id}/activity")
    entry = page.locator("#activity-table tbody tr", has_text="server.renamed")
    await expect(entry.locator("time")).to_have_attribute("datetime", ISO)
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= PHONE["width"]
    await watched.assert_clean()
    await watched.context.close()


async def test_an_invalid_startup_value_is_shown_next_to_its_field_and_nothing_is_saved(
    stack: Stack, browser: Browser
) -> None:
    blueprint = await stack.admin.json(
        "POST",
        "/api/v1/blueprints",
        status=201,
        json={
            "name": "game with settings",
            "images": [{"name": "default", "image": "stellar-test/fake-game:latest"}],
            "startup": "/usr/local/bin/fake-game --players {{MAX_PLAYERS}}",
            "stop": {"type": "command", "value": "stop"},
            "variables": [
                {
                    "env": "MAX_PLAYERS",
                    "name": "Max players",
                    "description": "How many may play at once",
                    "type": "integer",
                    "min": 1,
                    "max": 100,
                    "default": "20",
                    "user_editable": True,
                },
                {"env": "WORLD_SEED", "name": "World seed", "default": "42"},
                {
                    "env": "SECRET_KEY",
                    "name": "Secret",
                    "default": "s3cr3t",
                    "user_viewable": False,
                },
            ],
        },
    )
    await stack.add_ports(1)
    owner_id = await stack.panel.create_user("tuner@example.org")
    body = {**stack.server_body(owner_id), "blueprint_id": blueprint["id"]}
    server_id = (await stack.admin.json("POST", "/api/v1/servers", status=201, json=body))["id"]
    stack.servers.append(server_id)
    owner = await stack.panel.browser()
    await owner.login("tuner@example.org")
    await wait_for_state(owner, server_id, "offline")

    path = f"/servers/{server_id}/startup"
    watched = await signed_in(browser, stack, path, "tuner@example.org")
    page = watched.page
    await expect(page.locator("[data-startup-command]")).to_contain_text("--players 20")
    # Viewable only: shown as text; hidden: not on the page at all.
    await expect(page.get_by_label("World seed")).to_have_count(0)
    await expect(page.locator("main")).to_contain_text("WORLD_SEED")
    await expect(page.locator("main")).not_to_contain_text("SECRET_KEY")

    players = page.get_by_label("Max players")
    await players.fill("1000")
    await page.get_by_role("button", name="Save").click()
    error = page.locator('[data-error-for="MAX_PLAYERS"]')
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("100")
    await expect(players).to_have_attribute("aria-invalid", "true")
    startup = await owner.json("GET", f"/api/v1/servers/{server_id}/startup")
    assert {v["env"]: v["value"] for v in startup["variables"]}["MAX_PLAYERS"] == "20"

    await players.fill("50")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("[data-startup-status]")).to_contain_text("Saved")
    await expect(error).to_be_hidden()
    await expect(page.locator("[data-startup-command]")).to_contain_text("--players 50")
    await page.reload()
    await expect(page.get_by_label("Max players")).to_have_value("50")
    await watched.assert_clean()
    await watched.context.close()


async def test_a_port_is_taken_and_given_back_in_the_browser(
    stack: Stack, browser: Browser
) -> None:
    server_id, owner = await stack.owned_server("porter@example.org")
    await stack.add_ports(1)
    await wait_for_state(owner, server_id, "offline")
    path = f"/servers/{server_id}/network"
    ports_api = f"/api/v1/servers/{server_id}/allocations"
    watched = await signed_in(browser, stack, path, "porter@example.org")
    page = watched.page
    rows = page.locator("#port-table tbody tr")
    await expect(rows).to_have_count(1)
    # No port limit: the host decides the ports, nothing to take or give back.
    await expect(page.get_by_role("button", name="Take a free port")).to_have_count(0)
    await expect(page.locator("[data-port-limit]")).to_have_count(0)

    await stack.admin.json("PATCH", f"/api/v1/servers/{server_id}/limits", json={"port_limit": 2})
    await page.reload()
    await expect(page.locator("[data-port-limit]")).to_contain_text("up to 2 ports (1 now)")
    await page.get_by_role("button", name="Take a free port").click()
    await expect(rows).to_have_count(2)
    await expect(page.locator("[data-limit-reached]")).to_be_visible()
    await expect(page.get_by_role("button", name="Take a free port")).to_have_count(0)
    ports = (await owner.json("GET", ports_api))["data"]
    assert [p["primary"] for p in ports] == [True, False]
    taken = f"{ports[1]['ip']}:{ports[1]['port']}"
    await expect(rows.nth(1)).to_contain_text(taken)
    # The main port has no button to give it back; the other one has.
    await expect(rows.nth(0).get_by_role("button", name=re.compile("Give back"))).to_have_count(0)
    await page.get_by_role("button", name=f"Give back {taken}").click()
    await expect(rows).to_have_count(1)
    await expect(page.get_by_role("button", name="Take a free port")).to_be_visible()
    assert len((await owner.json("GET", ports_api))["data"]) == 1
    await watched.assert_clean()
    await watched.context.close()


async def test_ports_are_noted_and_a_new_main_port_chosen_in_the_browser(
    stack: Stack, browser: Browser
) -> None:
    low, high = sorted(await stack.add_ports(2))
    owner_id = await stack.panel.create_user("hoster@example.org")
    body = stack.server_body(owner_id)
    server_id = (await stack.admin.json("POST", "/api/v1/servers", status=201, json=body))["id"]
    stack.servers.append(server_id)
    await stack.give_port(server_id, high)
    owner = await stack.panel.browser()
    await owner.login("hoster@example.org")
    await wait_for_state(owner, server_id, "offline")
    await stack.panel.create_user("viewer@example.org")
    await owner.json(
        "POST",
        f"/api/v1/servers/{server_id}/users",
        status=201,
        json={"email": "viewer@example.org", "permissions": ["allocations.read"]},
    )

    path = f"/servers/{server_id}/network"
    watched = await signed_in(browser, stack, path, "hoster@example.org")
    page = watched.page
    await expect(page.get_by_role("link", name="Network")).to_have_attribute("aria-current", "page")
    rows = page.locator("#port-table tbody tr")
    await expect(rows.nth(0)).to_contain_text(f"127.0.0.1:{low}")
    await expect(rows.nth(0).locator("[data-main]")).to_have_text("main")
    await expect(rows.nth(0).get_by_role("button", name="Make main port")).to_have_count(0)

    second = page.locator("#port-table tbody tr", has_text=f"127.0.0.1:{high}")
    await page.get_by_label(f"Notes for 127.0.0.1:{high}").fill(XSS)
    await second.get_by_role("button", name="Save notes").click()
    await expect(page.locator("[data-network-status]")).to_have_text("Notes saved.")
    ports = (await owner.json("GET", f"/api/v1/servers/{server_id}/allocations"))["data"]
    assert [(p["port"], p["notes"], p["primary"]) for p in ports] == [
        (low, None, True),
        (high, XSS, False),
    ]

    await second.get_by_role("button", name="Make main port").click()
    await expect(rows.nth(0).locator("[data-main]")).to_have_text("main")
    await expect(rows.nth(0)).to_contain_text(f"127.0.0.1:{high}")
    await expect(page.get_by_label(f"Notes for 127.0.0.1:{high}")).to_have_value(XSS)
    await expect(rows.nth(1).get_by_role("button", name="Make main port")).to_be_visible()
    ports = (await owner.json("GET", f"/api/v1/servers/{server_id}/allocations"))["data"]
    assert [(p["port"], p["primary"]) for p in ports] == [(high, True), (low, False)]
    # An emptied box clears the notes.
    await page.get_by_label(f"Notes for 127.0.0.1:{high}").fill("")
    await rows.nth(0).get_by_role("button", name="Save notes").click()
    await expect(page.locator("[data-network-status]")).to_have_text("Notes saved.")
    ports = (await owner.json("GET", f"/api/v1/servers/{server_id}/allocations"))["data"]
    assert ports[0]["notes"] is None
    await owner.json(
        "PATCH", f"/api/v1/servers/{server_id}/allocations/{ports[1]['id']}", json={"notes": XSS}
    )
    await watched.assert_clean()
    await watched.context.close()

    # allocations.read only: the ports and their notes, as text; nothing to change.
    viewer = await signed_in(browser, stack, path, "viewer@example.org")
    page = viewer.page
    await expect(page.locator("#port-table tbody tr")).to_have_count(2)
    await expect(page.locator("#port-table")).to_contain_text(XSS)
    await expect(page.locator("#port-table img")).to_have_count(0)
    await expect(page.locator("[data-network]").get_by_role("button")).to_have_count(0)
    await expect(page.locator("#port-table input")).to_have_count(0)
    await viewer.assert_clean()
    await viewer.context.close()
