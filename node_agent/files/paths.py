"""A path as a user gives it, turned into the components of a path inside a volume.

Paths are always relative to the volume's root; a leading ``/`` is accepted (``/`` is the
root itself) and empty or ``.`` components are dropped. ``..`` is refused, never resolved:
the meaning of a path must not depend on what the game put on disk.

The names of the agent's own unfinished writes (:data:`TEMP_NAME`) are refused in every path:
a write's temporary file is the agent's until it is renamed into place, and one taken under
another name (a rename needs only files.write) would be a file made without files.create.
"""

from __future__ import annotations

import re
from typing import Final

from node_agent.files.errors import InvalidPath
from shared import files_api
from shared.files_api import MAX_NAME_BYTES

__all__ = [
    "MAX_NAME_BYTES",
    "TEMP_NAME",
    "TEMP_PREFIX",
    "TEMP_TOKEN_BYTES",
    "VolumePath",
    "check_name",
    "parse_file_path",
    "parse_path",
    "show",
]

VolumePath = tuple[str, ...]
"""Components of a path below the volume root; ``()`` is the root itself."""
TEMP_PREFIX: Final = ".stellar-write-"
TEMP_TOKEN_BYTES: Final = 8
# Exactly the names the agent makes; a game's own ``.stellar-write-notes`` is not one.
TEMP_NAME: Final = re.compile(re.escape(TEMP_PREFIX) + f"[0-9a-f]{{{2 * TEMP_TOKEN_BYTES}}}")


def _not_in_progress(parts: VolumePath) -> VolumePath:
    for name in parts:
        if TEMP_NAME.fullmatch(name):
            raise InvalidPath(f"{name} is a file being written by the agent; it cannot be used")
    return parts


def check_name(name: str) -> str:
    """One component: not empty, ``.`` or ``..``, no ``/`` or NUL, at most 255 bytes."""
    try:
        checked = files_api.check_name(name)
    except ValueError as err:
        raise InvalidPath(str(err)) from err
    _not_in_progress((checked,))
    return checked


def parse_path(text: str) -> VolumePath:
    """The components of ``text``; raises InvalidPath for ``..``, NUL or an overlong path
    (the rule is :func:`shared.files_api.path_parts`, which the control plane uses too)."""
    try:
        parts = files_api.path_parts(text)
    except ValueError as err:
        raise InvalidPath(str(err)) from err
    return _not_in_progress(parts)


def parse_file_path(text: str) -> VolumePath:
    """Like :func:`parse_path`, but the root itself is refused (a file needs a name)."""
    try:
        parts = files_api.file_path_parts(text)
    except ValueError as err:
        raise InvalidPath(str(err)) from err
    return _not_in_progress(parts)


def show(parts: VolumePath) -> str:
    """The path as the API shows it: ``/`` for the root, else ``/a/b``."""
    return "/" + "/".join(parts)
