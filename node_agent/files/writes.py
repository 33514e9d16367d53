"""Atomic writes: a new file version goes to a temporary file beside the target, then is
renamed over it, so a failed or refused write (disk full, size exceeded, client gone) leaves
the old version in place and no half-written file behind.

Only a killed agent leaves a temporary file (``TEMP_NAME``) behind; the next agent removes
those at start (:func:`node_agent.files.tree.remove_unfinished_writes`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from types import TracebackType
from typing import Final, Self

from node_agent.files.confine import (
    exchange,
    fail,
    lstat_at,
    make_directories,
    open_directory,
    refuse_links,
)
from node_agent.files.entries import stat_entry
from node_agent.files.errors import FileExists, FileNotFound, PathRefused, WrongFileType
from node_agent.files.paths import TEMP_PREFIX, TEMP_TOKEN_BYTES, VolumePath, show
from shared.files_api import FileEntry

NEW_FILE_MODE: Final = 0o644
Owner = tuple[int, int]


class AtomicWrite:
    """One file being replaced; :meth:`commit` renames it into place, else it vanishes."""

    def __init__(
        self,
        dir_fd: int,
        parts: VolumePath,
        temp_name: str,
        fd: int,
        *,
        overwrite: bool = True,
        create: bool = True,
    ) -> None:
        self._dir_fd = dir_fd
        self._parts = parts
        self._temp_name = temp_name
        self._fd: int | None = fd
        self._overwrite = overwrite
        self._create = create
        self.written = 0

    @classmethod
    def begin(
        cls,
        root_fd: int,
        parts: VolumePath,
        owner: Owner,
        *,
        overwrite: bool = True,
        create: bool = True,
        make_parents: bool = False,
    ) -> Self:
        """Open a temporary file next to ``parts`` (whose parent must not be a symlink).

        Without ``create`` the file must exist now and still at :meth:`commit`
        (FileNotFound otherwise): a write that may only change files never makes one.
        """
        if make_parents:
            dir_fd = make_directories(root_fd, parts[:-1], owner)
        else:
            dir_fd = open_directory(root_fd, parts[:-1])
        try:
            existing = lstat_at(dir_fd, parts[-1])
            refuse_links(existing, parts)
            mode, file_owner = NEW_FILE_MODE, owner
            if existing is None and not create:
                raise FileNotFound(f"{show(parts)} does not exist")
            if existing is not None:
                if stat.S_ISDIR(existing.st_mode):
                    raise WrongFileType(f"{show(parts)} is a directory")
                if not overwrite:
                    raise FileExists(f"{show(parts)} exists already")
                mode = stat.S_IMODE(existing.st_mode)
                file_owner = (existing.st_uid, existing.st_gid)
            temp_name = TEMP_PREFIX + secrets.token_hex(TEMP_TOKEN_BYTES)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(temp_name, flags, 0o600, dir_fd=dir_fd)
            except OSError as err:
                fail(err, parts)
            os.fchown(fd, *file_owner)
            os.fchmod(fd, mode)
        except BaseException:
            os.close(dir_fd)
            raise
        return cls(dir_fd, parts, temp_name, fd, overwrite=overwrite, create=create)

    def narrow(self, *, create: bool, overwrite: bool) -> None:
        """From now on make the file only if ``create`` too, replace one only if ``overwrite``
        too (the writer's permissions changed while the write was open)."""
        self._create = self._create and create
        self._overwrite = self._overwrite and overwrite

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise RuntimeError("the write is finished")
        return self._fd

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data``; a full disk aborts the write and raises InsufficientStorage."""
        view = memoryview(data)
        try:
            while view:
                count = os.write(self.fd, view)
                view = view[count:]
                self.written += count
        except OSError as err:
            self.abort()
            fail(err, self._parts)

    def commit(self) -> FileEntry:
        """Flush, rename over the target, and return the new entry."""
        try:
            # Some filesystems report a full disk (or quota) only when the data is flushed.
            os.fsync(self.fd)
            if not self._create and not self._overwrite:
                raise PathRefused(f"{show(self._parts)}: this write may neither make nor replace")
            if not self._create:
                self._replace_only()
            elif self._overwrite:
                os.rename(
                    self._temp_name,
                    self._parts[-1],
                    src_dir_fd=self._dir_fd,
                    dst_dir_fd=self._dir_fd,
                )
            else:
                # Never replaces: a file that appeared since ``begin`` makes this EEXIST (409).
                os.link(
                    self._temp_name,
                    self._parts[-1],
                    src_dir_fd=self._dir_fd,
                    dst_dir_fd=self._dir_fd,
                    follow_symlinks=False,
                )
                os.unlink(self._temp_name, dir_fd=self._dir_fd)
        except OSError as err:
            self.abort()
            fail(err, self._parts)
        except BaseException:
            self.abort()
            raise
        os.close(self.fd)
        self._fd = None
        try:
            return stat_entry(self._dir_fd, self._parts)
        finally:
            os.close(self._dir_fd)

    def _replace_only(self) -> None:
        """Put the new version in the place of the file there now, never making one: the two
        names are swapped in one step (ENOENT if the file is gone), then the old version,
        now under the temporary name, is unlinked. Where the filesystem cannot swap (NFS,
        some FUSE filesystems), the file is looked for just before the rename, which a
        removal in between escapes."""
        name, temp, dir_fd = self._parts[-1], self._temp_name, self._dir_fd
        try:
            swapped = exchange(dir_fd, temp, name)
        except FileNotFoundError:
            if lstat_at(dir_fd, name) is None:
                raise FileNotFound(f"{show(self._parts)} does not exist") from None
            raise PathRefused(f"{show(self._parts)}: the write's temporary file is gone") from None
        if not swapped:
            if lstat_at(dir_fd, name) is None:
                raise FileNotFound(f"{show(self._parts)} does not exist")
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return
        # The new version is in place; the temporary name holds what was there.
        try:
            os.unlink(temp, dir_fd=dir_fd)
        except IsADirectoryError:
            # A directory took the file's name meanwhile. It gets its name back (then abort
            # drops the new version); were that refused, it keeps the temporary name rather
            # than being lost, and the save is reported as failed either way.
            with contextlib.suppress(OSError):
                exchange(dir_fd, temp, name)
            raise WrongFileType(f"{show(self._parts)} is a directory") from None
        except OSError:
            pass  # saved; the old version is removed at the agent's next start

    def abort(self) -> None:
        """Drop the temporary file (idempotent)."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        with contextlib.suppress(OSError):
            os.unlink(self._temp_name, dir_fd=self._dir_fd)
        os.close(self._dir_fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.abort()


def copy_descriptor(source_fd: int, target: AtomicWrite, chunk: int = 1024 * 1024) -> None:
    """Copy everything from ``source_fd`` into ``target`` (in-kernel where possible)."""
    while True:
        try:
            count = os.copy_file_range(source_fd, target.fd, chunk)
        except OSError:
            break  # not supported between these filesystems: copy by hand below
        if count == 0:
            return
        target.written += count
    while data := os.read(source_fd, chunk):
        target.write(data)
