"""The one place that talks to node agents: a typed method for each row of the node API table
(``shared/node_endpoints.py``), over :class:`~control_plane.nodes.transport.NodeTransport`.

Callers never spell a path, an action or a payload: they hand over the row's request model
and get its response model back. Every call is made outside any database transaction (the
routes that call a node declare it, see ``control_plane/api/routing.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from control_plane.db.models import Node
from control_plane.nodes.transport import NodeNotConfigured, NodeTransport
from shared.backups_api import BackupCreate, BackupList, BackupRecord, BackupRestore
from shared.errors import UpstreamFailed
from shared.files_api import (
    ChangeMode,
    CompressFiles,
    CopyFile,
    DecompressArchive,
    DeletePaths,
    ExtractionSummary,
    FileEntry,
    FileListing,
    MakeDirectory,
    PullFile,
    RenameFile,
)
from shared.node_api import DiskResize, ServerDisk, SystemInfo
from shared.node_endpoints import (
    BACKUP_CREATE,
    BACKUP_DELETE,
    BACKUP_DOWNLOAD,
    BACKUP_LIST,
    BACKUP_READ,
    BACKUP_RESTORE,
    FILES_CHMOD,
    FILES_COMPRESS,
    FILES_COPY,
    FILES_DECOMPRESS,
    FILES_DELETE,
    FILES_LIST,
    FILES_MKDIR,
    FILES_PULL,
    FILES_READ,
    FILES_RENAME,
    FILES_UPLOAD,
    FILES_WRITE,
    NODE_EVENT_STREAM,
    NODE_METRICS,
    NODE_SFTP_ACCESS,
    NODE_SYSTEM,
    SERVER_COMMAND,
    SERVER_CONSOLE,
    SERVER_CREATE,
    SERVER_DELETE,
    SERVER_DISK,
    SERVER_DISK_RESIZE,
    SERVER_LOGS,
    SERVER_POWER,
    SERVER_READ,
    SERVER_REINSTALL,
    SERVER_STATS,
    SERVER_UPDATE,
    EventsAfter,
    FilePath,
    FileSave,
    FileUpload,
    LogLines,
    NoBody,
)
from shared.server_spec import (
    ConsoleCommand,
    ConsoleLines,
    PowerAction,
    ServerSpec,
    ServerStats,
    ServerStatus,
)
from shared.sftp_api import SftpAccess

__all__ = ["NodeClient", "NodeNotConfigured"]
_NONE = NoBody()
_MAX_METRICS_BYTES = 8 * 1024 * 1024


class NodeClient(NodeTransport):
    """One typed method per row of the node API; ``user`` is the acting user's id (or
    ``system``) for the agent's log."""

    # --- the node ---------------------------------------------------------------------------

    async def system_info(self, node: Node, *, user: str = "system") -> SystemInfo:
        return await self.send(NODE_SYSTEM, node, _NONE, user=user)

    async def node_metrics(self, node: Node, *, user: str = "system") -> bytes:
        """The agent's Prometheus metrics, as the text it sent (at most 8 MiB)."""
        async with self.fetch(NODE_METRICS, node, user=user) as response:
            body = await response.content.read(_MAX_METRICS_BYTES + 1)
        if len(body) > _MAX_METRICS_BYTES:
            raise UpstreamFailed(f"node {node.name!r} sent more metrics than we read")
        return body

    async def open_events(
        self, node: Node, *, after: str | None = None
    ) -> aiohttp.ClientWebSocketResponse:
        """The node's event stream; ``after`` (``<epoch>:<seq>``): resumed after that event."""
        query = EventsAfter(after=after)
        return await self.open_websocket(NODE_EVENT_STREAM, node, user="system", query=query)

    def events_token(self, node: Node, *, after: str | None = None) -> str:
        """A renewal of the stream opened with ``after``."""
        query = EventsAfter(after=after)
        return self.socket_token(NODE_EVENT_STREAM, node, user="system", query=query)

    async def push_sftp_access(
        self, node: Node, access: SftpAccess, *, user: str = "system"
    ) -> None:
        await self.send(NODE_SFTP_ACCESS, node, access, user=user)

    # --- servers ----------------------------------------------------------------------------

    async def create_server(self, node: Node, spec: ServerSpec, *, user: str) -> ServerStatus:
        return await self.send(SERVER_CREATE, node, spec, user=user, server_id=spec.uuid)

    async def read_server(self, node: Node, server_id: uuid.UUID, *, user: str) -> ServerStatus:
        return await self.send(SERVER_READ, node, _NONE, user=user, server_id=server_id)

    async def delete_server(self, node: Node, server_id: uuid.UUID, *, user: str) -> None:
        await self.send(SERVER_DELETE, node, _NONE, user=user, server_id=server_id)

    async def power(
        self, node: Node, server_id: uuid.UUID, action: PowerAction, *, user: str
    ) -> ServerStatus:
        return await self.send(SERVER_POWER, node, action, user=user, server_id=server_id)

    async def update_spec(self, node: Node, spec: ServerSpec, *, user: str) -> ServerStatus:
        return await self.send(SERVER_UPDATE, node, spec, user=user, server_id=spec.uuid)

    async def reinstall(self, node: Node, server_id: uuid.UUID, *, user: str) -> ServerStatus:
        return await self.send(SERVER_REINSTALL, node, _NONE, user=user, server_id=server_id)

    async def command(
        self, node: Node, server_id: uuid.UUID, line: ConsoleCommand, *, user: str
    ) -> None:
        await self.send(SERVER_COMMAND, node, line, user=user, server_id=server_id)

    async def logs(
        self, node: Node, server_id: uuid.UUID, lines: LogLines, *, user: str
    ) -> ConsoleLines:
        return await self.send(
            SERVER_LOGS, node, _NONE, user=user, server_id=server_id, query=lines
        )

    async def stats(self, node: Node, server_id: uuid.UUID, *, user: str) -> ServerStats:
        return await self.send(SERVER_STATS, node, _NONE, user=user, server_id=server_id)

    async def open_console(
        self, node: Node, server_id: uuid.UUID, *, user: str
    ) -> aiohttp.ClientWebSocketResponse:
        return await self.open_websocket(SERVER_CONSOLE, node, user=user, server_id=server_id)

    def console_token(self, node: Node, server_id: uuid.UUID, *, user: str) -> str:
        return self.socket_token(SERVER_CONSOLE, node, user=user, server_id=server_id)

    async def disk(self, node: Node, server_id: uuid.UUID, *, user: str) -> ServerDisk:
        return await self.send(SERVER_DISK, node, _NONE, user=user, server_id=server_id)

    async def resize_disk(
        self, node: Node, server_id: uuid.UUID, resize: DiskResize, *, user: str
    ) -> ServerDisk:
        return await self.send(SERVER_DISK_RESIZE, node, resize, user=user, server_id=server_id)

    # --- files ------------------------------------------------------------------------------

    async def list_files(
        self, node: Node, server_id: uuid.UUID, where: FilePath, *, user: str
    ) -> FileListing:
        return await self.send(FILES_LIST, node, _NONE, user=user, server_id=server_id, query=where)

    @asynccontextmanager
    async def read_file(
        self, node: Node, server_id: uuid.UUID, where: FilePath, *, user: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        async with self.fetch(
            FILES_READ, node, user=user, server_id=server_id, query=where
        ) as response:
            yield response

    async def write_file(
        self, node: Node, server_id: uuid.UUID, where: FileSave, content: bytes, *, user: str
    ) -> FileEntry:
        return await self.send(
            FILES_WRITE, node, _NONE, user=user, server_id=server_id, query=where, raw=content
        )

    async def upload_file(
        self,
        node: Node,
        server_id: uuid.UUID,
        where: FileUpload,
        chunks: AsyncIterable[bytes],
        *,
        user: str,
    ) -> FileEntry:
        return await self.stream_up(
            FILES_UPLOAD, node, chunks, user=user, server_id=server_id, query=where
        )

    async def make_directory(
        self, node: Node, server_id: uuid.UUID, order: MakeDirectory, *, user: str
    ) -> FileEntry:
        return await self.send(FILES_MKDIR, node, order, user=user, server_id=server_id)

    async def rename_file(
        self, node: Node, server_id: uuid.UUID, order: RenameFile, *, user: str
    ) -> FileEntry:
        return await self.send(FILES_RENAME, node, order, user=user, server_id=server_id)

    async def copy_file(
        self, node: Node, server_id: uuid.UUID, order: CopyFile, *, user: str
    ) -> FileEntry:
        return await self.send(FILES_COPY, node, order, user=user, server_id=server_id)

    async def delete_files(
        self, node: Node, server_id: uuid.UUID, order: DeletePaths, *, user: str
    ) -> None:
        await self.send(FILES_DELETE, node, order, user=user, server_id=server_id)

    async def change_mode(
        self, node: Node, server_id: uuid.UUID, order: ChangeMode, *, user: str
    ) -> FileEntry:
        return await self.send(FILES_CHMOD, node, order, user=user, server_id=server_id)

    async def compress(
        self, node: Node, server_id: uuid.UUID, order: CompressFiles, *, user: str
    ) -> FileEntry:
        return await self.send(FILES_COMPRESS, node, order, user=user, server_id=server_id)

    async def decompress(
        self, node: Node, server_id: uuid.UUID, order: DecompressArchive, *, user: str
    ) -> ExtractionSummary:
        return await self.send(FILES_DECOMPRESS, node, order, user=user, server_id=server_id)

    async def pull_file(
        self, node: Node, server_id: uuid.UUID, order: PullFile, *, user: str
    ) -> FileEntry:
        return await self.send(FILES_PULL, node, order, user=user, server_id=server_id)

    # --- backups ----------------------------------------------------------------------------

    async def create_backup(
        self, node: Node, server_id: uuid.UUID, order: BackupCreate, *, user: str
    ) -> BackupRecord:
        return await self.send(BACKUP_CREATE, node, order, user=user, server_id=server_id)

    async def list_backups(self, node: Node, server_id: uuid.UUID, *, user: str) -> BackupList:
        return await self.send(BACKUP_LIST, node, _NONE, user=user, server_id=server_id)

    async def read_backup(
        self, node: Node, server_id: uuid.UUID, backup_id: uuid.UUID, *, user: str
    ) -> BackupRecord:
        return await self.send(
            BACKUP_READ, node, _NONE, user=user, server_id=server_id, backup_id=backup_id
        )

    @asynccontextmanager
    async def download_backup(
        self, node: Node, server_id: uuid.UUID, backup_id: uuid.UUID, *, user: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        async with self.fetch(
            BACKUP_DOWNLOAD, node, user=user, server_id=server_id, backup_id=backup_id
        ) as response:
            yield response

    async def delete_backup(
        self, node: Node, server_id: uuid.UUID, backup_id: uuid.UUID, *, user: str
    ) -> None:
        await self.send(
            BACKUP_DELETE, node, _NONE, user=user, server_id=server_id, backup_id=backup_id
        )

    async def restore_backup(
        self,
        node: Node,
        server_id: uuid.UUID,
        backup_id: uuid.UUID,
        order: BackupRestore,
        *,
        user: str,
    ) -> BackupRecord:
        return await self.send(
            BACKUP_RESTORE, node, order, user=user, server_id=server_id, backup_id=backup_id
        )
