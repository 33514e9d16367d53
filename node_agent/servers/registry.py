"""The servers this node runs, by uuid: create, delete, look up, and keep in step with Docker.

:class:`ServerRegistry` is what the HTTP routes call. It loads the records the agent wrote
before it (re)started, restores each server's state from its container (starting the ones
that should run, e.g. after a host reboot), and follows dockerd's events (``watch.py``) so
that every start and exit of a game container reaches its :class:`ManagedServer`. It never
stops a container when the agent starts or stops (except :meth:`ServerRegistry.stop_all`,
which only the dev stack's agent calls at exit); containers carrying the agent's label that
it does not know are logged and left alone. Creating a server checks the images first and
undoes every step on failure, so a refused create leaves no container, volume or record
behind.

Disk limits: :meth:`ServerRegistry.resize_disk` changes a volume's limit and the record
together, and :meth:`ServerRegistry.over_disk_limit` is the polled (``directory``) backend's
hook: it stops a game found over its limit and reports ``disk_full`` to the control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable

import structlog

from node_agent.console.limits import ConsoleLimits
from node_agent.console.server_console import ServerConsole
from node_agent.docker.containers import ContainerRuntime
from node_agent.docker.hardening import (
    ContainerPlacement,
    game_container_name,
    install_container_name,
)
from node_agent.events import NodeEventBus
from node_agent.servers import install, power
from node_agent.servers.records import ServerRecord
from node_agent.servers.server import ManagedServer, ServerServices
from node_agent.servers.watch import ContainerWatch
from node_agent.storage.volume import DiskUsage, ServerVolume
from shared.errors import ApiError, Conflict, NotFound
from shared.server_spec import InstallOutcome, ServerSpec, ServerStatus

log = structlog.get_logger("agent.servers")
VolumeFactory = Callable[[uuid.UUID], ServerVolume]


class ServerRegistry:
    """Every server on this node, by uuid."""

    def __init__(
        self,
        *,
        services: ServerServices,
        volumes: VolumeFactory,
        console_limits: ConsoleLimits,
        on_throttle: Callable[[int], None] | None = None,
    ) -> None:
        """``on_throttle``: each console's throttle reports dropped lines to it."""
        self._on_throttle = on_throttle
        self._services = services
        self._volumes = volumes
        self._console_limits = console_limits
        self._servers: dict[uuid.UUID, ManagedServer] = {}
        self._creating: set[uuid.UUID] = set()
        # Creates in progress that a deletion reached: undone when they end.
        self._abandoned: set[uuid.UUID] = set()
        self._watch = ContainerWatch(services.runtime, self._servers)

    @property
    def runtime(self) -> ContainerRuntime:
        return self._services.runtime

    @property
    def events(self) -> NodeEventBus:
        return self._services.events

    # --- lifecycle -------------------------------------------------------------------------

    def _managed(self, record: ServerRecord) -> ManagedServer:
        server_id = record.spec.uuid
        console = ServerConsole(
            server_id,
            game_container_name(server_id),
            self.runtime,
            self._console_limits,
            self._on_throttle,
        )
        return ManagedServer(record, self._volumes(server_id), console, self._services)

    async def load(self) -> None:
        """Read the records the agent wrote before it (re)started."""
        for record in await self._services.records.load_all():
            if record.install == "installing":
                # The task that watched the installer died with the previous process.
                outcome = InstallOutcome(
                    success=False,
                    exit_code=None,
                    duration_seconds=None,
                    reason="the node agent restarted while the installer ran",
                )
                record = record.model_copy(update={"install": "failed", "last_install": outcome})
            self._servers[record.spec.uuid] = self._managed(record)
        log.info("servers loaded", count=len(self._servers))

    async def restore(self) -> None:
        """Take each server's state from Docker, then follow Docker's events from now on."""
        await self._remove_lost_installers()
        for server in list(self._servers.values()):
            try:
                await power.restore_power(server)
            except ApiError as err:
                log.warning("server not restored", server=str(server.spec.uuid), error=err.message)
        await self._watch.report_strangers()
        self._watch.start()

    async def _remove_lost_installers(self) -> None:
        """Remove the install containers the previous agent process left (none of this one
        runs yet): their installs are recorded failed (``load``), so their owners use the
        files again, restore backups or reinstall; left running, they went on writing into
        the volume (a fresh world over the one the owner had put back)."""
        try:
            containers = await self.runtime.list_managed()
        except ApiError as err:
            log.warning("managed containers not listed", error=err.message)
            return
        for container in containers:
            server_id = container.server_id
            if server_id not in self._servers or container.name != install_container_name(
                server_id
            ):
                continue
            try:
                await self.runtime.remove(container.name)
            except ApiError as err:
                log.warning("lost installer not removed", server=str(server_id), error=err.message)
            else:
                log.warning(
                    "installer of the previous agent process removed", server=str(server_id)
                )

    async def close(self) -> None:
        """Stop following Docker and cancel background work (containers keep running)."""
        await self._watch.close()
        await asyncio.gather(*(server.close() for server in self._servers.values()))

    async def stop_all(self) -> None:
        """Stop every game (as its spec says) and kill every installer, after :meth:`close`.

        For an agent that must leave nothing running when it exits (``stellar-cp dev``). The
        records keep their desired power state: the next start brings back the games that
        were running, as after a host reboot. Called after ``close``, so no exit is judged.
        """
        servers = list(self._servers.values())
        results = await asyncio.gather(
            *(self._stop_containers(s) for s in servers), return_exceptions=True
        )
        for server, result in zip(servers, results, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "server not stopped at exit", server=str(server.spec.uuid), error=str(result)
                )

    async def _stop_containers(self, server: ManagedServer) -> None:
        installer = install_container_name(server.spec.uuid)
        found = await self.runtime.find(installer)
        if found is not None and found.running:
            await self.runtime.kill(installer)
        found = await self.runtime.find(server.container)
        if found is not None and found.running:
            spec = server.spec
            await self.runtime.stop(
                server.container, spec.stop, grace_seconds=spec.stop_timeout_seconds
            )
            log.info("server stopped at exit", server=str(spec.uuid))

    # --- queries ---------------------------------------------------------------------------

    def get(self, server_id: uuid.UUID) -> ManagedServer:
        """The server, or :class:`NotFound`."""
        server = self._servers.get(server_id)
        if server is None:
            raise NotFound("no such server on this node")
        return server

    def volumes(self) -> list[tuple[uuid.UUID, ServerVolume]]:
        """Every server's id and volume."""
        return [(server_id, server.volume) for server_id, server in self._servers.items()]

    async def status(self, server_id: uuid.UUID) -> ServerStatus:
        return await self.get(server_id).status()

    # --- disk ------------------------------------------------------------------------------

    async def resize_disk(self, server_id: uuid.UUID, disk_mib: int) -> None:
        """Set a new disk limit on the volume and in the server's record (409 if refused)."""
        server = self.get(server_id)
        async with server.locked():
            await server.set_disk_limit(disk_mib)
        log.info("disk limit changed", server=str(server_id), disk_mib=disk_mib)

    async def over_disk_limit(self, server_id: uuid.UUID, usage: DiskUsage) -> None:
        """The polled backend found the server over its limit: stop the game, say disk_full.

        Called on every poll while the volume stays over; only a game that is running (or
        starting) is stopped and reported again, so a stopped server is not reported twice.
        """
        server = self._servers.get(server_id)
        if server is None or server.state not in {"running", "starting"}:
            return
        self.events.disk_full(server_id, used_bytes=usage.used_bytes, limit_bytes=usage.total_bytes)
        server.console.notice("server stopped: its disk is over the limit")
        with contextlib.suppress(NotFound, Conflict):
            await server.power("stop")

    # --- spec updates and reinstall ---------------------------------------------------------

    async def update_spec(self, spec: ServerSpec) -> ServerStatus:
        """Store a new spec for a server; its game container is rebuilt with it at once if
        the game is stopped, otherwise at its next start or restart. The volume is untouched.
        """
        server = self.get(spec.uuid)
        if spec.is_older_than(server.spec):
            # Held up on the way: the newer one stays (``Server.update_spec`` decides it
            # again under the lock); no image is pulled for it.
            return await server.status()
        # Images first, outside the lock: a missing image refuses the update.
        await self.runtime.ensure_image(spec.image)
        if spec.install is not None:
            await self.runtime.ensure_image(spec.install.image)
        async with server.locked():
            await server.update_spec(spec)
        log.info("server spec updated", server=str(spec.uuid), pending=server.record.spec_pending)
        return await server.status()

    async def reinstall(self, server_id: uuid.UUID) -> ServerStatus:
        """Run the install step again on a stopped server (409 otherwise), in the background."""
        server = self.get(server_id)
        await install.reinstall(server)
        log.info("server reinstall", server=str(server_id), install=server.record.install)
        return await server.status()

    # --- create and delete -----------------------------------------------------------------

    async def create(self, spec: ServerSpec) -> ServerStatus:
        """Make the volume and the (stopped) game container; start the installer if any."""
        if spec.uuid in self._servers or spec.uuid in self._creating:
            raise Conflict("a server with this uuid already exists on this node")
        self._creating.add(spec.uuid)
        try:
            server = await self._build(spec)
            if spec.uuid in self._abandoned:
                await self._undo_create(spec.uuid, server.volume)
                log.info("create undone: the server was deleted meanwhile", server=str(spec.uuid))
                raise NotFound("the server was deleted while it was being created")
        finally:
            self._creating.discard(spec.uuid)
            self._abandoned.discard(spec.uuid)
        self._servers[spec.uuid] = server
        if spec.install is not None:
            install.begin_install(server, task_name=f"install-{spec.uuid}")
        log.info("server created", server=str(spec.uuid), install=server.record.install)
        return await server.status()

    async def _build(self, spec: ServerSpec) -> ManagedServer:
        network = await self._services.network()
        # Images first: a missing image then costs nothing to undo.
        await self.runtime.ensure_image(spec.image)
        if spec.install is not None:
            await self.runtime.ensure_image(spec.install.image)
        volume = self._volumes(spec.uuid)
        record = ServerRecord(spec=spec, install="none" if spec.install is None else "installing")
        try:
            await volume.create(spec.disk_mib)
        except FileExistsError as err:
            raise Conflict("a volume for this server already exists on this node") from err
        try:
            placement = ContainerPlacement(network.name, volume.path)
            await self.runtime.create_game_container(spec, placement)
            await self._services.records.save(record)
        except BaseException:
            await self._undo_create(spec.uuid, volume)
            raise
        return self._managed(record)

    async def _undo_create(self, server_id: uuid.UUID, volume: ServerVolume) -> None:
        with contextlib.suppress(ApiError):
            await self.runtime.remove(game_container_name(server_id))
        await volume.remove()
        await self._services.records.remove(server_id)

    async def delete(self, server_id: uuid.UUID) -> None:
        """Kill and remove the server's containers, then its volume and record.

        A server still being created is deleted too: its create is undone when it ends
        (answering 404). Told "no such server" instead, the control plane dropped its record
        and the create then left the server on the node, out of every route's reach.
        """
        if server_id in self._creating:
            self._abandoned.add(server_id)
            log.info("server deleted while it was being created", server=str(server_id))
            return
        server = self.get(server_id)
        server.exit_expected = True
        await server.close()
        async with server.locked():
            await self.runtime.remove(install_container_name(server_id))
            await self.runtime.remove(game_container_name(server_id))
            await server.volume.remove()
            # A deletion or action that waited for the lock meanwhile: 404.
            await server.remove_record()
            del self._servers[server_id]
        log.info("server deleted", server=str(server_id))
