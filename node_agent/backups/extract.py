"""Decrypt, verify and unpack a backup into a fresh staging directory.

Every chunk is authenticated as it is read; the restore is only good once the final chunk
has verified too (:meth:`BackupReader.drain`), so a truncated backup fails here, after
writing only into the staging directory, which the caller then deletes. Entries go through
the file API's rules: names are checked like an archive's (no absolute or ``..`` name),
parent directories are opened one ``O_NOFOLLOW`` component at a time (so a symlink entry can
never be a way out for a later entry), files are created ``O_EXCL | O_NOFOLLOW``, hard
links, devices and FIFOs are refused. Symlink entries are recreated as links (their text
only; nothing is followed), as the game had them. Everything belongs to the game user.
"""

from __future__ import annotations

import ctypes
import gzip
import os
import tarfile
import threading
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from node_agent.backups.archive import BackupCancelled
from node_agent.files.confine import fail, make_directories
from node_agent.files.errors import ArchiveRefused
from node_agent.files.extract import entry_parts
from node_agent.files.paths import VolumePath
from node_agent.files.writes import Owner
from shared.backup_format import BackupIntegrityError, BackupReader
from shared.errors import InvalidRequest

CHUNK: Final = 1024 * 1024
NEW_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_libc = ctypes.CDLL(None, use_errno=True)


class BackupDamaged(InvalidRequest):
    """The backup does not verify under this key (wrong key, damaged, truncated, reordered)."""

    code = "backup_damaged"


@dataclass
class ExtractedTree:
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    bytes: int = 0


class _Parents:
    """The open descriptor of the last parent directory used (entries come grouped)."""

    def __init__(self, stage_fd: int, owner: Owner) -> None:
        self._stage_fd = stage_fd
        self._owner = owner
        self._parts: VolumePath | None = None
        self._fd = -1

    def open(self, parts: VolumePath) -> int:
        if parts != self._parts:
            self.close()
            self._fd = make_directories(self._stage_fd, parts, self._owner)
            self._parts = parts
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._parts = -1, None


def _write_file(
    parent: int,
    parts: VolumePath,
    data: IO[bytes],
    member: tarfile.TarInfo,
    owner: Owner,
    stop: threading.Event,
) -> int:
    try:
        fd = os.open(parts[-1], NEW_FILE_FLAGS, 0o600, dir_fd=parent)
    except OSError as err:
        fail(err, parts)
    written = 0
    try:
        os.fchown(fd, *owner)
        while chunk := data.read(CHUNK):
            if stop.is_set():
                raise BackupCancelled("the agent is stopping")
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
            written += len(chunk)
        os.fchmod(fd, member.mode & 0o777)
        os.utime(fd, (member.mtime, member.mtime))
    except OSError as err:
        fail(err, parts)
    finally:
        os.close(fd)
    return written


def _unpack(
    tar: tarfile.TarFile, stage_fd: int, owner: Owner, budget: int, stop: threading.Event
) -> ExtractedTree:
    tree = ExtractedTree()
    parents = _Parents(stage_fd, owner)
    try:
        for member in tar:
            parts = entry_parts(member.name)
            if not parts:
                continue
            if member.isdir():
                fd = make_directories(stage_fd, parts, owner)
                os.fchmod(fd, member.mode & 0o777)
                os.close(fd)
                tree.directories += 1
            elif member.isreg():
                if tree.bytes + member.size > budget:
                    raise ArchiveRefused("the backup is larger than the server's disk limit")
                data = tar.extractfile(member)
                if data is None:
                    raise BackupDamaged(f"cannot read the entry {member.name[:100]!r}")
                parent = parents.open(parts[:-1])
                tree.bytes += _write_file(parent, parts, data, member, owner, stop)
                tree.files += 1
            elif member.issym():
                if "\x00" in member.linkname or len(member.linkname) > 4095:
                    raise ArchiveRefused(f"bad symlink entry: {member.name[:100]!r}")
                parent = parents.open(parts[:-1])
                try:
                    os.symlink(member.linkname, parts[-1], dir_fd=parent)
                    os.chown(parts[-1], *owner, dir_fd=parent, follow_symlinks=False)
                except OSError as err:
                    fail(err, parts)
                tree.symlinks += 1
            else:
                raise ArchiveRefused(f"the backup holds a link or special file: {member.name!r}")
    finally:
        parents.close()
    return tree


def sync_filesystem(fd: int) -> None:
    """``syncfs``: everything written on the filesystem of ``fd`` reaches the disk."""
    if _libc.syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def extract_backup(
    backup_file: Path,
    key: bytes,
    backup_id: uuid.UUID,
    stage_fd: int,
    owner: Owner,
    budget: int,
    stop: threading.Event,
) -> ExtractedTree:
    """Unpack the backup into the (empty) directory ``stage_fd``, verifying all of it."""
    try:
        with backup_file.open("rb") as raw:
            reader = BackupReader(raw, key, backup_id)
            with gzip.GzipFile(fileobj=reader, mode="rb") as gz:  # type: ignore[call-overload]
                with tarfile.open(fileobj=gz, mode="r|", bufsize=CHUNK) as tar:
                    tree = _unpack(tar, stage_fd, owner, budget, stop)
                while gz.read(CHUNK):
                    pass
            reader.drain()
    except BackupIntegrityError as err:
        raise BackupDamaged(str(err)) from err
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise BackupDamaged("the backup's archive is damaged") from err
    sync_filesystem(stage_fd)
    return tree


def check_key(backup_file: Path, key: bytes, backup_id: uuid.UUID) -> None:
    """Decrypt the first chunk only: a quick answer for a wrong key (400 backup_damaged)."""
    try:
        with backup_file.open("rb") as raw:
            BackupReader(raw, key, backup_id).read(1)
    except BackupIntegrityError as err:
        raise BackupDamaged(str(err)) from err
