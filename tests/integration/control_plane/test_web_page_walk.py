"""Every page of the panel, in a real Chromium, at a desktop's size and a phone's.

The pages are read from ``PAGE_TABLES`` (every GET route of the panel), so a new page is
walked without being listed here. Each ``{param}`` of a path is filled from a seeded world —
a server on a real agent (its console connects), its node, location, blueprint, owner and a
backup — by name (``WORLD_PARAMS``); a name the walk does not know fails the test, so no page
is skipped in silence. Each page is opened as the caller its declaration names: nobody for a
public page (sign-in), an administrator for an administrator's page, the owner for the rest.

On every page, at 1280 by 800 px and 360 by 740 px: no CSP violation, no console error, no dialog
(``assert_clean``), axe-core finds no serious or critical violation (in the light theme, and
in the dark one on the desktop), nothing scrolls sideways, and a screenshot is written to
``$STELLAR_ARTIFACTS/pages/`` (or ``pages/`` under pytest's base temporary directory) as
``<route name>-<size>.png``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, ViewportSize, expect

from control_plane.api.registry import PAGE_TABLES
from control_plane.api.routing import Access, Endpoint
from control_plane.db.engine import session_factory
from control_plane.db.models import Backup, Invitation
from control_plane.db.session import transaction
from control_plane.keys import CONSOLES, ENGINE
from control_plane.mail import tokens
from tests.integration.control_plane.stack import Stack, wait_for_state
from tests.support.chromium import Watched, watched_page
from tests.support.panel import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.every_database]

SIZES: Final[dict[str, ViewportSize]] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 360, "height": 740},
}
# What a page may not have (axe-core's impacts are minor, moderate, serious, critical).
REFUSED_IMPACTS: Final = frozenset({"serious", "critical"})
ADMIN: Final = "admin@example.org"
OWNER: Final = "walker@example.org"
_PARAM: Final = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class WalkWorld:
    """The ids a page's path is filled with, and the query of a page that needs one (a
    mailed link's token), by the route's path."""

    params: dict[str, str]
    queries: dict[str, str]


async def seed(stack: Stack) -> WalkWorld:
    """A server of the owner's on the real agent (installed, offline), and what it hangs on."""
    await stack.add_ports(1)
    owner_id = await stack.panel.create_user(OWNER)
    created = await stack.admin.json(
        "POST", "/api/v1/servers", status=201, json=stack.server_body(owner_id, "walk survival")
    )
    server_id = created["id"]
    stack.servers.append(server_id)
    await wait_for_state(stack.admin, server_id, "offline")
    node = await stack.admin.json("GET", f"/api/v1/nodes/{stack.node_id}")
    allocations = await stack.admin.json("GET", f"/api/v1/nodes/{stack.node_id}/allocations")
    # A finished backup as the database records it (making a real one is the backup tests').
    async with transaction(session_factory(stack.panel.server.app[ENGINE])) as db:
        backup = Backup(server_id=uuid.UUID(server_id), name="nightly", status="completed")
        db.add(backup)
        await db.flush()
        backup_id = str(backup.id)
        # The mailed links' pages open with a live token, as from the mail.
        user_id = uuid.UUID(owner_id)
        reset = await tokens.issue(db, user_id=user_id, purpose="reset", email=OWNER)
        verify = await tokens.issue(db, user_id=user_id, purpose="verify", email=OWNER)
        # An invitation of an address without an account, as the owner's invite stores it.
        invitation, digest = tokens.new_token()
        db.add(
            Invitation(
                server_id=uuid.UUID(server_id),
                email="invited@example.org",
                permissions=["console.read", "console.write"],
                invited_by=user_id,
                token_hash=digest,
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=7),
            )
        )
    return WalkWorld(
        {
            "server_id": server_id,
            "node_id": stack.node_id,
            "location_id": node["location_id"],
            "blueprint_id": stack.blueprint_id,
            "user_id": owner_id,
            "backup_id": backup_id,
            "allocation_id": allocations["data"][0]["id"],
        },
        {
            "/reset-password": urlencode({"token": reset}),
            "/verify-email": urlencode({"token": verify}),
            "/invitation": urlencode({"token": invitation}),
        },
    )


def page_routes() -> list[Endpoint]:
    return [
        endpoint
        for table in PAGE_TABLES
        for endpoint in table.endpoints
        if endpoint.method == "GET"
    ]


def fill(endpoint: Endpoint, world: WalkWorld) -> str:
    """The route's path with each parameter taken from the world, by name."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in world.params:
            pytest.fail(
                f"the page walk cannot fill {{{name}}} in {endpoint.path} "
                f"({endpoint.name}): seed one in test_web_page_walk.py (seed(), WalkWorld.params) "
                "so that the page is walked"
            )
        return world.params[name]

    path = _PARAM.sub(value, endpoint.path)
    query = world.queries.get(endpoint.path)
    return f"{path}?{query}" if query else path


def caller_of(endpoint: Endpoint) -> str | None:
    """Who opens the page: nobody (public), the administrator, or the server's owner."""
    if endpoint.access is Access.PUBLIC:
        return None
    if endpoint.access is Access.ADMIN:
        return ADMIN
    return OWNER


@pytest.fixture
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: ``$STELLAR_ARTIFACTS/pages``, else under pytest's base
    temporary directory (``pytest --basetemp DIR`` puts them in ``DIR/pages``)."""
    where = Path(os.environ.get("STELLAR_ARTIFACTS") or tmp_path_factory.getbasetemp()) / "pages"
    where.mkdir(parents=True, exist_ok=True)
    return where


async def signed_in(browser: Browser, base_url: str, email: str | None) -> Watched:
    """A browser context signed in as ``email`` through the sign-in page (or nobody)."""
    watched = await watched_page(browser, base_url)
    if email is not None:
        page = watched.page
        await page.goto("/login")
        await page.get_by_label("E-mail").fill(email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(lambda url: not url.endswith("/login"))
    return watched


def serious(results: dict[str, Any]) -> list[str]:
    """axe-core's serious and critical violations, one line per element."""
    found = []
    for violation in results["violations"]:
        if violation["impact"] in REFUSED_IMPACTS:
            for node in violation["nodes"]:
                found.append(
                    f"{violation['id']} ({violation['impact']}): {violation['help']} at "
                    f"{node['target']}: {node.get('failureSummary', '')}"
                )
    return found


async def visit(page: Page, path: str) -> None:
    """Open ``path`` and wait until its scripts say it is ready (app.js's ``markReady``)."""
    response = await page.goto(path)
    assert response is not None, path
    assert response.status == 200, f"{path}: {response.status}"
    await expect(page.locator("html")).to_have_attribute("data-ready", "true", timeout=20_000)


async def test_every_page_is_clean_accessible_and_fits_both_sizes(
    stack: Stack, browser: Browser, screenshots: Path
) -> None:
    world = await seed(stack)
    base_url = f"http://localhost:{stack.panel.server.port}"
    routes = page_routes()
    assert routes, "PAGE_TABLES holds no GET page"
    axe = Axe()
    callers: dict[str | None, Watched] = {}
    problems: list[str] = []
    walked: list[str] = []
    try:
        for endpoint in routes:
            path = fill(endpoint, world)
            who = caller_of(endpoint)
            if who not in callers:
                callers[who] = await signed_in(browser, base_url, who)
            watched = callers[who]
            page = watched.page
            for size, viewport in SIZES.items():
                await page.set_viewport_size(viewport)
                await page.emulate_media(color_scheme="light")
                await visit(page, path)
                where = f"{endpoint.path} as {who or 'anonymous'} at {size}"
                schemes = ("light", "dark") if size == "desktop" else ("light",)
                for scheme in schemes:
                    await page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
                    results = await axe.run(page)
                    problems += [
                        f"{where} ({scheme}): {line}" for line in serious(results.response)
                    ]
                await page.emulate_media(color_scheme="light")
                width = await page.evaluate("document.documentElement.scrollWidth")
                if width > viewport["width"]:
                    problems.append(f"{where}: {width} px wide, scrolls sideways")
                await page.screenshot(
                    path=screenshots / f"{endpoint.name}-{size}.png", full_page=True
                )
                await watched.assert_clean()
                walked.append(f"{path} {size}")
    finally:
        for watched in callers.values():
            await watched.context.close()
        # The console pages' sockets are let go before the app shuts down.
        consoles = stack.panel.server.app[CONSOLES]
        async with asyncio.timeout(20):
            while consoles.total():
                await asyncio.sleep(0.05)
    assert problems == [], "\n".join(problems)
    assert len(walked) == 2 * len(routes)


async def test_the_walk_s_checks_see_what_they_are_for(stack: Stack, browser: Browser) -> None:
    """Not vacuous: axe-core, run as the walk runs it, reports an input without a label and
    text without contrast on a real page of the panel."""
    watched = await signed_in(browser, f"http://localhost:{stack.panel.server.port}", None)
    try:
        await visit(watched.page, "/login")
        await watched.page.evaluate(
            """() => {
                document.querySelector("main").append(document.createElement("input"));
                const faint = document.createElement("p");
                faint.textContent = "barely there";
                faint.className = "muted";
                faint.style.color = "#c8ccd0";  // a CSSOM style (the policy allows it); 1.5:1
                document.querySelector("main").append(faint);
            }"""
        )
        found = serious((await Axe().run(watched.page)).response)
        assert any(line.startswith("label (critical)") for line in found), found
        assert any(line.startswith("color-contrast (serious)") for line in found), found
    finally:
        await watched.context.close()
