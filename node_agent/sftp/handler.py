"""The SFTP requests of one session, each one through the server's confined file layer.

Every request checks the session's permission in the access table as it is *now*, enters the
server's volume gate (a restore refuses SFTP as it refuses the file API) and calls
:class:`~node_agent.files.service.ServerFiles`: no path is resolved here. Paths are relative
to the volume root (``/``); ``..`` is refused by the file layer, and only ``realpath``
normalises it, as text, clamped at the root. Symlinks and hard links are never made.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Final, TypeVar

import asyncssh
from asyncssh import (
    FXF_APPEND,
    FXF_CREAT,
    FXF_EXCL,
    FXF_READ,
    FXF_TRUNC,
    FXF_WRITE,
    SFTPAttrs,
    SFTPName,
)

from node_agent.files.errors import FileExists, InsufficientStorage
from node_agent.files.handles import FileHandle, OpenMode
from node_agent.files.service import ServerFiles
from node_agent.sftp.limits import (
    MAX_HANDLES_PER_CONNECTION,
    MAX_LISTINGS_PER_CONNECTION,
    MAX_UNSENT_BYTES,
)
from shared.errors import ApiError, Forbidden, NotFound

if TYPE_CHECKING:
    from node_agent.sftp.session import SftpSession

T = TypeVar("T")
READ: Final = "files.read"
WRITE: Final = "files.write"
CREATE: Final = "files.create"
DELETE: Final = "files.delete"
_TYPE_BITS: Final = {"file": stat.S_IFREG, "directory": stat.S_IFDIR, "symlink": stat.S_IFLNK}
# A read answers at most this much (a short read is legal SFTP; clients ask again).
MAX_READ: Final = asyncssh.sftp.MAX_SFTP_READ_LEN


def sftp_error(err: ApiError) -> asyncssh.SFTPError:
    """The SFTP status for a file-layer refusal, with its message."""
    if isinstance(err, NotFound):
        return asyncssh.SFTPNoSuchFile(err.message)
    if isinstance(err, Forbidden):
        return asyncssh.SFTPPermissionDenied(err.message)
    if isinstance(err, FileExists):
        return asyncssh.SFTPFileAlreadyExists(err.message)
    if isinstance(err, InsufficientStorage):
        return asyncssh.SFTPNoSpaceOnFilesystem(err.message)
    return asyncssh.SFTPFailure(err.message)


def _text(path: bytes) -> str:
    try:
        return path.decode("utf-8")
    except UnicodeDecodeError as err:
        raise asyncssh.SFTPFailure("file names must be valid UTF-8") from err


def _needs(permission: str, doing: str, refusal: asyncssh.SFTPError) -> asyncssh.SFTPError:
    """The file layer's refusal, for an open the session's permissions narrowed."""
    reason = refusal.reason if isinstance(refusal.reason, str) else ""
    return asyncssh.SFTPPermissionDenied(f"{reason}: {doing} needs the {permission} permission")


def _changes(handle: FileHandle) -> str:
    """What changing the file open as ``handle`` takes: a file this handle made is its
    creator's to finish (size, times, mode, data) while it is open; any other, ``files.write``."""
    return CREATE if handle.created else WRITE


def _handle(file_obj: object) -> FileHandle:
    if not isinstance(file_obj, FileHandle) or file_obj.closed:
        raise asyncssh.SFTPFailure("the file is not open")
    return file_obj


class VolumeSftp(asyncssh.SFTPServer):
    """asyncssh's SFTP server interface, answered from one server's volume."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], session: SftpSession) -> None:
        super().__init__(chan)
        self._session = session
        self._counted = session.sftp_started()
        if not self._counted:
            chan.close()  # past the connection's SFTP channels: its requests meet a closed channel
        # This channel's open files (the connection's count is the session's).
        self._open: set[FileHandle] = set()

    async def _drained(self) -> None:
        """Wait while the answers already queued exceed MAX_UNSENT_BYTES.

        Requests on a channel are answered one after the other, so a client that pipelines
        reads and never takes the answers stalls here, at one more answer's worth of memory.
        """
        chan = self.channel
        # Polled: asyncssh offers no wait for a channel's buffer to fall below a given size.
        while chan.get_write_buffer_size() > MAX_UNSENT_BYTES and not chan.is_closing():  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def _run(self, permission: str, work: Callable[[ServerFiles], Awaitable[T]]) -> T:
        files, gate = self._session.volume(permission)
        try:
            with gate.operation():
                return await work(files)
        except ApiError as err:
            raise sftp_error(err) from err

    # --- files ------------------------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> object:
        write = bool(pflags & (FXF_WRITE | FXF_APPEND))
        mode = OpenMode(
            read=bool(pflags & FXF_READ) or not write,
            write=write,
            create=bool(pflags & FXF_CREAT),
            truncate=bool(pflags & FXF_TRUNC),
            exclusive=bool(pflags & FXF_EXCL),
            append=bool(pflags & FXF_APPEND),
        )
        if mode.read:
            self._session.require(READ)
        asked, permission = mode, READ
        if write:
            mode, permission = self._allowed_write(mode)
        name = _text(path)
        session = self._session
        if session.open_files >= MAX_HANDLES_PER_CONNECTION:
            # An fd each: without a cap one connection could exhaust the agent's fds.
            raise asyncssh.SFTPFailure(
                f"too many open files: at most {MAX_HANDLES_PER_CONNECTION} per connection"
            )
        session.open_files += 1  # reserved before the await, so concurrent opens count
        try:
            handle = await self._run(permission, lambda f: f.open_handle(name, mode))
        except asyncssh.SFTPNoSuchFile as err:
            session.open_files -= 1
            if asked.create and not mode.create and await self._folder_exists(name, permission):
                raise _needs(CREATE, "creating a file", err) from err
            raise
        except asyncssh.SFTPFileAlreadyExists as err:
            session.open_files -= 1
            if mode.exclusive and not asked.exclusive:
                raise _needs(WRITE, "changing a file", err) from err
            raise
        except BaseException:
            session.open_files -= 1
            raise
        self._open.add(handle)
        return handle

    async def _folder_exists(self, name: str, permission: str) -> bool:
        """Whether the folder ``name`` would be made in is there (an open refused for a
        missing folder says so, not which permission making the file would take)."""
        folder = posixpath.dirname(posixpath.normpath("/" + name))
        try:
            await self._run(permission, lambda f: f.lstat(folder))
        except asyncssh.SFTPNoSuchFile:
            return False
        return True

    def _allowed_write(self, mode: OpenMode) -> tuple[OpenMode, str]:
        """An open for writing narrowed to what the session may do, as the HTTP routes
        decide: making a file that is not there takes ``files.create``, writing to one that
        is (replacing, truncating, appending) ``files.write``.

        Which of the two an open is, only the file layer sees, without a race: without
        ``files.create`` it opens only a file that exists; without ``files.write`` only a
        new one, and the finished file never replaces one that appeared meanwhile. With the
        permission the open is made under.
        """
        may_create = mode.create and self._session.holds(CREATE)
        may_change = self._session.holds(WRITE)
        if not may_create and not may_change:
            self._session.require(CREATE if mode.create else WRITE)  # says which one is missing
        narrowed = replace(mode, create=may_create, exclusive=mode.exclusive or not may_change)
        return narrowed, WRITE if may_change else CREATE

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        handle = _handle(file_obj)
        await self._drained()
        count = min(size, MAX_READ)
        return await self._run(READ, lambda _f: asyncio.to_thread(handle.pread, count, offset))

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        handle = _handle(file_obj)
        if not handle.writable:
            raise asyncssh.SFTPPermissionDenied("the file was opened for reading")
        await self._run(_changes(handle), lambda _f: asyncio.to_thread(handle.pwrite, data, offset))
        return len(data)

    async def close(self, file_obj: object) -> None:
        if not isinstance(file_obj, FileHandle):
            return
        if file_obj in self._open:
            self._open.discard(file_obj)
            self._session.open_files -= 1
        # Called by asyncssh for handles still open when the session ends: a write the
        # client never closed (connection lost) must not replace the old file. Nor is a
        # write saved whose user lost the permission it was opened with while it was open.
        ending = self.channel.is_closing()
        needed = _changes(file_obj)
        revoked = file_obj.writable and not self._session.holds(needed)
        finished = file_obj.abort if revoked or ending else file_obj.finish
        # The end of a write makes or replaces a file as the user may now, not as at open.
        file_obj.narrow(create=self._session.holds(CREATE), overwrite=self._session.holds(WRITE))
        try:
            await asyncio.to_thread(finished)
        except ApiError as err:
            raise sftp_error(err) from err
        # Not while the channel ends: asyncssh's cleanup would stop closing the other files.
        if revoked and not ending:
            raise asyncssh.SFTPPermissionDenied(
                f"the file was not saved: this needs the {needed} permission"
            )

    async def fstat(self, file_obj: object) -> os.stat_result:
        handle = _handle(file_obj)
        return await self._run(READ, lambda _f: asyncio.to_thread(handle.fstat))

    async def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        handle = _handle(file_obj)
        needed = _changes(handle)
        self._session.require(needed)
        if attrs.uid is not None or attrs.gid is not None:
            raise asyncssh.SFTPPermissionDenied("file owners cannot be changed")
        if attrs.size is not None:
            size = attrs.size
            await self._run(needed, lambda _f: asyncio.to_thread(handle.truncate, size))
        if attrs.permissions is not None:
            mode = attrs.permissions & 0o777
            await self._run(needed, lambda _f: asyncio.to_thread(os.fchmod, handle.fileno(), mode))
        if attrs.mtime is not None:
            atime = attrs.atime if attrs.atime is not None else attrs.mtime
            mtime = attrs.mtime
            await self._run(needed, lambda _f: asyncio.to_thread(handle.set_times, atime, mtime))

    async def fsync(self, file_obj: object) -> None:
        handle = _handle(file_obj)
        await self._run(_changes(handle), lambda _f: asyncio.to_thread(os.fsync, handle.fileno()))

    # --- paths ------------------------------------------------------------------------------

    def realpath(self, path: bytes) -> bytes:
        # Text only, never the disk: ``..`` is clamped at the volume root.
        normal = posixpath.normpath("/" + _text(path))
        return ("/" + normal.lstrip("/")).encode("utf-8")

    async def lstat(self, path: bytes) -> os.stat_result:
        name = _text(path)
        return await self._run(READ, lambda f: f.lstat(name))

    async def stat(self, path: bytes) -> os.stat_result:
        # Never followed: a symlink is reported as the link it is.
        return await self.lstat(path)

    async def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        name = _text(path)
        session = self._session
        if session.listings >= MAX_LISTINGS_PER_CONNECTION:
            raise asyncssh.SFTPFailure(
                f"too many directories being read at once: at most "
                f"{MAX_LISTINGS_PER_CONNECTION} per connection; read one to its end or close it"
            )
        session.listings += 1  # until read to the end, closed, or the channel ends
        try:
            async for entry in self._listing(name):
                yield entry
        finally:
            session.listings -= 1

    async def _listing(self, name: str) -> AsyncIterator[SFTPName]:
        await self._drained()
        listing = await self._run(READ, lambda f: f.list_directory(name))
        if listing.truncated:
            # A partial listing would look complete to the client (and to a sync tool).
            raise asyncssh.SFTPFailure(
                f"{listing.path} has more than {len(listing.entries)} entries, more than a"
                " listing shows; use the file manager or a subdirectory"
            )
        for entry in listing.entries:
            attrs = SFTPAttrs(
                size=entry.size,
                permissions=_TYPE_BITS.get(entry.type, 0) | entry.mode,
                atime=int(entry.mtime),
                mtime=int(entry.mtime),
            )
            yield SFTPName(entry.name.encode("utf-8"), attrs=attrs)

    async def readlink(self, path: bytes) -> bytes:
        name = _text(path)
        listing_entry = await self._run(READ, lambda f: f.entry(name))
        if listing_entry.link_target is None:
            raise asyncssh.SFTPFailure(f"{listing_entry.path} is not a symlink")
        return listing_entry.link_target.encode("utf-8")

    async def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        name = _text(path)
        if attrs.uid is not None or attrs.gid is not None:
            raise asyncssh.SFTPPermissionDenied("file owners cannot be changed")
        if attrs.size is not None:
            raise asyncssh.SFTPOpUnsupported("open the file to change its size")
        if attrs.permissions is not None:
            mode = attrs.permissions & 0o777
            await self._run(WRITE, lambda f: f.change_mode(name, mode))
        if attrs.mtime is not None:
            atime = attrs.atime if attrs.atime is not None else attrs.mtime
            mtime = attrs.mtime
            await self._run(WRITE, lambda f: f.set_times(name, atime, mtime))

    def lsetstat(self, path: bytes, attrs: SFTPAttrs) -> Awaitable[None]:
        return self.setstat(path, attrs)

    async def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        name = _text(path)
        await self._run(CREATE, lambda f: f.make_directory(name))

    async def rmdir(self, path: bytes) -> None:
        name = _text(path)
        await self._run(DELETE, lambda f: f.remove_directory(name))

    async def remove(self, path: bytes) -> None:
        name = _text(path)
        await self._run(DELETE, lambda f: f.remove_file(name))

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        source, target = _text(oldpath), _text(newpath)
        await self._run(WRITE, lambda f: f.rename(source, target))

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> Awaitable[None]:
        return self.rename(oldpath, newpath)

    # --- refused ----------------------------------------------------------------------------

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("symlinks cannot be created over SFTP")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("hard links cannot be created over SFTP")

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: SFTPAttrs) -> object:
        raise asyncssh.SFTPOpUnsupported("SFTP version 3 only")

    def statvfs(self, path: bytes) -> os.statvfs_result:
        raise asyncssh.SFTPOpUnsupported("statvfs is not offered")

    def fstatvfs(self, file_obj: object) -> os.statvfs_result:
        raise asyncssh.SFTPOpUnsupported("statvfs is not offered")

    def lock(self, file_obj: object, offset: int, length: int, flags: int) -> None:
        raise asyncssh.SFTPOpUnsupported("locks are not offered")

    def unlock(self, file_obj: object, offset: int, length: int) -> None:
        raise asyncssh.SFTPOpUnsupported("locks are not offered")

    def exit(self) -> None:
        if self._counted:
            self._counted = False
            self._session.sftp_ended()
