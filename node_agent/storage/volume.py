"""The seam every disk backend implements: :class:`ServerVolume`, one server's files."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from node_agent.files.confine import DIRECTORY_FLAGS
from node_agent.files.tree import walk

MIB: Final = 1024 * 1024


@dataclass(frozen=True)
class DiskUsage:
    """How much of its disk limit a server uses, in bytes."""

    used_bytes: int
    total_bytes: int


OverLimitHook = Callable[[uuid.UUID, DiskUsage], Awaitable[None]]
"""Called with a server found over its limit by a backend that only polls (``directory``)."""


class ServerVolume(Protocol):
    """One server's files, mounted at ``/home/container`` in its containers."""

    @property
    def path(self) -> Path:
        """The host path Docker bind-mounts."""
        ...

    async def create(self, disk_mib: int) -> None:
        """Make the volume (empty, owned by the game user) limited to ``disk_mib``.

        Raises FileExistsError if the volume exists already.
        """
        ...

    async def hand_to_game_user(self) -> None:
        """Give every file to the game user (after a root installer wrote some)."""
        ...

    async def resize(self, disk_mib: int) -> None:
        """Change the limit to ``disk_mib``, while the game runs if the backend can.

        Raises DiskLimitBelowUsage (409) for a limit under current usage and
        ResizeNotSupported (409) when the backend cannot.
        """
        ...

    async def usage(self) -> DiskUsage:
        """Bytes used and the limit, as the kernel (or the last measurement) sees them."""
        ...

    async def remove(self) -> None:
        """Delete the volume and everything in it; nothing if it does not exist."""
        ...


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give ``root`` and everything below it to ``uid:gid``, never following a symlink.

    By descriptor (``files.tree.walk``): each entry is changed by its name in its directory's
    open descriptor, and a directory is entered only by ``O_NOFOLLOW`` from its parent's.
    The agent runs this as root after a root installer, while the file API and SFTP stay
    open: walked by path, a directory renamed away and replaced by one holding a symlink
    (two renames by the owner at the right moment) made it change the owner of files
    outside the volume — ``/etc/shadow`` in the test.
    """
    root_fd = os.open(root, DIRECTORY_FLAGS)
    try:
        os.fchown(root_fd, uid, gid)
        for relative, _info, parent_fd in walk(root_fd):
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                os.chown(relative[-1], uid, gid, dir_fd=parent_fd, follow_symlinks=False)
    finally:
        os.close(root_fd)


def measure_tree(root: Path) -> int:
    """Bytes allocated on disk under ``root`` (hard links counted once), like ``du -s``."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            try:
                info = os.lstat(os.path.join(directory, name))
            except FileNotFoundError:
                continue  # deleted while we walked
            key = (info.st_dev, info.st_ino)
            if key not in seen:
                seen.add(key)
                total += info.st_blocks * 512
    return total
