"""Our rows as Pterodactyl's objects (the attributes of each ``{object, attributes}``).

Fields Pterodactyl has and we do not (``io``, ``threads``, feature limits, names …) are the
values the caller sent, kept in ``compat_fields`` and echoed; fields with no such value get
Pterodactyl's neutral default. docs/pterodactyl-compat.md lists them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.compat.envelope import timestamp
from control_plane.api.compat.ids import NEST_ID
from control_plane.db.models import Allocation, Blueprint, Location, Node, Server, User
from control_plane.services.mfa import second_factor_enrolled
from control_plane.services.servers.startup import current_values

# Pterodactyl's defaults for what a server was created without.
SERVER_DEFAULTS: Final[dict[str, Any]] = {
    "io": 500,
    "threads": None,
    "oom_disabled": True,
    "databases": 0,
    "backups": 0,
    "startup": None,
    "skip_scripts": False,
}
NEST_UUID: Final = "00000000-0000-4000-8000-000000000001"


async def user_attributes(db: AsyncSession, user: User) -> dict[str, Any]:
    extra = user.compat_fields or {}
    two_factor = bool(
        await db.scalar(select(second_factor_enrolled(User.id)).where(User.id == user.id))
    )
    return {
        "id": user.compat_id,
        "external_id": user.external_id,
        "uuid": str(user.id),
        "username": user.username,
        "email": user.email,
        "first_name": extra.get("first_name", ""),
        "last_name": extra.get("last_name", ""),
        "language": extra.get("language", "en"),
        "root_admin": user.is_admin,
        "2fa": two_factor,
        "created_at": timestamp(user.created_at),
        "updated_at": timestamp(user.created_at),
    }


def location_attributes(location: Location) -> dict[str, Any]:
    return {
        "id": location.compat_id,
        "short": location.code,
        "long": location.description,
        "updated_at": timestamp(location.created_at),
        "created_at": timestamp(location.created_at),
    }


def allocation_attributes(allocation: Allocation) -> dict[str, Any]:
    return {
        "id": allocation.compat_id,
        "ip": allocation.ip,
        "alias": None,
        "port": allocation.port,
        "notes": allocation.notes,
        "assigned": allocation.server_id is not None,
    }


@dataclass(frozen=True)
class NodeUse:
    """What the servers on a node take of it (MiB)."""

    memory: int
    disk: int


async def node_use(db: AsyncSession, node_ids: list[uuid.UUID]) -> dict[uuid.UUID, NodeUse]:
    rows = await db.execute(
        select(Server.node_id, func.sum(Server.memory_mib), func.sum(Server.disk_mib))
        .where(Server.node_id.in_(node_ids))
        .group_by(Server.node_id)
    )
    return {node_id: NodeUse(int(memory or 0), int(disk or 0)) for node_id, memory, disk in rows}


def node_attributes(node: Node, location_number: int | None, use: NodeUse | None) -> dict[str, Any]:
    url = urlsplit(node.url)
    use = use or NodeUse(0, 0)
    return {
        "id": node.compat_id,
        "uuid": str(node.id),
        "public": True,
        "name": node.name,
        "description": None,
        "location_id": location_number,
        "fqdn": url.hostname or "",
        "scheme": url.scheme,
        "behind_proxy": False,
        "maintenance_mode": node.status == "maintenance",
        "memory": node.memory_mib,
        "memory_overallocate": 0,
        "disk": node.disk_mib,
        "disk_overallocate": 0,
        "upload_size": 100,
        "daemon_listen": url.port or (443 if url.scheme == "https" else 80),
        "daemon_sftp": 2022,
        "daemon_base": "/home/container",
        "created_at": timestamp(node.created_at),
        "updated_at": timestamp(node.created_at),
        "allocated_resources": {"memory": use.memory, "disk": use.disk},
    }


def nest_attributes() -> dict[str, Any]:
    return {
        "id": NEST_ID,
        "uuid": NEST_UUID,
        "author": "stellarstack",
        "name": "Imported",
        "description": "Every blueprint of this panel (docs/pterodactyl-compat.md).",
        "created_at": None,
        "updated_at": None,
    }


def egg_attributes(blueprint: Blueprint) -> dict[str, Any]:
    images = {image["name"]: image["image"] for image in blueprint.images}
    install = blueprint.install or {}
    return {
        "id": blueprint.compat_id,
        "uuid": blueprint.egg_uuid or str(blueprint.id),
        "name": blueprint.name,
        "nest": NEST_ID,
        "author": blueprint.author,
        "description": blueprint.description,
        "docker_image": blueprint.images[0]["image"] if blueprint.images else "",
        "docker_images": images,
        "config": {
            "files": blueprint.config_files,
            "startup": {"done": blueprint.startup_done},
            "stop": blueprint.stop.get("value", ""),
            "logs": {},
            "file_denylist": blueprint.file_denylist,
            "extends": None,
        },
        "startup": blueprint.startup,
        "script": {
            "privileged": bool(install.get("root", False)),
            "install": install.get("script"),
            "entry": install.get("entrypoint", "bash"),
            "container": install.get("image"),
            "extends": None,
        },
        "created_at": timestamp(blueprint.created_at),
        "updated_at": timestamp(blueprint.created_at),
    }


def variable_attributes(
    blueprint: Blueprint, index: int, variable: dict[str, Any]
) -> dict[str, Any]:
    rules = ["required" if variable.get("required") else "nullable", "string"]
    if variable.get("regex"):
        rules.append(f"regex:/{variable['regex']}/")
    return {
        # A variable has no row of its own: its place in the blueprint numbers it.
        "id": index + 1,
        "egg_id": blueprint.compat_id,
        "name": variable.get("name", variable["env"]),
        "description": variable.get("description", ""),
        "env_variable": variable["env"],
        "default_value": str(variable.get("default", "")),
        "user_viewable": bool(variable.get("user_viewable")),
        "user_editable": bool(variable.get("user_editable")),
        "rules": "|".join(rules),
        "created_at": timestamp(blueprint.created_at),
        "updated_at": timestamp(blueprint.created_at),
    }


@dataclass(frozen=True)
class ServerLinks:
    """The numbers of what a server refers to."""

    owner: int | None
    node: int | None
    egg: int | None
    allocation: int | None


async def server_links(
    db: AsyncSession, server: Server, allocations: list[Allocation]
) -> ServerLinks:
    owner = await db.scalar(select(User.compat_id).where(User.id == server.owner_id))
    node = await db.scalar(select(Node.compat_id).where(Node.id == server.node_id))
    egg = await db.scalar(select(Blueprint.compat_id).where(Blueprint.id == server.blueprint_id))
    return ServerLinks(owner, node, egg, allocations[0].compat_id if allocations else None)


def server_status(state: str, suspended: bool) -> str | None:
    """Pterodactyl's ``status``: null when nothing stands in the way of using the server."""
    if suspended:
        return "suspended"
    if state in ("installing", "provisioning"):
        return "installing"
    if state in ("install_failed", "failed"):
        return "install_failed"
    return None


def server_attributes(server: Server, blueprint: Blueprint, links: ServerLinks) -> dict[str, Any]:
    extra = {**SERVER_DEFAULTS, **(server.compat_fields or {})}
    status = server_status(server.state, server.suspended)
    return {
        "id": server.compat_id,
        "external_id": server.external_id,
        "uuid": str(server.id),
        "identifier": server.identifier,
        "name": server.name,
        "description": server.description,
        "status": status,
        "suspended": server.suspended,
        "limits": {
            "memory": server.memory_mib,
            "swap": server.swap_mib,
            "disk": server.disk_mib,
            "io": extra["io"],
            "cpu": server.cpu_percent,
            "threads": extra["threads"],
            "oom_disabled": extra["oom_disabled"],
        },
        "feature_limits": {
            "databases": extra["databases"],
            "allocations": server.port_limit,
            "backups": extra["backups"],
        },
        "user": links.owner,
        "node": links.node,
        "allocation": links.allocation,
        "nest": NEST_ID,
        "egg": links.egg,
        "container": {
            "startup_command": extra["startup"] or blueprint.startup,
            "image": server.image,
            "installed": 0 if status in ("installing", "install_failed") else 1,
            "environment": current_values(blueprint, server),
        },
        "updated_at": timestamp(server.created_at),
        "created_at": timestamp(server.created_at),
    }
