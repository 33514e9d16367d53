"""Open things beneath a volume root without ever following a symlink.

Every operation starts from a descriptor of the volume's root directory. Directories below
it are opened with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)``
(Linux >= 5.6) or, where that syscall is missing or filtered, one
``openat(O_NOFOLLOW | O_DIRECTORY)`` per component. The last component of a path is then
only ever touched through ``*at`` calls on its parent's descriptor with no-follow semantics.
A game that swaps a directory for a symlink between two requests (or during one) can only
make an operation fail: a descriptor, once open, keeps naming the directory it was opened on.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, NoReturn

from node_agent.files.errors import (
    FileExists,
    FileNotFound,
    InsufficientStorage,
    InvalidPath,
    PathRefused,
    WrongFileType,
)
from node_agent.files.paths import VolumePath, show
from shared.errors import Conflict, InvalidRequest

SYS_OPENAT2: Final = 437  # the same number on every architecture (new-style syscall table)
RESOLVE_NO_MAGICLINKS: Final = 0x02
RESOLVE_NO_SYMLINKS: Final = 0x04
RESOLVE_BENEATH: Final = 0x08
CONFINED: Final = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
DIRECTORY_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NO_SPACE: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


_libc = ctypes.CDLL(None, use_errno=True)


def openat2(dir_fd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """The raw ``openat2`` syscall; raises OSError like ``os.open``."""
    how = _OpenHow(flags, mode, resolve)
    fd = int(
        _libc.syscall(SYS_OPENAT2, dir_fd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return fd


@functools.cache
def openat2_works() -> bool:
    """Whether this kernel (and any seccomp filter around us) lets ``openat2`` through."""
    try:
        os.close(openat2(-100, "/", os.O_PATH | os.O_CLOEXEC, RESOLVE_NO_SYMLINKS))
    except OSError:
        return False
    return True


RENAME_EXCHANGE: Final = 2


def exchange(dir_fd: int, first: str, second: str) -> bool:
    """Swap two names in ``dir_fd`` in one step (``renameat2(RENAME_EXCHANGE)``, glibc's
    wrapper); False where the C library or the filesystem does not offer it. Raises OSError
    like ``os.rename`` — ENOENT when either name is missing, in which case nothing moved."""
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(
        dir_fd, os.fsencode(first), dir_fd, os.fsencode(second), ctypes.c_uint(RENAME_EXCHANGE)
    )
    if result != 0:
        code = ctypes.get_errno()
        if code in {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP}:
            return False
        raise OSError(code, os.strerror(code), second)
    return True


def fail(err: OSError, parts: VolumePath) -> NoReturn:
    """Raise the API error for ``err`` met on ``parts`` (unknown errors propagate)."""
    where = show(parts)
    code = err.errno
    if code == errno.ELOOP:
        raise PathRefused(f"{where}: a symlink is in the way; it is never followed") from err
    if code == errno.EXDEV:
        raise PathRefused(f"{where}: the path leaves the server's volume") from err
    if code == errno.ENOENT:
        raise FileNotFound(f"{where}: no such file or directory") from err
    if code == errno.ENOTDIR:
        raise WrongFileType(f"{where}: a component of the path is not a directory") from err
    if code == errno.EISDIR:
        raise WrongFileType(f"{where} is a directory") from err
    if code == errno.EEXIST:
        raise FileExists(f"{where} exists already") from err
    if code == errno.ENOTEMPTY:
        raise Conflict(f"{where} is not empty") from err
    if code in NO_SPACE:
        raise InsufficientStorage(f"no space left in the server's volume for {where}") from err
    if code == errno.ENAMETOOLONG:
        raise InvalidPath(f"{where}: the path is too long") from err
    if code in {errno.EACCES, errno.EPERM, errno.ENXIO, errno.EAGAIN, errno.ETXTBSY}:
        raise PathRefused(f"{where} cannot be used for this operation") from err
    if code == errno.EINVAL:
        raise InvalidRequest(f"{where}: the operation is not possible on this path") from err
    raise err


def open_root(volume: Path) -> int:
    """A descriptor of the volume's root directory (the agent's own, trusted path)."""
    try:
        return os.open(volume, DIRECTORY_FLAGS)
    except OSError as err:
        fail(err, ())


def _open_child_directory(dir_fd: int, name: str) -> int:
    try:
        return os.open(name, DIRECTORY_FLAGS, dir_fd=dir_fd)
    except NotADirectoryError as err:
        # O_NOFOLLOW | O_DIRECTORY says ENOTDIR for a symlink: report it as the link it is.
        info = lstat_at(dir_fd, name)
        if info is not None and stat.S_ISLNK(info.st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name) from err
        raise


def _open_directory_stepwise(root_fd: int, parts: VolumePath) -> int:
    fd = os.open(".", DIRECTORY_FLAGS, dir_fd=root_fd)
    for part in parts:
        try:
            child = _open_child_directory(fd, part)
        finally:
            os.close(fd)
        fd = child
    return fd


def open_directory(root_fd: int, parts: VolumePath, *, use_openat2: bool | None = None) -> int:
    """A new descriptor of the directory at ``parts``; any symlink on the way is refused."""
    confined = openat2_works() if use_openat2 is None else use_openat2
    try:
        if confined:
            # No O_NOFOLLOW here: RESOLVE_NO_SYMLINKS refuses a trailing link too, with ELOOP.
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            return openat2(root_fd, "/".join(parts) or ".", flags, CONFINED)
        return _open_directory_stepwise(root_fd, parts)
    except OSError as err:
        fail(err, parts)


@contextmanager
def directory(root_fd: int, parts: VolumePath) -> Iterator[int]:
    """:func:`open_directory` as a context manager that closes the descriptor."""
    fd = open_directory(root_fd, parts)
    try:
        yield fd
    finally:
        os.close(fd)


def make_directories(root_fd: int, parts: VolumePath, owner: tuple[int, int]) -> int:
    """Open the directory at ``parts``, creating missing components (``mkdir -p``).

    One component at a time: ``mkdirat``, then an ``O_NOFOLLOW`` open, so a symlink planted
    in place of a directory (before or after our mkdir) is refused, never entered.
    """
    fd = os.open(".", DIRECTORY_FLAGS, dir_fd=root_fd)
    try:
        for index, part in enumerate(parts):
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
                os.chown(part, *owner, dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                pass
            except OSError as err:
                fail(err, parts[: index + 1])
            try:
                child = _open_child_directory(fd, part)
            except OSError as err:
                fail(err, parts[: index + 1])
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """``fstatat(AT_SYMLINK_NOFOLLOW)`` of ``name``, or None if it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_regular_file(dir_fd: int, name: str, parts: VolumePath) -> int:
    """Open ``name`` for reading; refuse a symlink, directory, FIFO, socket or device."""
    # O_NONBLOCK: opening a FIFO the game planted must not hang a worker thread.
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError as err:
        fail(err, parts)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise WrongFileType(f"{show(parts)} is a directory")
        raise PathRefused(f"{show(parts)} is not a regular file")
    return fd


def refuse_links(info: os.stat_result | None, parts: VolumePath) -> None:
    """Raise PathRefused if ``info`` (an lstat result) is a symlink or a special file."""
    if info is None:
        return
    if stat.S_ISLNK(info.st_mode):
        raise PathRefused(f"{show(parts)} is a symlink; the agent never follows one")
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise PathRefused(f"{show(parts)} is not a regular file or directory")
