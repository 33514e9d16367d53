"""What the panel's pages cost a browser: paint, interactive, ready, and bytes.

Run ``python bench/web.py`` (``--help`` for the options). In one run it

1. builds the local test images, migrates a fresh SQLite file and starts the real control
   plane in this process with one real agent process (``tests/integration/control_plane/
   stack.py`` ``running_stack``, as the end-to-end tests do); creates one server through the
   API on the agent (its container exists; the console connects to it) and records 49 more
   for the same owner straight through the services (``placement.create_server``, as
   ``bench/api.py`` does): the server list shows 50;
2. drives Debian's Chromium headless through Playwright (``/usr/bin/chromium``), signed in
   as the owner, and loads each page ``--runs`` times cold (the browser's cache emptied
   through the DevTools protocol first) and as many times cached (the same URL again):
   the sign-in page (the baseline: the smallest page, same server, same run), the server
   list with 50 servers, and a server's console;
3. reads from the Performance API, per load: first paint and first contentful paint (paint
   entries), ``domInteractive`` and ``loadEventEnd`` (the navigation entry), the page's own
   "ready" mark (``stellar-ready``, set by app.js's ``markReady``: at once on plain pages,
   when the socket is connected on the console), and the bytes transferred (the document's
   and every resource's ``transferSize``: compressed bodies plus headers; 0 for a file the
   cache served).

It prints medians against the targets (every page under 300 KB on a first load, the console
interactive — "ready" — under 500 ms) and the ratios to the sign-in page. It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

# Run as a script (python bench/x.py), the repository root is not on the path yet.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from playwright.async_api import Browser, Page, async_playwright

from control_plane.db.engine import create_engine, session_factory
from control_plane.db.migrate import upgrade
from control_plane.db.models import Allocation, Blueprint, User
from control_plane.db.session import transaction
from control_plane.keys import CONSOLES, ENGINE
from control_plane.services.servers import placement
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.integration.control_plane.stack import Stack, running_stack
from tests.support.containers import build_test_images
from tests.support.panel import PASSWORD
from tests.support.serving import ApiTestServer

CHROMIUM: Final = "/usr/bin/chromium"
OWNER: Final = "bench@example.org"
PAGE_BUDGET_BYTES: Final = 300 * 1024
CONSOLE_READY_MS: Final = 500.0
ENVIRONMENT: Final = {
    "STELLAR_AUTH_SECRET": AUTH_SECRET,
    "STELLAR_BCRYPT_COST": "10",
    "STELLAR_RATE_LIMITS": UNLIMITED,
}
# One load's figures, read in the page once it is ready.
_FIGURES: Final = """() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const paint = Object.fromEntries(
        performance.getEntriesByType("paint").map((e) => [e.name, e.startTime]));
    const ready = performance.getEntriesByName("stellar-ready")[0];
    const connecting = performance.getEntriesByName("console-connecting")[0];
    const resources = performance.getEntriesByType("resource");
    return {
        first_paint: paint["first-paint"] ?? null,
        first_contentful_paint: paint["first-contentful-paint"] ?? null,
        dom_interactive: nav.domInteractive,
        load_event_end: nav.loadEventEnd,
        ready: ready ? ready.startTime : null,
        socket_opened_at: connecting ? connecting.startTime : null,
        bytes: nav.transferSize + resources.reduce((sum, r) => sum + r.transferSize, 0),
        requests: 1 + resources.length,
    };
}"""
METRICS: Final = (
    "first_paint",
    "first_contentful_paint",
    "dom_interactive",
    "load_event_end",
    "ready",
    # The console's "console-connecting" mark: when its script opened the socket.
    "socket_opened_at",
    "bytes",
    "requests",
)


@dataclass
class Loads:
    """Every load of one page in one mode (cold or cached): a list of figures per metric."""

    figures: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})

    def add(self, found: dict[str, Any]) -> None:
        for metric in METRICS:
            if found[metric] is not None:
                self.figures[metric].append(float(found[metric]))

    def median(self, metric: str) -> float:
        values = self.figures[metric]
        return statistics.median(values) if values else float("nan")


async def _serve(app: web.Application, **kwargs: Any) -> TestServer:
    server = ApiTestServer(app, host="127.0.0.1")
    await server.start_server(**kwargs)
    return server


@asynccontextmanager
async def bench_stack(workdir: Path) -> AsyncIterator[Stack]:
    """The control plane (SQLite in ``workdir``) with one real agent, as the tests start it."""
    database_url = f"sqlite+aiosqlite:///{workdir / 'panel.db'}"
    engine = create_engine(database_url)
    await upgrade(engine)
    await engine.dispose()
    servers: list[TestServer] = []
    clients: list[TestClient[Any, Any]] = []

    async def serve(app: web.Application, **kwargs: Any) -> TestServer:
        server = await _serve(app, **kwargs)
        servers.append(server)
        return server

    async def client(server: TestServer) -> TestClient[Any, Any]:
        made: TestClient[Any, Any] = TestClient(server)
        await made.start_server()
        clients.append(made)
        return made

    try:
        async with running_stack(
            environment=ENVIRONMENT,
            database_url=database_url,
            tmp_path=workdir,
            aiohttp_server=serve,
            aiohttp_client=client,  # type: ignore[arg-type]
        ) as stack:
            yield stack
    finally:
        for made in clients:
            await made.close()
        for server in servers:
            await server.close()


async def seed(stack: Stack, total: int) -> str:
    """The owner's ``total`` servers: one on the agent (its id is returned), the rest recorded."""
    await stack.add_ports(1)
    owner_id = await stack.panel.create_user(OWNER)
    created = await stack.admin.json(
        "POST", "/api/v1/servers", status=201, json=stack.server_body(owner_id, "console game")
    )
    stack.servers.append(created["id"])
    async with transaction(session_factory(stack.panel.server.app[ENGINE])) as db:
        owner = await db.get(User, uuid.UUID(owner_id))
        blueprint = await db.get(Blueprint, uuid.UUID(stack.blueprint_id))
        assert owner is not None
        assert blueprint is not None
        # A free port each: placement gives every server one.
        node_id = uuid.UUID(stack.node_id)
        db.add_all(
            Allocation(node_id=node_id, ip="127.0.0.1", port=41000 + i) for i in range(total - 1)
        )
        await db.flush()
        limits = placement.ServerLimits(512, 0, 100, 1024, 256)
        for i in range(total - 1):
            server = await placement.create_server(
                db,
                name=f"server {i:03d}",
                owner=owner,
                blueprint=blueprint,
                node_id=node_id,
                image=None,
                limits=limits,
                variables={},
            )
            server.state = "offline"
    deadline = time.monotonic() + 60
    while (await stack.admin.json("GET", f"/api/v1/servers/{created['id']}"))["state"] not in (
        "offline",
        "running",
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the console's server never finished installing")
        await asyncio.sleep(0.2)
    return str(created["id"])


async def no_consoles(stack: Stack) -> None:
    """Until the control plane holds no console socket."""
    consoles = stack.panel.server.app[CONSOLES]
    async with asyncio.timeout(20):
        while consoles.total():
            await asyncio.sleep(0.01)


async def sign_in(page: Page) -> None:
    await page.goto("/login")
    await page.get_by_label("E-mail").fill(OWNER)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lambda url: not url.endswith("/login"))


async def measure(
    page: Page,
    path: str,
    runs: int,
    clear_cache: Callable[[], Awaitable[Any]],
    settle: Callable[[], Awaitable[Any]],
) -> tuple[Loads, Loads]:
    """``runs`` cold loads of ``path`` and ``runs`` cached ones, alternating; before each,
    the previous page is left and ``settle`` waits until the server has let go of it."""
    cold, cached = Loads(), Loads()
    for _ in range(runs):
        for loads, empty in ((cold, True), (cached, False)):
            await page.goto("about:blank")
            await settle()
            if empty:
                await clear_cache()
            await page.goto(path)
            # Not wait_for_function: its polling evaluates a string, which the CSP refuses.
            await page.locator("html[data-ready=true]").wait_for(state="attached", timeout=20_000)
            found = await page.evaluate(_FIGURES)
            while found["load_event_end"] <= 0:
                await asyncio.sleep(0.02)
                found = await page.evaluate(_FIGURES)
            loads.add(found)
    return cold, cached


def report(results: dict[str, tuple[Loads, Loads]]) -> None:
    baseline_cold = results["sign-in"][0]
    print(
        f"\n{'page':<14}{'mode':<8}{'FP ms':>8}{'FCP ms':>8}{'inter. ms':>10}{'load ms':>9}"
        f"{'ready ms':>10}{'KB':>8}{'req':>5}{'ready/base':>12}{'KB/base':>9}"
    )
    for name, (cold, cached) in results.items():
        for mode, loads in (("cold", cold), ("cached", cached)):
            print(
                f"{name:<14}{mode:<8}{loads.median('first_paint'):>8.0f}"
                f"{loads.median('first_contentful_paint'):>8.0f}"
                f"{loads.median('dom_interactive'):>10.0f}{loads.median('load_event_end'):>9.0f}"
                f"{loads.median('ready'):>10.0f}{loads.median('bytes') / 1024:>8.1f}"
                f"{loads.median('requests'):>5.0f}"
                f"{loads.median('ready') / baseline_cold.median('ready'):>12.2f}"
                f"{loads.median('bytes') / baseline_cold.median('bytes'):>9.2f}"
            )
    print("\nTargets (medians, first load = cold cache):")
    for name, (cold, _) in results.items():
        size = cold.median("bytes")
        verdict = "ok" if size < PAGE_BUDGET_BYTES else "OVER"
        print(f"  {name:<12} first load {size / 1024:7.1f} KB  < 300 KB: {verdict}")
    console = results["console"]
    for mode, loads in (("cold", console[0]), ("cached", console[1])):
        ready = loads.median("ready")
        verdict = "ok" if ready < CONSOLE_READY_MS else "OVER"
        print(
            f"  console      interactive ({mode}) {ready:6.0f} ms  < 500 ms: {verdict}"
            f"  (socket asked for at {loads.median('socket_opened_at'):.0f} ms)"
        )


async def screenshots(page: Page, where: Path, stack: Stack, console_id: str) -> None:
    """The list and the console at a desktop's size and a phone's (for docs/), the console's
    game running and its use on the list."""
    where.mkdir(parents=True, exist_ok=True)
    owner = await stack.panel.browser()
    await owner.login(OWNER)
    await owner.json(
        "POST", f"/api/v1/servers/{console_id}/power", status=202, json={"action": "start"}
    )
    async with asyncio.timeout(90):
        while not (await owner.json("GET", "/api/v1/resource-use"))["data"]:
            await asyncio.sleep(1)
    for size, viewport in (("desktop", (1280, 800)), ("phone", (360, 740))):
        await page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
        for name, path in (("servers", "/"), ("console", f"/servers/{console_id}")):
            await page.goto(path)
            await page.locator("html[data-ready=true]").wait_for(state="attached")
            if name == "console":
                rows = page.locator("#terminal .xterm-rows")
                await rows.filter(has_text="fake-game started").wait_for(timeout=30_000)
            await page.screenshot(path=where / f"panel-{name}-{size}.png")
    await owner.json(
        "POST", f"/api/v1/servers/{console_id}/power", status=202, json={"action": "kill"}
    )


async def run(runs: int, servers: int, shots: Path | None) -> None:
    build_test_images()
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        async with bench_stack(Path(tmp)) as stack:
            console_id = await seed(stack, servers)
            base_url = f"http://localhost:{stack.panel.server.port}"
            async with async_playwright() as playwright:
                browser: Browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
                )
                try:
                    context = await browser.new_context(
                        base_url=base_url, viewport={"width": 1280, "height": 800}
                    )
                    page = await context.new_page()
                    devtools = await context.new_cdp_session(page)
                    await devtools.send("Network.enable")

                    async def clear_cache() -> None:
                        await devtools.send("Network.clearBrowserCache")

                    async def settle() -> None:
                        # A person opening a console has no other one closing meanwhile.
                        await no_consoles(stack)

                    results = {"sign-in": await measure(page, "/login", runs, clear_cache, settle)}
                    await sign_in(page)
                    results["server list"] = await measure(page, "/", runs, clear_cache, settle)
                    rows = await page.locator("#server-table tbody tr").count()
                    assert rows == servers, f"the list shows {rows} servers, not {servers}"
                    results["console"] = await measure(
                        page, f"/servers/{console_id}", runs, clear_cache, settle
                    )
                    if shots is not None:
                        await screenshots(page, shots, stack, console_id)
                    await context.close()
                finally:
                    await browser.close()
            await no_consoles(stack)
    print(
        f"bench/web.py: {platform.python_implementation()} {platform.python_version()}, "
        f"headless {CHROMIUM}, {runs} loads per page and mode, {servers} servers in the list, "
        "control plane on SQLite with one real agent, over loopback"
    )
    report(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=7, help="loads per page and mode")
    parser.add_argument("--servers", type=int, default=50, help="servers in the list")
    parser.add_argument("--screenshots", type=Path, help="also save screenshots in this folder")
    args = parser.parse_args(argv)
    asyncio.run(run(args.runs, args.servers, args.screenshots))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
