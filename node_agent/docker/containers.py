"""Create, start, stop, kill, inspect and remove the agent's containers.

:class:`ContainerRuntime` is the only code that sends container requests to dockerd. It takes
specs and returns :class:`ContainerState`; the create bodies come from ``hardening`` and are
never built anywhere else. Docker failures become the errors of ``node_agent.docker.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiodocker
import aiohttp
import structlog

from node_agent.docker.errors import (
    ContainerConflict,
    ContainerMissing,
    DockerUnavailable,
    ImageUnavailable,
)
from node_agent.docker.events import ContainerEvent, container_events
from node_agent.docker.hardening import (
    CONFIG_LABEL,
    MANAGED_LABEL,
    SERVER_LABEL,
    ContainerPlacement,
    game_container_config,
    game_container_name,
    install_container_config,
    install_container_name,
)
from node_agent.docker.output import OutputLine, follow_output
from node_agent.docker.registries import DEFAULT_REGISTRIES, registry_of
from node_agent.docker.seccomp import SeccompProfile
from node_agent.docker.stats import ContainerSample, sample_container
from shared.server_spec import InstallSpec, ServerSpec, StopCommand, StopSignal

log = structlog.get_logger("agent.docker")
# After the grace period ends in SIGKILL, how long dockerd gets to report the exit.
KILL_WAIT_SECONDS: Final = 10.0
# Pull progress is reported at most this often (and once more when the pull ends).
PULL_PROGRESS_INTERVAL_SECONDS: Final = 0.5


@dataclass(frozen=True)
class ImagePull:
    """Where a pull of ``image`` stands: bytes downloaded over all layers so far."""

    image: str
    status: Literal["pulling", "done", "failed"]
    current_bytes: int | None = None
    total_bytes: int | None = None
    detail: str | None = None


PullListener = Callable[[ImagePull], None]


class _PullProgress:
    """Sums dockerd's per-layer progress messages into one figure for the whole image."""

    def __init__(self, image: str, listener: PullListener | None) -> None:
        self._image = image
        self._listener = listener
        self._layers: dict[str, tuple[int, int]] = {}
        self._reported_at = 0.0

    def feed(self, message: dict[str, Any]) -> None:
        detail = message.get("progressDetail") or {}
        layer = str(message.get("id") or "")
        if layer and message.get("status") == "Downloading" and detail.get("total"):
            self._layers[layer] = (int(detail.get("current") or 0), int(detail["total"]))
        now = time.monotonic()
        if now - self._reported_at >= PULL_PROGRESS_INTERVAL_SECONDS:
            self._reported_at = now
            self.report("pulling")

    def report(
        self, status: Literal["pulling", "done", "failed"], detail: str | None = None
    ) -> None:
        if self._listener is None:
            return
        current = sum(done for done, _ in self._layers.values())
        total = sum(size for _, size in self._layers.values())
        self._listener(ImagePull(self._image, status, current or None, total or None, detail))


@dataclass(frozen=True)
class ContainerState:
    """What the agent needs to know about one container, read from ``docker inspect``."""

    id: str
    name: str
    status: str
    running: bool
    exit_code: int | None
    oom_killed: bool
    pid: int | None
    started_at: str | None
    finished_at: str | None
    server_id: uuid.UUID | None
    # CONFIG_LABEL: what the container was created from (None: not by this agent's code).
    config_fingerprint: str | None = None

    @classmethod
    def from_inspect(cls, info: dict[str, Any]) -> ContainerState:
        state = info.get("State") or {}
        labels = (info.get("Config") or {}).get("Labels") or {}
        server = labels.get(SERVER_LABEL)
        status = str(state.get("Status", "unknown"))
        pid = int(state.get("Pid") or 0)
        started = state.get("StartedAt")
        finished = state.get("FinishedAt")
        return cls(
            id=str(info["Id"]),
            name=str(info.get("Name", "")).lstrip("/"),
            status=status,
            running=bool(state.get("Running")),
            exit_code=None if status in {"created", "running"} else int(state.get("ExitCode", 0)),
            oom_killed=bool(state.get("OOMKilled")),
            pid=pid or None,
            # Docker writes the zero time for "never"; say so with None.
            started_at=None if not started or started.startswith("0001-") else str(started),
            finished_at=None if not finished or finished.startswith("0001-") else str(finished),
            server_id=uuid.UUID(server) if server else None,
            config_fingerprint=labels.get(CONFIG_LABEL),
        )


@contextlib.contextmanager
def _docker_errors(what: str) -> Iterator[None]:
    """Turn dockerd's answers into the agent's errors (404, 409, else 503)."""
    try:
        yield
    except aiodocker.DockerError as err:
        if err.status == 404:
            raise ContainerMissing(f"{what}: no such container") from err
        if err.status == 409:
            raise ContainerConflict(f"{what}: {err.message}") from err
        raise DockerUnavailable(f"{what}: {err.message}") from err
    except (aiohttp.ClientError, OSError) as err:
        raise DockerUnavailable(f"{what}: Docker engine not reachable") from err


class ContainerRuntime:
    """The agent's containers on one dockerd, by name."""

    def __init__(
        self,
        docker: aiodocker.Docker,
        on_pull: PullListener | None = None,
        seccomp: SeccompProfile | None = None,
        registries: tuple[str, ...] = DEFAULT_REGISTRIES,
    ) -> None:
        self._docker = docker
        self._on_pull = on_pull
        # The only registries dockerd is asked to pull from (node_agent/docker/registries.py).
        self._registries = frozenset(registries)
        # None: Docker's default profile (the agent found no base profile to extend).
        self._seccomp = seccomp

    async def ensure_image(self, image: str) -> None:
        """Make sure ``image`` is on this node, pulling it if needed: only from a registry
        this node pulls from (400 otherwise, before dockerd contacts anything)."""
        try:
            await self._docker.images.inspect(image)
            return
        except aiodocker.DockerError as err:
            if err.status != 404:
                raise DockerUnavailable(f"cannot inspect image {image}: {err.message}") from err
        except (aiohttp.ClientError, OSError) as err:
            raise DockerUnavailable("Docker engine not reachable") from err
        registry = registry_of(image)
        if registry not in self._registries:
            raise ImageUnavailable(
                f"image {image} is not on this node, and its registry {registry} is not one "
                "this node pulls from (the agent's image_registries setting)"
            )
        log.info("pulling image", image=image)
        progress = _PullProgress(image, self._on_pull)
        progress.report("pulling")
        try:
            async for message in self._docker.images.pull(image, stream=True):
                if message.get("error"):
                    raise aiodocker.DockerError(500, str(message["error"]))
                progress.feed(message)
        except aiodocker.DockerError as err:
            progress.report("failed", err.message)
            raise ImageUnavailable(
                f"image {image} is not on this node and could not be pulled: {err.message}"
            ) from err
        except (aiohttp.ClientError, OSError) as err:
            progress.report("failed", "Docker engine not reachable")
            raise DockerUnavailable("Docker engine not reachable while pulling") from err
        progress.report("done")

    async def image_volumes(self, image: str, *, pull: bool = True) -> tuple[str, ...]:
        """The paths ``image`` declares as ``VOLUME`` (pulled first if needed; without
        ``pull``, none when the image is not on this node)."""
        if pull:
            await self.ensure_image(image)
        try:
            info: dict[str, Any] = await self._docker.images.inspect(image)
        except aiodocker.DockerError as err:
            if err.status == 404 and not pull:
                return ()
            raise DockerUnavailable(f"cannot inspect image {image}: {err.message}") from err
        except (aiohttp.ClientError, OSError) as err:
            raise DockerUnavailable("Docker engine not reachable") from err
        return tuple(sorted((info.get("Config") or {}).get("Volumes") or {}))

    async def create_game_container(
        self, spec: ServerSpec, placement: ContainerPlacement
    ) -> ContainerState:
        """Create (not start) the game container of ``spec``; the image is pulled if needed."""
        volumes = await self.image_volumes(spec.image)
        name = game_container_name(spec.uuid)
        config = game_container_config(spec, placement, self._seccomp, volumes)
        return await self._create(name, config)

    async def game_fingerprint(self, spec: ServerSpec, placement: ContainerPlacement) -> str:
        """What a game container created now for ``spec`` would carry in CONFIG_LABEL (an
        image gone from the node declares nothing here: creating it again pulls it)."""
        volumes = await self.image_volumes(spec.image, pull=False)
        config = game_container_config(spec, placement, self._seccomp, volumes)
        fingerprint: str = config["Labels"][CONFIG_LABEL]
        return fingerprint

    async def create_install_container(
        self, spec: ServerSpec, install: InstallSpec, placement: ContainerPlacement
    ) -> ContainerState:
        """Create (not start) the install container of ``spec``."""
        volumes = await self.image_volumes(install.image)
        name = install_container_name(spec.uuid)
        config = install_container_config(spec, install, placement, self._seccomp, volumes)
        return await self._create(name, config)

    async def _create(self, name: str, config: dict[str, Any]) -> ContainerState:
        with _docker_errors(f"create {name}"):
            try:
                await self._docker.containers.create(config, name=name)
            except aiodocker.DockerError as err:
                # A 404 here is a missing image or network, not a missing container.
                if err.status == 404:
                    raise DockerUnavailable(f"create {name}: {err.message}") from err
                raise
        return await self.inspect(name)

    async def inspect(self, name: str) -> ContainerState:
        """The container's current state; :class:`ContainerMissing` if there is none."""
        with _docker_errors(f"inspect {name}"):
            info: dict[str, Any] = await self._docker.containers.container(name).show()
        return ContainerState.from_inspect(info)

    async def find(self, name: str) -> ContainerState | None:
        """Like :meth:`inspect`, but None when the container does not exist."""
        try:
            return await self.inspect(name)
        except ContainerMissing:
            return None

    async def list_managed(self) -> list[ContainerState]:
        """Every container carrying the agent's label, and nothing else on the host."""
        with _docker_errors("list containers"):
            found = await self._docker.containers.list(
                all=True, filters={"label": [f"{MANAGED_LABEL}=true"]}
            )
        states = []
        for container in found:
            state = await self.find(container.id)
            if state is not None:
                states.append(state)
        return states

    async def start(self, name: str) -> ContainerState:
        """Start the container (a running one is left as it is)."""
        with _docker_errors(f"start {name}"):
            await self._docker.containers.container(name).start()
        return await self.inspect(name)

    def follow_output(
        self, name: str, *, since: str | None, tail: int | None
    ) -> AsyncIterator[OutputLine]:
        """The container's output lines (see :func:`node_agent.docker.output.follow_output`)."""
        return follow_output(self._docker, name, since=since, tail=tail)

    def events(self, *, since: float | None) -> AsyncIterator[ContainerEvent]:
        """Start and exit of the agent's containers, as dockerd reports them."""
        return container_events(self._docker, since=since)

    async def sample(self, name: str) -> ContainerSample:
        """The container's resource counters now."""
        return await sample_container(self._docker, name)

    async def send_console_line(self, name: str, line: str) -> None:
        """Type ``line`` on the container's stdin, as a console command."""
        if "\n" in line or "\r" in line:
            raise ValueError("a console line must not contain a line break")
        stream = self._docker.containers.container(name).attach(stdin=True)
        with _docker_errors(f"attach {name}"):
            async with stream:
                await stream.write_in(line.encode("utf-8") + b"\n")

    async def signal(self, name: str, signal: str) -> None:
        """Send ``signal`` to the container's main process; nothing if it is not running."""
        try:
            with _docker_errors(f"signal {name}"):
                await self._docker.containers.container(name).kill(signal=signal)
        except ContainerConflict:
            return  # not running: nothing to signal

    async def wait_for_exit(self, name: str, within_seconds: float) -> ContainerState | None:
        """The state once the container is not running; None if it still runs after the wait."""
        try:
            async with asyncio.timeout(within_seconds):
                with _docker_errors(f"wait {name}"):
                    await self._docker.containers.container(name).wait(condition="not-running")
        except TimeoutError:
            return None
        return await self.inspect(name)

    async def stop(
        self, name: str, stop: StopCommand | StopSignal, grace_seconds: float
    ) -> ContainerState:
        """Ask the game to stop (console command or signal); SIGKILL it after the grace."""
        state = await self.inspect(name)
        if not state.running:
            return state
        if isinstance(stop, StopCommand):
            await self.send_console_line(name, stop.value)
        else:
            await self.signal(name, stop.value)
        stopped = await self.wait_for_exit(name, grace_seconds)
        if stopped is not None:
            return stopped
        log.warning("stop timed out, killing", container=name, grace_seconds=grace_seconds)
        return await self.kill(name)

    async def kill(self, name: str) -> ContainerState:
        """SIGKILL the container and return its state once it has exited."""
        await self.signal(name, "SIGKILL")
        stopped = await self.wait_for_exit(name, KILL_WAIT_SECONDS)
        if stopped is None:
            raise DockerUnavailable(f"{name} did not exit after SIGKILL")
        return stopped

    async def remove(self, name: str) -> bool:
        """Force-remove the container; False if there was none."""
        try:
            with _docker_errors(f"remove {name}"):
                await self._docker.containers.container(name).delete(force=True, v=True)
        except ContainerMissing:
            return False
        except ContainerConflict as err:
            # dockerd is removing it already (a racing delete): done once it is gone.
            if "already in progress" not in err.message:
                raise
            await self._wait_until_gone(name)
        return True

    async def _wait_until_gone(self, name: str, within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while True:
                try:
                    with _docker_errors(f"inspect {name}"):
                        await self._docker.containers.container(name).show()
                except ContainerMissing:
                    return
                await asyncio.sleep(0.1)
