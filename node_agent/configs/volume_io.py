"""A configuration file read from and written to a server's volume, confined.

Reads go through :mod:`node_agent.files.confine` (every directory opened beneath the volume
root with no symlink followed, the file itself opened ``O_NOFOLLOW``), writes through
:class:`node_agent.files.writes.AtomicWrite` (a temporary file beside it, renamed over it, the
owner and mode of the old file kept, the game user's for a new one). A symlink, a special
file or a file over :data:`MAX_CONFIG_BYTES` is refused and never read.
"""

from __future__ import annotations

import os
import stat
from typing import Final

from node_agent.files.confine import lstat_at, open_directory, open_regular_file, refuse_links
from node_agent.files.errors import FileNotFound
from node_agent.files.paths import VolumePath, show
from node_agent.files.writes import AtomicWrite, Owner
from shared.errors import ApiError

MAX_CONFIG_BYTES: Final = 8 * 1024 * 1024


class ConfigRefused(Exception):
    """The file cannot be used: a symlink or special file, too large, or a bad path."""


def read_config(root_fd: int, parts: VolumePath, max_bytes: int = MAX_CONFIG_BYTES) -> bytes | None:
    """The file's bytes, or None if it (or a directory on its path) does not exist."""
    try:
        parent = open_directory(root_fd, parts[:-1])
    except FileNotFound:
        return None
    except ApiError as err:
        raise ConfigRefused(err.message) from err
    try:
        info = lstat_at(parent, parts[-1])
        if info is None:
            return None
        try:
            refuse_links(info, parts)
        except ApiError as err:
            raise ConfigRefused(err.message) from err
        if stat.S_ISDIR(info.st_mode):
            raise ConfigRefused(f"{show(parts)} is a directory")
        if info.st_size > max_bytes:
            raise ConfigRefused(_too_large(parts, max_bytes))
        try:
            fd = open_regular_file(parent, parts[-1], parts)
        except ApiError as err:
            raise ConfigRefused(err.message) from err
        try:
            chunks: list[bytes] = []
            left = max_bytes + 1  # one more: a file that grew past the cap is caught
            while left > 0 and (chunk := os.read(fd, min(left, 1024 * 1024))):
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
    finally:
        os.close(parent)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise ConfigRefused(_too_large(parts, max_bytes))
    return data


def _too_large(parts: VolumePath, max_bytes: int) -> str:
    return f"{show(parts)} is larger than {max_bytes / (1024 * 1024):g} MiB, the cap for it"


def write_config(root_fd: int, parts: VolumePath, data: bytes, owner: Owner) -> None:
    """Replace (or create, with its directories) the file atomically."""
    try:
        with AtomicWrite.begin(root_fd, parts, owner, make_parents=True) as pending:
            pending.write(data)
            pending.commit()
    except ApiError as err:
        raise ConfigRefused(err.message) from err
