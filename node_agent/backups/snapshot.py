"""A read-only btrfs snapshot of a server's subvolume: a consistent copy of a running game.

The snapshot lives beside the subvolume in the pool's top level, as ``.stellar-backup-<id>``
(outside every container's mount). Taking it is instant and costs no space until the game
writes; it is deleted, with its qgroup, when the backup ends, or at the next agent start if
the agent was killed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import structlog

from node_agent.storage.commands import run_command
from node_agent.storage.errors import StorageError

log = structlog.get_logger("agent.backups")
SNAPSHOT_PREFIX: Final = ".stellar-backup-"


async def delete_snapshot(path: Path) -> None:
    """Delete a snapshot and its qgroup (nothing if it does not exist)."""
    if not await asyncio.to_thread(os.path.lexists, path):
        return
    rootid = await run_command("btrfs", "inspect-internal", "rootid", str(path), check=False)
    await run_command("btrfs", "subvolume", "delete", "--commit-after", str(path))
    if rootid.returncode == 0:
        await run_command(
            "btrfs",
            "qgroup",
            "destroy",
            f"0/{rootid.stdout.strip()}",
            str(path.parent),
            check=False,
        )


@contextlib.asynccontextmanager
async def read_only_snapshot(volume: Path, backup_id: uuid.UUID) -> AsyncIterator[Path]:
    """Snapshot the subvolume at ``volume`` read-only; yield its path; delete it after."""
    target = volume.parent / f"{SNAPSHOT_PREFIX}{backup_id}"
    await delete_snapshot(target)
    await run_command("btrfs", "subvolume", "snapshot", "-r", str(volume), str(target))
    try:
        yield target
    finally:
        try:
            await asyncio.shield(delete_snapshot(target))
        except StorageError as err:
            log.warning("backup snapshot not deleted", snapshot=str(target), error=err.message)


async def delete_stale_snapshots(pool: Path) -> None:
    """Delete the snapshots of backups that were running when the agent was killed."""
    try:
        names = await asyncio.to_thread(os.listdir, pool)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(SNAPSHOT_PREFIX):
            try:
                await delete_snapshot(pool / name)
                log.info("stale backup snapshot deleted", snapshot=name)
            except StorageError as err:
                log.warning("stale backup snapshot not deleted", snapshot=name, error=err.message)
