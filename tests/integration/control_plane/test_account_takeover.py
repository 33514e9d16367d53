"""Ways into an account that the second factor, a password change or a reset must close.

- With two-factor authentication required, a passkey is the user's second factor: a password
  alone must not open a session (it did: the policy counted the passkey, the password path
  asked for nothing).
- A reset link mailed before the owner changed the password (someone had a moment in the
  mailbox) must die with the change (it set the holder's password for 30 minutes more).
- Account pre-hijacking: someone registers the victim's address, unverified, and adds a passkey
  or an authenticator; when the victim claims the account by a reset (which proves the
  mailbox), what the squatter set up must go (their passkey signed in as the victim; where
  verification is not required, their linked GitHub account did too, and their API key
  answered).
"""

from __future__ import annotations

import urllib.parse

import asyncssh
from aiohttp import ClientResponse
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.control_plane.fake_oauth import FakeProvider, ProviderUser
from tests.integration.control_plane.mail_support import (
    mail_environment,
    mail_panel,
    register,
    token_of,
)
from tests.integration.control_plane.mfa_support import ENCRYPTION_KEYS, mfa_panel
from tests.integration.control_plane.soft_authenticator import SoftAuthenticator
from tests.support.clocks import WallClock
from tests.support.panel import PASSWORD, Browser
from tests.support.smtp import MailCatcher, smtp_server

RP_ID = "localhost"
ORIGIN = "http://localhost:8000"
PASSKEYS = {"STELLAR_WEBAUTHN_RP_ID": RP_ID, "STELLAR_WEBAUTHN_ORIGIN": ORIGIN}
RESET = "/api/v1/auth/password-reset"
OAUTH_START = "/api/v1/auth/oauth/start"
OAUTH_LINK = "/api/v1/account/oauth/link"
OAUTH_CALLBACK = "/api/v1/auth/oauth/callback"


async def add_passkey(browser: Browser) -> SoftAuthenticator:
    device = SoftAuthenticator(rp_id=RP_ID, origin=ORIGIN)
    options = (await browser.json("POST", "/api/v1/account/passkeys/options"))["options"]
    await browser.json(
        "POST",
        "/api/v1/account/passkeys",
        201,
        json={"name": "laptop", "credential": device.create(options)},
    )
    return device


async def passkey_sign_in(browser: Browser, device: SoftAuthenticator) -> int:
    options = (await browser.json("POST", "/api/v1/auth/passkey/options"))["options"]
    answer = await browser.request(
        "POST", "/api/v1/auth/passkey", json={"credential": device.get(options)}
    )
    return answer.status


async def test_with_two_factor_required_a_passkey_users_password_alone_opens_nothing(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> None:
    panel = await mfa_panel(
        database_url,
        aiohttp_server,
        aiohttp_client,
        wall_clock,
        env={**PASSKEYS, "STELLAR_REQUIRE_2FA": "everyone"},
    )
    await panel.create_user("alice@example.org")
    alice = await panel.browser()
    assert (await alice.login("alice@example.org"))["must_enrol"] is True
    device = await add_passkey(alice)

    thief = await panel.browser()
    refused = await thief.request(
        "POST", "/api/v1/auth/login", json={"email": "alice@example.org", "password": PASSWORD}
    )
    assert refused.status == 403
    assert "passkey" in (await refused.json())["error"]["message"]
    assert (await thief.request("GET", "/api/v1/servers")).status == 401
    # The passkey itself signs in (it is both factors).
    assert await passkey_sign_in(await panel.browser(), device) == 200


async def test_a_reset_link_dies_when_the_owner_changes_the_password(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    catcher = MailCatcher()
    async with (
        smtp_server(catcher) as port,
        mail_panel(mail_environment(database_url, port), aiohttp_server, aiohttp_client) as panel,
    ):
        owner = await panel.signed_in("victim@example.org")
        await (await panel.browser()).json("POST", RESET, 202, json={"email": "victim@example.org"})
        kept = token_of((await catcher.next()).link())
        await owner.json(
            "POST",
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": "the owner's fresh passphrase"},
        )

        attacker = await panel.browser()
        used = await attacker.request(
            "POST", RESET + "/confirm", json={"token": kept, "new_password": "attacker's choice 9"}
        )
        assert used.status == 400
        assert (
            await attacker.request(
                "POST",
                "/api/v1/auth/login",
                json={"email": "victim@example.org", "password": "attacker's choice 9"},
            )
        ).status == 401


async def test_what_a_squatter_set_up_goes_when_the_owner_claims_the_address(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    catcher = MailCatcher()
    environment = mail_environment(
        database_url,
        0,
        STELLAR_REQUIRE_EMAIL_VERIFICATION="true",
        STELLAR_ENCRYPTION_KEYS=ENCRYPTION_KEYS,
        **PASSKEYS,
    )
    async with smtp_server(catcher) as port:
        environment["STELLAR_SMTP_PORT"] = str(port)
        async with mail_panel(environment, aiohttp_server, aiohttp_client) as panel:
            squatter = await panel.browser()
            await register(squatter, "victim@example.org", "the squatter's passphrase")
            await catcher.next()  # "verify your address", to the victim: ignored
            device = await add_passkey(squatter)  # open while unverified (an enrolment)

            victim = await panel.browser()
            await victim.json("POST", RESET, 202, json={"email": "victim@example.org"})
            token = token_of((await catcher.next()).link())
            await victim.json(
                "POST", RESET + "/confirm", json={"token": token, "new_password": "mine, at last"}
            )
            me = await victim.login("victim@example.org", "mine, at last")
            assert me["user"]["email_verified_at"] is not None
            assert (await victim.json("GET", "/api/v1/account/passkeys"))["data"] == []

            assert await passkey_sign_in(await panel.browser(), device) == 401


async def test_a_squatters_provider_link_and_keys_go_when_the_owner_claims_the_address(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """Pre-hijacking where verification is not required (the default): the squatter of an
    unverified address links their own GitHub account, makes an API key and adds an SSH key;
    the owner's reset proves the mailbox, and none of the three may still open the account
    (the GitHub sign-in did, as the owner, and the key answered)."""
    fake = FakeProvider()
    provider = await aiohttp_server(fake.app())
    fake.base_url = str(provider.make_url("")).rstrip("/")
    fake.user = ProviderUser("7777", "squatter@example.net")
    catcher = MailCatcher()
    environment = mail_environment(database_url, 0, **fake.env())
    async with smtp_server(catcher) as port:
        environment["STELLAR_SMTP_PORT"] = str(port)
        async with mail_panel(environment, aiohttp_server, aiohttp_client) as panel:
            squatter = await panel.browser()
            await register(squatter, "victim@example.org", "the squatter's passphrase")
            await catcher.next()  # "verify your address", to the victim: ignored
            started = await squatter.json("POST", OAUTH_LINK, json={"provider": "github"})
            linked = await oauth_return(squatter, fake.authorize(started["authorize_url"]))
            assert linked.status == 200, await linked.text()
            key = await squatter.json(
                "POST", "/api/v1/account/api-keys", 201, json={"name": "mine", "scopes": ["read"]}
            )
            await squatter.json(
                "POST",
                "/api/v1/account/ssh-keys",
                201,
                json={"name": "mine", "public_key": ssh_public_key()},
            )

            victim = await panel.browser()
            await victim.json("POST", RESET, 202, json={"email": "victim@example.org"})
            token = token_of((await catcher.next()).link())
            await victim.json(
                "POST", RESET + "/confirm", json={"token": token, "new_password": "mine, at last"}
            )
            await victim.login("victim@example.org", "mine, at last")
            assert (await victim.json("GET", "/api/v1/account/oauth"))["data"] == []
            assert (await victim.json("GET", "/api/v1/account/api-keys"))["data"] == []
            assert (await victim.json("GET", "/api/v1/account/ssh-keys"))["data"] == []

            again = await panel.browser()
            started = await again.json("POST", OAUTH_START, json={"provider": "github"})
            refused = await oauth_return(again, fake.authorize(started["authorize_url"]))
            assert refused.status == 401, await refused.text()
            bot = await panel.browser()
            bot.api_key = key["key"]
            assert (await bot.request("GET", "/api/v1/servers")).status == 401


def ssh_public_key() -> str:
    return str(asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip())


async def oauth_return(browser: Browser, query: dict[str, str]) -> ClientResponse:
    return await browser.request("GET", OAUTH_CALLBACK + "?" + urllib.parse.urlencode(query))
