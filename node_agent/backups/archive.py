"""Write a volume (or a snapshot of it) as a gzip-compressed tar into a :class:`BackupWriter`.

The tree is read through the file API's confinement (``node_agent/files/confine.py``):
directories are opened with ``O_NOFOLLOW`` from the root's descriptor, files with
``O_NOFOLLOW | O_NONBLOCK`` and checked to be regular. A symlink is stored as a symlink
entry (its target text; it is never read through, whatever it names); FIFOs, sockets and
devices are skipped. A file that changes size while it is read (a running game) is stored
at the size it had when opened, cut or zero-padded, so the tar stays well formed.

The files' sizes together may not pass a budget (the server's disk limit, the most a restore
takes): a hard link is stored as a full copy and a sparse file in full, so without it a game
could make a backup, kept on the node's own disk, many times larger than its volume.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from node_agent.files.confine import DIRECTORY_FLAGS, lstat_at, open_regular_file
from node_agent.files.denylist import DenyList
from node_agent.files.errors import FileNotFound, PathRefused, WrongFileType
from node_agent.files.paths import VolumePath
from node_agent.files.tree import MAX_DEPTH
from shared.errors import ApiError, InvalidRequest

COMPRESS_LEVEL: Final = 6
READ_BYTES: Final = 1024 * 1024
# Names the agent itself uses at the volume root during a restore: never backed up.
RESERVED_PREFIX: Final = ".stellar-restore-"


class BackupCancelled(ApiError):
    """The agent is stopping: the backup (or restore) was abandoned."""

    status = 503
    code = "agent_stopping"


class BackupTooLarge(InvalidRequest):
    """The files to back up are bigger, together, than the server's disk limit."""

    code = "backup_too_large"


@dataclass
class ArchiveStats:
    """What went into the archive."""

    files: int = 0
    directories: int = 0
    symlinks: int = 0
    skipped: int = 0
    # The regular files' sizes, as the archive holds them (what a restore writes).
    file_bytes: int = 0
    archive_bytes: int = 0


class _SizedReader:
    """Exactly ``size`` bytes of ``fd``: cut if the file grew, zero-padded if it shrank."""

    def __init__(self, fd: int, size: int, stop: threading.Event) -> None:
        self._fd = fd
        self._left = size
        self._stop = stop
        self.changed = False

    def read(self, size: int = -1) -> bytes:
        if self._stop.is_set():
            raise BackupCancelled("the agent is stopping")
        want = self._left if size < 0 else min(size, self._left)
        if want <= 0:
            return b""
        data = bytearray()
        while len(data) < want:
            more = os.read(self._fd, want - len(data))
            if not more:
                self.changed = True
                data += bytes(want - len(data))
                break
            data += more
        self._left -= want
        return bytes(data)


def walk(
    dir_fd: int, ignore: DenyList, relative: VolumePath = (), depth: int = 0
) -> Iterator[tuple[VolumePath, os.stat_result, int]]:
    """(path, lstat, parent descriptor) of each entry below ``dir_fd``, directories first.

    Ignored paths are pruned (an ignored directory is not entered); symlinks are never entered.
    Entries come in the directory's own order, read as they go: a directory the game filled
    with millions of names costs no memory (``files.tree.walk`` says why).
    """
    if depth > MAX_DEPTH:
        raise PathRefused(f"the directory tree is deeper than {MAX_DEPTH} levels")
    with os.scandir(dir_fd) as scan:
        for item in scan:
            name = item.name
            if depth == 0 and name.startswith(RESERVED_PREFIX):
                continue
            info = lstat_at(dir_fd, name)
            if info is None:
                continue
            child = (*relative, name)
            is_dir = stat.S_ISDIR(info.st_mode)
            if ignore and ignore.denies(child, is_dir=is_dir):
                continue
            yield child, info, dir_fd
            if is_dir:
                try:
                    child_fd = os.open(name, DIRECTORY_FLAGS, dir_fd=dir_fd)
                except OSError:
                    continue  # swapped for a link or removed since the lstat: not entered
                try:
                    yield from walk(child_fd, ignore, child, depth + 1)
                finally:
                    os.close(child_fd)


def _entry(parts: VolumePath, info: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    entry = tarfile.TarInfo("/".join(parts))
    entry.type = kind
    entry.mode = stat.S_IMODE(info.st_mode) & 0o777
    entry.mtime = int(info.st_mtime)
    entry.uid, entry.gid = info.st_uid, info.st_gid
    return entry


def _add(
    tar: tarfile.TarFile,
    parts: VolumePath,
    info: os.stat_result,
    parent: int,
    stats: ArchiveStats,
    budget: int,
    stop: threading.Event,
) -> None:
    if stat.S_ISDIR(info.st_mode):
        tar.addfile(_entry(parts, info, tarfile.DIRTYPE))
        stats.directories += 1
    elif stat.S_ISLNK(info.st_mode):
        entry = _entry(parts, info, tarfile.SYMTYPE)
        try:
            entry.linkname = os.readlink(parts[-1], dir_fd=parent)
        except OSError:
            stats.skipped += 1
            return
        tar.addfile(entry)
        stats.symlinks += 1
    elif stat.S_ISREG(info.st_mode):
        try:
            fd = open_regular_file(parent, parts[-1], parts)
        except (FileNotFound, PathRefused, WrongFileType):
            stats.skipped += 1  # removed, or swapped for something else, since listed
            return
        try:
            opened = os.fstat(fd)
            if stats.file_bytes + opened.st_size > budget:
                raise BackupTooLarge(
                    f"the files to back up are bigger than the server's disk limit "
                    f"({budget // (1024 * 1024)} MiB; hard links and sparse files count in "
                    "full): delete some or leave them out with ignore patterns"
                )
            stats.file_bytes += opened.st_size
            entry = _entry(parts, opened, tarfile.REGTYPE)
            entry.size = opened.st_size
            tar.addfile(entry, _SizedReader(fd, opened.st_size, stop))
        finally:
            os.close(fd)
        stats.files += 1
    else:
        stats.skipped += 1


class _Counting:
    """Counts the tar's bytes on their way to gzip."""

    def __init__(self, sink: gzip.GzipFile) -> None:
        self._sink = sink
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return self._sink.write(data)


def write_archive(
    root_fd: int, ignore: DenyList, sink: BinaryIO, budget: int, stop: threading.Event
) -> ArchiveStats:
    """Stream the tree below ``root_fd`` as tar.gz into ``sink`` (which is not closed).

    ``budget``: the most the regular files may hold together (else :class:`BackupTooLarge`).
    """
    stats = ArchiveStats()
    with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0) as gz:
        counting = _Counting(gz)
        tar = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115 (closed below)
            fileobj=counting,
            mode="w|",
            format=tarfile.PAX_FORMAT,
            bufsize=READ_BYTES,
        )
        try:
            for parts, info, parent in walk(root_fd, ignore):
                if stop.is_set():
                    raise BackupCancelled("the agent is stopping")
                _add(tar, parts, info, parent, stats, budget, stop)
        finally:
            tar.close()
        stats.archive_bytes = counting.count
    return stats
