"""The agent's file API, as both sides must agree on it (node_agent/api/files.py serves it).

Paths are strings relative to the server's volume root (``/`` is the root, ``/a/b`` and
``a/b`` are the same); ``..`` is refused. Every request body model forbids extra fields.

A path is at most ``MAX_PATH_BYTES`` bytes of UTF-8: the routes that read and write files
carry it in their query string, percent-encoded (up to 3 characters a byte), and the whole
request target must fit the command token's ``htu`` (``shared.protocol.MAX_HTU_LENGTH``).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from shared.protocol import MAX_HTU_LENGTH

# The longest request target around a path: a file route (``contents`` is the longest
# name) and an upload's size, which the query carries after the path.
_TARGET_AROUND_PATH: Final = len(
    "/api/v1/servers/00000000-0000-0000-0000-000000000000/files/contents?path=&size="
) + len(str(2**64))
MAX_PATH_BYTES: Final = (MAX_HTU_LENGTH - _TARGET_AROUND_PATH) // len("%XX")
MAX_PATHS_PER_REQUEST: Final = 1000
MAX_NAME_BYTES: Final = 255


def check_path_length(text: str) -> str:
    """``text`` if its UTF-8 form fits ``MAX_PATH_BYTES``; else ValueError."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise ValueError(f"a path is at most {MAX_PATH_BYTES} bytes (UTF-8)")
    return text


def check_name(name: str) -> str:
    """One component: not empty, ``.`` or ``..``, no ``/`` or NUL, at most 255 bytes of
    UTF-8; else ValueError."""
    if name in {"", ".", ".."} or "/" in name or "\x00" in name:
        raise ValueError(f"{name[:64]!r} is not a valid file name")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError("file names must be valid UTF-8") from err
    if len(encoded) > MAX_NAME_BYTES:
        raise ValueError(f"a file name is longer than {MAX_NAME_BYTES} bytes")
    return name


def path_parts(text: str) -> tuple[str, ...]:
    """The components of a path inside a volume (``()`` is the root): a leading ``/`` is the
    volume's root, empty and ``.`` components are dropped, ``..`` is refused (never
    resolved: a path's meaning must not depend on what the game put on disk); ValueError
    for ``..``, NUL or an overlong path. The agent's file API and config files, and the
    control plane's checks of a blueprint's config files, all read paths with this."""
    check_path_length(text)
    parts = [part for part in text.split("/") if part not in {"", "."}]
    return tuple(check_name(part) for part in parts)


def file_path_parts(text: str) -> tuple[str, ...]:
    """Like :func:`path_parts`, but the root itself is refused (a file needs a name)."""
    parts = path_parts(text)
    if not parts:
        raise ValueError("the path names the volume root, not a file")
    return parts


PathText = Annotated[str, Field(max_length=MAX_PATH_BYTES), AfterValidator(check_path_length)]
FileType = Literal["file", "directory", "symlink", "other"]
ArchiveFormat = Literal["tar.gz", "zip"]


class FileEntry(BaseModel):
    """One directory entry, as ``lstat`` sees it: a symlink is reported, never followed."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    type: FileType
    size: int
    # Permission bits (``st_mode & 0o7777``), e.g. 420 for 0644.
    mode: int
    mtime: float
    # What a symlink points to, as text; the agent never resolves it.
    link_target: str | None = None


class FileListing(BaseModel):
    """``GET .../files/list?path=``: a directory's entries, sorted by name."""

    model_config = ConfigDict(frozen=True)

    path: str
    entries: list[FileEntry]
    # True when the directory holds more entries than the agent lists at once.
    truncated: bool = False


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MakeDirectory(_Body):
    """``POST .../files/directory``: create one directory (its parent must exist)."""

    path: PathText


class RenameFile(_Body):
    """``POST .../files/rename``: rename or move; the destination must not exist."""

    source: PathText
    destination: PathText


class CopyFile(_Body):
    """``POST .../files/copy``: copy a file or directory (no destination: ``<name> copy``)."""

    source: PathText
    destination: PathText | None = None


class DeletePaths(_Body):
    """``POST .../files/delete``: delete files and directories (recursively)."""

    paths: list[PathText] = Field(min_length=1, max_length=MAX_PATHS_PER_REQUEST)


class ChangeMode(_Body):
    """``POST .../files/chmod``: set permission bits (an int, or octal text like ``"0755"``)."""

    path: PathText
    mode: int = Field(ge=0, le=0o777)

    @field_validator("mode", mode="before")
    @classmethod
    def _octal_text(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return int(value, 8)
            except ValueError as err:
                raise ValueError("mode must be octal digits, e.g. 0755") from err
        return value


class CompressFiles(_Body):
    """``POST .../files/compress``: archive ``paths`` (relative to ``directory``) there."""

    directory: PathText = "/"
    paths: list[PathText] = Field(min_length=1, max_length=MAX_PATHS_PER_REQUEST)
    format: ArchiveFormat = "tar.gz"
    # The archive's file name; by default ``archive-<UTC time>.<format>``.
    name: str | None = Field(default=None, max_length=255)


class DecompressArchive(_Body):
    """``POST .../files/decompress``: extract a tar, tar.gz (.bz2, .xz) or zip archive."""

    path: PathText
    # Where to extract; by default the archive's own directory.
    directory: PathText | None = None
    # Whether entries may replace files that exist (they need files.write); if not, an
    # archive with such an entry is refused whole (409) and nothing is written.
    overwrite: bool = True


class ExtractionSummary(BaseModel):
    """What a decompress wrote."""

    model_config = ConfigDict(frozen=True)

    directory: str
    files: int
    directories: int
    bytes: int


class PullFile(_Body):
    """``POST .../files/pull``: download a public http(s) URL into ``directory``."""

    url: str = Field(min_length=1, max_length=8192)
    directory: PathText = "/"
    # The file name; by default from Content-Disposition, else the URL's last segment.
    name: str | None = Field(default=None, max_length=255)
    overwrite: bool = False
