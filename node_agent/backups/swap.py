"""Put restored files in place of the live ones, all or nothing, even across a crash.

A restore unpacks into ``.stellar-restore-new`` *inside* the volume. That keeps it on the
volume's own filesystem on every backend: an ext4 volume is a mount point that cannot be
renamed, and a btrfs subvolume carries the qgroup that holds its disk limit (a fresh
sibling subvolume would have none, and a rename between subvolumes is EXDEV). The price:
during a restore the old and the new files must both fit in the server's disk limit.

Once the staging tree is complete and verified, the swap is two rounds of ``renameat``
within one filesystem: every live top-level entry into ``.stellar-restore-old``
(``swap-out``), then every staged entry to the root (``swap-in``); then the old tree is
deleted (``cleanup``). Each phase is written to a journal first. After a crash,
:func:`recover` rolls ``extracting`` and ``swap-out`` back (the live files return) and
rolls ``swap-in`` and ``cleanup`` forward (the verified files stay).
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from typing import Final, Literal

from node_agent.backups.archive import RESERVED_PREFIX
from node_agent.files.confine import DIRECTORY_FLAGS, lstat_at
from node_agent.files.errors import PathRefused
from node_agent.files.tree import delete

STAGE: Final = RESERVED_PREFIX + "new"
ASIDE: Final = RESERVED_PREFIX + "old"
Phase = Literal["extracting", "swap-out", "swap-in", "cleanup"]
Journal = Callable[[Phase], None]


def discard(root_fd: int, name: str) -> None:
    """Remove ``name`` from the root: a tree (links inside unlinked, never followed) or a file.

    A tree of any depth: the live files set aside are the game's, and it may have made a
    directory chain deeper than the file API walks (``files.tree.MAX_DEPTH``).
    """
    info = lstat_at(root_fd, name)
    if info is None:
        return
    if stat.S_ISDIR(info.st_mode):
        try:
            delete(root_fd, (name,))
        except PathRefused:
            _delete_flattening(root_fd, name)
    else:
        os.unlink(name, dir_fd=root_fd)


def _delete_flattening(root_fd: int, name: str) -> None:
    """Delete the tree ``name`` holding two descriptors at most, whatever its depth: each
    subdirectory's entries are moved up into the tree's top (renames within one filesystem)
    before it is removed; files and links are unlinked where they lie, never followed.
    Directories are read as they go (files.tree.walk says why); names moved up during a
    pass are met by it or by the next, which runs until the top is empty."""
    top = os.open(name, DIRECTORY_FLAGS, dir_fd=root_fd)
    try:
        emptied = False
        while not emptied:
            emptied = True
            for child in _entries(top):
                emptied = False
                info = lstat_at(top, child)
                if info is None:
                    continue
                if not stat.S_ISDIR(info.st_mode):
                    os.unlink(child, dir_fd=top)
                    continue
                sub = os.open(child, DIRECTORY_FLAGS, dir_fd=top)
                try:
                    for inner in _entries(sub):
                        os.rename(inner, uuid.uuid4().hex, src_dir_fd=sub, dst_dir_fd=top)
                finally:
                    os.close(sub)
                os.rmdir(child, dir_fd=top)
    finally:
        os.close(top)
    os.rmdir(name, dir_fd=root_fd)


def _entries(dir_fd: int) -> Iterator[str]:
    """The names in a directory, read as they come (never the whole listing at once)."""
    with os.scandir(dir_fd) as scan:
        for item in scan:
            yield item.name


def make_stage(root_fd: int) -> int:
    """An empty staging directory (anything left under its name is removed first)."""
    discard(root_fd, STAGE)
    discard(root_fd, ASIDE)
    os.mkdir(STAGE, 0o700, dir_fd=root_fd)
    return os.open(STAGE, DIRECTORY_FLAGS, dir_fd=root_fd)


def _move_all(source_fd: int, target_fd: int, skip: frozenset[str] = frozenset()) -> None:
    # Read as it goes (the game may have made millions of names here: files.tree.walk).
    for name in _entries(source_fd):
        if name in skip:
            continue
        if lstat_at(target_fd, name) is not None:
            continue  # already moved on a previous, interrupted round
        os.rename(name, name, src_dir_fd=source_fd, dst_dir_fd=target_fd)


def _open_child(root_fd: int, name: str) -> int | None:
    try:
        return os.open(name, DIRECTORY_FLAGS, dir_fd=root_fd)
    except FileNotFoundError:
        return None


def _roll_back(root_fd: int, *, swapped_in: bool) -> None:
    stage = _open_child(root_fd, STAGE)
    aside = _open_child(root_fd, ASIDE)
    try:
        if swapped_in and stage is not None:
            # Everything at the root came from the stage (the live tree is all aside).
            _move_all(root_fd, stage, skip=frozenset({STAGE, ASIDE}))
        if aside is not None:
            _move_all(aside, root_fd)
    finally:
        for fd in (stage, aside):
            if fd is not None:
                os.close(fd)
    discard(root_fd, STAGE)
    discard(root_fd, ASIDE)


def _roll_forward(root_fd: int) -> bool:
    stage = _open_child(root_fd, STAGE)
    if stage is not None:
        try:
            _move_all(stage, root_fd)
        finally:
            os.close(stage)
    discard(root_fd, ASIDE)
    discard(root_fd, STAGE)
    # A complete swap-in keeps the (empty) stage until cleanup; none left means rolled back.
    return stage is not None


def swap_in(root_fd: int, journal: Journal) -> None:
    """Replace the live tree with the staged one; on any error put the live tree back."""
    aside = -1
    swapped_in = False
    try:
        journal("swap-out")
        os.mkdir(ASIDE, 0o700, dir_fd=root_fd)
        aside = os.open(ASIDE, DIRECTORY_FLAGS, dir_fd=root_fd)
        _move_all(root_fd, aside, skip=frozenset({STAGE, ASIDE}))
        journal("swap-in")
        swapped_in = True
        stage = os.open(STAGE, DIRECTORY_FLAGS, dir_fd=root_fd)
        try:
            _move_all(stage, root_fd)
        finally:
            os.close(stage)
    except BaseException:
        if aside >= 0:
            os.close(aside)
            aside = -1
        with contextlib.suppress(OSError):
            _roll_back(root_fd, swapped_in=swapped_in)
        raise
    finally:
        if aside >= 0:
            os.close(aside)
    journal("cleanup")
    discard(root_fd, ASIDE)
    discard(root_fd, STAGE)


def recover(root_fd: int, phase: str) -> bool:
    """Finish an interrupted restore in the volume at ``root_fd``; True if it is restored."""
    if phase == "cleanup":
        _roll_forward(root_fd)
        return True
    if phase == "swap-in":
        return _roll_forward(root_fd)
    _roll_back(root_fd, swapped_in=False)
    return False
