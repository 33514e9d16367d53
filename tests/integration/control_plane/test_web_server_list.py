"""The server list: search by name on the server, and each server's live CPU and memory.

The figures come from the stored 10-second buckets of the resource history (one request
for the whole page, ``GET /api/v1/resource-use``), shown only to callers who hold
``stats.read`` on the server, as ``GET /servers/{id}/stats`` is. The end-to-end test runs a
real game container on a real agent and waits for the page to show its use.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from playwright.async_api import Browser, expect

from control_plane.db.engine import session_factory
from control_plane.db.models import ServerStatsBucket
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.integration.control_plane.stack import Stack, wait_for_state
from tests.support.chromium import watched_page
from tests.support.panel import PASSWORD, Panel
from tests.support.world import World

MIB = 1024 * 1024


async def record_use(panel: Panel, server_id: str, *, age: int, cpu: float, mib: int) -> None:
    """A 10-second bucket of two samples that ended ``age`` seconds ago."""
    start = (int(time.time()) - age) // 10 * 10 - 10
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        db.add(
            ServerStatsBucket(
                server_id=uuid.UUID(server_id),
                resolution=10,
                bucket=start,
                samples=2,
                cpu_sum=2 * cpu,
                cpu_max=cpu,
                memory_sum=2.0 * mib * MIB,
                memory_max=mib * MIB,
                rate_samples=0,
                rx_rate_sum=0.0,
                tx_rate_sum=0.0,
            )
        )


async def test_resource_use_is_the_latest_fresh_bucket_for_whoever_may_read_stats(
    world: World,
) -> None:
    alice_server, bob_server = world.ids["alice_server"], world.ids["bob_server"]
    await record_use(world.panel, alice_server, age=40, cpu=3.0, mib=100)
    await record_use(world.panel, alice_server, age=0, cpu=12.25, mib=256)
    await record_use(world.panel, bob_server, age=300, cpu=50.0, mib=900)  # stopped since

    use = await world.alice.json("GET", "/api/v1/resource-use")
    assert [(u["server_id"], u["cpu_percent"], u["memory_bytes"]) for u in use["data"]] == [
        (alice_server, 12.2, 256 * MIB)  # the latest bucket's averages
    ]
    # Bob's figures are too old to be "now"; alice's server is not his to watch.
    assert (await world.bob.json("GET", "/api/v1/resource-use"))["data"] == []
    # Carol shares alice's server with console.read only: no stats.read, no figures.
    assert (await world.carol.json("GET", "/api/v1/resource-use"))["data"] == []
    # The search narrows it like the page (any case; % and _ are literal characters).
    found = await world.alice.json("GET", "/api/v1/resource-use?q=ALICE")
    assert [u["server_id"] for u in found["data"]] == [alice_server]
    for wildcard in ("%25", "_", "%5C"):  # %, _ and \ match only themselves
        assert (await world.alice.json("GET", f"/api/v1/resource-use?q={wildcard}"))["data"] == []
    found = await world.alice.json("GET", "/api/v1/resource-use?q=%27s%20serv")  # "'s serv"
    assert [u["server_id"] for u in found["data"]] == [alice_server]
    assert (await world.bob.json("GET", "/api/v1/resource-use?q=alice"))["data"] == []
    refused = await world.alice.json("GET", f"/api/v1/resource-use?q={'x' * 101}", status=400)
    assert refused["error"]["details"][0]["loc"][-1] == "q"


@pytest.mark.browser
@pytest.mark.docker
async def test_the_list_shows_a_running_server_s_use_and_finds_it_by_name(
    stack: Stack, browser: Browser
) -> None:
    server_id, owner = await stack.owned_server("lister@example.org")
    await stack.admin.json(
        "POST", f"/api/v1/servers/{server_id}/power", status=202, json={"action": "start"}
    )
    await wait_for_state(owner, server_id, "running")
    watched = await watched_page(browser, f"http://localhost:{stack.panel.server.port}")
    page = watched.page
    await page.set_viewport_size({"width": 360, "height": 740})
    await page.goto("/login?next=/%3Fq%3DSURV")
    await page.get_by_label("E-mail").fill("lister@example.org")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/?q=SURV")
    row = page.locator(f'tr[data-server-id="{server_id}"]')
    await expect(row).to_contain_text("survival")
    await expect(row).to_contain_text("running")
    # The game's samples reach the stored history, and the page's poll brings them here.
    await expect(row.locator('[data-use="memory"]')).to_have_text(
        re.compile(r"^\d[\d,.\s]* MiB$"), timeout=60_000
    )
    await expect(row.locator('[data-use="cpu"]')).to_have_text(re.compile(r"^\d+\.\d %$"))
    # At 360 px the table is a list of cards: nothing scrolls sideways.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360
    await watched.assert_clean()
    await watched.context.close()
    await stack.admin.json(
        "POST", f"/api/v1/servers/{server_id}/power", status=202, json={"action": "kill"}
    )
