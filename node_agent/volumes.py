"""Per-server volumes: the only host directory a server's containers ever see.

:class:`ServerVolume` is the seam for disk backends. Today's backend,
:class:`DirectoryVolume`, is a plain directory under ``<data_dir>/volumes/<uuid>`` and does
**not** enforce ``disk_mib``; the btrfs-subvolume-with-qgroup backend (and the loop-mounted
ext4 fallback) of DESIGN.md "Containers (agent)" will implement the same protocol.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path
from typing import Final, Protocol

VOLUMES_DIR: Final = "volumes"


class ServerVolume(Protocol):
    """One server's files, mounted at ``/home/container`` in its containers."""

    @property
    def path(self) -> Path:
        """The host path Docker bind-mounts."""
        ...

    async def create(self, disk_mib: int) -> None:
        """Make the volume (empty, owned by the game user) with room for ``disk_mib``."""
        ...

    async def hand_to_game_user(self) -> None:
        """Give every file to the game user (after a root installer wrote some)."""
        ...

    async def remove(self) -> None:
        """Delete the volume and everything in it; nothing if it does not exist."""
        ...


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    # lchown, and os.walk does not descend into symlinked directories: a link planted by
    # the installer can never make this touch a file outside the volume.
    os.chown(root, uid, gid, follow_symlinks=False)
    for directory, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)


def _create_directory(path: Path, uid: int, gid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.mkdir(mode=0o750)
    os.chown(path, uid, gid)


class DirectoryVolume:
    """A plain directory: no disk limit is enforced (development and tests only)."""

    def __init__(self, data_dir: Path, server_id: uuid.UUID, uid: int, gid: int) -> None:
        self._path = data_dir / VOLUMES_DIR / str(server_id)
        self._uid = uid
        self._gid = gid

    @property
    def path(self) -> Path:
        return self._path

    async def create(self, disk_mib: int) -> None:
        del disk_mib  # a directory has no quota; the btrfs backend enforces it
        await asyncio.to_thread(_create_directory, self._path, self._uid, self._gid)

    async def hand_to_game_user(self) -> None:
        await asyncio.to_thread(_chown_tree, self._path, self._uid, self._gid)

    async def remove(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self._path, ignore_errors=True)
