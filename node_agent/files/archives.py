"""Compress selected paths of a volume into a tar.gz or zip archive in the same volume.

Files are read through the same confinement as every other operation; symlinks and special
files are left out of the archive (never followed). The archive is written like any other
file: to a temporary name, renamed into place when complete.
"""

from __future__ import annotations

import datetime
import os
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from typing import BinaryIO, Protocol

from node_agent.files.confine import directory, fail, open_regular_file
from node_agent.files.errors import InvalidPath
from node_agent.files.paths import VolumePath, check_name
from node_agent.files.tree import existing, walk
from node_agent.files.writes import AtomicWrite, Owner
from shared.errors import Conflict
from shared.files_api import ArchiveFormat, FileEntry

CHUNK = 1024 * 1024


class _ArchiveWriter(Protocol):
    def add_directory(self, name: str, info: os.stat_result) -> None: ...
    def add_file(self, name: str, info: os.stat_result, source: BinaryIO) -> None: ...
    def close(self) -> None: ...


class _TarWriter:
    def __init__(self, sink: BinaryIO) -> None:
        self._tar = tarfile.open(  # noqa: SIM115 (closed by close())
            fileobj=sink, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=6
        )

    def _info(self, name: str, info: os.stat_result, kind: bytes) -> tarfile.TarInfo:
        entry = tarfile.TarInfo(name)
        entry.type = kind
        entry.mode = stat.S_IMODE(info.st_mode) & 0o777
        entry.mtime = int(info.st_mtime)
        entry.uid, entry.gid = info.st_uid, info.st_gid
        return entry

    def add_directory(self, name: str, info: os.stat_result) -> None:
        self._tar.addfile(self._info(name, info, tarfile.DIRTYPE))

    def add_file(self, name: str, info: os.stat_result, source: BinaryIO) -> None:
        entry = self._info(name, info, tarfile.REGTYPE)
        entry.size = info.st_size
        self._tar.addfile(entry, source)

    def close(self) -> None:
        self._tar.close()


class _ZipWriter:
    def __init__(self, sink: BinaryIO) -> None:
        self._zip = zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED)

    @staticmethod
    def _info(name: str, info: os.stat_result) -> zipfile.ZipInfo:
        when = time.gmtime(max(info.st_mtime, 315_532_800))  # zip dates start in 1980
        entry = zipfile.ZipInfo(name, date_time=when[:6])
        entry.external_attr = (info.st_mode & 0xFFFF) << 16
        entry.compress_type = zipfile.ZIP_DEFLATED
        return entry

    def add_directory(self, name: str, info: os.stat_result) -> None:
        self._zip.writestr(self._info(name + "/", info), b"")

    def add_file(self, name: str, info: os.stat_result, source: BinaryIO) -> None:
        remaining = info.st_size
        with self._zip.open(self._info(name, info), "w", force_zip64=True) as target:
            while remaining > 0 and (data := source.read(min(CHUNK, remaining))):
                target.write(data)
                remaining -= len(data)
        if remaining:
            raise OSError(f"{name} changed while it was archived")

    def close(self) -> None:
        self._zip.close()


def default_archive_name(archive_format: ArchiveFormat) -> str:
    """``archive-<UTC time>.<format>``."""
    now = datetime.datetime.now(datetime.UTC)
    return f"archive-{now:%Y-%m-%d-%H%M%S}.{archive_format}"


def _entries(base_fd: int, relative: VolumePath) -> Iterator[tuple[str, os.stat_result, int]]:
    """(archive name, lstat, parent descriptor) of ``relative`` and all below it."""
    with directory(base_fd, relative[:-1]) as parent:
        info = existing(parent, relative)
        yield "/".join(relative), info, parent
        if not stat.S_ISDIR(info.st_mode):
            return
        with directory(parent, relative[-1:]) as dir_fd:
            for below, child, child_parent in walk(dir_fd):
                yield "/".join((*relative, *below)), child, child_parent


def compress(
    root_fd: int,
    base: VolumePath,
    selected: list[VolumePath],
    archive_format: ArchiveFormat,
    name: str,
    owner: Owner,
) -> FileEntry:
    """Write ``selected`` (relative to ``base``) into the archive ``base/name``."""
    target = (*base, check_name(name))
    if any(not relative for relative in selected):
        raise InvalidPath("select files or directories inside the directory, not itself")
    with ExitStack() as stack:
        base_fd = stack.enter_context(directory(root_fd, base))
        write = stack.enter_context(AtomicWrite.begin(root_fd, target, owner, overwrite=False))
        sink = stack.enter_context(os.fdopen(os.dup(write.fd), "wb"))
        writer: _ArchiveWriter = (_TarWriter if archive_format == "tar.gz" else _ZipWriter)(sink)
        try:
            for relative in selected:
                for entry_name, info, parent in _entries(base_fd, relative):
                    if stat.S_ISDIR(info.st_mode):
                        writer.add_directory(entry_name, info)
                    elif stat.S_ISREG(info.st_mode):
                        leaf = entry_name.rsplit("/", 1)[-1]
                        fd = open_regular_file(parent, leaf, (*base, *entry_name.split("/")))
                        with os.fdopen(fd, "rb") as source:
                            writer.add_file(entry_name, os.fstat(fd), source)
            writer.close()
            sink.flush()
        except OSError as err:
            if err.errno is None:
                raise Conflict("a file changed while it was archived; try again") from err
            fail(err, target)
        return write.commit()
    raise AssertionError("unreachable")
