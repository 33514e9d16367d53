"""At agent start: no backup stays ``running``, and an interrupted restore is settled.

A backup that was running when the agent died is marked failed ("agent restarted during the
backup") and its partial file removed. A restore's journal says how far it got: the volume
is rolled back or forward (:func:`node_agent.backups.swap.recover`) and the outcome recorded.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Final

import structlog

from node_agent.backups import swap
from node_agent.backups.store import PART_SUFFIX, BackupStore, utc_now
from node_agent.files.confine import open_root
from node_agent.servers.registry import ServerRegistry
from shared.errors import NotFound

log = structlog.get_logger("agent.backups")
RESTARTED_DURING_BACKUP: Final = "agent restarted during the backup"
RESTARTED_DURING_RESTORE: Final = "agent restarted during the restore"


async def settle_restores(store: BackupStore, servers: ServerRegistry) -> None:
    """Finish or undo every interrupted restore: before any game starts (the agent's start-up
    calls it ahead of bringing back power states), since its files are half swapped."""
    for server_id in await asyncio.to_thread(store.servers):
        await _recover_restore(store, servers, server_id)


async def recover_node(store: BackupStore, servers: ServerRegistry) -> None:
    """Settle every server's backups and restores."""
    await settle_restores(store, servers)
    for server_id in await asyncio.to_thread(store.servers):
        await asyncio.to_thread(_recover_records, store, server_id)


async def _recover_restore(
    store: BackupStore, servers: ServerRegistry, server_id: uuid.UUID
) -> None:
    journal = await asyncio.to_thread(store.journal, server_id)
    if journal is None:
        return
    try:
        server = servers.get(server_id)
        backup_id = uuid.UUID(str(journal.get("backup_id")))
    except (NotFound, ValueError):
        await asyncio.to_thread(store.clear_journal, server_id)
        return

    def settle() -> bool:
        root_fd = open_root(server.volume.path)
        try:
            return swap.recover(root_fd, str(journal.get("phase")))
        finally:
            os.close(root_fd)

    restored = await asyncio.to_thread(settle)
    record = await asyncio.to_thread(store.load, server_id, backup_id)
    if record is not None and record.restore is not None:
        outcome = record.restore.model_copy(
            update={
                "status": "completed" if restored else "failed",
                "finished_at": utc_now(),
                "reason": None if restored else RESTARTED_DURING_RESTORE,
            }
        )
        await asyncio.to_thread(store.save, record.model_copy(update={"restore": outcome}))
    await asyncio.to_thread(store.clear_journal, server_id)
    log.warning("interrupted restore settled", server=str(server_id), restored=restored)


def _recover_records(store: BackupStore, server_id: uuid.UUID) -> None:
    for record in store.records(server_id):
        changes: dict[str, object] = {}
        if record.status == "running":
            store.part(server_id, record.backup_id).unlink(missing_ok=True)
            changes.update(status="failed", finished_at=utc_now(), reason=RESTARTED_DURING_BACKUP)
            log.warning("backup failed: agent restarted", backup=str(record.backup_id))
        if record.restore is not None and record.restore.status == "running":
            changes["restore"] = record.restore.model_copy(
                update={
                    "status": "failed",
                    "finished_at": utc_now(),
                    "reason": RESTARTED_DURING_RESTORE,
                }
            )
        if changes:
            store.save(record.model_copy(update=changes))
    for part in store.server_dir(server_id).glob(f"*{PART_SUFFIX}"):
        part.unlink(missing_ok=True)
