"""One task of a schedule's run, done as the schedule's user would do it through the API.

Before each task the user's authority is read afresh, by the one authorization decision
(:func:`control_plane.security.authorization.refusal`): the account must be enabled, still
see the server, hold ``schedules.update`` there and the task's own permission node
(``control.restart``, ``backups.create`` …). A user who lost any of these makes the task fail
with that reason; nothing reaches the node. The actions are the API's own
(``server_actions``, ``backup_actions``); none waits on a node inside a transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from control_plane.api import backup_actions, server_actions
from control_plane.db.models import Schedule, ScheduleTask, Server, User
from control_plane.db.session import transaction
from control_plane.errors import ApiError, Conflict, Forbidden, NotFound
from control_plane.keys import READ_SESSIONS
from control_plane.schemas.schedules import DeleteBackupsTask, task_input
from control_plane.schemas.servers import CommandIn, PowerIn
from control_plane.security.api_keys import Scope
from control_plane.security.authorization import Requirement, refusal
from control_plane.security.caller import Caller
from control_plane.security.permissions import ServerAccess
from control_plane.services import backups as backup_service
from control_plane.services.infrastructure import get_node
from control_plane.services.servers.access import access_for

# What a user needs to have a schedule act for them at all.
SCHEDULE_PERMISSION = "schedules.update"


def task_permission(action: str, payload: dict[str, Any]) -> str:
    """The permission node a task needs (the same as its API twin)."""
    if action == "command":
        return server_actions.COMMAND_PERMISSION
    if action == "power":
        return server_actions.power_permission(PowerIn(action=payload["power"]))
    if action == "backup":
        return "backups.create"
    return "backups.delete"


@dataclass(frozen=True)
class Authority:
    caller: Caller
    server: Server
    access: ServerAccess

    def refused(self, permission: str) -> ApiError | None:
        """Why the schedule's user may not do ``permission`` on the server, or None."""
        return refusal(self.caller, Requirement(Scope.WRITE, permission=permission), self.access)

    def require(self, permission: str) -> None:
        """Raise unless the schedule's user may also do ``permission`` (what a task's action
        does besides its own: a backup at the server's limit deletes the oldest)."""
        error = self.refused(permission)
        if error is not None:
            raise error


async def authority(app: web.Application, schedule_id: uuid.UUID, needs: str) -> Authority:
    """The schedule's user as a caller, if they may still do ``needs`` on its server."""
    async with transaction(app[READ_SESSIONS]) as db:
        schedule = await db.get(Schedule, schedule_id)
        if schedule is None:
            raise NotFound("the schedule was deleted")
        user = await db.get(User, schedule.creator_id)
        if user is None or user.disabled:
            raise Forbidden("the schedule's user is disabled")
        scopes = {Scope.READ, Scope.WRITE} | ({Scope.ADMIN} if user.is_admin else set())
        caller = Caller(
            user_id=user.id,
            email=user.email,
            is_admin=user.is_admin,
            via="api_key",
            scopes=frozenset(scopes),
            ip="",
            user_agent=f"scheduler (schedule {schedule_id})",
        )
        found = await access_for(db, caller, schedule.server_id)
        if found is None:
            raise Forbidden("the schedule's user no longer has access to this server")
        who = Authority(caller, *found)
        for permission in (SCHEDULE_PERMISSION, needs):
            error = who.refused(permission)
            if error is not None:
                raise Forbidden(f"the schedule's user may no longer do this: {error.message}")
    return who


async def _delete_old_backups(app: web.Application, who: Authority, keep: int) -> str:
    """Delete unlocked backups beyond the ``keep`` newest completed ones, and failed ones.

    A failed backup holds nothing: it never counts as one kept (else a few failed runs
    would have this task delete every good backup).
    """
    async with transaction(app[READ_SESSIONS]) as db:
        backups = await backup_service.backups_of(db, who.server.id)
    newest_first = sorted(backups, key=lambda b: b.created_at, reverse=True)
    completed = [b for b in newest_first if b.status == "completed"]
    failed = [b for b in newest_first if b.status == "failed"]
    doomed = [b for b in failed + completed[keep:] if not b.locked]
    deleted = kept = 0
    for backup in doomed:
        try:
            await backup_actions.delete(app, who.caller, who.server, backup.id)
            deleted += 1
        except NotFound:
            continue  # deleted meanwhile by someone else: what this task wanted
        except Conflict:
            kept += 1  # locked (or being restored) since the listing: its owner wants it kept
    note = f"deleted {deleted} backup(s)"
    return f"{note}; kept {kept} locked or in use meanwhile" if kept else note


async def perform(app: web.Application, schedule_id: uuid.UUID, task: ScheduleTask) -> str | None:
    """Do one task; raises the API's error when it fails. Returns a note for the record."""
    order = task_input(task.action, task.payload)
    who = await authority(app, schedule_id, task_permission(task.action, task.payload))
    if isinstance(order, DeleteBackupsTask):
        return await _delete_old_backups(app, who, order.keep)
    if order.action == "backup":
        backup = await backup_actions.create(
            app,
            who.caller,
            who.server,
            backup_actions.BackupCreate(ignore=order.ignore),
            require=who.require,
        )
        return f"backup {backup.id} started"
    async with transaction(app[READ_SESSIONS]) as db:
        node = await get_node(db, who.server.node_id)
    if order.action == "command":
        await server_actions.command(
            app, who.caller, who.server, node, CommandIn(command=order.command)
        )
        return None
    status = await server_actions.power(
        app, who.caller, who.server, node, PowerIn(action=order.power)
    )
    return f"the node reports {status.state}"
