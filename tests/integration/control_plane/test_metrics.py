"""/metrics: refused without the scope or an allow-listed address, and after a small real
workload it names what happened, by route template (never a raw path), preset and outcome."""

from __future__ import annotations

import uuid

from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import session_factory
from control_plane.db.models import User
from control_plane.db.session import transaction
from tests.integration.control_plane.mfa_support import mfa_panel
from tests.support.clocks import MonotonicClock, WallClock
from tests.support.panel import Browser, Panel
from tests.support.scrape import Scrape

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


async def metrics_key(admin: Browser, panel: Panel, scopes: list[str]) -> Browser:
    created = await admin.json(
        "POST", "/api/v1/account/api-keys", status=201, json={"name": "prom", "scopes": scopes}
    )
    scraper = await panel.browser()
    scraper.api_key = created["key"]
    return scraper


async def scrape(browser: Browser, path: str = "/metrics") -> Scrape:
    response = await browser.request("GET", path)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == TEXT_FORMAT
    return Scrape.parse(await response.text())


async def test_metrics_need_an_administrators_key_with_the_metrics_scope(
    database_url: str,
    engine: AsyncEngine,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> None:
    panel = await mfa_panel(database_url, aiohttp_server, aiohttp_client, wall_clock)
    anonymous = await panel.browser()
    assert (await anonymous.request("GET", "/metrics")).status == 401
    admin = await panel.signed_in("root@example.org", admin=True)
    # A browser session, even an administrator's, is no scraper credential.
    refused = await admin.json("GET", "/metrics", status=403)
    assert "an API key with the 'metrics' scope" in refused["error"]["message"]
    full_admin = await metrics_key(admin, panel, ["read", "write", "admin"])
    await full_admin.json("GET", "/metrics", status=403)
    await full_admin.json("GET", f"/metrics/nodes/{uuid.uuid4()}", status=403)

    alice = await panel.signed_in("alice@example.org")
    refused = await alice.json(
        "POST",
        "/api/v1/account/api-keys",
        status=403,
        json={"name": "sneaky", "scopes": ["read", "metrics"]},
    )
    assert "metrics scope" in refused["error"]["message"]

    scraper = await metrics_key(admin, panel, ["metrics"])
    assert (await scrape(scraper)).value("stellar_db_pool_size", pool="main") is not None
    # The scraper's key reaches nothing else.
    await scraper.json("GET", "/api/v1/servers", status=403)
    await scraper.json("GET", "/api/v1/users", status=403)

    # The owner is no administrator any more: the scope goes with it, on the next request.
    async with transaction(session_factory(engine)) as db:
        demoted = update(User).where(User.email == "root@example.org").values(is_admin=False)
        await db.execute(demoted)
    refused = await scraper.json("GET", "/metrics", status=403)
    assert "metrics" in refused["error"]["message"]


async def test_an_allow_listed_scraper_reads_metrics_without_a_key(
    database_url: str,
    engine: AsyncEngine,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> None:
    env = {"STELLAR_METRICS_SCRAPERS": "10.9.0.0/16, 127.0.0.0/8"}
    panel = await mfa_panel(database_url, aiohttp_server, aiohttp_client, wall_clock, env=env)
    prometheus = await panel.browser()
    assert "stellar_http_requests_total" in (await scrape(prometheus)).text
    # A node that does not exist: past the protection, and 404.
    missing = await prometheus.json("GET", f"/metrics/nodes/{uuid.uuid4()}", status=404)
    assert missing["error"]["code"] == "not_found"
    # The allow-list opens /metrics only.
    await prometheus.json("GET", "/api/v1/servers", status=401)

    elsewhere = await mfa_panel(
        database_url,
        aiohttp_server,
        aiohttp_client,
        wall_clock,
        env={"STELLAR_METRICS_SCRAPERS": "10.9.0.0/16"},
    )
    outsider = await elsewhere.browser()
    assert (await outsider.request("GET", "/metrics")).status == 401
    # A forwarded-for header from a peer that is no trusted proxy changes nothing.
    spoofed = await outsider.request("GET", "/metrics", headers={"X-Forwarded-For": "10.9.1.1"})
    assert spoofed.status == 401


async def test_a_client_behind_the_proxy_is_never_taken_for_the_proxy_itself(
    database_url: str,
    engine: AsyncEngine,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> None:
    # The reverse proxy and Prometheus share the internal network the allow-list names. A
    # forwarded-for hop the panel cannot read (some load balancers append "address:port")
    # must not leave the proxy's own address as the client's: that opened /metrics to anyone.
    env = {"STELLAR_METRICS_SCRAPERS": "127.0.0.0/8", "STELLAR_TRUSTED_PROXIES": "127.0.0.1"}
    panel = await mfa_panel(database_url, aiohttp_server, aiohttp_client, wall_clock, env=env)
    visitor = await panel.browser()
    for hop in ("203.0.113.9:51234", "[2001:db8::9]:443", "not an address"):
        answer = await visitor.request("GET", "/metrics", headers={"X-Forwarded-For": hop})
        assert answer.status == 401, hop
    readable = await visitor.request("GET", "/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert readable.status == 401
    # Prometheus next to the proxy, with no forwarded-for: its own address.
    assert "stellar_http_requests_total" in (await scrape(await panel.browser())).text


async def test_a_workload_is_counted_by_route_template_preset_and_outcome(
    database_url: str,
    engine: AsyncEngine,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> None:
    panel = await mfa_panel(
        database_url,
        aiohttp_server,
        aiohttp_client,
        wall_clock,
        rate_clock=MonotonicClock(),
        env={"STELLAR_RATE_LIMITS": "authentication=4/60,api=1000/60"},
    )
    admin = await panel.signed_in("root@example.org", admin=True)  # one sign-in
    scraper = await metrics_key(admin, panel, ["metrics"])
    visitor = await panel.browser()
    wrong = {"email": "root@example.org", "password": "not the password"}
    for _ in range(3):
        await visitor.json("POST", "/api/v1/auth/login", status=401, json=wrong)
    # The bucket of 4 is spent (the admin's sign-in was the first): a real 429.
    limited = await visitor.request("POST", "/api/v1/auth/login", json=wrong)
    assert limited.status == 429
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for server_id in ids:
        await admin.json("GET", f"/api/v1/servers/{server_id}", status=404)
    for _ in range(3):  # read once, then answered twice from the replica's kept page
        await admin.json("GET", "/api/v1/servers")
    await admin.json("GET", "/no/such/route/at/all", status=404)

    seen = await scrape(scraper)
    login = "/api/v1/auth/login"
    assert seen.value("stellar_sign_ins_total", method="password", outcome="succeeded") == 1
    assert seen.value("stellar_sign_ins_total", method="password", outcome="failed") == 3
    assert seen.value("stellar_rate_limit_refusals_total", preset="authentication") == 1
    assert seen.value("stellar_http_requests_total", route=login, method="POST", status="429") == 1
    assert seen.value("stellar_http_requests_total", route=login, method="POST", status="401") == 3
    server = "/api/v1/servers/{server_id}"
    assert seen.value("stellar_http_requests_total", route=server, method="GET", status="404") == 3
    timed = seen.value("stellar_http_request_duration_seconds_count", route=server, method="GET")
    assert timed == 3
    assert seen.value("stellar_http_requests_total", route="unmatched", method="GET", status="404")
    # Bounded: route templates only, never an id or a path someone typed.
    routes = seen.label_values("stellar_http_requests_total", "route")
    assert not any(server_id in seen.text for server_id in ids)
    assert "/no/such" not in seen.text
    templates = {
        route.resource.canonical
        for route in panel.server.app.router.routes()
        if route.resource is not None
    }
    assert routes <= templates | {"unmatched"}, routes - templates
    assert seen.label_values("stellar_db_pool_connections", "state") >= {"in_use", "idle"}
    # Both of the replica's pools: the engine's and the reads' own (authentication, lists),
    # which the list requests above used.
    assert seen.label_values("stellar_db_pool_connections", "pool") == {"main", "reads"}
    assert seen.total("stellar_db_pool_connections", pool="reads") >= 1
    postgres = database_url.startswith("postgresql")
    assert seen.value("stellar_db_pool_size", pool="reads") == (12 if postgres else 2)
    assert (seen.value("stellar_db_pool_size", pool="main") or 0) >= 1
    assert seen.value("stellar_list_cache_lookups_total", outcome="miss") == 1
    assert seen.value("stellar_list_cache_lookups_total", outcome="hit") == 2
    assert (seen.value("stellar_list_cache_bytes") or 0) > 0
