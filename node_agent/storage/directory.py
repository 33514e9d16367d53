"""The ``directory`` backend: plain directories whose usage is polled, not enforced.

For development and for agents without root. A game can write past its limit until the next
poll of :class:`DirectoryQuotaWatch` finds it and calls the over-limit hook (the server code
stops the server). Each volume's limit is kept next to it, outside the bind mount, in
``<data_dir>/volumes/<uuid>.disk_mib``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path
from typing import Final

import structlog

from node_agent.storage.errors import DiskLimitBelowUsage
from node_agent.storage.volume import (
    MIB,
    DiskUsage,
    OverLimitHook,
    chown_tree,
    measure_tree,
)

log = structlog.get_logger("agent.storage")
VOLUMES_DIR: Final = "volumes"
LIMIT_SUFFIX: Final = ".disk_mib"


def _create_directory(path: Path, uid: int, gid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.mkdir(mode=0o750)
    os.chown(path, uid, gid)


def _read_limit(limit_file: Path) -> int | None:
    try:
        return int(limit_file.read_text(encoding="ascii").strip()) * MIB
    except (FileNotFoundError, ValueError):
        return None


def _write_limit(limit_file: Path, disk_mib: int) -> None:
    temporary = limit_file.with_suffix(".tmp")
    temporary.write_text(f"{disk_mib}\n", encoding="ascii")
    os.replace(temporary, limit_file)


def _measure(path: Path, limit_file: Path) -> DiskUsage:
    return DiskUsage(used_bytes=measure_tree(path), total_bytes=_read_limit(limit_file) or 0)


class DirectoryVolume:
    """A plain directory under ``<data_dir>/volumes/<uuid>``; its limit is only polled."""

    def __init__(self, data_dir: Path, server_id: uuid.UUID, uid: int, gid: int) -> None:
        self._path = data_dir / VOLUMES_DIR / str(server_id)
        self._limit_file = self._path.with_name(f"{server_id}{LIMIT_SUFFIX}")
        self._uid = uid
        self._gid = gid

    @property
    def path(self) -> Path:
        return self._path

    async def create(self, disk_mib: int) -> None:
        """Make the directory and record its limit."""
        await asyncio.to_thread(_create_directory, self._path, self._uid, self._gid)
        await asyncio.to_thread(_write_limit, self._limit_file, disk_mib)

    async def hand_to_game_user(self) -> None:
        """Give every file to the game user."""
        await asyncio.to_thread(chown_tree, self._path, self._uid, self._gid)

    async def resize(self, disk_mib: int) -> None:
        """Record a new limit (refused below what the directory holds now)."""
        usage = await self.usage()
        if disk_mib * MIB < usage.used_bytes:
            raise DiskLimitBelowUsage(
                f"the server uses {usage.used_bytes // MIB} MiB; "
                f"a {disk_mib} MiB limit would be below that"
            )
        await asyncio.to_thread(_write_limit, self._limit_file, disk_mib)

    async def usage(self) -> DiskUsage:
        """Walk the directory now (in a thread) and add up what it holds."""
        return await asyncio.to_thread(_measure, self._path, self._limit_file)

    async def remove(self) -> None:
        """Delete the directory and its recorded limit."""
        await asyncio.to_thread(shutil.rmtree, self._path, ignore_errors=True)
        await asyncio.to_thread(self._limit_file.unlink, missing_ok=True)


async def log_over_limit(server_id: uuid.UUID, usage: DiskUsage) -> None:
    """The hook until the server code sets its own: it only logs."""
    log.warning(
        "server over its disk limit and nothing stops it",
        server=str(server_id),
        used_bytes=usage.used_bytes,
        limit_bytes=usage.total_bytes,
    )


def _over_limit(volumes_dir: Path) -> list[tuple[uuid.UUID, DiskUsage]]:
    found = []
    for limit_file in sorted(volumes_dir.glob(f"*{LIMIT_SUFFIX}")):
        try:
            server_id = uuid.UUID(limit_file.name.removesuffix(LIMIT_SUFFIX))
        except ValueError:
            continue
        usage = _measure(volumes_dir / str(server_id), limit_file)
        if usage.total_bytes and usage.used_bytes > usage.total_bytes:
            found.append((server_id, usage))
    return found


class DirectoryQuotaWatch:
    """Measures every directory volume each ``interval`` seconds; reports those over limit.

    The hook is called on every poll for as long as a server stays over its limit.
    """

    def __init__(self, data_dir: Path, interval: float) -> None:
        self._volumes_dir = data_dir / VOLUMES_DIR
        self._interval = interval
        self.on_over_limit: OverLimitHook = log_over_limit

    async def check_once(self) -> list[uuid.UUID]:
        """Measure now; call the hook for each server over its limit; return their ids."""
        over = await asyncio.to_thread(_over_limit, self._volumes_dir)
        for server_id, usage in over:
            log.warning(
                "server over its disk limit",
                server=str(server_id),
                used_bytes=usage.used_bytes,
                limit_bytes=usage.total_bytes,
            )
            try:
                await self.on_over_limit(server_id, usage)
            except Exception:  # one failing hook must not end the watch of every server
                log.exception("over-limit hook failed", server=str(server_id))
        return [server_id for server_id, _usage in over]

    async def run_forever(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check_once()
            except OSError as err:  # e.g. a volume deleted mid-walk; the next poll sees
                log.warning("disk usage poll failed", error=str(err))
