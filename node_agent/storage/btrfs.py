"""The ``btrfs`` backend: one pool, one subvolume per server, limited by its qgroup.

:class:`BtrfsPool` is the filesystem: a partition the host already mounts at the pool
directory, or a sparse image file the agent creates, loop-mounts, and mounts again after a
reboot. Quotas are on, so each subvolume has a level-0 qgroup; :class:`SubvolumeVolume`
sets its ``max referenced`` limit, which the kernel checks on every write: past it, the game
gets EDQUOT at once. The limit changes online, and always through the pool's top level so
that raising it works even when the subvolume is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

from node_agent.storage.commands import run_command
from node_agent.storage.errors import DiskLimitBelowUsage, StorageError
from node_agent.storage.mounts import attach_loop, detach_loops, loop_devices_of, mount, mount_at
from node_agent.storage.mounts import unmount as unmount_point
from node_agent.storage.volume import MIB, DiskUsage, chown_tree

log = structlog.get_logger("agent.storage")
POOL_MOUNT_OPTIONS: Final = "nosuid,nodev,noatime"
# Every btrfs subvolume's root directory has this inode number; a plain directory never does.
SUBVOLUME_ROOT_INODE: Final = 256
_QGROUP_ID: Final = re.compile(r"^\d+/\d+$")
_SUBVOLUME_LINE: Final = re.compile(r"^ID (\d+) .* path (.+)$")


@dataclass(frozen=True)
class Qgroup:
    """One row of ``btrfs qgroup show --raw -re``: bytes referenced and the limit on them."""

    qgroup_id: str
    referenced: int
    exclusive: int
    max_referenced: int | None


def parse_qgroups(text: str) -> dict[str, Qgroup]:
    """The qgroups in ``btrfs qgroup show --raw -re`` output, by id (``0/257``)."""
    found = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not _QGROUP_ID.match(fields[0]):
            continue
        limit = None if fields[3] == "none" else int(fields[3])
        found[fields[0]] = Qgroup(fields[0], int(fields[1]), int(fields[2]), limit)
    return found


def _create_sparse_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(descriptor, size)
    finally:
        os.close(descriptor)


class BtrfsPool:
    """The node's btrfs filesystem that holds every server's subvolume."""

    def __init__(self, mount_dir: Path, image: Path, size_mib: int) -> None:
        self.mount_dir = mount_dir
        self.image = image
        self.size_mib = size_mib

    async def open(self) -> None:
        """Mount the pool unless it is mounted already (creating the image the first time)."""
        current = await mount_at(self.mount_dir)
        if current is not None:
            if current.fstype != "btrfs":
                raise StorageError(
                    f"{self.mount_dir} is a {current.fstype} mount, not a btrfs pool"
                )
            log.info(
                "storage pool already mounted", pool=str(self.mount_dir), source=current.source
            )
        else:
            await self._mount_image()
        await run_command("btrfs", "quota", "enable", str(self.mount_dir))
        # Qgroups of subvolumes deleted while the agent was away (or not yet cleaned).
        await run_command("btrfs", "qgroup", "clear-stale", str(self.mount_dir), check=False)

    async def _mount_image(self) -> None:
        await asyncio.to_thread(self.mount_dir.mkdir, parents=True, exist_ok=True, mode=0o700)
        if not await asyncio.to_thread(self.image.exists):
            await self._create_image()
        was_attached = bool(await loop_devices_of(self.image))
        device = await attach_loop(self.image)
        try:
            await mount(device, self.mount_dir, fstype="btrfs", options=POOL_MOUNT_OPTIONS)
        except BaseException:
            if not was_attached:
                with contextlib.suppress(StorageError):
                    await detach_loops(self.image)
            raise
        # The pool's root: only root on the host may look inside (Docker runs as root).
        await asyncio.to_thread(os.chmod, self.mount_dir, 0o700)
        log.info("storage pool mounted", pool=str(self.mount_dir), image=str(self.image))

    async def _create_image(self) -> None:
        await asyncio.to_thread(_create_sparse_file, self.image, self.size_mib * MIB)
        try:
            await run_command("mkfs.btrfs", "-q", "-L", "stellar-pool", str(self.image))
        except BaseException:
            await asyncio.to_thread(self.image.unlink, missing_ok=True)
            raise
        log.info("storage pool image created", image=str(self.image), size_mib=self.size_mib)

    async def mounted_from_image(self) -> bool:
        """Whether the pool mounted now is the agent's own image (not a host partition)."""
        current = await mount_at(self.mount_dir)
        return current is not None and current.source in await loop_devices_of(self.image)

    async def close(self, *, unmount: bool) -> None:
        """Unmount the pool and detach its loop device, if ``unmount`` and it is the image."""
        if unmount and await self.mounted_from_image():
            await unmount_point(self.mount_dir)
            await detach_loops(self.image)
            log.info("storage pool unmounted", pool=str(self.mount_dir))

    async def qgroups(self) -> dict[str, Qgroup]:
        """Every qgroup with up-to-date figures (the pool is synced first)."""
        result = await run_command(
            "btrfs", "qgroup", "show", "--raw", "-re", "--sync", str(self.mount_dir)
        )
        return parse_qgroups(result.stdout)

    async def limit(self, qgroup_id: str, disk_mib: int) -> None:
        """Set the qgroup's limit on referenced bytes."""
        await run_command(
            "btrfs", "qgroup", "limit", f"{disk_mib}M", qgroup_id, str(self.mount_dir)
        )

    async def destroy_qgroup(self, qgroup_id: str) -> None:
        """Destroy a deleted subvolume's qgroup (newer kernels do it themselves)."""
        result = await run_command(
            "btrfs", "qgroup", "destroy", qgroup_id, str(self.mount_dir), check=False
        )
        if result.returncode != 0 and "No such file" not in result.complaint:
            # Left for `clear-stale` at the next start; it holds no data.
            log.warning("qgroup not destroyed", qgroup=qgroup_id, error=result.complaint)


def _prepare_root(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    os.chmod(path, 0o700)


def _is_subvolume(path: Path) -> bool | None:
    try:
        return os.lstat(path).st_ino == SUBVOLUME_ROOT_INODE
    except FileNotFoundError:
        return None


class SubvolumeVolume:
    """A server's subvolume ``<pool>/<uuid>`` with a qgroup limit of ``disk_mib``."""

    def __init__(self, pool: BtrfsPool, server_id: uuid.UUID, uid: int, gid: int) -> None:
        self._pool = pool
        self._path = pool.mount_dir / str(server_id)
        self._uid = uid
        self._gid = gid

    @property
    def path(self) -> Path:
        return self._path

    async def create(self, disk_mib: int) -> None:
        """Create the subvolume, limit its qgroup, and give it to the game user."""
        if await asyncio.to_thread(os.path.lexists, self._path):
            raise FileExistsError(self._path)
        await run_command("btrfs", "subvolume", "create", str(self._path))
        try:
            await self._pool.limit(await self.qgroup_id(), disk_mib)
            await asyncio.to_thread(_prepare_root, self._path, self._uid, self._gid)
        except BaseException:
            await self.remove()
            raise

    async def qgroup_id(self) -> str:
        """The subvolume's own (level-0) qgroup, ``0/<subvolume id>``."""
        result = await run_command("btrfs", "inspect-internal", "rootid", str(self._path))
        return f"0/{result.stdout.strip()}"

    async def hand_to_game_user(self) -> None:
        """Give every file to the game user."""
        await asyncio.to_thread(chown_tree, self._path, self._uid, self._gid)

    async def resize(self, disk_mib: int) -> None:
        """Change the limit online; refused below what the subvolume holds now."""
        usage = await self.usage()
        if disk_mib * MIB < usage.used_bytes:
            raise DiskLimitBelowUsage(
                f"the server uses {-(-usage.used_bytes // MIB)} MiB; "
                f"a {disk_mib} MiB limit would be below that"
            )
        await self._pool.limit(await self.qgroup_id(), disk_mib)

    async def usage(self) -> DiskUsage:
        """Referenced bytes and the limit of the subvolume's qgroup."""
        qgroup_id = await self.qgroup_id()
        qgroup = (await self._pool.qgroups()).get(qgroup_id)
        if qgroup is None:
            raise StorageError(f"no qgroup {qgroup_id} for {self._path}: are quotas enabled?")
        return DiskUsage(qgroup.referenced, qgroup.max_referenced or 0)

    async def remove(self) -> None:
        """Delete the subvolume (and any the game nested in it) and its qgroup."""
        kind = await asyncio.to_thread(_is_subvolume, self._path)
        if kind is None:
            return
        if not kind:  # a plain directory left behind by something else
            await asyncio.to_thread(shutil.rmtree, self._path)
            return
        qgroup_id = await self.qgroup_id()
        await _delete_subvolume_tree(self._pool.mount_dir, self._path)
        await self._pool.destroy_qgroup(qgroup_id)


async def _delete_subvolume_tree(pool_dir: Path, path: Path) -> None:
    # `subvolume delete` refuses a subvolume that still holds others: children first.
    listing = await run_command("btrfs", "subvolume", "list", "-o", str(path))
    for line in listing.stdout.splitlines():
        match = _SUBVOLUME_LINE.match(line.strip())
        if match:
            await _delete_subvolume_tree(pool_dir, pool_dir / match.group(2))
    await run_command("btrfs", "subvolume", "delete", "--commit-after", str(path))
