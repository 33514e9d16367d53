"""A server's install step: the blueprint's script in its one-off install container.

The installer runs in the background after create and after a reinstall, with the server's
state ``installing`` and its record's install phase ``installing`` (no power action or
console command is taken meanwhile). Its output is followed live: each line goes to the
console's viewers as ``install output``, and the last ones are kept (``install_output.py``).
An installer still running after its spec's ``timeout_seconds`` is killed. It ends with the
phase ``installed`` (exit 0 in time) or ``failed``, one ``InstallEvent`` (success, exit
code, duration, last lines and, on failure, the reason), a console line saying the same,
and the state ``offline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import structlog

from node_agent.docker.errors import ImageUnavailable
from node_agent.docker.hardening import ContainerPlacement, install_container_name
from node_agent.servers.install_output import InstallOutput, failure_reason, short_reason
from shared.errors import ApiError, Conflict
from shared.node_api import InstallEvent
from shared.server_spec import InstallOutcome, InstallPhase, InstallSpec

if TYPE_CHECKING:
    from node_agent.servers.server import ManagedServer

log = structlog.get_logger("agent.servers")
# After the installer exited, how long its last lines may take to arrive from dockerd.
DRAIN_SECONDS: Final = 5.0
# How long a reinstall waits for another action of the server (a stop, a start) to end.
LOCK_WAIT_SECONDS: Final = 5.0


def begin_install(server: ManagedServer, *, task_name: str) -> None:
    """State ``installing``, and the installer started in the background."""
    server.set_state("installing")
    server.spawn(run_installer(server), name=task_name)


@dataclass
class InstallRun:
    """One run of an installer, as it is reported when it ends."""

    output: InstallOutput = field(default_factory=InstallOutput)
    exit_code: int | None = None
    reason: str | None = "the installer did not run"
    started: float = field(default_factory=time.monotonic)

    def event(self, server: ManagedServer) -> InstallEvent:
        return InstallEvent(
            server=server.spec.uuid,
            success=self.reason is None,
            exit_code=self.exit_code,
            duration_seconds=round(time.monotonic() - self.started, 3),
            last_lines=self.output.last_lines(),
            reason=self.reason,
        )


async def run_installer(server: ManagedServer) -> None:
    """Run the blueprint's install script in its one-off container, then record the outcome."""
    install = server.spec.install
    if install is None:
        return
    name = install_container_name(server.spec.uuid)
    run = InstallRun()
    server.set_state("installing")
    server.console.install_started()
    try:
        await _run(server, install, name, run)
    except ImageUnavailable as err:
        run.reason = f"the install image could not be pulled: {err.message}"
    except ApiError as err:
        run.reason = f"the installer could not run: {err.message}"
    except OSError as err:
        # Handing root's files to the game user failed (the volume went away …).
        run.reason = f"the installed files could not be handed to the game: {err.strerror}"
    except Exception:
        # Whatever went wrong, the server must not stay "installing" for ever.
        log.exception("installer failed", server=str(server.spec.uuid))
        run.reason = "the installer could not run: an error in the node agent (see its log)"
    finally:
        try:
            await server.services.runtime.remove(name)
        except ApiError as err:
            log.warning(
                "install container not removed", server=str(server.spec.uuid), error=err.message
            )
    if server.deleted:
        # Started before a deletion that waited for it: nothing left to report on.
        log.info("installer ended: the server was deleted", server=str(server.spec.uuid))
        return
    if run.reason is not None:
        run.reason = short_reason(run.reason)
    await _report(server, run)


async def _run(server: ManagedServer, install: InstallSpec, name: str, run: InstallRun) -> None:
    runtime = server.services.runtime
    network = await server.services.network()
    placement = ContainerPlacement(network.name, server.volume.path)
    async with server.locked():
        await runtime.remove(name)
        await runtime.create_install_container(server.spec, install, placement)
        await runtime.start(name)
    run.started = time.monotonic()
    follower = asyncio.create_task(_follow(server, name, run.output), name=f"{name}-output")
    try:
        state = await runtime.wait_for_exit(name, install.timeout_seconds)
        timed_out = state is None
        if state is None:
            state = await runtime.kill(name)
        # The log stream ends by itself once the container stopped: let it bring the rest.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(follower), DRAIN_SECONDS)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    run.exit_code = state.exit_code
    run.reason = failure_reason(
        exit_code=state.exit_code,
        timed_out=timed_out,
        timeout_seconds=install.timeout_seconds,
        oom_killed=state.oom_killed,
    )
    if install.needs_root:
        await server.volume.hand_to_game_user()


async def _follow(server: ManagedServer, name: str, output: InstallOutput) -> None:
    """Every line the installer prints: kept, and shown to the console's viewers."""
    try:
        async for line in server.services.runtime.follow_output(name, since=None, tail=None):
            output.add(line.text)
            server.console.install_line(line.text)
    except ApiError as err:
        log.warning("install output stream broke", server=str(server.spec.uuid), error=err.message)


async def _report(server: ManagedServer, run: InstallRun) -> None:
    event = run.event(server)
    phase: InstallPhase = "installed" if event.success else "failed"
    outcome = InstallOutcome(
        success=event.success,
        exit_code=event.exit_code,
        duration_seconds=event.duration_seconds,
        last_lines=tuple(event.last_lines or ()),
        reason=event.reason,
    )
    await server.update_record(
        install=phase, install_exit_code=event.exit_code, last_install=outcome
    )
    log.info(
        "install finished",
        server=str(server.spec.uuid),
        phase=phase,
        exit_code=event.exit_code,
        seconds=event.duration_seconds,
        reason=event.reason,
        lines=run.output.count,
    )
    if event.success:
        server.console.install_notice(f"install finished in {event.duration_seconds:.1f} s")
    else:
        server.console.install_notice(f"install failed: {event.reason}")
    server.services.events.publish(event)
    server.set_state("offline")


async def reinstall(server: ManagedServer) -> None:
    """Run the spec's install step again on the stopped server (409 while it runs).

    The game container is rebuilt from the current spec first; without an install step
    that is all. Otherwise the installer runs in the background as at create, with state
    ``installing`` and an install event at the end.

    Refused at once (409) while a backup is being restored, and after ``LOCK_WAIT_SECONDS``
    while another action holds the server: it used to wait for the lock however long the
    restore took, answered nobody (the control plane had given up), and then ran the install
    script over the files just restored.
    """
    install = server.spec.install
    if install is not None:
        await server.services.runtime.ensure_image(install.image)
    _refuse_while_closed(server)
    try:
        await asyncio.wait_for(server.acquire(), LOCK_WAIT_SECONDS)
    except TimeoutError as err:
        raise Conflict("another action of this server is running; try again when it ends") from err
    try:
        _refuse_while_closed(server)
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
    finally:
        server.lock.release()
    server.spawn(run_installer(server), name=f"reinstall-{server.spec.uuid}")


def _refuse_while_closed(server: ManagedServer) -> None:
    reason = server.volume_gate.closed_for
    if reason is not None:
        raise Conflict(f"the server cannot be reinstalled while {reason}")
