"""Directory-tree operations inside one volume: mkdir, rename, copy, delete, chmod, walk.

Each works on a parent directory's descriptor (opened by :mod:`confine`) and the last name
of the path, with no-follow ``*at`` calls. The target itself is refused if it is a symlink:
the agent never acts through one, and never on one it did not create. Inside a directory
being deleted, symlinks are unlinked (the link, not what it names), and a directory swapped
for a symlink mid-walk is unlinked too, never entered.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from typing import Final

from node_agent.files.confine import (
    DIRECTORY_FLAGS,
    directory,
    fail,
    lstat_at,
    open_regular_file,
    refuse_links,
)
from node_agent.files.denylist import DenyList
from node_agent.files.entries import stat_entry
from node_agent.files.errors import (
    FileExists,
    FileNotFound,
    InvalidPath,
    PathDenied,
    PathRefused,
    WrongFileType,
)
from node_agent.files.paths import TEMP_NAME, VolumePath, show
from node_agent.files.writes import AtomicWrite, Owner, copy_descriptor
from shared.files_api import FileEntry

# Deeper trees are refused rather than walked (each level holds one descriptor).
MAX_DEPTH: Final = 256


def remove_unfinished_writes(root_fd: int) -> int:
    """Unlink every regular file named like an atomic write's temporary file; say how many.

    Only a killed agent leaves one behind. Symlinks and directories of that name are left
    alone, and nothing is followed: each name is unlinked in the directory that was walked.
    """
    removed = 0
    for parts, info, parent_fd in walk(root_fd):
        if stat.S_ISREG(info.st_mode) and TEMP_NAME.fullmatch(parts[-1]):
            try:
                os.unlink(parts[-1], dir_fd=parent_fd)
            except OSError:
                continue  # gone, or swapped for a directory since the walk looked
            removed += 1
    return removed


def existing(dir_fd: int, parts: VolumePath) -> os.stat_result:
    """lstat of ``parts[-1]`` in ``dir_fd``; 404 if missing, 403 if a symlink or special."""
    info = lstat_at(dir_fd, parts[-1])
    if info is None:
        raise FileNotFound(f"{show(parts)}: no such file or directory")
    refuse_links(info, parts)
    return info


def walk(
    dir_fd: int, relative: VolumePath = (), depth: int = 0
) -> Iterator[tuple[VolumePath, os.stat_result, int]]:
    """Every entry below ``dir_fd`` as (path relative to it, lstat, parent descriptor).

    A directory is yielded before its contents; symlinks are yielded, never entered. Entries
    come in the directory's own order, read as they go (two descriptors per level): a game
    can fill one directory with millions of names, and a walk that listed (and sorted) each
    directory whole first needed memory for all of them — at every agent start, gigabytes.
    """
    if depth > MAX_DEPTH:
        raise PathRefused(f"the directory tree is deeper than {MAX_DEPTH} levels")
    with os.scandir(dir_fd) as scan:
        for item in scan:
            name = item.name
            info = lstat_at(dir_fd, name)
            if info is None:
                continue
            child = (*relative, name)
            yield child, info, dir_fd
            if stat.S_ISDIR(info.st_mode):
                try:
                    child_fd = os.open(name, DIRECTORY_FLAGS, dir_fd=dir_fd)
                except OSError:
                    continue  # swapped for something else since the lstat: not entered
                try:
                    yield from walk(child_fd, child, depth + 1)
                finally:
                    os.close(child_fd)


def ensure_allowed(
    root_fd: int, parts: VolumePath, is_dir: bool, denied: DenyList, *also: VolumePath
) -> None:
    """Refuse (403) if the deny-list names ``parts``, anything below it, or the same
    relative paths below each of ``also`` (where a rename or copy would put them)."""
    if not denied:
        return
    prefixes = (parts, *also)
    for prefix in prefixes:
        if denied.denies(prefix, is_dir=is_dir):
            raise PathDenied(f"{show(prefix)} is on the server's deny-list")
    if not is_dir:
        return
    with directory(root_fd, parts) as dir_fd:
        for relative, info, _ in walk(dir_fd):
            for prefix in prefixes:
                if denied.denies((*prefix, *relative), is_dir=stat.S_ISDIR(info.st_mode)):
                    raise PathDenied(f"{show(parts)} holds files on the server's deny-list")


def make_directory(root_fd: int, parts: VolumePath, owner: Owner) -> FileEntry:
    """Create the directory ``parts`` (its parent must exist and not be a symlink)."""
    with directory(root_fd, parts[:-1]) as parent:
        try:
            os.mkdir(parts[-1], 0o755, dir_fd=parent)
            os.chown(parts[-1], *owner, dir_fd=parent, follow_symlinks=False)
        except OSError as err:
            fail(err, parts)
        return stat_entry(parent, parts)


def rename(root_fd: int, source: VolumePath, target: VolumePath) -> FileEntry:
    """Move ``source`` to ``target``; the target must not exist."""
    if target[: len(source)] == source:
        raise InvalidPath("a directory cannot be moved into itself")
    with (
        directory(root_fd, source[:-1]) as source_dir,
        directory(root_fd, target[:-1]) as target_dir,
    ):
        existing(source_dir, source)
        if lstat_at(target_dir, target[-1]) is not None:
            raise FileExists(f"{show(target)} exists already")
        try:
            os.rename(source[-1], target[-1], src_dir_fd=source_dir, dst_dir_fd=target_dir)
        except OSError as err:
            fail(err, target)
        return stat_entry(target_dir, target)


def _copy_file(source_dir: int, name: str, target_dir: int, owner: Owner) -> None:
    source_fd = open_regular_file(source_dir, name, (name,))
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        mode = stat.S_IMODE(os.fstat(source_fd).st_mode)
        try:
            target_fd = os.open(name, flags, 0o600, dir_fd=target_dir)
        except OSError as err:
            fail(err, (name,))
        try:
            os.fchown(target_fd, *owner)
            os.fchmod(target_fd, mode)
            while True:
                try:
                    if os.copy_file_range(source_fd, target_fd, 1024 * 1024) == 0:
                        break
                except OSError as err:
                    if err.errno not in {errno.EXDEV, errno.EINVAL, errno.ENOSYS}:
                        fail(err, (name,))
                    while data := os.read(source_fd, 1024 * 1024):
                        os.write(target_fd, data)
                    break
        finally:
            os.close(target_fd)
    finally:
        os.close(source_fd)


def _copy_tree(source_fd: int, target_fd: int, owner: Owner, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise PathRefused(f"the directory tree is deeper than {MAX_DEPTH} levels")
    with os.scandir(source_fd) as scan:  # read as it goes, as walk() does
        for item in scan:
            name = item.name
            info = lstat_at(source_fd, name)
            if info is None:
                continue
            if stat.S_ISREG(info.st_mode):
                _copy_file(source_fd, name, target_fd, owner)
            elif stat.S_ISDIR(info.st_mode):
                os.mkdir(name, 0o755, dir_fd=target_fd)
                os.chown(name, *owner, dir_fd=target_fd, follow_symlinks=False)
                child_source = os.open(name, DIRECTORY_FLAGS, dir_fd=source_fd)
                try:
                    child_target = os.open(name, DIRECTORY_FLAGS, dir_fd=target_fd)
                    try:
                        _copy_tree(child_source, child_target, owner, depth + 1)
                    finally:
                        os.close(child_target)
                finally:
                    os.close(child_source)
            # Symlinks and special files are not copied: the copy holds regular files only.


def copy(root_fd: int, source: VolumePath, target: VolumePath, owner: Owner) -> FileEntry:
    """Copy a file or a directory tree to ``target``, which must not exist."""
    if target[: len(source)] == source:
        raise InvalidPath("a directory cannot be copied into itself")
    with directory(root_fd, source[:-1]) as source_dir:
        info = existing(source_dir, source)
        if stat.S_ISREG(info.st_mode):
            source_fd = open_regular_file(source_dir, source[-1], source)
            try:
                with AtomicWrite.begin(root_fd, target, owner, overwrite=False) as write:
                    copy_descriptor(source_fd, write)
                    return write.commit()
            finally:
                os.close(source_fd)
    with directory(root_fd, source) as source_fd, directory(root_fd, target[:-1]) as parent:
        try:
            os.mkdir(target[-1], 0o755, dir_fd=parent)
            os.chown(target[-1], *owner, dir_fd=parent, follow_symlinks=False)
        except OSError as err:
            fail(err, target)
        target_fd = os.open(target[-1], DIRECTORY_FLAGS, dir_fd=parent)
        try:
            _copy_tree(source_fd, target_fd, owner)
        except BaseException as err:
            os.close(target_fd)
            # A copy that failed half way is removed, not left for the user to find.
            with contextlib.suppress(OSError):
                _remove_tree(parent, target[-1])
            if isinstance(err, OSError):
                fail(err, target)
            raise
        os.close(target_fd)
        return stat_entry(parent, target)


def _remove_tree(parent_fd: int, name: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise PathRefused(f"the directory tree is deeper than {MAX_DEPTH} levels")
    try:
        fd = os.open(name, DIRECTORY_FLAGS, dir_fd=parent_fd)
    except OSError as err:
        if err.errno not in {errno.ELOOP, errno.ENOTDIR}:
            raise
        # Swapped for a symlink or a file since it was listed: remove that entry itself.
        os.unlink(name, dir_fd=parent_fd)
        return
    try:
        with os.scandir(fd) as scan:  # read as it goes, as walk() does
            for item in scan:
                child = item.name
                info = lstat_at(fd, child)
                if info is None:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    _remove_tree(fd, child, depth + 1)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(child, dir_fd=fd)  # a symlink goes, never what it names
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def delete(root_fd: int, parts: VolumePath) -> None:
    """Delete a file, or a directory and everything in it (links unlinked, never followed)."""
    with directory(root_fd, parts[:-1]) as parent:
        info = existing(parent, parts)
        try:
            if stat.S_ISDIR(info.st_mode):
                _remove_tree(parent, parts[-1])
            else:
                os.unlink(parts[-1], dir_fd=parent)
        except OSError as err:
            fail(err, parts)


def change_mode(root_fd: int, parts: VolumePath, mode: int) -> FileEntry:
    """Set the permission bits of a file or directory; a symlink is refused, not followed."""
    with directory(root_fd, parts[:-1]) as parent:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(parts[-1], flags, dir_fd=parent)
        except OSError as err:
            fail(err, parts)
        try:
            info = os.fstat(fd)
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise WrongFileType(f"{show(parts)} is not a regular file or directory")
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        return stat_entry(parent, parts)
