"""Password-reset requests for one account, spread over many client addresses.

The attacker knows the victim's address and has many client addresses (the panel sits behind a
trusted proxy that names each client in X-Forwarded-For), so the per-address rate limits never
fire. Each request used to mail the victim a link and retire the one mailed before: the
victim's mailbox (and the panel's mail reputation) flooded, and no link lived long enough to be
used. The account's own allowance of reset mails stops both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.services.mail_flows import RESET_ALLOWANCE
from tests.integration.control_plane.mail_support import proxied_mail_panel, token_of
from tests.support.panel import Panel
from tests.support.smtp import MailCatcher

RESET = "/api/v1/auth/password-reset"
NEW_PASSWORD = "a brand new passphrase 2026"
ANSWER = {
    "message": "if an account uses that address, a link to reset its password is on its way; "
    "it works once, for 30 minutes"
}


@pytest.fixture
async def catcher() -> MailCatcher:
    return MailCatcher()


@pytest.fixture
async def panel(
    engine: AsyncEngine,
    database_url: str,
    catcher: MailCatcher,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[Panel]:
    async with proxied_mail_panel(database_url, catcher, aiohttp_server, aiohttp_client) as p:
        yield p


async def _ask(panel: Panel, address: str, email: str) -> dict[str, object]:
    browser = await panel.browser()
    response = await browser.request(
        "POST", RESET, json={"email": email}, headers={"X-Forwarded-For": address}
    )
    assert response.status == 202, await response.text()
    body: dict[str, object] = await response.json()
    return body


async def test_reset_requests_from_many_addresses_mail_the_allowance_and_keep_its_last_link(
    panel: Panel, catcher: MailCatcher
) -> None:
    await panel.create_user("victim@example.org")
    count, _window = RESET_ALLOWANCE
    # Case and spaces name the same account: they share its allowance.
    spellings = ["victim@example.org", " Victim@Example.ORG ", "VICTIM@example.org"]
    for n in range(count):
        assert await _ask(panel, f"203.0.113.{n + 1}", spellings[n % 3]) == ANSWER
    links = [(await catcher.next()).link() for _ in range(count)]
    # Thirty more, each from an address never seen before: the same answer, no mail, and the
    # last link mailed is not retired.
    for n in range(30):
        assert await _ask(panel, f"198.51.100.{n + 1}", spellings[n % 3]) == ANSWER
    await asyncio.sleep(1.5)  # the sender polls every 0.2 s
    assert catcher.pending() == 0
    assert len(catcher.received) == count
    browser = await panel.browser()
    await browser.json(
        "POST",
        RESET + "/confirm",
        json={"token": token_of(links[-1]), "new_password": NEW_PASSWORD},
    )
    await browser.login("victim@example.org", NEW_PASSWORD)


async def test_another_accounts_allowance_is_its_own(panel: Panel, catcher: MailCatcher) -> None:
    await panel.create_user("victim@example.org")
    await panel.create_user("other@example.org")
    count, _window = RESET_ALLOWANCE
    for n in range(count + 3):
        await _ask(panel, f"203.0.113.{n + 1}", "victim@example.org")
    await _ask(panel, "192.0.2.1", "other@example.org")
    received = [(await catcher.next()).to for _ in range(count + 1)]
    assert received.count("other@example.org") == 1
