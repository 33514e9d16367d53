"""Permission nodes of sub-users (``category.action``) and who may do what on a server.

Owners and administrators hold every permission; a sub-user holds exactly the nodes granted
to them, where ``*`` and ``category.*`` are wildcards. A sub-user who manages other sub-users
can only grant what they hold themselves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

PERMISSIONS: Final = frozenset(
    {
        "control.start",
        "control.stop",
        "control.restart",
        "control.kill",
        "console.read",
        "console.write",
        "stats.read",
        "files.read",
        "files.write",
        "files.create",
        "files.delete",
        "files.sftp",
        "files.archive",
        "backups.read",
        "backups.create",
        "backups.delete",
        "backups.restore",
        "backups.download",
        "allocations.read",
        "allocations.update",
        "allocations.create",
        "allocations.delete",
        "startup.read",
        "startup.update",
        "startup.docker-image",
        "settings.rename",
        "settings.reinstall",
        "activity.read",
        "schedules.read",
        "schedules.create",
        "schedules.update",
        "schedules.delete",
        "webhooks.read",
        "webhooks.create",
        "webhooks.update",
        "webhooks.delete",
        "users.read",
        "users.create",
        "users.update",
        "users.delete",
    }
)
# Nodes that are no more → the one that does what they meant (migration 0030 moved the grants).
RETIRED: Final = {"control.console": "console.write"}
CATEGORIES: Final = frozenset(p.split(".", 1)[0] for p in PERMISSIONS)
# What each node lets a sub-user do, as the sub-users page explains it next to its box.
DESCRIPTIONS: Final[dict[str, str]] = {
    "control.start": "Start the server",
    "control.stop": "Stop the server",
    "control.restart": "Restart the server",
    "control.kill": "Kill the server's process at once",
    "console.read": "See the console's output",
    "console.write": "Send commands to the console",
    "stats.read": "See CPU, memory, network and disk use",
    "files.read": "List files and read their contents",
    "files.write": "Change files (also by uploading one of the same name)",
    "files.create": "Create files and folders (upload, pull)",
    "files.delete": "Delete files and folders",
    "files.sftp": "Connect with SFTP",
    "files.archive": "Compress and extract archives",
    "backups.read": "See the backups",
    "backups.create": "Make backups (at the limit, with backups.delete too)",
    "backups.delete": "Lock, unlock and delete backups",
    "backups.restore": "Restore a backup over the server's files",
    "backups.download": "Download backups",
    "allocations.read": "See the server's ports",
    "allocations.update": "Change the server's ports",
    "allocations.create": "Take more of the node's free ports, up to the server's limit",
    "allocations.delete": "Give ports back (not the main one)",
    "startup.read": "See the startup command and variables",
    "startup.update": "Change the editable startup variables",
    "startup.docker-image": "Choose the server's image",
    "settings.rename": "Rename the server",
    "settings.reinstall": "Reinstall the server",
    "activity.read": "See what was done to this server",
    "schedules.read": "See schedules",
    "schedules.create": "Create schedules",
    "schedules.update": "Change schedules",
    "schedules.delete": "Delete schedules",
    "webhooks.read": "See webhooks",
    "webhooks.create": "Create webhooks",
    "webhooks.update": "Change webhooks",
    "webhooks.delete": "Delete webhooks",
    "users.read": "See the sub-users",
    "users.create": "Add and invite sub-users",
    "users.update": "Change sub-users' permissions",
    "users.delete": "Remove sub-users",
}
assert set(DESCRIPTIONS) == PERMISSIONS, "every permission node has a description"
# The areas, in the order the sub-users page shows them.
AREAS: Final = {
    "console": "Console",
    "control": "Power",
    "stats": "Resource use",
    "files": "Files",
    "backups": "Backups",
    "allocations": "Network",
    "startup": "Startup",
    "settings": "Settings",
    "activity": "Activity",
    "schedules": "Schedules",
    "webhooks": "Webhooks",
    "users": "Sub-users",
}
assert set(AREAS) == {p.split(".", 1)[0] for p in PERMISSIONS}
# Seeing that a server exists (its name, state, limits): every member may.
VIEW: Final = "server.view"


def valid_grant(node: str) -> bool:
    """A grantable node: a known permission, ``category.*`` or ``*``."""
    if node == "*" or node in PERMISSIONS:
        return True
    category, _, action = node.partition(".")
    return action == "*" and category in CATEGORIES


def holds(granted: Iterable[str], needed: str) -> bool:
    """Whether ``granted`` (with wildcards) covers the permission ``needed``."""
    category = needed.split(".", 1)[0]
    return any(node in ("*", needed, f"{category}.*") for node in granted)


def covers(granted: Iterable[str], node: str) -> bool:
    """Whether ``granted`` covers everything ``node`` (possibly a wildcard) stands for."""
    held = list(granted)
    if node == "*":
        return "*" in held
    if node.endswith(".*"):
        category = node[:-2]
        return all(holds(held, p) for p in PERMISSIONS if p.startswith(category + "."))
    return holds(held, node)


def expand(granted: Iterable[str]) -> frozenset[str]:
    """Every concrete permission that ``granted`` stands for."""
    held = list(granted)
    return frozenset(p for p in PERMISSIONS if holds(held, p))


@dataclass(frozen=True)
class ServerAccess:
    """What the caller may do on one server."""

    server_id: uuid.UUID
    role: Literal["admin", "owner", "subuser"]
    permissions: frozenset[str]
    # A suspended server is closed to everyone but administrators.
    suspended: bool = False

    def allows(self, needed: str) -> bool:
        if self.role in ("admin", "owner") or needed == VIEW:
            return True
        return holds(self.permissions, needed)
