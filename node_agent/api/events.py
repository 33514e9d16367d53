"""The node's event stream for the control plane.

    GET /api/v1/events[?after=<epoch>:<seq>]   node.events (sub ``node``)   WebSocket

Each text frame is one event of ``shared.node_api.NodeEvent`` (``state``, ``crash``,
``install``, ``image_pull``, ``disk_full``, and ``dropped`` when this subscriber fell behind
and lost some). The first is ``stream`` (``StreamStart``: the agent's stream and the number
of its last event); with ``after``, the kept audit-worthy events that came after that one
in this stream follow it, then the new ones (``node_agent/events.py``). Inbound, only
``{"event": "auth", "args": [token]}`` (renewal, as on the console) is read; the socket's
own frames are ``{"type": "token_expiring"}``, ``{"type": "auth_success"}`` and
``{"type": "error", "message": ...}``. Close codes as on the console (4001 token expired,
1001 agent stopping). Several subscribers may listen at once; a slow one never slows the
agent.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from node_agent.console.server_console import ConsoleViewer
from node_agent.console.session import open_socket, send_frames, watch_lease
from node_agent.events import EventSubscription
from node_agent.keys import CLAIMS, NODE_EVENTS, OPEN_SOCKETS, SETTINGS, VERIFIER
from node_agent.security.socket_lease import SocketLease
from node_agent.security.verify import serves
from shared.errors import InvalidRequest
from shared.node_api import ConsoleInbound
from shared.node_endpoints import NODE_EVENT_STREAM, EventsAfter
from shared.protocol import CommandRejected

routes = web.RouteTableDef()


async def _forward(subscription: EventSubscription, viewer: ConsoleViewer) -> None:
    # Never past the socket's queue: a follower that falls behind loses events in its
    # subscription, which counts them and says so (``dropped``), not here, silently.
    while True:
        event = await subscription.next()
        await viewer.room()
        viewer.offer(event.model_dump_json())


@serves(routes, NODE_EVENT_STREAM)
async def node_events(request: web.Request) -> web.StreamResponse:
    """Every state change, crash, install, pull and full disk on this node, as it happens."""
    limits = request.app[SETTINGS].console
    bus = request.app[NODE_EVENTS]
    try:
        after = EventsAfter.model_validate(dict(request.query)).after
    except ValidationError as err:
        raise InvalidRequest("after must be <epoch>:<seq>, as a stream's events give them") from err
    subscription = bus.subscribe(after)
    viewer = ConsoleViewer(limits.viewer_queue_messages)
    request.app[OPEN_SOCKETS].add(viewer)
    ws = open_socket(limits)
    try:
        await ws.prepare(request)
        lease = SocketLease(
            request.app[VERIFIER], request[CLAIMS], request.raw_path, limits.token_grace_seconds
        )
        viewer.offer(subscription.start.model_dump_json())
        tasks = [
            asyncio.create_task(_forward(subscription, viewer)),
            asyncio.create_task(send_frames(ws, viewer)),
            asyncio.create_task(watch_lease(lease, viewer, _frame(type="token_expiring"))),
        ]
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    _renew(lease, viewer, message.data)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        bus.unsubscribe(subscription)
        request.app[OPEN_SOCKETS].discard(viewer)
    return ws


def _renew(lease: SocketLease, viewer: ConsoleViewer, text: str) -> None:
    try:
        inbound = ConsoleInbound.model_validate_json(text)
        if inbound.event != "auth" or not inbound.args:
            raise ValueError("only auth is accepted here")
        lease.renew(inbound.args[0])
    except (ValidationError, ValueError, CommandRejected):
        viewer.offer(_frame(type="error", message="only a valid auth is accepted"))
        return
    viewer.offer(_frame(type="auth_success"))


def _frame(**members: str) -> str:
    return json.dumps(members)
