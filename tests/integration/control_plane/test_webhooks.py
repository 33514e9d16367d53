"""Webhooks through the real app, delivered to a receiver on loopback: signatures checked by
an independent implementation, the SSRF guard at save and at delivery, who gets what."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
import standardwebhooks
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import session_factory
from control_plane.db.models import (
    ApiKey,
    AuditEntry,
    Subuser,
    User,
    Webhook,
    WebhookDelivery,
)
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.services import domain_events
from control_plane.settings import ConfigError, load_settings
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.integration.control_plane.webhook_support import (
    RECEIVER_HOST,
    HookPanel,
    deliveries,
    eventually,
    start_panel,
    start_receiver,
    webhook_settings,
)
from tests.support.panel import Browser, Panel
from tests.support.webhook_receiver import Names, Receiver, verify_signature
from tests.support.world import World, build_world

ACCOUNT = "/api/v1/webhooks"


@pytest.fixture
async def hooks(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> HookPanel:
    names, receiver = Names(), Receiver()
    receiver_server = await start_receiver(receiver, names, aiohttp_server)
    panel = await start_panel(webhook_settings(database_url), names, aiohttp_server, aiohttp_client)
    return HookPanel(panel, receiver, receiver_server, names)


def _verify_with_library(secret: str, headers: dict[str, str], body: bytes) -> object:
    return standardwebhooks.Webhook(secret).verify(body, headers)


async def grant_carol(panel: Panel, world: World, permissions: list[str]) -> None:
    """Carol's permissions on alice's server (``build_world``), set directly."""
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        sub = await db.get(Subuser, uuid.UUID(world.ids["carol_subuser"]))
        assert sub is not None
        sub.permissions = permissions


async def test_a_sign_in_is_delivered_signed_and_verifies_independently(hooks: HookPanel) -> None:
    alice = await hooks.panel.signed_in("alice@example.org")
    created = await hooks.create(alice, ACCOUNT)
    secret = created["secret"]
    assert secret.startswith("whsec_")
    # Shown once: never again, and stored encrypted.
    shown = await alice.json("GET", f"{ACCOUNT}/{created['id']}")
    assert "secret" not in shown
    async with transaction(session_factory(hooks.panel.server.app[ENGINE])) as db:
        stored = await db.get(Webhook, uuid.UUID(created["id"]))
        assert stored is not None
        assert stored.secret.startswith("v1:k1:")
        assert secret.removeprefix("whsec_") not in stored.secret

    await alice.login("alice@example.org")
    (arrived,) = await hooks.receiver.wait_for(1)
    headers = {k.lower(): v for k, v in arrived.headers.items()}
    assert verify_signature(secret, arrived.headers, arrived.body)
    payload = _verify_with_library(secret, headers, arrived.body)
    assert isinstance(payload, dict)
    assert payload["type"] == "user.signed_in"
    assert payload["data"]["actor"]["email"] == "alice@example.org"
    # A body changed by one byte, or another secret, does not verify.
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        _verify_with_library(secret, headers, arrived.body.replace(b"alice", b"alicf"))
    other = (await alice.json("POST", f"{ACCOUNT}/{created['id']}/secret"))["secret"]
    assert not verify_signature(other, arrived.headers, arrived.body)

    log = await eventually(
        lambda: deliveries(alice, f"{ACCOUNT}/{created['id']}"),
        lambda rows: bool(rows) and rows[0]["status"] == "delivered",
    )
    assert log[0]["id"] == headers["webhook-id"]
    assert log[0]["response_status"] == 200
    assert log[0]["latency_ms"] is not None
    assert log[0]["attempts"] == 1
    # After the rotation, deliveries are signed with the new secret only.
    await alice.json("POST", f"{ACCOUNT}/{created['id']}/test", status=202)
    (_, test_event) = await hooks.receiver.wait_for(2)
    assert verify_signature(other, test_event.headers, test_event.body)
    assert not verify_signature(secret, test_event.headers, test_event.body)
    assert json.loads(test_event.body)["type"] == "webhook.test"


async def test_private_addresses_are_refused_at_save_and_at_delivery(hooks: HookPanel) -> None:
    alice = await hooks.panel.signed_in("alice@example.org")
    port = hooks.receiver_server.port
    hooks.names.answers["private.test"] = ["10.1.2.3"]
    hooks.names.answers["mixed.test"] = ["127.0.0.1", "169.254.169.254"]
    for url in (
        f"http://private.test:{port}/in",
        f"http://mixed.test:{port}/in",
        f"http://127.0.0.1:{port}/in",  # literals are never exempt, even for tests
        f"http://2130706433:{port}/in",
        "file:///etc/passwd",
    ):
        refused = await alice.json(
            "POST", ACCOUNT, status=400, json={"name": "x", "url": url, "events": ["audit"]}
        )
        assert refused["error"]["code"] == "unsafe_url", url
        assert "10.1.2.3" not in refused["error"]["message"]
    unknown = await alice.json(
        "POST",
        ACCOUNT,
        status=400,
        json={"name": "x", "url": "http://nowhere.test/in", "events": ["audit"]},
    )
    assert unknown["error"]["code"] == "unresolvable_url"

    # Saved while the name resolved to the receiver; then DNS changes to a private address.
    created = await hooks.create(alice, ACCOUNT)
    path = f"{ACCOUNT}/{created['id']}"
    await alice.json("POST", f"{path}/test", status=202)
    await hooks.receiver.wait_for(1)
    hooks.names.answers[RECEIVER_HOST] = ["10.0.0.7"]
    refused_delivery = await alice.json("POST", f"{path}/test", status=202)
    rows = await eventually(
        lambda: deliveries(alice, path),
        lambda rows: any(
            r["id"] == refused_delivery["id"] and r["status"] != "pending" for r in rows
        ),
    )
    row = next(r for r in rows if r["id"] == refused_delivery["id"])
    assert row["status"] == "failed"
    assert row["error"].startswith("unsafe_url")
    assert row["response_status"] is None
    assert len(hooks.receiver.received) == 1
    # Changing the URL to a private one is refused too.
    await alice.json("PATCH", path, status=400, json={"url": f"http://private.test:{port}/in"})


async def test_each_webhook_gets_only_the_events_of_its_scope(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    # No dispatcher runs: the rows are read, never sent.
    panel = await start_panel(
        webhook_settings(database_url),
        Names({"hooks.example.com": ["93.184.216.34"]}),
        aiohttp_server,
        aiohttp_client,
        background_jobs=False,
    )
    world = await build_world(panel)
    ids = world.ids
    bob_hook = await world.bob.json(
        "POST",
        ACCOUNT,
        status=201,
        json={
            "name": "b",
            "url": "https://hooks.example.com/b",
            "events": ["server.state", "audit"],
        },
    )
    factory = session_factory(panel.server.app[ENGINE])
    for server in ("alice_server", "bob_server"):
        async with transaction(factory) as db:
            await domain_events.publish(
                db,
                domain_events.DomainEvent(
                    domain_events.SERVER_STATE,
                    target_type="server",
                    target_id=ids[server],
                    details={"state": "running", "previous": "starting"},
                ),
            )
    await world.bob.json(
        "POST", "/api/v1/account/api-keys", status=201, json={"name": "k", "scopes": ["read"]}
    )
    async with transaction(factory) as db:
        rows = list(await db.scalars(select(WebhookDelivery)))
    got: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        body = json.loads(row.body)
        server = body["data"].get("server", {}).get("id", "-")
        got.setdefault(str(row.webhook_id), []).append((row.event_type, server))
    assert sorted(got[ids["alice_account_webhook"]]) == [("server.state", ids["alice_server"])]
    assert sorted(got[ids["alice_server_webhook"]]) == [("server.state", ids["alice_server"])]
    assert sorted(got[ids["panel_webhook"]]) == sorted(
        [("server.state", ids["alice_server"]), ("server.state", ids["bob_server"])]
    )
    # bob's: his server's state and his own audited actions (this webhook, then the key).
    assert sorted(got[bob_hook["id"]]) == [
        ("audit", "-"),
        ("audit", "-"),
        ("server.state", ids["bob_server"]),
    ]
    actions = sorted(
        json.loads(r.body)["data"]["action"] for r in rows if str(r.webhook_id) == bob_hook["id"]
    )
    assert actions == ["api_key.created", "server.state", "webhook.created"]


async def test_a_sub_user_needs_activity_read_to_subscribe_a_server_webhook_to_audit(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    names = Names({"hooks.test": ["127.0.0.1"]})
    panel = await start_panel(
        webhook_settings(database_url),
        names,
        aiohttp_server,
        aiohttp_client,
        background_jobs=False,
    )
    world = await build_world(panel)
    path = f"/api/v1/servers/{world.ids['alice_server']}/webhooks"
    body = {"name": "c", "url": "http://hooks.test:9/in", "events": ["server.state", "audit"]}

    await grant_carol(panel, world, ["webhooks.*"])
    refused = await world.carol.json("POST", path, status=403, json=body)
    assert "activity.read" in refused["error"]["message"]
    created = await world.carol.json(
        "POST", path, status=201, json={**body, "events": ["server.state"]}
    )
    await world.carol.json(
        "PATCH", f"{path}/{created['id']}", status=403, json={"events": ["audit"]}
    )
    await grant_carol(panel, world, ["webhooks.*", "activity.read"])
    await world.carol.json("POST", path, status=201, json=body)
    # The webhook is the server's: its owner sees and manages it.
    listed = await world.alice.json("GET", path)
    assert {h["name"] for h in listed["data"]} >= {"c", "server hook"}


async def test_a_sub_user_without_activity_read_cannot_redirect_an_audit_webhook(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    # The owner's audit webhook shows the server's activity; moving its URL to carol's own
    # receiver would show her that activity without activity.read.
    names = Names({"hooks.test": ["127.0.0.1"], "carol.test": ["127.0.0.1"]})
    panel = await start_panel(
        webhook_settings(database_url),
        names,
        aiohttp_server,
        aiohttp_client,
        background_jobs=False,
    )
    world = await build_world(panel)
    path = f"/api/v1/servers/{world.ids['alice_server']}/webhooks"
    owners = await world.alice.json(
        "POST",
        path,
        status=201,
        json={"name": "audit", "url": "http://hooks.test:9/in", "events": ["audit"]},
    )
    await grant_carol(panel, world, ["webhooks.*"])
    refused = await world.carol.json(
        "PATCH", f"{path}/{owners['id']}", status=403, json={"url": "http://carol.test:9/in"}
    )
    assert "activity.read" in refused["error"]["message"]
    kept = await world.alice.json("GET", f"{path}/{owners['id']}")
    assert kept["url"] == "http://hooks.test:9/in"
    # Renaming it, or changing a webhook that does not carry the audit, is still hers to do.
    await world.carol.json("PATCH", f"{path}/{owners['id']}", json={"name": "renamed"})
    # Power events are the log's entries too (who pressed, from where).
    power = {"name": "p", "url": "http://carol.test:9/in", "events": ["server.power"]}
    await world.carol.json("POST", path, status=403, json=power)
    await world.carol.json("POST", path, status=201, json={**power, "events": ["server.state"]})


async def test_a_webhook_url_is_audited_without_its_path_which_may_be_its_credential(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    # A Discord (or Slack) webhook URL carries its token in the path: whoever holds it posts
    # to the channel. The audit trail and the panel's audit webhooks see only where it goes.
    panel = await start_panel(
        webhook_settings(database_url),
        Names({"hooks.example.com": ["93.184.216.34"]}),
        aiohttp_server,
        aiohttp_client,
        background_jobs=False,
    )
    world = await build_world(panel)
    token = "Zx9_discord-webhook-token-kept-out-of-the-audit"
    url = f"https://hooks.example.com/api/webhooks/1234/{token}"
    panel_hook = await world.admin.json(
        "POST",
        "/api/v1/panel/webhooks",
        status=201,
        json={"name": "all", "url": "https://hooks.example.com/panel", "events": ["audit"]},
    )
    created = await world.alice.json(
        "POST", ACCOUNT, status=201, json={"name": "d", "url": url, "events": ["server.state"]}
    )
    await world.alice.json("PATCH", f"{ACCOUNT}/{created['id']}", json={"url": url + "x"})
    await world.alice.json("DELETE", f"{ACCOUNT}/{created['id']}", status=204)
    trail = await world.admin.json("GET", "/api/v1/audit?action=webhook.&per_page=100")
    entries = [e for e in trail["data"] if e["target_id"] == created["id"]]
    assert [e["action"] for e in entries] == [
        "webhook.deleted",
        "webhook.updated",
        "webhook.created",
    ]
    assert all(e["details"]["url"] == "https://hooks.example.com" for e in entries)
    assert token not in json.dumps(trail)
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        bodies = list(
            await db.scalars(
                select(WebhookDelivery.body).where(
                    WebhookDelivery.webhook_id == uuid.UUID(panel_hook["id"])
                )
            )
        )
    assert len(bodies) >= 3
    assert not any(token in body for body in bodies)


async def test_a_sub_user_who_may_only_see_a_webhook_does_not_see_its_urls_credential(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    # The owner's Discord webhook: its path is the token that posts to the owner's channel.
    # A sub-user allowed to see the server's webhooks (webhooks.read) read it whole.
    panel = await start_panel(
        webhook_settings(database_url),
        Names({"hooks.example.com": ["93.184.216.34"]}),
        aiohttp_server,
        aiohttp_client,
        background_jobs=False,
    )
    world = await build_world(panel)
    path = f"/api/v1/servers/{world.ids['alice_server']}/webhooks"
    url = "https://hooks.example.com/api/webhooks/1234/Zx9_token?thread_id=5"
    hook = await world.alice.json(
        "POST", path, status=201, json={"name": "d", "url": url, "events": ["server.state"]}
    )

    await grant_carol(panel, world, ["webhooks.read"])
    listed = await world.carol.json("GET", path)
    shown = await world.carol.json("GET", f"{path}/{hook['id']}")
    assert {h["url"] for h in listed["data"]} <= {"https://hooks.example.com/…"}
    assert shown["url"] == "https://hooks.example.com/…"
    assert "Zx9_token" not in json.dumps([listed, shown])
    # Who may change it (and so point it elsewhere anyway) sees it whole, as its owner does.
    await grant_carol(panel, world, ["webhooks.read", "webhooks.update"])
    assert (await world.carol.json("GET", f"{path}/{hook['id']}"))["url"] == url
    assert (await world.alice.json("GET", f"{path}/{hook['id']}"))["url"] == url


async def test_anonymous_rejected_keys_write_audit_rows_only_at_the_clients_rate(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    # Each rejected API key is audited, and each audit row is a delivery to every panel
    # webhook that takes the audit: without a limit, anyone could fill the outbox and flood
    # (then get disabled) the administrators' receivers with garbage Authorization headers.
    limits = UNLIMITED.replace("api=1000000/60", "api=20/600")
    panel = await start_panel(
        webhook_settings(database_url, STELLAR_RATE_LIMITS=limits),
        Names({"hooks.example.com": ["93.184.216.34"]}),
        aiohttp_server,
        aiohttp_client,
        background_jobs=False,
    )
    factory = session_factory(panel.server.app[ENGINE])
    admin = uuid.UUID(await panel.create_user("admin@example.org", admin=True))
    async with transaction(factory) as db:
        hook = Webhook(
            scope="panel",
            created_by=admin,
            name="all",
            url="https://hooks.example.com/all",
            events=["audit"],
            secret="v1:none:AAAA",
        )
        db.add(hook)
    attacker = await panel.browser()
    statuses = []
    for n in range(60):
        answer = await attacker.request(
            "GET", "/api/v1/servers", headers={"Authorization": f"Bearer stl_forged{n}"}
        )
        statuses.append(answer.status)
    assert statuses[0] == 401
    assert statuses[-1] == 429
    async with transaction(factory) as db:
        rejected = await db.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "auth.api_key.rejected")
        )
        queued = await db.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == hook.id)
        )
    assert rejected is not None
    assert rejected <= 21
    assert queued == rejected


async def test_a_discord_webhook_posts_an_embed_that_pings_nobody(hooks: HookPanel) -> None:
    alice = await hooks.panel.signed_in("alice@example.org")
    created = await hooks.create(alice, ACCOUNT, format="discord")
    await alice.login("alice@example.org")
    (arrived,) = await hooks.receiver.wait_for(1)
    message = json.loads(arrived.body)
    assert message["allowed_mentions"] == {"parse": []}
    (embed,) = message["embeds"]
    assert embed["title"] == "New sign-in"
    assert {"name": "By", "value": "alice@example.org", "inline": True} in embed["fields"]
    assert verify_signature(created["secret"], arrived.headers, arrived.body)


async def test_creating_a_webhook_without_encryption_keys_says_why(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    settings = webhook_settings(database_url, STELLAR_ENCRYPTION_KEYS="")
    names = Names({"hooks.test": ["127.0.0.1"]})
    panel = await start_panel(
        settings, names, aiohttp_server, aiohttp_client, background_jobs=False
    )
    alice: Browser = await panel.signed_in("alice@example.org")
    refused = await alice.json(
        "POST",
        ACCOUNT,
        status=503,
        json={"name": "x", "url": "http://hooks.test:9/in", "events": ["audit"]},
    )
    assert "STELLAR_ENCRYPTION_KEYS" in refused["error"]["message"]
    assert (await alice.json("GET", ACCOUNT))["data"] == []


def test_the_loopback_test_setting_is_refused_in_production() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "STELLAR_ENV": "production",
                "STELLAR_DATABASE_URL": "sqlite:///x.db",
                "STELLAR_AUTH_SECRET": AUTH_SECRET,
                "STELLAR_WEBHOOK_TEST_ALLOW_NETWORKS": "127.0.0.0/8",
            },
            needs_signing_key=False,
        )
    assert any(
        p.startswith("STELLAR_WEBHOOK_TEST_ALLOW_NETWORKS: is for tests only")
        for p in caught.value.problems
    )


async def _sent_to(panel: Panel, hook_id: str) -> list[str]:
    """The renames delivered (or due) to one webhook (the test's probe), oldest first."""
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        rows = await db.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == uuid.UUID(hook_id))
            .order_by(WebhookDelivery.created_at)
        )
        actions = [json.loads(row.body)["data"]["action"] for row in rows]
        return [action for action in actions if action == "server.renamed"]


async def test_a_webhook_stops_sending_to_a_url_chosen_by_someone_who_lost_access(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    # carol, a sub-user allowed to, points server webhooks at her own receiver. Removed from
    # the server (or left without activity.read), she must stop hearing its activity there:
    # the webhooks stay the server's, but they no longer send to a URL chosen by someone who
    # may not see what they send. The same for an administrator's panel webhook once they
    # are no longer one.
    names = Names({"carol.test": ["127.0.0.1"], "admin.test": ["127.0.0.1"]})
    panel = await start_panel(
        webhook_settings(database_url), names, aiohttp_server, aiohttp_client,
        background_jobs=False,
    )  # fmt: skip
    world = await build_world(panel)
    server = world.ids["alice_server"]
    path = f"/api/v1/servers/{server}/webhooks"
    factory = session_factory(panel.server.app[ENGINE])

    async with transaction(factory) as db:
        sub = await db.get(Subuser, uuid.UUID(world.ids["carol_subuser"]))
        assert sub is not None
        sub.permissions = ["webhooks.*", "activity.read"]
    audit_hook = await world.carol.json(
        "POST",
        path,
        status=201,
        json={"name": "c", "url": "http://carol.test:9/in", "events": ["audit"]},
    )
    state_hook = await world.carol.json(
        "POST",
        path,
        status=201,
        json={"name": "s", "url": "http://carol.test:9/s", "events": ["server.power", "audit"]},
    )
    panel_hook = await world.admin.json(
        "POST",
        "/api/v1/panel/webhooks",
        status=201,
        json={"name": "p", "url": "http://admin.test:9/in", "events": ["audit"]},
    )

    async def rename(name: str) -> None:
        await world.alice.json("PATCH", f"/api/v1/servers/{server}", json={"name": name})

    await rename("first")
    assert await _sent_to(panel, audit_hook["id"]) == ["server.renamed"]
    assert await _sent_to(panel, panel_hook["id"]) == ["server.renamed"]

    # Narrowed: no activity.read any more, so no activity at her URL.
    async with transaction(factory) as db:
        sub = await db.get(Subuser, uuid.UUID(world.ids["carol_subuser"]))
        assert sub is not None
        sub.permissions = ["webhooks.*"]
    await rename("second")
    assert await _sent_to(panel, audit_hook["id"]) == ["server.renamed"]

    # Removed: the server's webhooks she pointed at herself are turned off, and say why.
    await world.alice.json(
        "DELETE", f"{path.removesuffix('/webhooks')}/users/{world.ids['carol_subuser']}",
        status=204,
    )  # fmt: skip
    await rename("third")
    assert await _sent_to(panel, audit_hook["id"]) == ["server.renamed"]
    assert await _sent_to(panel, state_hook["id"]) == ["server.renamed"]
    shown = await world.alice.json("GET", f"{path}/{state_hook['id']}")
    assert shown["enabled"] is False
    assert "no longer" in (shown["disabled_reason"] or "")

    # The owner takes one over by choosing its URL: it sends again, to her.
    await world.alice.json(
        "PATCH",
        f"{path}/{state_hook['id']}",
        json={"url": "http://carol.test:9/alice", "enabled": True},
    )
    await rename("fourth")
    assert await _sent_to(panel, state_hook["id"]) == ["server.renamed", "server.renamed"]

    # An administrator no longer one: their panel webhook stops hearing every event.
    async with transaction(factory) as db:
        admin = await db.scalar(select(User).where(User.email == "admin@example.org"))
        assert admin is not None
        admin.is_admin = False
    await rename("fifth")
    assert await _sent_to(panel, panel_hook["id"]) == ["server.renamed"] * 4


async def test_a_webhook_a_key_pointed_somewhere_stops_when_the_key_is_revoked_or_expires(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    # A leaked key must not entrench itself: an audit feed it set up (or moved to its own
    # URL) goes quiet when the key is revoked or expires, as the key does. The owner's own
    # session choosing the URL again takes the webhook back.
    names = Names({"thief.test": ["127.0.0.1"]})
    panel = await start_panel(
        webhook_settings(database_url), names, aiohttp_server, aiohttp_client,
        background_jobs=False,
    )  # fmt: skip
    world = await build_world(panel)
    server = world.ids["alice_server"]
    keys = []
    for name in ("leaked", "expiring"):
        made = await world.alice.json(
            "POST",
            "/api/v1/account/api-keys",
            status=201,
            json={"name": name, "scopes": ["read", "write"]},
        )
        keys.append(made)
    leaked, expiring = [
        Browser(await panel.make_client(panel.server), api_key=k["key"]) for k in keys
    ]
    account_hook = await leaked.json(
        "POST",
        ACCOUNT,
        status=201,
        json={"name": "a", "url": "http://thief.test:9/a", "events": ["audit"]},
    )
    server_path = f"/api/v1/servers/{server}/webhooks"
    server_hook = await expiring.json(
        "POST",
        server_path,
        status=201,
        json={"name": "s", "url": "http://thief.test:9/s", "events": ["audit"]},
    )

    async def rename(name: str) -> None:
        await world.alice.json("PATCH", f"/api/v1/servers/{server}", json={"name": name})

    await rename("first")
    assert await _sent_to(panel, account_hook["id"]) == ["server.renamed"]
    assert await _sent_to(panel, server_hook["id"]) == ["server.renamed"]

    await world.alice.json("DELETE", f"/api/v1/account/api-keys/{keys[0]['id']}", status=204)
    factory = session_factory(panel.server.app[ENGINE])
    async with transaction(factory) as db:
        await db.execute(
            update(ApiKey)
            .where(ApiKey.id == uuid.UUID(keys[1]["id"]))
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    await rename("second")
    assert await _sent_to(panel, account_hook["id"]) == ["server.renamed"]
    assert await _sent_to(panel, server_hook["id"]) == ["server.renamed"]
    for path in (f"{ACCOUNT}/{account_hook['id']}", f"{server_path}/{server_hook['id']}"):
        shown = await world.alice.json("GET", path)
        assert shown["enabled"] is False, path
        assert "API key" in (shown["disabled_reason"] or ""), path

    await world.alice.json(
        "PATCH",
        f"{ACCOUNT}/{account_hook['id']}",
        json={"url": "http://thief.test:9/mine-now", "enabled": True},
    )
    await rename("third")
    assert await _sent_to(panel, account_hook["id"]) == ["server.renamed", "server.renamed"]


@pytest.mark.parametrize("loses", ["access", "access-unannounced", "activity.read"])
async def test_a_delivery_waiting_to_be_retried_is_not_sent_once_its_chooser_lost_access(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    loses: str,
) -> None:
    """Access is decided when an event is queued, and again when each of its deliveries is
    sent: an audit entry queued while carol could see it, then retried after she was removed
    from the server (or lost activity.read), used to reach her URL all the same. Removed
    through the API, her removal is itself an event the webhook hears (and is turned off on);
    removed with no event (``unannounced``: the row gone), the dispatcher finds it."""
    names = Names()
    receiver = Receiver(statuses=[503] * 10, headers={"Retry-After": "2"})
    receiver_server = await start_receiver(receiver, names, aiohttp_server)
    panel = await start_panel(webhook_settings(database_url), names, aiohttp_server, aiohttp_client)
    hooks = HookPanel(panel, receiver, receiver_server, names)
    world = await build_world(panel)
    server = world.ids["alice_server"]
    path = f"/api/v1/servers/{server}/webhooks"
    await grant_carol(panel, world, ["webhooks.*", "activity.read"])
    hook = await hooks.create(world.carol, path, events=["audit"])

    await world.alice.json("PATCH", f"/api/v1/servers/{server}", json={"name": "renamed"})
    await receiver.wait_for(1)  # refused, with Retry-After: 2 s until the next attempt
    sent = len(receiver.received)
    if loses == "access":
        await world.alice.json(
            "DELETE", f"/api/v1/servers/{server}/users/{world.ids['carol_subuser']}", status=204
        )
    elif loses == "access-unannounced":
        async with transaction(session_factory(panel.server.app[ENGINE])) as db:
            await db.execute(
                delete(Subuser).where(Subuser.id == uuid.UUID(world.ids["carol_subuser"]))
            )
    else:
        await grant_carol(panel, world, ["webhooks.*"])

    rows = await eventually(
        lambda: deliveries(world.alice, f"{path}/{hook['id']}"),
        lambda rows: all(row["status"] != "pending" for row in rows),
    )
    assert len(receiver.received) == sent
    assert [r["status"] for r in rows] == ["failed"] * sent
    shown = await world.alice.json("GET", f"{path}/{hook['id']}")
    if loses.startswith("access"):
        assert {r["error"] for r in rows} == {"not sent: the webhook was disabled"}
        assert shown["enabled"] is False
        assert "no longer has access to this server" in shown["disabled_reason"]
        trail = await world.admin.json("GET", "/api/v1/audit?action=webhook.disabled")
        # Turned off by the dispatcher: recorded as one turned off after failures is.
        assert trail["meta"]["total"] == (loses == "access-unannounced")
    else:
        assert all("may no longer see the server's activity" in r["error"] for r in rows)
        assert shown["enabled"] is True
