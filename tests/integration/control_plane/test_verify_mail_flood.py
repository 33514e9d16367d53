"""Verification links aimed at someone else's mailbox, spread over many client addresses.

A change of address mails a verification link to the new address, and registration (then
each resend) to the registered one: both addresses are the asker's choice. The routes' rate
limits are per client address, so anyone with an account and many addresses (the panel sits
behind a trusted proxy that names each client in X-Forwarded-For) mailed any address as often
as they liked, through the panel's own mail server. The address's own allowance of
verification links stops that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.services.mail_flows import VERIFY_LINK_ALLOWANCE
from tests.integration.control_plane.mail_support import proxied_mail_panel
from tests.support.panel import PASSWORD, Panel
from tests.support.smtp import MailCatcher

CHANGE = "/api/v1/account/email"
VICTIM = "victim@example.org"


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


async def test_changes_to_one_address_from_many_clients_mail_it_the_allowance(
    panel: Panel, catcher: MailCatcher
) -> None:
    count, _window = VERIFY_LINK_ALLOWANCE
    # Two accounts of the attacker's (an account of its own does not reset the count).
    first = await panel.signed_in("mallory@example.org")
    second = await panel.signed_in("mallory2@example.org")
    statuses = []
    for n in range(12):
        browser = (first, second)[n % 2]
        response = await browser.request(
            "POST",
            CHANGE,
            json={"email": (VICTIM, " Victim@Example.ORG")[n % 2], "current_password": PASSWORD},
            headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
        )
        statuses.append(response.status)
        if response.status == 429:
            error = (await response.json())["error"]
            assert "too many" in error["message"]
            assert int(response.headers["Retry-After"]) > 0
    assert statuses == [202] * count + [429] * (12 - count)
    await asyncio.sleep(1.5)  # the sender polls every 0.2 s
    to_victim = [m for m in catcher.received if m.to == VICTIM]
    assert len(to_victim) == count


async def test_resent_verification_links_to_an_address_someone_registered_are_bounded(
    panel: Panel, catcher: MailCatcher
) -> None:
    """Registration is open: mallory registers the victim's address (never verified, so the
    account's address is still the victim's mailbox) and asks for the link again and again,
    from a new client address each time."""
    count, _window = VERIFY_LINK_ALLOWANCE
    browser = await panel.browser()
    registered = await browser.json(
        "POST",
        "/api/v1/auth/register",
        201,
        json={"email": VICTIM, "password": "mallory's long password"},
        headers={"X-Forwarded-For": "192.0.2.1"},
    )
    browser.csrf = registered["csrf_token"]
    statuses = []
    for n in range(8):
        response = await browser.request(
            "POST",
            "/api/v1/account/email/verification",
            headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
        )
        statuses.append(response.status)
    assert statuses == [202] * (count - 1) + [429] * (8 - count + 1)
    await asyncio.sleep(1.5)  # the sender polls every 0.2 s
    assert len([m for m in catcher.received if m.to == VICTIM]) == count
