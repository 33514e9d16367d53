"""The fleet benchmark's database: nodes, users with API keys, servers spread over both.

Written in the harness's process through the control plane's models and services (as
``bench/api.py`` does), then each server's spec (``services.servers.startup.build_spec``,
what the control plane sends a node on create) is handed to the simulated nodes, so that
node and database agree before the replicas start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from control_plane import cli_ops
from control_plane.db.engine import create_engine, session_factory
from control_plane.db.models import Allocation, ApiKey, Blueprint, Node, User
from control_plane.db.session import transaction
from control_plane.security.api_keys import new_key
from control_plane.security.passwords import hash_password
from control_plane.services.servers import placement
from control_plane.services.servers.startup import build_spec
from control_plane.settings import ControlPlaneSettings

PASSWORD: Final = "correct horse battery staple"
FIRST_PORT: Final = 30000


@dataclass
class Fleet:
    """What :func:`populate` made: each user's write key and servers, each node's id."""

    node_ids: list[str] = field(default_factory=list)
    # user key -> that user's server ids
    servers_by_key: dict[str, list[str]] = field(default_factory=dict)
    # server id -> node id
    node_of: dict[str, str] = field(default_factory=dict)
    # what the nodes are told to create: [{"node": id, "spec": ServerSpec as JSON}]
    specs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def servers(self) -> int:
        return len(self.node_of)


def _blueprint() -> Blueprint:
    return Blueprint(
        name="fleet game",
        description="",
        images=[{"name": "default", "image": "stellar-bench/game:latest"}],
        startup="/usr/local/bin/game --port {{SERVER_PORT}}",
        stop={"type": "command", "value": "stop"},
        install=None,
        variables=[],
        read_only_root=True,
        file_denylist=[],
    )


async def populate(
    settings: ControlPlaneSettings,
    node_urls: list[str],
    servers: int,
    users: int,
    running_share: float = 0.0,
) -> Fleet:
    """Migrate, then ``len(node_urls)`` nodes, ``users`` users (one write key each) and
    ``servers`` servers, node and owner assigned round-robin; ``running_share`` of the
    servers are marked to be started on their node."""
    await cli_ops.migrate(settings)
    engine = create_engine(settings.database_url or "")
    fleet = Fleet()
    # One bcrypt hash for every account: nobody signs in with a password here.
    password_hash = await hash_password(PASSWORD, settings.bcrypt_cost)
    try:
        async with transaction(session_factory(engine)) as db:
            nodes = [
                Node(name=f"sim-{i:03d}", url=url, memory_mib=0, disk_mib=0)
                for i, url in enumerate(node_urls)
            ]
            people = [
                User(
                    email=f"user{i:04d}@example.org",
                    username=f"user{i:04d}",
                    password_hash=password_hash,
                    is_admin=False,
                )
                for i in range(users)
            ]
            blueprint = _blueprint()
            db.add_all([*nodes, *people, blueprint])
            await db.flush()
            per_node = -(-servers // len(nodes))
            db.add_all(
                Allocation(node_id=node.id, ip="127.0.0.1", port=FIRST_PORT + i)
                for node in nodes
                for i in range(per_node)
            )
            await db.flush()
            keys: list[str] = []
            for person in people:
                full, prefix, secret_hash = new_key("stellar")
                keys.append(full)
                fleet.servers_by_key[full] = []
                db.add(
                    ApiKey(
                        user_id=person.id,
                        name="fleet",
                        prefix=prefix,
                        secret_hash=secret_hash,
                        scopes=["read", "write"],
                        allowed_ips=[],
                        kind="stellar",
                    )
                )
            limits = placement.ServerLimits(512, 0, 100, 1024, 256)
            for i in range(servers):
                node = nodes[i % len(nodes)]
                server = await placement.create_server(
                    db,
                    name=f"server {i:04d}",
                    owner=people[i % users],
                    blueprint=blueprint,
                    node_id=node.id,
                    image=None,
                    limits=limits,
                    variables={},
                )
                server.state = "offline"
                await db.flush()
                spec = await build_spec(db, server)
                fleet.servers_by_key[keys[i % users]].append(str(server.id))
                fleet.node_of[str(server.id)] = str(node.id)
                fleet.specs.append(
                    {
                        "node": str(node.id),
                        "spec": spec.model_dump(mode="json"),
                        "start": i < servers * running_share,
                    }
                )
            fleet.node_ids = [str(node.id) for node in nodes]
    finally:
        await engine.dispose()
    return fleet
