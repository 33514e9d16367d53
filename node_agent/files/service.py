"""What the file routes call: one server's files, every blocking step in a worker thread.

:class:`FileService` lives on the Application (limits, the game user, the outbound client,
pull slots); :meth:`FileService.server` gives a :class:`ServerFiles` for one server's volume
and deny-list. Each operation opens the volume root afresh, so nothing outlives a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Concatenate, Final, ParamSpec, TypeVar

import structlog

from node_agent.files import archives, extract, handles, tree
from node_agent.files.confine import directory, lstat_at, open_regular_file, open_root
from node_agent.files.denylist import DenyList, deny_list
from node_agent.files.entries import list_directory, stat_entry
from node_agent.files.errors import FileTooLarge, InsufficientStorage, PathDenied
from node_agent.files.handles import FileHandle, OpenMode
from node_agent.files.limits import FileLimits
from node_agent.files.paths import VolumePath, check_name, parse_file_path, parse_path, show
from node_agent.files.pull import ServerSlots, pulled_file_name
from node_agent.files.writes import AtomicWrite, Owner
from node_agent.storage.volume import ServerVolume
from shared.errors import ApiError, InvalidRequest
from shared.files_api import (
    ArchiveFormat,
    ExtractionSummary,
    FileEntry,
    FileListing,
    PullFile,
)
from shared.outbound import OutboundClient
from shared.ssrf import OutboundFetchFailed

log = structlog.get_logger("agent.files")
CHUNK: Final = 1024 * 1024
P = ParamSpec("P")
T = TypeVar("T")


class FileReader:
    """An open regular file, read in chunks off the event loop; close it when done."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.size = os.fstat(fd).st_size

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes, at most ``size`` of them (the size it had when opened)."""
        left = self.size
        while left > 0:
            data = await asyncio.to_thread(os.read, self._fd, min(CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data

    def close(self) -> None:
        os.close(self._fd)


class ServerFiles:
    """The files of one server's volume, as its deny-list and the node's limits allow."""

    def __init__(
        self, root: Path, denied: DenyList, limits: FileLimits, owner: Owner, volume: ServerVolume
    ) -> None:
        self._root = root
        self._denied = denied
        self._limits = limits
        self._owner = owner
        self._volume = volume

    async def _run(
        self, work: Callable[Concatenate[int, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``work(root_fd, ...)`` in a worker thread with the volume root open."""

        def in_volume() -> T:
            root_fd = open_root(self._root)
            try:
                return work(root_fd, *args, **kwargs)
            finally:
                os.close(root_fd)

        return await asyncio.to_thread(in_volume)

    async def remove_unfinished_writes(self) -> int:
        """Remove the temporary files of writes that never finished; say how many."""
        return await self._run(tree.remove_unfinished_writes)

    def _allowed(self, root_fd: int, parts: VolumePath, *also: VolumePath) -> None:
        """Refuse (403) deny-listed paths, including anything below a directory."""
        if not self._denied or not parts:
            return
        with directory(root_fd, parts[:-1]) as parent:
            info = lstat_at(parent, parts[-1])
        is_dir = info is not None and stat.S_ISDIR(info.st_mode)
        tree.ensure_allowed(root_fd, parts, is_dir, self._denied, *also)

    def _refuse_denied(self, parts: VolumePath, *, is_dir: bool) -> None:
        if self._denied and self._denied.denies(parts, is_dir=is_dir):
            raise PathDenied(f"{show(parts)} is on the server's deny-list")

    async def space_left(self) -> int | None:
        """Bytes the volume may still take, if the backend knows its limit."""
        try:
            usage = await self._volume.usage()
        except (ApiError, OSError):
            return None
        return max(usage.total_bytes - usage.used_bytes, 0) if usage.total_bytes else None

    async def list_directory(self, path: str) -> FileListing:
        parts = parse_path(path)
        self._refuse_denied(parts, is_dir=True)
        return await self._run(list_directory, parts, self._denied, self._limits.max_list_entries)

    async def open_read(self, path: str) -> FileReader:
        """Open a regular file for a streamed download."""
        parts = parse_file_path(path)
        self._refuse_denied(parts, is_dir=False)

        def opened(root_fd: int) -> FileReader:
            with directory(root_fd, parts[:-1]) as parent:
                return FileReader(open_regular_file(parent, parts[-1], parts))

        return await self._run(opened)

    async def write(
        self,
        path: str,
        chunks: AsyncIterator[bytes],
        *,
        size: int | None,
        max_bytes: int,
        overwrite: bool = True,
        create: bool = True,
    ) -> FileEntry:
        """Stream ``chunks`` into the file at ``path`` atomically.

        ``size``, when given, is exact: fewer or more bytes abort the write. More than
        ``max_bytes`` aborts it too (413). The old file stays until the new one is complete.
        ``overwrite`` False refuses a file that exists (409), ``create`` False one that does
        not (404).
        """
        parts = parse_file_path(path)
        self._refuse_denied(parts, is_dir=False)
        space = await self.space_left()
        if size is not None and space is not None and size > space:
            raise InsufficientStorage(f"{size} bytes do not fit in the server's volume")
        pending = await self._run(
            AtomicWrite.begin, parts, self._owner, overwrite=overwrite, create=create
        )
        try:
            buffer = bytearray()
            received = 0
            async for chunk in chunks:
                received += len(chunk)
                if received > max_bytes or (size is not None and received > size):
                    limit = max_bytes if size is None else min(size, max_bytes)
                    raise FileTooLarge(f"the file is larger than {limit} bytes")
                buffer += chunk
                if len(buffer) >= CHUNK:
                    await asyncio.to_thread(pending.write, bytes(buffer))
                    buffer.clear()
            if size is not None and received != size:
                raise InvalidRequest(f"the body had {received} bytes, not the declared {size}")
            await asyncio.to_thread(pending.write, bytes(buffer))
            return await asyncio.to_thread(pending.commit)
        finally:
            await asyncio.to_thread(pending.abort)

    async def make_directory(self, path: str) -> FileEntry:
        parts = parse_file_path(path)
        self._refuse_denied(parts, is_dir=True)
        return await self._run(tree.make_directory, parts, self._owner)

    async def rename(self, source: str, destination: str) -> FileEntry:
        src, dst = parse_file_path(source), parse_file_path(destination)

        def move(root_fd: int) -> FileEntry:
            self._allowed(root_fd, src, dst)
            return tree.rename(root_fd, src, dst)

        return await self._run(move)

    async def copy(self, source: str, destination: str | None) -> FileEntry:
        src = parse_file_path(source)
        dst = parse_file_path(destination) if destination is not None else None

        def duplicate(root_fd: int) -> FileEntry:
            target = dst or _copy_name(root_fd, src)
            self._allowed(root_fd, src, target)
            return tree.copy(root_fd, src, target, self._owner)

        return await self._run(duplicate)

    async def delete(self, paths: list[str]) -> None:
        targets = [parse_file_path(path) for path in paths]

        def remove(root_fd: int) -> None:
            for parts in targets:
                self._allowed(root_fd, parts)
            for parts in targets:
                tree.delete(root_fd, parts)

        await self._run(remove)

    async def change_mode(self, path: str, mode: int) -> FileEntry:
        parts = parse_file_path(path)

        def chmod(root_fd: int) -> FileEntry:
            self._allowed(root_fd, parts)
            return tree.change_mode(root_fd, parts, mode)

        return await self._run(chmod)

    # --- random access (SFTP): node_agent/files/handles.py -------------------------------

    async def open_handle(self, path: str, mode: OpenMode) -> FileHandle:
        """Open a file for reads or writes at offsets; finish or abort it in a thread."""
        parts = parse_file_path(path)
        self._refuse_denied(parts, is_dir=False)
        return await self._run(handles.open_handle, parts, mode, self._owner)

    async def lstat(self, path: str) -> os.stat_result:
        """The entry at ``path`` as ``lstat`` sees it (deny-listed ones are refused)."""
        parts = parse_path(path)
        info = await self._run(handles.lstat_path, parts)
        self._refuse_denied(parts, is_dir=stat.S_ISDIR(info.st_mode))
        return info

    async def entry(self, path: str) -> FileEntry:
        """The entry at ``path`` (a symlink with its target as text, never followed)."""
        parts = parse_file_path(path)
        self._refuse_denied(parts, is_dir=False)

        def find(root_fd: int) -> FileEntry:
            with directory(root_fd, parts[:-1]) as parent:
                return stat_entry(parent, parts)

        return await self._run(find)

    async def remove_file(self, path: str) -> None:
        parts = parse_file_path(path)
        self._refuse_denied(parts, is_dir=False)
        await self._run(handles.remove_file, parts)

    async def remove_directory(self, path: str) -> None:
        parts = parse_file_path(path)
        self._refuse_denied(parts, is_dir=True)
        await self._run(handles.remove_empty_directory, parts)

    async def set_times(self, path: str, atime: float, mtime: float) -> None:
        parts = parse_file_path(path)

        def touch(root_fd: int) -> None:
            self._allowed(root_fd, parts)
            handles.set_times(root_fd, parts, atime, mtime)

        await self._run(touch)

    async def compress(
        self, base: str, paths: list[str], archive_format: ArchiveFormat, name: str | None
    ) -> FileEntry:
        base_parts = parse_path(base)
        selected = [parse_path(path) for path in paths]
        archive_name = check_name(name or archives.default_archive_name(archive_format))
        self._refuse_denied((*base_parts, archive_name), is_dir=False)

        def pack(root_fd: int) -> FileEntry:
            for relative in selected:
                self._allowed(root_fd, (*base_parts, *relative))
            return archives.compress(
                root_fd, base_parts, selected, archive_format, archive_name, self._owner
            )

        return await self._run(pack)

    async def decompress(
        self, path: str, target: str | None, *, overwrite: bool = True
    ) -> ExtractionSummary:
        archive = parse_file_path(path)
        destination = parse_path(target) if target is not None else archive[:-1]
        self._refuse_denied(archive, is_dir=False)
        self._refuse_denied(destination, is_dir=True)
        space = await self.space_left()
        return await self._run(
            extract.extract,
            archive,
            destination,
            self._owner,
            self._limits,
            self._denied,
            space,
            overwrite,
        )


def _copy_name(root_fd: int, source: VolumePath) -> VolumePath:
    """``<stem> copy<suffix>`` (then `` copy 2``, ...) beside ``source``."""
    stem, dot, suffix = source[-1].rpartition(".")
    if not stem:
        stem, dot, suffix = source[-1], "", ""
    with directory(root_fd, source[:-1]) as parent:
        for number in range(1, 1000):
            label = " copy" if number == 1 else f" copy {number}"
            name = check_name(f"{stem}{label}{dot}{suffix}")
            if lstat_at(parent, name) is None:
                return (*source[:-1], name)
    raise InvalidRequest("too many copies of this file exist already")


class FileService:
    """The node's file service: limits, game user, outbound client, pull and archive slots."""

    def __init__(self, limits: FileLimits, owner: Owner, outbound: OutboundClient) -> None:
        self.limits = limits
        self._owner = owner
        self._outbound = outbound
        self._pulls = ServerSlots(limits.pulls_per_server, "pulls")
        self._archive_jobs = ServerSlots(limits.archive_jobs_per_server, "archive jobs")

    def archive_job(self, server_id: uuid.UUID) -> contextlib.AbstractContextManager[None]:
        """One of the server's slots for a compression or extraction (429 past them)."""
        return self._archive_jobs.slot(server_id)

    def server(self, volume: ServerVolume, denylist: tuple[str, ...]) -> ServerFiles:
        """The files of the server whose volume this is."""
        return ServerFiles(volume.path, deny_list(denylist), self.limits, self._owner, volume)

    async def remove_unfinished_writes(
        self, volumes: Iterable[tuple[uuid.UUID, ServerVolume]]
    ) -> None:
        """At agent start: remove the temporary files of writes a killed agent left behind."""
        for server_id, volume in volumes:
            try:
                removed = await self.server(volume, ()).remove_unfinished_writes()
            except (ApiError, OSError) as err:
                log.warning(
                    "volume not checked for unfinished writes",
                    server=str(server_id),
                    error=str(err),
                )
                continue
            if removed:
                log.warning("unfinished writes removed", server=str(server_id), count=removed)

    async def pull(self, server_id: uuid.UUID, files: ServerFiles, order: PullFile) -> FileEntry:
        """Fetch ``order.url`` into ``order.directory`` (at most N at once per server)."""
        directory_parts = parse_path(order.directory)
        with self._pulls.slot(server_id):
            async with self._outbound.fetch(
                order.url,
                max_bytes=self.limits.max_pull_bytes,
                timeout_seconds=self.limits.pull_timeout_seconds,
            ) as response:
                if response.status != 200:
                    raise OutboundFetchFailed(f"the URL answered HTTP {response.status}")
                name = check_name(order.name) if order.name else None
                name = name or pulled_file_name(response.headers, response.url)
                return await files.write(
                    show((*directory_parts, name)),
                    response.iter_chunks(CHUNK),
                    size=None,
                    max_bytes=self.limits.max_pull_bytes,
                    overwrite=order.overwrite,
                )
