"""A path as a user gives it, turned into the components of a path inside a volume.

Paths are always relative to the volume's root; a leading ``/`` is accepted (``/`` is the
root itself) and empty or ``.`` components are dropped. ``..`` is refused, never resolved:
the meaning of a path must not depend on what the game put on disk.
"""

from __future__ import annotations

from typing import Final

from node_agent.files.errors import InvalidPath
from shared.files_api import check_path_length

MAX_NAME_BYTES: Final = 255

VolumePath = tuple[str, ...]
"""Components of a path below the volume root; ``()`` is the root itself."""


def check_name(name: str) -> str:
    """One component: not empty, ``.`` or ``..``, no ``/`` or NUL, at most 255 bytes."""
    if name in {"", ".", ".."} or "/" in name or "\x00" in name:
        raise InvalidPath(f"{name[:64]!r} is not a valid file name")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidPath("file names must be valid UTF-8") from err
    if len(encoded) > MAX_NAME_BYTES:
        raise InvalidPath("a file name is longer than 255 bytes")
    return name


def parse_path(text: str) -> VolumePath:
    """The components of ``text``; raises InvalidPath for ``..``, NUL or an overlong path."""
    try:
        check_path_length(text)
    except ValueError as err:
        raise InvalidPath(str(err)) from err
    parts = [part for part in text.split("/") if part not in {"", "."}]
    return tuple(check_name(part) for part in parts)


def parse_file_path(text: str) -> VolumePath:
    """Like :func:`parse_path`, but the root itself is refused (a file needs a name)."""
    parts = parse_path(text)
    if not parts:
        raise InvalidPath("the path names the volume root, not a file")
    return parts


def show(parts: VolumePath) -> str:
    """The path as the API shows it: ``/`` for the root, else ``/a/b``."""
    return "/" + "/".join(parts)
