"""A server's state, and the one way to change it.

``offline, installing, starting, running, stopping, crashed`` (``shared.server_spec.ServerState``).
:class:`ServerStateMachine` holds it and :meth:`ServerStateMachine.change` is its only writer:
a change is logged, published once as a ``StateEvent`` on the node's event stream and sent
once as a ``status`` line to the server's console viewers; setting the state it already has
does nothing. The state is read through a property without a setter, so an assignment fails.
"""

from __future__ import annotations

import uuid

import structlog

from node_agent.console.server_console import ServerConsole
from node_agent.events import NodeEventBus
from shared.node_api import StateEvent
from shared.server_spec import ServerState

log = structlog.get_logger("agent.servers")


class ServerStateMachine:
    """One server's current state; every change is told to the control plane and the console."""

    __slots__ = ("_console", "_current", "_events", "_server_id")

    def __init__(self, server_id: uuid.UUID, events: NodeEventBus, console: ServerConsole) -> None:
        self._server_id = server_id
        self._events = events
        self._console = console
        # Every server starts offline; restoring it after an agent start is a change like any.
        self._current: ServerState = "offline"

    @property
    def state(self) -> ServerState:
        return self._current

    def change(self, state: ServerState) -> bool:
        """Make ``state`` the current one; one event and one status line if it changed."""
        if state == self._current:
            return False
        previous, self._current = self._current, state
        log.info("server state", server=str(self._server_id), state=state, previous=previous)
        self._events.publish(StateEvent(server=self._server_id, state=state))
        self._console.status(state)
        return True
