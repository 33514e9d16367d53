"""The ``ext4`` backend: one loop-mounted ext4 image per server, as big as its disk limit.

The image ``<data_dir>/volume-images/<uuid>.img`` is a sparse file formatted once and mounted
at ``<data_dir>/volumes/<uuid>``; a write past its size fails with ENOSPC inside the game.
This kernel cannot grow a mounted ext4, so the limit cannot change online.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Final

import structlog

from node_agent.storage.commands import run_command
from node_agent.storage.errors import ResizeNotSupported, StorageError
from node_agent.storage.mounts import attach_loop, detach_loops, loop_devices_of, mount, mount_at
from node_agent.storage.mounts import unmount as unmount_point
from node_agent.storage.volume import MIB, DiskUsage, chown_tree

log = structlog.get_logger("agent.storage")
VOLUMES_DIR: Final = "volumes"
IMAGES_DIR: Final = "volume-images"
IMAGE_SUFFIX: Final = ".img"
MOUNT_OPTIONS: Final = "nosuid,nodev,noatime"


def _create_sparse_image(image: Path, size: int) -> None:
    image.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(descriptor, size)
    finally:
        os.close(descriptor)


def _prepare_root(path: Path, uid: int, gid: int) -> None:
    # The game's home shows only its own files; e2fsck makes lost+found again if it needs it.
    with contextlib.suppress(FileNotFoundError):
        (path / "lost+found").rmdir()
    os.chown(path, uid, gid)
    os.chmod(path, 0o700)


def _filesystem_usage(path: Path) -> DiskUsage:
    stats = os.statvfs(path)
    return DiskUsage(
        used_bytes=(stats.f_blocks - stats.f_bfree) * stats.f_frsize,
        total_bytes=stats.f_blocks * stats.f_frsize,
    )


def _remove_mount_point(path: Path) -> None:
    # Only ever reached once nothing is mounted there: what remains is the bare directory.
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)


class LoopExt4Volume:
    """A server's ext4 image, loop-mounted at ``<data_dir>/volumes/<uuid>``."""

    def __init__(self, data_dir: Path, server_id: uuid.UUID, uid: int, gid: int) -> None:
        self._path = data_dir / VOLUMES_DIR / str(server_id)
        self.image = data_dir / IMAGES_DIR / f"{server_id}{IMAGE_SUFFIX}"
        self._uid = uid
        self._gid = gid

    @property
    def path(self) -> Path:
        return self._path

    async def create(self, disk_mib: int) -> None:
        """Create a ``disk_mib`` image, format it, mount it, and give it to the game user."""
        if await asyncio.to_thread(os.path.lexists, self._path) or await asyncio.to_thread(
            os.path.lexists, self.image
        ):
            raise FileExistsError(self._path)
        await asyncio.to_thread(_create_sparse_image, self.image, disk_mib * MIB)
        try:
            await run_command(
                "mkfs.ext4",
                "-q",
                "-F",
                "-m",
                "0",
                "-E",
                f"root_owner={self._uid}:{self._gid},nodiscard",
                str(self.image),
            )
            await asyncio.to_thread(self._path.mkdir, parents=True, mode=0o750)
            await self.mount()
            await asyncio.to_thread(_prepare_root, self._path, self._uid, self._gid)
        except BaseException:
            await self.remove()
            raise

    async def mount(self) -> None:
        """Mount the image at the volume's path unless it is mounted there already."""
        if await mount_at(self._path) is not None:
            return
        was_attached = bool(await loop_devices_of(self.image))
        device = await attach_loop(self.image)
        try:
            await mount(device, self._path, fstype="ext4", options=MOUNT_OPTIONS)
        except BaseException:
            if not was_attached:
                with contextlib.suppress(StorageError):
                    await detach_loops(self.image)
            raise

    async def unmount(self) -> None:
        """Unmount the volume and detach its loop device (the image stays)."""
        await unmount_point(self._path)
        await detach_loops(self.image)

    async def hand_to_game_user(self) -> None:
        """Give every file to the game user."""
        await asyncio.to_thread(chown_tree, self._path, self._uid, self._gid)

    async def resize(self, disk_mib: int) -> None:
        """Always refused: a mounted ext4 image cannot grow on this backend."""
        raise ResizeNotSupported(
            f"the ext4 backend cannot grow or shrink a volume online (asked for {disk_mib} "
            "MiB); use the btrfs backend for online limits, or recreate the server"
        )

    async def usage(self) -> DiskUsage:
        """The mounted filesystem's used and total bytes (what ``df`` shows)."""
        if await mount_at(self._path) is None:
            raise StorageError(f"the volume {self._path} is not mounted")
        return await asyncio.to_thread(_filesystem_usage, self._path)

    async def remove(self) -> None:
        """Unmount, detach the loop device, delete the image and the mount point."""
        await self.unmount()
        await asyncio.to_thread(self.image.unlink, missing_ok=True)
        await asyncio.to_thread(_remove_mount_point, self._path)


def server_images(data_dir: Path) -> list[uuid.UUID]:
    """The servers that have an image in ``data_dir`` (to mount them after a restart)."""
    found = []
    for image in sorted((data_dir / IMAGES_DIR).glob(f"*{IMAGE_SUFFIX}")):
        with contextlib.suppress(ValueError):
            found.append(uuid.UUID(image.name.removesuffix(IMAGE_SUFFIX)))
    return found
