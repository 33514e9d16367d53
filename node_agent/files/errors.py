"""What a file operation can refuse, as errors the API turns into its one error shape.

ApiError
├── InvalidRequest
│   ├── InvalidPath           (400) empty, ``..``, NUL, too long
│   └── ArchiveRefused        (400 archive_refused) a link, absolute or ``..`` entry,
│                             or a limit (size, entries, ratio) passed
├── Forbidden
│   ├── PathRefused           (403 path_refused) a symlink or a non-regular file is in
│   │                         the way: the agent never follows one
│   └── PathDenied            (403 path_denied) the server's deny-list names the path
├── NotFound
│   └── FileNotFound          (404)
├── Conflict
│   ├── FileExists            (409) the target exists already
│   └── WrongFileType         (409) a directory where a file is needed, or the reverse
├── PayloadTooLarge
│   └── FileTooLarge          (413) over the upload, pull or declared size
├── RateLimited
│   └── TooManyAtOnce         (429) the server already runs its allowed pulls or
│                             archive jobs
└── InsufficientStorage       (507 insufficient_storage) the volume is full
"""

from __future__ import annotations

from shared import errors as shared_errors
from shared.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
)


class InvalidPath(InvalidRequest):
    """The path cannot name anything inside a volume."""


class ArchiveRefused(InvalidRequest):
    """The archive holds an entry the agent will not write, or passes a limit."""

    code = "archive_refused"


class PathRefused(Forbidden):
    """A symlink (or another non-regular file) is in the way; nothing was done."""

    code = "path_refused"


class PathDenied(Forbidden):
    """The server's deny-list covers this path."""

    code = "path_denied"


class FileNotFound(NotFound):
    """No such file or directory in the volume."""


class FileExists(Conflict):
    """Something exists already where the operation would create a file."""


class WrongFileType(Conflict):
    """A directory where a file is needed, or a file where a directory is needed."""


class FileTooLarge(PayloadTooLarge):
    """The file is larger than the limit or than the size the command declared."""


class TooManyAtOnce(RateLimited):
    """The server already runs as many URL pulls, or archive jobs, as it may."""


class InsufficientStorage(shared_errors.InsufficientStorage):
    """The volume (or the disk under it) has no room for this write; nothing was replaced."""
