"""A server's install step: the blueprint's script in its one-off install container.

The installer runs in the background after create and after a reinstall, with the server's
state ``installing`` and its record's install phase ``installing`` (no power action or
console command is taken meanwhile). It ends with the phase ``installed`` (exit 0) or
``failed``, an ``InstallEvent``, and the state ``offline``. An installer still running
after :data:`INSTALL_TIMEOUT_SECONDS` is killed, and the install has failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import structlog

from node_agent.docker.hardening import ContainerPlacement, install_container_name
from shared.errors import ApiError, Conflict
from shared.node_api import InstallEvent
from shared.server_spec import InstallPhase

if TYPE_CHECKING:
    from node_agent.servers.server import ManagedServer

log = structlog.get_logger("agent.servers")
INSTALL_TIMEOUT_SECONDS: Final = 3600.0


def begin_install(server: ManagedServer, *, task_name: str) -> None:
    """State ``installing``, and the installer started in the background."""
    server.set_state("installing")
    server.spawn(run_installer(server), name=task_name)


async def run_installer(server: ManagedServer) -> None:
    """Run the blueprint's install script in its one-off container, then record the outcome."""
    spec = server.spec
    install = spec.install
    if install is None:
        return
    runtime = server.services.runtime
    name = install_container_name(spec.uuid)
    exit_code: int | None = None
    server.set_state("installing")
    try:
        network = await server.services.network()
        placement = ContainerPlacement(network.name, server.volume.path)
        async with server.lock:
            await runtime.remove(name)
            await runtime.create_install_container(spec, install, placement)
            await runtime.start(name)
        state = await runtime.wait_for_exit(name, INSTALL_TIMEOUT_SECONDS)
        if state is None:
            state = await runtime.kill(name)
        exit_code = state.exit_code
        if install.needs_root:
            await server.volume.hand_to_game_user()
    except ApiError as err:
        log.warning("install failed", server=str(spec.uuid), error=err.message)
    finally:
        try:
            await runtime.remove(name)
        except ApiError as err:
            log.warning("install container not removed", server=str(spec.uuid), error=err.message)
    phase: InstallPhase = "installed" if exit_code == 0 else "failed"
    await server.update_record(install=phase, install_exit_code=exit_code)
    log.info("install finished", server=str(spec.uuid), phase=phase, exit_code=exit_code)
    server.services.events.publish(
        InstallEvent(server=spec.uuid, success=phase == "installed", exit_code=exit_code)
    )
    server.set_state("offline")


async def reinstall(server: ManagedServer) -> None:
    """Run the spec's install step again on the stopped server (409 while it runs).

    The game container is rebuilt from the current spec first; without an install step
    that is all. Otherwise the installer runs in the background as at create, with state
    ``installing`` and an install event at the end.
    """
    install = server.spec.install
    if install is not None:
        await server.services.runtime.ensure_image(install.image)
    async with server.lock:
        if server.record.install == "installing":
            raise Conflict("the server is already installing")
        if server.stopping or server.state in {"starting", "running", "stopping"}:
            raise Conflict("stop the server before reinstalling it")
        container = await server.services.runtime.find(server.container)
        if container is not None and container.running:
            raise Conflict("stop the server before reinstalling it")
        install = server.spec.install
        await server.rebuild_container()
        if install is None:
            log.info("reinstall: no install step", server=str(server.spec.uuid))
            return
        await server.update_record(install="installing", install_exit_code=None)
        server.set_state("installing")
    server.spawn(run_installer(server), name=f"reinstall-{server.spec.uuid}")
