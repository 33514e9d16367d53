"""What Docker reports about a game container: it started, or it exited.

A start makes the server ``running``, except one that waits for its done line (``done.py``).

Every exit is judged once (an exit seen twice, by its event and by a resync, has the same
``FinishedAt``): asked for (stop, kill, restart, or the stop command typed on the console)
or a clean exit 0 means ``offline``; anything else is a crash (``crash.py``). Exits while
the server installs, and of a container never started, are not the game's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from node_agent.servers.crash import handle_crash

if TYPE_CHECKING:
    from node_agent.servers.server import ManagedServer

log = structlog.get_logger("agent.servers")


async def container_started(server: ManagedServer) -> None:
    """The game container is running (a start event, or found so by a resync)."""
    state = await server.services.runtime.find(server.container)
    if state is None or not state.running:
        return
    if server.state == "starting" and server.done_watch.waiting:
        pass  # its done line decides (``done.py``)
    elif server.state not in {"running", "stopping"}:
        server.set_state("running")
    server.console.wake()


async def container_exited(server: ManagedServer) -> None:
    """The game container stopped: judge the exit once (offline, or a crash)."""
    state = await server.services.runtime.find(server.container)
    if state is None or state.running or server.record.install == "installing":
        return
    if state.status == "created":
        # A container never started (just rebuilt from a new spec) has not exited: the
        # late exit event of the one it replaced finds it under the same name.
        return
    if state.finished_at is not None and state.finished_at == server.judged_exit:
        return
    server.judged_exit = state.finished_at
    if server.exit_expected or server.record.desired_power == "stopped":
        server.set_state("offline")
        return
    if state.exit_code == 0 and not state.oom_killed:
        log.info("game exited by itself", server=str(server.spec.uuid))
        await server.want("stopped")
        server.set_state("offline")
        return
    await handle_crash(server, state)
