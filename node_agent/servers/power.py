"""Power actions on one server: start, stop, restart, kill; and its power brought back after
the agent starts.

``start`` and ``kill`` are done when they return; ``stop`` and ``restart`` go on in the
background (:attr:`ManagedServer.stop_task`; ``stopping`` is true in the status until they
end). Start, stop and restart hold the server's lock, so they never interleave with each
other or the installer; ``kill`` does not wait for it, and cancels a stop in progress. Each
action first records the desired power state, so an exit it causes is no crash and an agent
restart brings back what the user last asked for.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from node_agent.configs.start import apply_before_start
from shared.errors import ApiError, Conflict
from shared.server_spec import PowerActionName

if TYPE_CHECKING:
    from node_agent.servers.server import ManagedServer

log = structlog.get_logger("agent.servers")


async def run_power_action(server: ManagedServer, action: PowerActionName) -> None:
    """Start or kill now; stop and restart proceed in the background."""
    if server.record.install == "installing":
        raise Conflict("the server is still installing")
    if action == "kill":
        await kill(server)
    elif action == "start":
        async with server.locked():
            await start(server)
    elif server.stopping:
        raise Conflict("the server is already stopping")
    else:
        restart = action == "restart"
        server.exit_expected = True
        await server.want("running" if restart else "stopped")
        if server.state in {"running", "starting"}:
            server.set_state("stopping")
        server.stop_task = server.spawn(
            _stop(server, restart=restart), name=f"{action}-{server.spec.uuid}"
        )


async def kill(server: ManagedServer) -> None:
    """SIGKILL the game now (a stop in progress is cancelled)."""
    server.exit_expected = True
    await server.want("stopped")
    if server.stop_task is not None:
        server.stop_task.cancel()
    runtime = server.services.runtime
    container = await runtime.find(server.container)
    if container is None or not container.running:
        server.set_state("offline")
        return
    server.set_state("stopping")
    state = await runtime.kill(server.container)
    if not state.running:
        # Judged here, as a stop's exit is: Docker's event for it may come after the next
        # start has begun (no longer an exit anyone asked for by then).
        server.judged_exit = state.finished_at
        server.set_state("offline")


async def start(server: ManagedServer) -> None:
    """Start the game container (the caller holds the lock)."""
    if server.record.install == "installing":
        raise Conflict("the server is still installing")
    if server.record.install == "failed":
        raise Conflict("the server's install failed; reinstall it before starting")
    if server.stopping and asyncio.current_task() is not server.stop_task:
        raise Conflict("the server is stopping")
    await server.want("running")
    server.exit_expected = False
    found = await server.services.runtime.find(server.container)
    if found is not None and found.running:
        # A second start changes nothing (the game is up, or its done line is awaited); a
        # game found running otherwise is taken to be up, as after an agent restart.
        if server.state not in {"starting", "running"}:
            server.set_state("running")
            server.console.wake()
        return
    server.set_state("starting")
    # Armed before the container starts, so that its first lines count (``done.py``).
    waits_for_done = server.done_watch.arm(server.spec.startup_done)
    try:
        if server.record.spec_pending:
            # The spec changed while the game ran: this start is where it takes effect.
            await server.rebuild_container()
        else:
            await server.ensure_current_container()
        await apply_before_start(server)
        state = await server.services.runtime.start(server.container)
    except ApiError:
        server.set_state("offline")
        raise
    if state.running:
        if waits_for_done:
            server.done_watch.run_started = True
        else:
            server.set_state("running")
        server.console.wake()


async def _stop(server: ManagedServer, *, restart: bool) -> None:
    runtime = server.services.runtime
    spec = server.spec
    async with server.locked():
        try:
            state = await runtime.stop(
                server.container, spec.stop, grace_seconds=spec.stop_timeout_seconds
            )
        except ApiError:
            found = await runtime.find(server.container)
            server.set_state("running" if found is not None and found.running else "offline")
            raise
        log.info("server stopped", server=str(spec.uuid), exit_code=state.exit_code)
        if not state.running:
            server.judged_exit = state.finished_at
            server.set_state("offline")
        if restart:
            await start(server)


async def restore_power(server: ManagedServer) -> None:
    """After an agent start: take the container's state, or bring back the desired one."""
    container = await server.services.runtime.find(server.container)
    if server.record.install == "installing":
        server.set_state("installing")
    elif container is not None and container.running:
        # Running, done markers or not: its done line (if any) was printed before this
        # agent started, and a game that outlived an agent restart is taken to be up.
        server.set_state("running")
        server.console.wake()
    elif server.record.desired_power == "running":
        # The host rebooted (or the game died while the agent was away): start it again.
        server.judged_exit = None if container is None else container.finished_at
        log.info("restoring desired power state", server=str(server.spec.uuid))
        server.set_state("offline")
        server.spawn(_start_locked(server), name=f"restore-{server.spec.uuid}")
    else:
        server.set_state("crashed" if server.record.crashed else "offline")


async def _start_locked(server: ManagedServer) -> None:
    async with server.locked():
        await start(server)
