"""What the backup routes call: create, restore and delete backups of this node's servers.

A backup or a restore runs in the background (the route answers 202 with the record) and
reports through its record and ``backup`` node events. One operation per server at a time.
A restore holds the server's lock, so no power action starts the game under it. At agent
start, :meth:`BackupService.recover` fails every backup still marked ``running`` (removing its
partial file) and finishes or undoes an interrupted restore from its journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import structlog

from node_agent.backups import swap
from node_agent.backups.archive import ArchiveStats, write_archive
from node_agent.backups.extract import ExtractedTree, check_key, extract_backup, sync_filesystem
from node_agent.backups.recovery import recover_node
from node_agent.backups.snapshot import delete_stale_snapshots, read_only_snapshot
from node_agent.backups.store import BackupStore, sync_directory, utc_now
from node_agent.events import NodeEventBus
from node_agent.files.confine import open_root
from node_agent.files.denylist import DenyList
from node_agent.files.writes import Owner
from node_agent.servers.registry import ServerRegistry
from node_agent.servers.server import ManagedServer
from shared.backup_format import DEFAULT_CHUNK_BYTES, BackupWriter
from shared.backups_api import BackupCreate, BackupRecord, Consistency, RestoreOutcome
from shared.errors import ApiError, Conflict, NotFound
from shared.node_api import BackupEvent

log = structlog.get_logger("agent.backups")
MIB: Final = 1024 * 1024
LOCK_WAIT_SECONDS: Final = 5.0
# Threads of the backups' own: a backup or restore holds one for as long as it runs, and the
# agent's shared pool (cores + 4 threads) serves every file operation of every server. More
# at once wait their turn (their record says running).
WORKERS: Final = max(2, (os.cpu_count() or 2) // 2)


_T = TypeVar("_T")


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _HashingSink:
    """Counts and hashes what passes on its way to ``raw``."""

    def __init__(self, raw: _Writable) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.count += len(data)
        return self._raw.write(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


@dataclass(frozen=True)
class _Written:
    stats: ArchiveStats
    # The .tar.gz, as a download gives it once decrypted.
    size: int
    sha256: str
    # The encrypted file kept on the node.
    stored_size: int
    stored_sha256: str


def _reason(err: BaseException) -> str:
    if isinstance(err, ApiError):
        return err.message
    return f"{type(err).__name__}: {err}"


class BackupService:
    """The node's backups, and the operations running on them."""

    def __init__(
        self,
        *,
        data_dir: Path,
        backend: str,
        pool_dir: Path,
        servers: ServerRegistry,
        events: NodeEventBus,
        owner: Owner,
    ) -> None:
        self.store = BackupStore(data_dir)
        self._backend = backend
        self._pool_dir = pool_dir
        self._servers = servers
        self._events = events
        self._owner = owner
        self._busy: dict[uuid.UUID, tuple[str, uuid.UUID]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = threading.Event()
        self._closing = asyncio.Event()
        self._workers = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="backup")

    async def _in_worker(self, work: Callable[..., _T], *args: Any) -> _T:
        """Run ``work(*args)`` on a backup thread (never one of the agent's shared ones)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._workers, functools.partial(work, *args))

    # --- queries ---------------------------------------------------------------------------

    async def list(self, server_id: uuid.UUID) -> list[BackupRecord]:
        return await asyncio.to_thread(self.store.records, server_id)

    async def get(self, server_id: uuid.UUID, backup_id: uuid.UUID) -> BackupRecord:
        record = await asyncio.to_thread(self.store.load, server_id, backup_id)
        if record is None:
            raise NotFound("no such backup of this server on this node")
        return record

    async def completed_file(self, server_id: uuid.UUID, backup_id: uuid.UUID) -> Path:
        """The encrypted file of a completed backup (409 while it runs or if it failed)."""
        record = await self.get(server_id, backup_id)
        if record.status != "completed":
            raise Conflict(f"the backup is {record.status}")
        path = self.store.file(server_id, backup_id)
        if not await asyncio.to_thread(path.is_file):
            raise NotFound("the backup's file is missing on this node")
        return path

    # --- bookkeeping -----------------------------------------------------------------------

    def _claim(self, server_id: uuid.UUID, operation: str, backup_id: uuid.UUID) -> None:
        if server_id in self._busy:
            running, _ = self._busy[server_id]
            raise Conflict(f"a {running} of this server is running")
        self._busy[server_id] = (operation, backup_id)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _publish(self, record: BackupRecord, operation: str) -> None:
        outcome = record.restore if operation == "restore" else None
        status = outcome.status if outcome is not None else record.status
        reason = outcome.reason if outcome is not None else record.reason
        started = outcome.started_at if outcome is not None else record.started_at
        finished = outcome.finished_at if outcome is not None else record.finished_at
        self._events.publish(
            BackupEvent(
                server=record.server,
                backup=record.backup_id,
                operation="restore" if operation == "restore" else "create",
                status=status,
                reason=reason,
                duration_seconds=(
                    (finished - started).total_seconds() if finished is not None else None
                ),
                size_bytes=record.size_bytes if outcome is None else None,
            )
        )

    # --- create ----------------------------------------------------------------------------

    async def create(self, server_id: uuid.UUID, order: BackupCreate) -> BackupRecord:
        """Record the backup as running and start it in the background."""
        server = self._servers.get(server_id)
        if await asyncio.to_thread(self.store.load, server_id, order.backup_id) is not None:
            raise Conflict("a backup with this id exists already")
        self._claim(server_id, "backup", order.backup_id)
        try:
            record = BackupRecord(
                backup_id=order.backup_id,
                server=server_id,
                status="running",
                started_at=utc_now(),
                chunk_bytes=DEFAULT_CHUNK_BYTES,
                ignore=order.ignore,
            )
            await asyncio.to_thread(self.store.save, record)
        except BaseException:
            del self._busy[server_id]
            raise
        self._publish(record, "create")
        self._spawn(self._run_backup(server, record, order), f"backup-{order.backup_id}")
        return record

    async def _before_backup(self, server: ManagedServer, order: BackupCreate) -> bool:
        """Type the pre-command (if the game runs) and wait; whether the game runs."""
        running = server.state in {"running", "starting", "stopping"}
        if running and order.pre_command is not None:
            try:
                await server.send_command(order.pre_command)
            except ApiError as err:
                log.warning(
                    "pre-backup command not sent", server=str(server.spec.uuid), error=err.message
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), order.pre_command_wait_seconds)
        return running

    async def _run_backup(
        self, server: ManagedServer, record: BackupRecord, order: BackupCreate
    ) -> None:
        server_id, backup_id = record.server, record.backup_id
        key, ignore = order.key_bytes(), DenyList(order.ignore)
        # What a restore of it may write: hard links and sparse files cannot make it more.
        budget = server.spec.disk_mib * MIB
        try:
            running = await self._before_backup(server, order)
            consistency: Consistency
            if self._backend == "btrfs":
                async with read_only_snapshot(server.volume.path, backup_id) as source:
                    written = await self._in_worker(
                        self._write, source, record, key, ignore, budget
                    )
                consistency = "snapshot"
            else:
                written = await self._in_worker(
                    self._write, server.volume.path, record, key, ignore, budget
                )
                consistency = "live" if running else "stopped"
            stats = written.stats
            record = record.model_copy(
                update={
                    "status": "completed",
                    "finished_at": utc_now(),
                    "consistency": consistency,
                    "size_bytes": written.size,
                    "sha256": written.sha256,
                    "stored_bytes": written.stored_size,
                    "stored_sha256": written.stored_sha256,
                    "archive_bytes": stats.archive_bytes,
                    "files": stats.files,
                    "directories": stats.directories,
                    "symlinks": stats.symlinks,
                    "skipped": stats.skipped,
                }
            )
        except Exception as err:
            log.warning(
                "backup failed", server=str(server_id), backup=str(backup_id), error=_reason(err)
            )
            record = record.model_copy(
                update={"status": "failed", "finished_at": utc_now(), "reason": _reason(err)}
            )
        finally:
            if record.status != "completed":
                record = record.model_copy(
                    update={"status": "failed", "reason": record.reason or "the backup stopped"}
                )
                await asyncio.to_thread(self.store.part(server_id, backup_id).unlink, True)
            await asyncio.to_thread(self.store.save, record)
            self._busy.pop(server_id, None)
            self._publish(record, "create")
        log.info(
            "backup finished",
            server=str(server_id),
            backup=str(backup_id),
            status=record.status,
            size=record.size_bytes,
        )

    def _write(
        self, source: Path, record: BackupRecord, key: bytes, ignore: DenyList, budget: int
    ) -> _Written:
        part = self.store.part(record.server, record.backup_id)
        part.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb", buffering=MIB) as raw:
            stored = _HashingSink(raw)
            writer = BackupWriter(stored, key, record.backup_id)  # type: ignore[arg-type]
            archive = _HashingSink(writer)
            root_fd = open_root(source)
            try:
                stats = write_archive(root_fd, ignore, archive, budget, self._stop)  # type: ignore[arg-type]
            finally:
                os.close(root_fd)
            writer.close()
            raw.flush()
            os.fsync(raw.fileno())
        final = self.store.file(record.server, record.backup_id)
        os.rename(part, final)
        sync_directory(final.parent)
        return _Written(stats, archive.count, archive.hexdigest(), stored.count, stored.hexdigest())

    # --- restore ---------------------------------------------------------------------------

    async def restore(self, server_id: uuid.UUID, backup_id: uuid.UUID, key: bytes) -> BackupRecord:
        """Check the server is stopped and the key opens the backup; restore in the background.

        The server's lock is taken here and released when the restore ends.
        """
        server = self._servers.get(server_id)
        path = await self.completed_file(server_id, backup_id)
        self._claim(server_id, "restore", backup_id)
        try:
            await asyncio.to_thread(check_key, path, key, backup_id)
            # From here until the restore ends, the file routes answer 409.
            await server.volume_gate.close("a backup is being restored", LOCK_WAIT_SECONDS)
            try:
                try:
                    await asyncio.wait_for(server.acquire(), LOCK_WAIT_SECONDS)
                except TimeoutError as err:
                    raise Conflict("a power action of this server is running") from err
                try:
                    await self._require_stopped(server)
                    record = await self.get(server_id, backup_id)
                    outcome = RestoreOutcome(status="running", started_at=utc_now())
                    record = record.model_copy(update={"restore": outcome})
                    await asyncio.to_thread(self.store.save, record)
                except BaseException:
                    server.lock.release()
                    raise
            except BaseException:
                server.volume_gate.reopen()
                raise
        except BaseException:
            self._busy.pop(server_id, None)
            raise
        self._publish(record, "restore")
        self._spawn(self._run_restore(server, record, path, key), f"restore-{backup_id}")
        return record

    async def _require_stopped(self, server: ManagedServer) -> None:
        if server.record.install == "installing":
            raise Conflict("the server is installing")
        container = await server.services.runtime.find(server.container)
        if server.state not in {"offline", "crashed"} or (container and container.running):
            raise Conflict("stop the server before restoring a backup")

    async def _run_restore(
        self, server: ManagedServer, record: BackupRecord, path: Path, key: bytes
    ) -> None:
        server_id, backup_id = record.server, record.backup_id
        outcome = record.restore
        assert outcome is not None
        try:
            tree = await self._in_worker(
                self._restore_files, server, backup_id, path, key, server.spec.disk_mib * MIB
            )
            outcome = outcome.model_copy(
                update={
                    "status": "completed",
                    "finished_at": utc_now(),
                    "files": tree.files,
                    "bytes": tree.bytes,
                }
            )
        except Exception as err:
            log.warning(
                "restore failed", server=str(server_id), backup=str(backup_id), error=_reason(err)
            )
            outcome = outcome.model_copy(
                update={"status": "failed", "finished_at": utc_now(), "reason": _reason(err)}
            )
        finally:
            if outcome.status == "running":
                outcome = outcome.model_copy(
                    update={"status": "failed", "reason": "the agent stopped during the restore"}
                )
            record = record.model_copy(update={"restore": outcome})
            await asyncio.to_thread(self.store.save, record)
            await asyncio.to_thread(self.store.clear_journal, server_id)
            server.lock.release()
            server.volume_gate.reopen()
            self._busy.pop(server_id, None)
            self._publish(record, "restore")
        log.info(
            "restore finished", server=str(server_id), backup=str(backup_id), status=outcome.status
        )

    def _restore_files(
        self, server: ManagedServer, backup_id: uuid.UUID, path: Path, key: bytes, budget: int
    ) -> ExtractedTree:
        server_id = server.spec.uuid

        def journal(phase: swap.Phase) -> None:
            self.store.write_journal(server_id, backup_id, phase)

        root_fd = open_root(server.volume.path)
        try:
            journal("extracting")
            stage_fd = swap.make_stage(root_fd)
            try:
                tree = extract_backup(
                    path, key, backup_id, stage_fd, self._owner, budget, self._stop
                )
            except BaseException:
                os.close(stage_fd)
                swap.discard(root_fd, swap.STAGE)
                raise
            os.close(stage_fd)
            swap.swap_in(root_fd, journal)
            sync_filesystem(root_fd)
            return tree
        finally:
            os.close(root_fd)

    # --- delete ----------------------------------------------------------------------------

    async def delete(self, server_id: uuid.UUID, backup_id: uuid.UUID) -> None:
        """Delete a backup that is not running and not being restored."""
        record = await self.get(server_id, backup_id)
        if record.status == "running" or self._busy.get(server_id) == ("restore", backup_id):
            raise Conflict("the backup is in use; try again when it has finished")
        await asyncio.to_thread(self.store.remove, server_id, backup_id)
        log.info("backup deleted", server=str(server_id), backup=str(backup_id))

    # --- lifetime --------------------------------------------------------------------------

    async def recover(self) -> None:
        """After a start: nothing stays ``running``; interrupted restores are settled."""
        if self._backend == "btrfs":
            await delete_stale_snapshots(self._pool_dir)
        await recover_node(self.store, self._servers)

    async def close(self) -> None:
        """Abandon running backups (recorded failed) and wait for every task to end."""
        self._stop.set()
        self._closing.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._workers.shutdown(wait=False, cancel_futures=True)
