"""Invitations of people without an account, and opt-in alerts, against a real SMTP server:
what a user typed (a server's name) is escaped in the HTML part and intact in the text."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.models import Node, Server, Subuser
from control_plane.db.session import transaction
from control_plane.keys import SESSIONS
from control_plane.nodes.events import NodeEventListener
from control_plane.services import audit
from control_plane.services.subusers import INVITATION_ALLOWANCE
from shared.node_api import StatsEvent
from tests.integration.control_plane.mail_support import (
    local,
    mail_world,
    register,
    token_of,
)
from tests.support.panel import PASSWORD
from tests.support.smtp import MailCatcher
from tests.support.world import World

EVIL_NAME = '<b>"Tom & Jerry\'s"</b><script>x</script>'
ESCAPED_NAME = "&lt;b&gt;&#34;Tom &amp; Jerry&#39;s&#34;&lt;/b&gt;&lt;script&gt;x&lt;/script&gt;"
ACCEPT = "/api/v1/invitations/accept"
JOIN = "/api/v1/invitations/join"


def view(link: str) -> str:
    """The API twin of the page the mailed link opens (``/invitation?token=…``)."""
    assert local(link).startswith("/invitation?token="), link
    return f"{ACCEPT}?token={token_of(link)}"


@pytest.fixture
async def catcher() -> MailCatcher:
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
        database_url, catcher, aiohttp_server, aiohttp_client, STELLAR_REGISTRATION="invite_only"
    ) as world:
        async with transaction(world.panel.server.app[SESSIONS]) as db:
            await db.execute(
                update(Server)
                .where(Server.id == uuid.UUID(world.ids["alice_server"]))
                .values(name=EVIL_NAME)
            )
        yield world


def _invitations(world: World) -> str:
    return f"/api/v1/servers/{world.ids['alice_server']}/invitations"


async def test_an_invitation_is_mailed_escaped_and_creates_the_account_with_its_grant(
    world: World, catcher: MailCatcher
) -> None:
    invited = await world.alice.json(
        "POST",
        _invitations(world),
        201,
        json={"email": "Newcomer@Example.org", "permissions": ["console.read", "files.read"]},
    )
    assert invited["email"] == "newcomer@example.org"
    mail = await catcher.next()
    assert mail.to == "newcomer@example.org"
    # The name as typed in the text part; escaped, never markup, in the HTML part.
    assert EVIL_NAME in mail.text
    assert ESCAPED_NAME in mail.html
    assert "<script>" not in mail.html
    assert '<b>"Tom' not in mail.html
    link = mail.link()

    stranger = await world.panel.browser()
    offer = await stranger.json("GET", view(link))
    assert offer["server_name"] == EVIL_NAME
    assert offer["permissions"] == ["console.read", "files.read"]
    # Invite-only: nobody registers without one.
    closed = await stranger.json(
        "POST",
        "/api/v1/auth/register",
        403,
        json={"email": "walkin@example.org", "password": PASSWORD},
    )
    assert "invitation" in closed["error"]["message"]
    session = await stranger.json(
        "POST", ACCEPT, 201, json={"token": token_of(link), "password": PASSWORD}
    )
    stranger.csrf = session["csrf_token"]
    assert session["user"]["email"] == "newcomer@example.org"
    assert session["user"]["email_verified_at"] is not None  # the link proved the address
    servers = await stranger.json("GET", "/api/v1/servers")
    assert [s["id"] for s in servers["data"]] == [world.ids["alice_server"]]
    subusers = await world.alice.json("GET", f"/api/v1/servers/{world.ids['alice_server']}/users")
    granted = {s["email"]: s["permissions"] for s in subusers["data"]}
    assert granted["newcomer@example.org"] == ["console.read", "files.read"]
    # Once only.
    again = await world.panel.browser()
    await again.json("POST", ACCEPT, 400, json={"token": token_of(link), "password": PASSWORD})
    await again.json("GET", view(link), 400)


async def test_an_account_made_since_the_invitation_joins_with_it_and_is_verified_by_it(
    verifying_world: World, catcher: MailCatcher
) -> None:
    """The invited address registered by itself (not through the link) still has to verify
    it; the invitation's token, mailed to that address, proves it — and nothing else does."""
    world = verifying_world
    server_id = world.ids["alice_server"]
    await world.alice.json(
        "POST", _invitations(world), 201, json={"email": "late@example.org", "permissions": []}
    )
    link = (await catcher.next()).link()
    newcomer = await world.panel.browser()
    await register(newcomer, "late@example.org", PASSWORD)
    assert (await catcher.next()).to == "late@example.org"  # the verification mail
    refused = await newcomer.json("GET", "/api/v1/servers", 403)
    assert "verify your e-mail address first" in refused["error"]["message"]

    # Someone else's unverified account of another address, and made-up or wrong tokens,
    # verify nothing.
    squatter = await world.panel.browser()
    await register(squatter, "squatter@example.org", PASSWORD)
    await squatter.json("POST", JOIN, 403, json={"token": token_of(link)})
    token = token_of(link)
    for made_up in ("x" * 43, ("B" if token[0] == "A" else "A") + token[1:]):
        await newcomer.json("POST", JOIN, 400, json={"token": made_up})
    for browser in (newcomer, squatter):
        session = await browser.json("GET", "/api/v1/auth/session")
        assert session["must_verify"] is True

    joined = await newcomer.json("POST", JOIN, json={"token": token_of(link)})
    assert joined["server_id"] == server_id
    assert (await newcomer.json("GET", "/api/v1/auth/session"))["must_verify"] is False
    verified = await world.admin.json("GET", "/api/v1/audit?action=user.email.verified")
    assert [entry["details"] for entry in verified["data"]] == [
        {"email": "late@example.org", "by": "invitation"}
    ]
    servers = await newcomer.json("GET", "/api/v1/servers")
    assert [s["id"] for s in servers["data"]] == [server_id]
    # Once only.
    await newcomer.json("POST", JOIN, 400, json={"token": token_of(link)})
    await squatter.json("GET", "/api/v1/servers", 403)


async def test_invitations_refuse_existing_accounts_and_grants_beyond_the_inviter(
    world: World, catcher: MailCatcher
) -> None:
    existing = await world.alice.json(
        "POST", _invitations(world), 409, json={"email": "bob@example.org", "permissions": []}
    )
    assert "add it as a sub-user" in existing["error"]["message"]
    # carol holds console.read only: she cannot invite at all (users.create) ...
    await world.carol.json(
        "POST", _invitations(world), 403, json={"email": "x@example.org", "permissions": []}
    )
    # ... and bob does not even see the server.
    await world.bob.json(
        "POST", _invitations(world), 404, json={"email": "x@example.org", "permissions": []}
    )
    # A withdrawn invitation's link is dead.
    invited = await world.alice.json(
        "POST", _invitations(world), 201, json={"email": "gone@example.org", "permissions": []}
    )
    link = (await catcher.next()).link()
    await world.alice.json("DELETE", f"{_invitations(world)}/{invited['id']}", 204)
    await (await world.panel.browser()).json("GET", view(link), 400)


async def test_invitations_cannot_flood_a_mailbox(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """Each invitation mails an address the inviter chooses, again for the same address (it
    replaces the pending one): on the ``api`` preset an owner mailed anybody 100 times a
    minute. With the default limits, 10 an hour."""
    catcher = MailCatcher()
    async with mail_world(
        database_url,
        catcher,
        aiohttp_server,
        aiohttp_client,
        STELLAR_REGISTRATION="invite_only",
        STELLAR_RATE_LIMITS="",
    ) as world:
        for n in range(10):
            body = {"email": f"victim{n}@example.org", "permissions": []}
            await world.alice.json("POST", _invitations(world), 201, json=body)
        body = {"email": "victim10@example.org", "permissions": []}
        refused = await world.alice.request("POST", _invitations(world), json=body)
        assert refused.status == 429
        assert int(refused.headers["Retry-After"]) > 0
        for _ in range(10):
            assert (await catcher.next()).to.startswith("victim")
        await world.alice.json("GET", _invitations(world))  # reading them is not limited
        await asyncio.sleep(1.0)  # the mail queue's worker would have sent an eleventh
        assert catcher.pending() == 0


async def test_one_address_gets_its_allowance_of_invitations_from_any_number_of_clients(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """The inviter's ``invitations`` preset is per client address: behind a trusted proxy,
    with a new address for each request, an owner mailed the same victim without end (and
    re-inviting replaces the pending invitation, so nothing piled up to show for it)."""
    catcher = MailCatcher()
    async with mail_world(
        database_url,
        catcher,
        aiohttp_server,
        aiohttp_client,
        STELLAR_REGISTRATION="invite_only",
        STELLAR_RATE_LIMITS="",
        STELLAR_TRUSTED_PROXIES="127.0.0.1/32",
    ) as world:
        count, _window = INVITATION_ALLOWANCE
        statuses = []
        for n in range(8):
            response = await world.alice.request(
                "POST",
                _invitations(world),
                json={
                    "email": ("victim@example.org", "Victim@Example.org")[n % 2],
                    "permissions": [],
                },
                headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
            )
            statuses.append(response.status)
        assert statuses == [201] * count + [429] * (8 - count)
        await asyncio.sleep(1.0)  # the mail queue's worker would have sent more
        assert len(catcher.received) == count
        # Someone else is still invited.
        await world.alice.json(
            "POST",
            _invitations(world),
            201,
            json={"email": "friend@example.org", "permissions": []},
            headers={"X-Forwarded-For": "198.51.100.1"},
        )


async def test_an_invitation_grants_nothing_its_inviter_can_no_longer_grant(
    world: World, catcher: MailCatcher
) -> None:
    # carol may invite; she invites her own second address, then loses the permissions (or
    # her place on the server). Her pending invitations must not bring them back.
    carol_sub = f"/api/v1/servers/{world.ids['alice_server']}/users/{world.ids['carol_subuser']}"

    async def carol_holds(permissions: list[str]) -> None:
        async with transaction(world.panel.server.app[SESSIONS]) as db:
            await db.execute(
                update(Subuser)
                .where(Subuser.id == uuid.UUID(world.ids["carol_subuser"]))
                .values(permissions=permissions)
            )

    await carol_holds(["users.create", "console.read", "files.read"])
    grant = ["console.read", "files.read"]
    for address in ("alt1@example.org", "alt2@example.org"):
        await world.carol.json(
            "POST", _invitations(world), 201, json={"email": address, "permissions": grant}
        )
    first, second = (await catcher.next()).link(), (await catcher.next()).link()

    await carol_holds(["users.create", "console.read"])  # files.read taken back
    stranger = await world.panel.browser()
    await stranger.json("GET", view(first), 400)
    await stranger.json("POST", ACCEPT, 400, json={"token": token_of(first), "password": PASSWORD})

    await world.alice.json("DELETE", carol_sub, 204)  # carol removed altogether
    await stranger.json("POST", ACCEPT, 400, json={"token": token_of(second), "password": PASSWORD})
    subusers = await world.alice.json("GET", f"/api/v1/servers/{world.ids['alice_server']}/users")
    assert not {s["email"] for s in subusers["data"]} & {"alt1@example.org", "alt2@example.org"}
    # An owner's invitation still works.
    await world.alice.json(
        "POST", _invitations(world), 201, json={"email": "ok@example.org", "permissions": grant}
    )
    owners = (await catcher.next()).link()
    await stranger.json("POST", ACCEPT, 201, json={"token": token_of(owners), "password": PASSWORD})


async def test_opted_in_alerts_are_mailed_escaped_and_others_are_not(
    world: World, catcher: MailCatcher
) -> None:
    alerts = {"server_crashed": True, "backup_failed": False, "disk_full": True}
    await world.alice.json("PUT", "/api/v1/account/alerts", json=alerts)
    assert (await world.alice.json("GET", "/api/v1/account/alerts"))["server_crashed"] is True
    app = world.panel.server.app
    for action, details in (
        ("server.backup.failed", {"reason": "node gone"}),  # not opted in: no mail
        ("server.crashed", {"exit_code": 137, "restarting": False}),
        ("server.disk.full", {"used_bytes": 10, "limit_bytes": 10}),
    ):
        # As the node event listener records them: an audited action in a transaction.
        async with transaction(app[SESSIONS]) as db:
            await audit.append(
                db,
                None,
                audit.AuditEvent(
                    action, target_type="server", target_id=world.ids["alice_server"],
                    details=details,
                ),
            )  # fmt: skip
    crashed, full = await catcher.next(), await catcher.next()
    assert (crashed.to, crashed.subject) == ("alice@example.org", "Your server crashed")
    assert EVIL_NAME in crashed.text
    assert ESCAPED_NAME in crashed.html
    assert "<script>" not in crashed.html
    assert (full.to, full.subject) == ("alice@example.org", "Your server's disk is full")
    assert catcher.pending() == 0


async def test_a_sign_in_from_a_new_device_is_mailed_once(
    world: World, catcher: MailCatcher
) -> None:
    await world.alice.json("PUT", "/api/v1/account/alerts", json={"new_sign_in": True})
    same = await world.panel.browser()
    await same.login("alice@example.org")  # the device alice signed in from already
    headers = {"User-Agent": "Evil <Browser> & co"}
    for _ in range(2):  # a new device, then the same one again
        other = await world.panel.browser()
        await other.json(
            "POST",
            "/api/v1/auth/login",
            json={"email": "alice@example.org", "password": PASSWORD},
            headers=headers,
        )
    alert = await catcher.next()
    assert alert.subject == "New sign-in to your account"
    assert "Evil <Browser> & co" in alert.text
    assert "Evil &lt;Browser&gt; &amp; co" in alert.html
    # The next mail is the reset asked for now: no second alert came in between.
    anonymous = await world.panel.browser()
    await anonymous.json(
        "POST", "/api/v1/auth/password-reset", 202, json={"email": "alice@example.org"}
    )
    assert (await catcher.next()).subject == "Reset your password"


async def test_a_backup_that_fails_on_its_node_mails_those_who_opted_in(
    world: World, catcher: MailCatcher
) -> None:
    await world.alice.json("PUT", "/api/v1/account/alerts", json={"backup_failed": True})
    # The world's node is down: the backup fails, is recorded failed and audited.
    refused = await world.alice.request(
        "POST", f"/api/v1/servers/{world.ids['alice_server']}/backups", json={"name": "b"}
    )
    assert refused.status in (502, 503)
    mail = await catcher.next()
    assert (mail.to, mail.subject) == ("alice@example.org", "A backup failed")
    assert EVIL_NAME in mail.text
    assert ESCAPED_NAME in mail.html


async def test_a_disk_that_crosses_nine_tenths_of_its_limit_is_announced_once_per_crossing(
    world: World, catcher: MailCatcher
) -> None:
    """As the node event listener receives the agent's resource samples: 90 % of the limit is
    audited ``server.disk.nearly_full`` and mailed to who opted in, once until it falls below
    85 % again; a sample naming another node's server announces nothing."""
    await world.alice.json("PUT", "/api/v1/account/alerts", json={"disk_full": True})
    app = world.panel.server.app
    listener = NodeEventListener(app)
    async with transaction(app[SESSIONS]) as db:
        home = await db.get(Node, uuid.UUID(world.ids["node"]))
        rogue = Node(name="rogue", url="http://127.0.0.1:9", memory_mib=0, disk_mib=0)
        db.add(rogue)
    assert home is not None
    server = uuid.UUID(world.ids["alice_server"])

    def used(percent: int) -> StatsEvent:
        return StatsEvent(
            server=server, sampled_at=0.0, cpu_percent=0.0, memory_bytes=0,
            network_rx_bytes=0, network_tx_bytes=0,
            disk_used_bytes=percent * 10 * 1024**2, disk_limit_bytes=1000 * 1024**2,
        )  # fmt: skip

    await listener._watch_disk(rogue, used(99))
    for percent in (50, 91, 95, 99, 88, 80, 92):
        await listener._watch_disk(home, used(percent))
    first, second = await catcher.next(), await catcher.next()
    for mail in (first, second):
        assert (mail.to, mail.subject) == ("alice@example.org", "Your server's disk is nearly full")
        assert EVIL_NAME in mail.text
    assert catcher.pending() == 0
    trail = await world.admin.json("GET", "/api/v1/audit?action=server.disk.nearly_full")
    assert [e["details"]["percent"] for e in reversed(trail["data"])] == [91, 92]
