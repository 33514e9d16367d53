"""Directory listings and single entries, built from ``lstat`` (symlinks never followed)."""

from __future__ import annotations

import os
import stat

from node_agent.files.confine import directory, fail, lstat_at
from node_agent.files.denylist import DenyList
from node_agent.files.errors import FileNotFound, WrongFileType
from node_agent.files.paths import TEMP_NAME, VolumePath, show
from shared.files_api import FileEntry, FileListing, FileType


def file_type(mode: int) -> FileType:
    """The API's name for the kind of file ``mode`` (from lstat) describes."""
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def entry_from_stat(parts: VolumePath, info: os.stat_result, dir_fd: int) -> FileEntry:
    """The API's entry for ``parts`` from its lstat result (``dir_fd`` is its parent)."""
    kind = file_type(info.st_mode)
    target = None
    if kind == "symlink":
        try:
            target = os.readlink(parts[-1], dir_fd=dir_fd)
        except OSError:
            target = None
    return FileEntry(
        name=parts[-1] if parts else "/",
        path=show(parts),
        type=kind,
        size=info.st_size,
        mode=stat.S_IMODE(info.st_mode),
        mtime=info.st_mtime,
        link_target=target,
    )


def stat_entry(dir_fd: int, parts: VolumePath) -> FileEntry:
    """The entry ``parts[-1]`` in the directory ``dir_fd`` (404 if missing)."""
    info = lstat_at(dir_fd, parts[-1])
    if info is None:
        raise FileNotFound(f"{show(parts)}: no such file or directory")
    return entry_from_stat(parts, info, dir_fd)


def list_directory(
    root_fd: int, parts: VolumePath, denied: DenyList, max_entries: int
) -> FileListing:
    """The entries of the directory at ``parts``, deny-listed ones left out."""
    entries: list[FileEntry] = []
    truncated = False
    with directory(root_fd, parts) as dir_fd:
        try:
            with os.scandir(dir_fd) as scan:
                for item in scan:
                    if TEMP_NAME.fullmatch(item.name):
                        continue  # a write in progress: the agent's until it is in place
                    child = (*parts, item.name)
                    try:
                        info = item.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # deleted while we listed
                    if denied and denied.denies(child, is_dir=stat.S_ISDIR(info.st_mode)):
                        continue
                    if len(entries) >= max_entries:
                        truncated = True
                        break
                    entries.append(entry_from_stat(child, info, dir_fd))
        except NotADirectoryError as err:
            raise WrongFileType(f"{show(parts)} is not a directory") from err
        except OSError as err:
            fail(err, parts)
    entries.sort(key=lambda entry: entry.name)
    return FileListing(path=show(parts), entries=entries, truncated=truncated)
