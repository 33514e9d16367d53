"""A populated control plane for authorisation tests: two owners, a sub-user, a key each.

Servers are recorded straight into the database (the node is never asked), on a node whose
URL answers nothing: routes that would reach the node get 503, which tells an authorisation
test "you were let through" without needing Docker.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from control_plane.db.engine import session_factory
from control_plane.db.models import (
    Allocation,
    Backup,
    Blueprint,
    Invitation,
    Location,
    Node,
    OAuthIdentity,
    PasskeyCredential,
    Schedule,
    ScheduleTask,
    Server,
    SshKey,
    Subuser,
    User,
    Webhook,
)
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.services.servers import placement
from tests.support.panel import Browser, Panel

DEAD_NODE_URL = "http://127.0.0.1:9"  # the discard port: connection refused

BLUEPRINT: dict[str, Any] = {
    "name": "fake game",
    "images": [{"name": "default", "image": "stellar-test/fake-game:latest"}],
    "startup": "/usr/local/bin/fake-game --port {{SERVER_PORT}} --motd {{MOTD}}",
    "stop": {"type": "command", "value": "stop"},
    "variables": [
        {
            "env": "MOTD",
            "name": "Message of the day",
            "default": "hello",
            "user_editable": True,
            "regex": "^[A-Za-z0-9 ]{1,40}$",
        },
        {
            "env": "SECRET_SEED",
            "name": "Seed",
            "default": "42",
            "type": "integer",
            "user_viewable": False,
        },
    ],
}


@dataclass
class World:
    panel: Panel
    admin: Browser
    alice: Browser
    bob: Browser
    carol: Browser  # sub-user of alice's server (dave is another, without a browser)
    ids: dict[str, str] = field(default_factory=dict)
    # The same objects as the Pterodactyl-compatible APIs name them ("application": integer
    # ids, "client": server identifiers).
    compat_ids: dict[str, dict[str, str]] = field(default_factory=dict)


# The world's objects that have a Pterodactyl-compatible id, by their key in ``World.ids``.
COMPAT_MODELS: dict[str, Any] = {
    "alice_server": Server,
    "alice_user": User,
    "node": Node,
    "location": Location,
    "blueprint": Blueprint,
    "allocation": Allocation,
    "alice_allocation": Allocation,
    "alice_schedule": Schedule,
    "alice_schedule_task": ScheduleTask,
}


async def _compat_ids(panel: Panel, world_ids: dict[str, str]) -> dict[str, dict[str, str]]:
    """Give alice and her server external ids; read every compat id of the world."""
    factory = session_factory(panel.server.app[ENGINE])
    application: dict[str, str] = {"nest": "1"}
    client: dict[str, str] = {}
    async with transaction(factory) as db:
        for key, model in COMPAT_MODELS.items():
            row = await db.get(model, uuid.UUID(world_ids[key]))
            assert row is not None
            application[key] = str(row.compat_id)
            if isinstance(row, Server):
                row.external_id = "alice-server-ext"
                client[key] = str(row.identifier)
            if isinstance(row, User):
                row.external_id = "alice-ext"
            if isinstance(row, Schedule | ScheduleTask) or key == "alice_allocation":
                client[key] = str(row.compat_id)
    application["alice_user_external"] = "alice-ext"
    application["alice_server_external"] = "alice-server-ext"
    return {"application": application, "client": client}


async def _db_objects(panel: Panel, world_ids: dict[str, str]) -> None:
    factory = session_factory(panel.server.app[ENGINE])
    async with transaction(factory) as db:
        node = Node(name="dead-node", url=DEAD_NODE_URL, memory_mib=0, disk_mib=0)
        db.add(node)
        await db.flush()
        db.add_all(Allocation(node_id=node.id, ip="127.0.0.1", port=p) for p in range(30000, 30010))
        blueprint = Blueprint(
            name=BLUEPRINT["name"],
            description="",
            images=BLUEPRINT["images"],
            startup=BLUEPRINT["startup"],
            stop=BLUEPRINT["stop"],
            install=None,
            variables=[
                {
                    "description": "",
                    "type": "string",
                    "required": False,
                    "regex": None,
                    "min": None,
                    "max": None,
                    "user_viewable": True,
                    "user_editable": False,
                    **v,
                }
                for v in BLUEPRINT["variables"]
            ],
            read_only_root=True,
            file_denylist=[],
        )
        db.add(blueprint)
        await db.flush()
        limits = placement.ServerLimits(512, 0, 100, 1024, 256)
        for owner in ("alice", "bob"):
            user = await db.get(User, uuid.UUID(world_ids[f"{owner}_user"]))
            assert user is not None
            server = await placement.create_server(
                db,
                name=f"{owner}'s server",
                owner=user,
                blueprint=blueprint,
                node_id=node.id,
                image=None,
                limits=limits,
                variables={},
            )
            server.state = "offline"
            world_ids[f"{owner}_server"] = str(server.id)
            (port,) = await placement.allocations_of(db, server.id)
            world_ids[f"{owner}_allocation"] = str(port.id)
        # carol is the sub-user under test; dave is the one sub-user routes act on.
        for name, key in (("carol", "carol_subuser"), ("dave", "alice_subuser")):
            sub = Subuser(
                server_id=uuid.UUID(world_ids["alice_server"]),
                user_id=uuid.UUID(world_ids[f"{name}_user"]),
                permissions=["console.read"],
            )
            db.add(sub)
            await db.flush()
            world_ids[key] = str(sub.id)
        backup = Backup(
            server_id=uuid.UUID(world_ids["alice_server"]), name="nightly", status="completed"
        )
        db.add(backup)
        await db.flush()
        world_ids["alice_backup"] = str(backup.id)
        schedule = Schedule(
            server_id=uuid.UUID(world_ids["alice_server"]),
            creator_id=uuid.UUID(world_ids["alice_user"]),
            name="nightly restart",
            cron="30 4 * * *",
        )
        db.add(schedule)
        await db.flush()
        task = ScheduleTask(
            schedule_id=schedule.id, position=0, action="command", payload={"command": "say hi"}
        )
        db.add(task)
        await db.flush()
        world_ids["alice_schedule"] = str(schedule.id)
        world_ids["alice_schedule_task"] = str(task.id)
        world_ids["node"] = str(node.id)
        passkey = PasskeyCredential(
            user_id=uuid.UUID(world_ids["alice_user"]),
            credential_id="alice-passkey",
            public_key=b"not a real key",
            name="alice's passkey",
        )
        db.add(passkey)
        await db.flush()
        world_ids["alice_passkey"] = str(passkey.id)
        identity = OAuthIdentity(
            user_id=uuid.UUID(world_ids["alice_user"]), provider="github", subject="alice-1"
        )
        db.add(identity)
        await db.flush()
        world_ids["alice_oauth_identity"] = str(identity.id)
        ssh_key = SshKey(
            user_id=uuid.UUID(world_ids["alice_user"]),
            name="alice's laptop",
            public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9ok"
            "Wi0dh2l9GKJl",
            fingerprint="SHA256:alice",
        )
        db.add(ssh_key)
        await db.flush()
        world_ids["alice_ssh_key"] = str(ssh_key.id)
        invitation = Invitation(
            server_id=uuid.UUID(world_ids["alice_server"]),
            email="erin@example.org",
            permissions=["console.read"],
            token_hash="0" * 64,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=7),
        )
        db.add(invitation)
        await db.flush()
        world_ids["alice_invitation"] = str(invitation.id)
        # Webhooks of alice's account, of her server and of the panel; their secrets are
        # never read here (no dispatcher runs), so a placeholder stands in.
        alice_id = uuid.UUID(world_ids["alice_user"])
        alice_server_id = uuid.UUID(world_ids["alice_server"])
        admin_id = await db.scalar(select(User.id).where(User.email == "admin@example.org"))
        # Each made by whom it sends for (the user who chose its URL: services/webhooks).
        hooks: list[tuple[str, str, uuid.UUID | None, uuid.UUID | None, uuid.UUID | None]] = [
            ("alice_account_webhook", "account", alice_id, None, alice_id),
            ("alice_server_webhook", "server", None, alice_server_id, alice_id),
            ("panel_webhook", "panel", None, None, admin_id),
        ]
        for label, scope, user_id, server_id, made_by in hooks:
            hook = Webhook(
                scope=scope,
                user_id=user_id,
                server_id=server_id,
                created_by=made_by,
                name=f"{scope} hook",
                url="https://hooks.example.com/in",
                events=["server.state"],
                secret="v1:none:AAAA",
            )
            db.add(hook)
            await db.flush()
            world_ids[label] = str(hook.id)
        world_ids["blueprint"] = str(blueprint.id)


async def build_world(panel: Panel) -> World:
    ids: dict[str, str] = {}
    admin = await panel.signed_in("admin@example.org", admin=True)
    browsers = {}
    for name in ("alice", "bob", "carol"):
        ids[f"{name}_user"] = await panel.create_user(f"{name}@example.org")
        browsers[name] = await panel.browser()
        await browsers[name].login(f"{name}@example.org")
    ids["dave_user"] = await panel.create_user("dave@example.org")
    await _db_objects(panel, ids)
    location = await admin.json(
        "POST", "/api/v1/locations", status=201, json={"code": "eu1", "description": "Europe"}
    )
    ids["location"] = location["id"]
    allocations = await admin.json("GET", f"/api/v1/nodes/{ids['node']}/allocations")
    ids["allocation"] = next(a["id"] for a in allocations["data"] if a["server_id"] is None)
    key = await browsers["alice"].json(
        "POST", "/api/v1/account/api-keys", status=201, json={"name": "k", "scopes": ["read"]}
    )
    ids["alice_key"] = key["id"]
    # The same user's client key (ptlc_), as the Client API names it: its identifier.
    client_key = await browsers["alice"].json(
        "POST",
        "/api/v1/account/api-keys",
        status=201,
        json={"name": "bot", "scopes": ["read"], "kind": "client"},
    )
    sessions = await browsers["alice"].json("GET", "/api/v1/auth/sessions")
    ids["alice_session"] = sessions["data"][0]["id"]
    world = World(panel, admin, browsers["alice"], browsers["bob"], browsers["carol"], ids)
    world.compat_ids = await _compat_ids(panel, ids)
    world.compat_ids["client"]["alice_key"] = client_key["prefix"]
    return world
