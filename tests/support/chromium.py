"""A real Chromium (Debian's package) driven by Playwright, and what a page test checks on
every page: no CSP violation, no console error, no JavaScript dialog (an XSS would open one).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.conftest import service_missing

CHROMIUM: Final = "/usr/bin/chromium"
# How long an expectation waits for the page (Playwright's default: 5 s). The suite's other
# worker may be writing gigabytes meanwhile (SFTP, streaming, backups): a CI run saw two
# requests of a page's control plane (SQLite) both take 4.8 s, then finish together, and
# the expectation gave up first. What passes is not slower.
expect.set_options(timeout=15_000)
# Runs before any page script: every CSP violation is kept where the test can read it.
_WATCH_CSP: Final = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${where}`);
});
"""


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if shutil.which("chromium") is None:
        service_missing(
            "chromium is not installed (apt-get install chromium; "
            "deploy/dev/ensure-services.sh test-tools installs it)"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Watched:
    """A page and what went wrong on it so far."""

    page: Page
    context: BrowserContext
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    async def csp_violations(self) -> list[str]:
        found: Any = await self.page.evaluate("window.__cspViolations || []")
        return [str(item) for item in found]

    async def assert_clean(self) -> None:
        """No CSP violation, console error or dialog on the page so far."""
        violations = await self.csp_violations()
        assert violations == [], violations
        assert self.console_errors == [], self.console_errors
        assert self.dialogs == [], self.dialogs


async def watched_page(browser: Browser, base_url: str) -> Watched:
    context = await browser.new_context(base_url=base_url)
    await context.add_init_script(_WATCH_CSP)
    page = await context.new_page()
    watched = Watched(page, context)

    def on_console(message: Any) -> None:
        # A refused API call (a wrong password's 401) is an answer the page shows, which
        # Chromium also logs; failed page or file loads are caught below instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            watched.console_errors.append(message.text)

    def on_response(response: Any) -> None:
        path = urlsplit(response.url).path
        if response.status >= 400 and path.startswith("/static/"):
            watched.console_errors.append(f"{response.status} {path}")

    async def on_dialog(dialog: Any) -> None:
        watched.dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("dialog", on_dialog)
    return watched
