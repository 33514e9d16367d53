"""Choose, open and close the node's disk backend: :class:`NodeStorage`.

``open_storage`` turns the settings into a ready backend before the agent listens: it
mounts the btrfs pool (or the ext4 images) again after a restart, and falls back from
``auto`` to ``directory`` only with a loud warning, never in production.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, Literal

import structlog

from node_agent.settings import AgentSettings, ConfigError
from node_agent.storage.btrfs import BtrfsPool, SubvolumeVolume
from node_agent.storage.directory import DirectoryQuotaWatch, DirectoryVolume, log_over_limit
from node_agent.storage.errors import StorageError
from node_agent.storage.ext4 import LoopExt4Volume, server_images
from node_agent.storage.mounts import mount_at
from node_agent.storage.volume import OverLimitHook, ServerVolume

log = structlog.get_logger("agent.storage")
BackendName = Literal["btrfs", "ext4", "directory"]
FILESYSTEMS: Final = Path("/proc/filesystems")
LOOP_TOOLS: Final = ("losetup", "mount", "umount")


class NodeStorage:
    """The backend in use: it makes each server's volume and tells whether limits hold."""

    def __init__(
        self,
        backend: BackendName,
        volumes: Callable[[uuid.UUID], ServerVolume],
        *,
        close: Callable[[bool], Awaitable[None]] | None = None,
        watch: DirectoryQuotaWatch | None = None,
    ) -> None:
        self.backend: BackendName = backend
        self._volumes = volumes
        self._close = close
        self.watch = watch

    @property
    def enforced(self) -> bool:
        """Whether the kernel stops a write past the limit (false: usage is only polled)."""
        return self.backend != "directory"

    def volume(self, server_id: uuid.UUID) -> ServerVolume:
        """The server's volume (it need not exist yet)."""
        return self._volumes(server_id)

    def set_over_limit_hook(self, hook: OverLimitHook | None) -> None:
        """What to call when a polled volume is over its limit (None: only log it).

        Nothing happens on an enforced backend: the kernel refuses the write itself.
        """
        if self.watch is not None:
            self.watch.on_over_limit = hook or log_over_limit

    async def close(self, *, unmount: bool) -> None:
        """Release the backend; with ``unmount``, also what the agent mounted itself."""
        if self._close is not None:
            await self._close(unmount)


def _missing_tools(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if shutil.which(name) is None]


def _kernel_has(filesystem: str) -> bool:
    try:
        listed = FILESYSTEMS.read_text(encoding="ascii").split()
    except OSError:
        return False
    return filesystem in listed


async def _privilege_problem(filesystem: str, tools: tuple[str, ...]) -> str | None:
    """Why this agent cannot mount ``filesystem`` images, or None if it can."""
    if os.geteuid() != 0:
        return "the agent does not run as root, so it cannot mount filesystems"
    missing = await asyncio.to_thread(_missing_tools, tools)
    if missing:
        return f"missing tools: {', '.join(missing)}"
    if not await asyncio.to_thread(_kernel_has, filesystem):
        return f"the kernel does not support {filesystem} (not in /proc/filesystems)"
    return None


async def _open_btrfs(settings: AgentSettings, uid: int, gid: int) -> NodeStorage:
    pool = BtrfsPool(settings.pool_dir, settings.pool_image, settings.storage_pool_size_mib)
    mounted = await mount_at(settings.pool_dir)
    if mounted is None or mounted.fstype != "btrfs":
        problem = await _privilege_problem("btrfs", ("btrfs", "mkfs.btrfs", *LOOP_TOOLS))
        if problem is not None:
            raise StorageError(problem)
    elif os.geteuid() != 0:
        raise StorageError("the agent does not run as root, so it cannot manage subvolumes")
    await pool.open()

    async def close(unmount: bool) -> None:
        await pool.close(unmount=unmount)

    return NodeStorage(
        "btrfs", lambda server_id: SubvolumeVolume(pool, server_id, uid, gid), close=close
    )


async def _open_ext4(settings: AgentSettings, uid: int, gid: int) -> NodeStorage:
    problem = await _privilege_problem("ext4", ("mkfs.ext4", *LOOP_TOOLS))
    if problem is not None:
        raise StorageError(problem)
    data_dir = settings.data_dir

    def volume(server_id: uuid.UUID) -> LoopExt4Volume:
        return LoopExt4Volume(data_dir, server_id, uid, gid)

    existing = await asyncio.to_thread(server_images, data_dir)
    for server_id in existing:
        await volume(server_id).mount()
    log.info("ext4 volumes mounted", count=len(existing))

    async def close(unmount: bool) -> None:
        if unmount:
            for server_id in await asyncio.to_thread(server_images, data_dir):
                await volume(server_id).unmount()

    return NodeStorage("ext4", volume, close=close)


def _open_directory(settings: AgentSettings, uid: int, gid: int, reason: str) -> NodeStorage:
    if settings.environment == "production":
        raise ConfigError(
            [
                f"storage: disk limits cannot be enforced on this node ({reason}); production "
                'agents need storage_backend "btrfs" or "ext4" working (run as root with '
                "btrfs-progs, or mount a btrfs pool at storage_pool_dir)"
            ]
        )
    log.warning(
        "DISK LIMITS ARE NOT ENFORCED: storage_backend is directory; a game can fill the "
        f"disk until the next poll (every {settings.storage_poll_seconds:g} s) notices",
        reason=reason,
    )
    data_dir = settings.data_dir
    return NodeStorage(
        "directory",
        lambda server_id: DirectoryVolume(data_dir, server_id, uid, gid),
        watch=DirectoryQuotaWatch(data_dir, settings.storage_poll_seconds),
    )


async def open_storage(settings: AgentSettings, uid: int, gid: int) -> NodeStorage:
    """The configured backend, ready; ConfigError if it cannot be used."""
    choice = settings.storage_backend
    if choice == "directory":
        return _open_directory(settings, uid, gid, "storage_backend = directory")
    opener = _open_ext4 if choice == "ext4" else _open_btrfs
    try:
        storage = await opener(settings, uid, gid)
    except StorageError as err:
        if choice != "auto":
            raise ConfigError([f"storage_backend {choice}: {err.message}"]) from err
        return _open_directory(settings, uid, gid, f"btrfs unusable: {err.message}")
    log.info("storage ready", backend=storage.backend, enforced=storage.enforced)
    return storage
