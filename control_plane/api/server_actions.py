"""Actions on a game that more than one transport offers (HTTP routes and the console
WebSocket): one input model, one permission node, one node call, one audit record and one
rate-limit bucket for each, so the transports cannot drift apart.

Each action is a node operation: read (the server's node) → the signed call → write (the
state the node reports, the audit record), never a database transaction held while the node
answers. A refusal by the node raises its error and records nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from functools import partial

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Blueprint, Node, Server
from control_plane.db.session import transaction
from control_plane.errors import NotFound
from control_plane.keys import NODES, SESSIONS
from control_plane.schemas.servers import CommandIn, PowerIn
from control_plane.security.caller import Caller
from control_plane.services import audit
from control_plane.services.audit import Actor, AuditEvent
from control_plane.services.servers import spec_changes
from control_plane.services.servers.state import change_state
from control_plane.services.servers.variables import validate_variables
from shared.server_spec import ConsoleCommand, PowerAction, ServerSpec, ServerStatus

COMMAND_PERMISSION = "console.write"
# The rate-limit preset a power action takes from, keyed by client and server.
POWER_PRESET = "power"


def power_permission(action: PowerIn) -> str:
    return f"control.{action.action}"


def power_audit(server_id: uuid.UUID, action: PowerIn) -> AuditEvent:
    return AuditEvent(
        f"server.power.{action.action}", target_type="server", target_id=str(server_id)
    )


def command_audit(server_id: uuid.UUID, command: CommandIn) -> AuditEvent:
    return AuditEvent(
        "server.console.command",
        target_type="server",
        target_id=str(server_id),
        details={"command": command.command[:200]},
    )


async def power(
    app: web.Application, caller: Caller, server: Server, node: Node, action: PowerIn
) -> ServerStatus:
    """Ask the node for the power action; record the state it reports and the action.
    See :func:`_power`."""
    return await _power(
        app,
        server,
        node,
        action,
        user=str(caller.user_id),
        actor=caller.actor,
        users_rules=not caller.acts_as_admin,
        audited=power_audit(server.id, action),
    )


async def power_for_system(
    app: web.Application, server: Server, node: Node, action: PowerIn, *, why: str
) -> ServerStatus:
    """The control plane's own power action (``why``: what asked for it, audited), checked
    and recorded as a caller's is, audited with no actor."""
    audited = replace(power_audit(server.id, action), details={"by": why})
    return await _power(
        app, server, node, action, user="system", actor=None, users_rules=False, audited=audited
    )


async def _power(
    app: web.Application,
    server: Server,
    node: Node,
    action: PowerIn,
    *,
    user: str,
    actor: Actor | None,
    users_rules: bool,
    audited: AuditEvent,
) -> ServerStatus:
    """Ask the node for the power action; record the state it reports and the action.

    Returns the node's view of the server (``stop`` and ``restart`` finish later). A start
    or restart first gives the node the spec as the server and its blueprint are now, so a
    blueprint changed since (an egg imported again, say) takes effect at this start; the node
    ignores a spec identical to the one it has. Its stored variable values are checked
    against the blueprint's rules as they are now first: a value a changed rule no longer
    accepts is refused with the 400 of :func:`validate_variables` (a hidden variable's
    problem without its name, for owners and sub-users) and nothing reaches the node. The
    spec is numbered after every other sent (``spec_changes``): a change sent meanwhile but
    never stored is undone at the node, and one under way now is sent again after it."""
    if action.action in {"start", "restart"}:

        async def checked(db: AsyncSession, current: Server) -> ServerSpec:
            blueprint = await db.get(Blueprint, current.blueprint_id)
            if blueprint is None:
                raise NotFound("the server's blueprint no longer exists")
            validate_variables(blueprint, {}, current=current.variables, user=users_rules)
            return await spec_changes.as_stored(db, current)

        begin = partial(transaction, app[SESSIONS])
        await spec_changes.send(begin, app[NODES], server.id, checked, user=user)
    status = await app[NODES].power(node, server.id, PowerAction(action=action.action), user=user)
    async with transaction(app[SESSIONS]) as db:
        stored = await db.get(Server, server.id)
        if stored is not None:
            await change_state(db, stored, status.state)
        await audit.append(db, actor, audited)
    return status


async def command(
    app: web.Application, caller: Caller, server: Server, node: Node, line: CommandIn
) -> None:
    """Type ``line`` on the game's console; record it."""
    await app[NODES].command(
        node, server.id, ConsoleCommand(command=line.command), user=str(caller.user_id)
    )
    async with transaction(app[SESSIONS]) as db:
        await audit.append(db, caller.actor, command_audit(server.id, line))
