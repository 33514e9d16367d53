"""Open files with random access (SFTP), through the same confinement as every other path.

What the HTTP API does in one request, SFTP spreads over open, many reads or writes at
offsets, and close. :func:`open_handle` decides once, at open:

- reading: the regular file, opened ``O_NOFOLLOW`` on its confined parent (as downloads are);
- writing a new file, or with truncation: an :class:`AtomicWrite` beside the target, renamed
  over it at :meth:`FileHandle.finish`, so a full disk or a lost connection keeps the old file;
- writing without truncation (resume, append): the existing regular file, in place.

Also here: stat without following, removing one file or one empty directory, setting times.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Literal

from node_agent.files.confine import directory, fail, lstat_at, open_regular_file, refuse_links
from node_agent.files.errors import FileExists, FileNotFound, PathRefused, WrongFileType
from node_agent.files.paths import VolumePath, show
from node_agent.files.tree import existing
from node_agent.files.writes import AtomicWrite, Owner


@dataclass(frozen=True)
class OpenMode:
    """What an SFTP open asks for."""

    read: bool
    write: bool
    create: bool = False
    truncate: bool = False
    exclusive: bool = False
    append: bool = False


class FileHandle:
    """One open file: ``pread``/``pwrite`` at offsets; :meth:`finish` or :meth:`abort`."""

    def __init__(
        self,
        parts: VolumePath,
        kind: Literal["read", "in_place", "atomic"],
        fd: int,
        atomic: AtomicWrite | None = None,
        *,
        created: bool = False,
    ) -> None:
        self.parts = parts
        self.kind = kind
        # A new file (nothing had the name at open): made, not changed, by this handle.
        self.created = created
        self._fd = fd
        self._atomic = atomic
        self.closed = False

    @property
    def writable(self) -> bool:
        return self.kind != "read"

    def fileno(self) -> int:
        return self._fd

    def pread(self, size: int, offset: int) -> bytes:
        if self.kind == "atomic":
            raise PathRefused(f"{show(self.parts)} is open for writing only")
        try:
            return os.pread(self._fd, size, offset)
        except OSError as err:
            fail(err, self.parts)

    def pwrite(self, data: bytes, offset: int) -> None:
        """Write ``data`` at ``offset``; a full disk aborts an atomic write (old file kept)."""
        view = memoryview(data)
        try:
            while view:
                count = os.pwrite(self._fd, view, offset)
                view, offset = view[count:], offset + count
        except OSError as err:
            if self._atomic is not None:
                self._atomic.abort()
                self.closed = True
            fail(err, self.parts)

    def fstat(self) -> os.stat_result:
        return os.fstat(self._fd)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """``lseek``: asyncssh's ``ranges@asyncssh.com`` finds a sparse file's data with it."""
        try:
            return os.lseek(self._fd, offset, whence)
        except OSError as err:
            if err.errno == errno.ENXIO:
                raise  # no more data: asyncssh's range walk ends on this one
            fail(err, self.parts)

    def truncate(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
        except OSError as err:
            fail(err, self.parts)

    def set_times(self, atime: float, mtime: float) -> None:
        os.utime(self._fd, (atime, mtime))

    def narrow(self, *, create: bool, overwrite: bool) -> None:
        """What :meth:`finish` may still do: see :meth:`AtomicWrite.narrow` (a file written
        in place is neither made nor replaced at the end)."""
        if self._atomic is not None:
            self._atomic.narrow(create=create, overwrite=overwrite)

    def finish(self) -> None:
        """Close; an atomic write replaces its target now."""
        if self.closed:
            return
        self.closed = True
        if self._atomic is not None:
            self._atomic.commit()
        else:
            os.close(self._fd)

    def abort(self) -> None:
        """Close; an atomic write is dropped and the target keeps its old content."""
        if self.closed:
            return
        self.closed = True
        if self._atomic is not None:
            self._atomic.abort()
        else:
            os.close(self._fd)


def open_handle(root_fd: int, parts: VolumePath, mode: OpenMode, owner: Owner) -> FileHandle:
    """Open ``parts`` as ``mode`` asks (see the module's docstring)."""
    if not mode.write:
        with directory(root_fd, parts[:-1]) as parent:
            return FileHandle(parts, "read", open_regular_file(parent, parts[-1], parts))
    with directory(root_fd, parts[:-1]) as parent:
        info = lstat_at(parent, parts[-1])
        refuse_links(info, parts)
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise WrongFileType(f"{show(parts)} is a directory")
        if info is None and not mode.create:
            raise FileNotFound(f"{show(parts)}: no such file")
        if info is not None and mode.exclusive:
            raise FileExists(f"{show(parts)} exists already")
        if info is not None and not mode.truncate:
            return FileHandle(parts, "in_place", _open_in_place(parent, parts, mode))
    atomic = AtomicWrite.begin(
        root_fd, parts, owner, overwrite=not mode.exclusive, create=mode.create
    )
    return FileHandle(parts, "atomic", atomic.fd, atomic, created=info is None)


def _open_in_place(parent: int, parts: VolumePath, mode: OpenMode) -> int:
    flags = os.O_RDWR if mode.read else os.O_WRONLY
    flags |= os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    if mode.append:
        flags |= os.O_APPEND
    try:
        fd = os.open(parts[-1], flags, dir_fd=parent)
    except OSError as err:
        fail(err, parts)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PathRefused(f"{show(parts)} is not a regular file")
    return fd


def lstat_path(root_fd: int, parts: VolumePath) -> os.stat_result:
    """``lstat`` of ``parts`` (the root itself for ``()``); a symlink is reported, not followed."""
    if not parts:
        return os.fstat(root_fd)
    with directory(root_fd, parts[:-1]) as parent:
        info = lstat_at(parent, parts[-1])
    if info is None:
        raise FileNotFound(f"{show(parts)}: no such file or directory")
    return info


def remove_file(root_fd: int, parts: VolumePath) -> None:
    """Unlink one file (or a symlink itself); a directory is refused."""
    with directory(root_fd, parts[:-1]) as parent:
        info = lstat_at(parent, parts[-1])
        if info is None:
            raise FileNotFound(f"{show(parts)}: no such file")
        if stat.S_ISDIR(info.st_mode):
            raise WrongFileType(f"{show(parts)} is a directory")
        try:
            os.unlink(parts[-1], dir_fd=parent)
        except OSError as err:
            fail(err, parts)


def remove_empty_directory(root_fd: int, parts: VolumePath) -> None:
    """Remove one empty directory."""
    with directory(root_fd, parts[:-1]) as parent:
        info = existing(parent, parts)
        if not stat.S_ISDIR(info.st_mode):
            raise WrongFileType(f"{show(parts)} is not a directory")
        try:
            os.rmdir(parts[-1], dir_fd=parent)
        except OSError as err:
            fail(err, parts)


def set_times(root_fd: int, parts: VolumePath, atime: float, mtime: float) -> None:
    """Set a file's or directory's times; a symlink is refused, never followed."""
    with directory(root_fd, parts[:-1]) as parent:
        existing(parent, parts)
        try:
            os.utime(parts[-1], (atime, mtime), dir_fd=parent, follow_symlinks=False)
        except OSError as err:
            fail(err, parts)
