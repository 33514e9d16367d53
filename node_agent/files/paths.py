"""A path as a user gives it, turned into the components of a path inside a volume.

Paths are always relative to the volume's root; a leading ``/`` is accepted (``/`` is the
root itself) and empty or ``.`` components are dropped. ``..`` is refused, never resolved:
the meaning of a path must not depend on what the game put on disk.
"""

from __future__ import annotations

from node_agent.files.errors import InvalidPath
from shared import files_api
from shared.files_api import MAX_NAME_BYTES

__all__ = ["MAX_NAME_BYTES", "VolumePath", "check_name", "parse_file_path", "parse_path", "show"]

VolumePath = tuple[str, ...]
"""Components of a path below the volume root; ``()`` is the root itself."""


def check_name(name: str) -> str:
    """One component: not empty, ``.`` or ``..``, no ``/`` or NUL, at most 255 bytes."""
    try:
        return files_api.check_name(name)
    except ValueError as err:
        raise InvalidPath(str(err)) from err


def parse_path(text: str) -> VolumePath:
    """The components of ``text``; raises InvalidPath for ``..``, NUL or an overlong path
    (the rule is :func:`shared.files_api.path_parts`, which the control plane uses too)."""
    try:
        return files_api.path_parts(text)
    except ValueError as err:
        raise InvalidPath(str(err)) from err


def parse_file_path(text: str) -> VolumePath:
    """Like :func:`parse_path`, but the root itself is refused (a file needs a name)."""
    try:
        return files_api.file_path_parts(text)
    except ValueError as err:
        raise InvalidPath(str(err)) from err


def show(parts: VolumePath) -> str:
    """The path as the API shows it: ``/`` for the root, else ``/a/b``."""
    return "/" + "/".join(parts)
