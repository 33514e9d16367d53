"""Extract a tar (plain, gz, bz2, xz) or zip archive into a volume, entry by entry.

Two passes. The first reads every entry's header and refuses the whole archive (nothing is
written) for an absolute or ``..`` name, a symlink, hard link or special-file entry, an
encrypted zip entry or one compressed otherwise than by deflate, a deny-listed name, or a
passed limit: entry count, total size, or ratio of total size to the archive's size. The
limits are checked at each header as it is read: a tar's next header lies past the entry's
data, which is decompressed to get there, so an entry past the limits ends the reading
before its data costs anything. A tar's long-name and pax records are refused above
``MAX_EXTENDED_HEADER`` before they are read (``tarfile`` reads one whole into memory, and
parses a pax record's length in time that grows with its square on Pythons without the fix
for CVE-2024-6232); global pax headers are refused past ``MAX_GLOBAL_HEADERS`` in all, and a
member's pax records are dropped once read (tarfile keeps them as a dict per member, ten times
their size).

The second pass writes each file through the same confinement as an upload (parents made one
``O_NOFOLLOW`` component at a time, a temporary file renamed into place), counting bytes as
they are written so an entry cannot grow past what its header declared or the total past the
limit.
"""

from __future__ import annotations

import os
import stat
import struct
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Final, Self

from node_agent.files.confine import directory, lstat_at, make_directories, open_regular_file
from node_agent.files.denylist import DenyList
from node_agent.files.errors import (
    ArchiveRefused,
    FileExists,
    FileNotFound,
    InsufficientStorage,
    InvalidPath,
)
from node_agent.files.limits import FileLimits
from node_agent.files.paths import VolumePath, check_name, show
from node_agent.files.tree import MAX_DEPTH
from node_agent.files.writes import AtomicWrite, Owner
from shared.files_api import ExtractionSummary

CHUNK: Final = 1024 * 1024
# A GNU long name or link, or a pax record: a path is at most 4096 bytes on Linux.
MAX_EXTENDED_HEADER: Final = 16 * 1024
# All global pax headers of an archive together (git archive writes one of ~50 bytes).
MAX_GLOBAL_HEADERS: Final = 16 * 1024
EXTENDED_HEADERS: Final = frozenset(
    {
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    }
)
# zipfile bounds what one read of a deflated entry expands to, not of bzip2 or lzma.
ZIP_METHODS: Final = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
ZIP_MAGIC: Final = b"PK\x03\x04"
EMPTY_ZIP_MAGIC: Final = b"PK\x05\x06"
# The zip records read to count the central directory's entries (APPNOTE 4.3.12-4.3.16).
_ZIP_END: Final = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR: Final = struct.Struct("<4sLQL")
_ZIP64_END: Final = struct.Struct("<4sQ2H2L4Q")
_ZIP_CENTRAL: Final = struct.Struct("<4s4B4HL2L5H2L")
_ZIP_MAX_COMMENT: Final = 1 << 16  # zipfile searches this far back (a comment is < 64 KiB)


@dataclass(frozen=True, slots=True)
class PlannedEntry:
    """One entry the archive will write, and how to read its data."""

    parts: VolumePath
    is_dir: bool
    size: int
    executable: bool
    open_data: Callable[[], IO[bytes]] | None


def entry_parts(name: str) -> VolumePath:
    """An entry name as volume components; absolute names and ``..`` are refused."""
    if name.startswith("/") or "\x00" in name:
        raise ArchiveRefused(f"the archive holds an absolute entry name: {name[:100]!r}")
    parts = tuple(part for part in name.split("/") if part not in {"", "."})
    if ".." in parts:
        raise ArchiveRefused(f"the archive holds an entry that climbs out: {name[:100]!r}")
    try:
        checked = tuple(check_name(part) for part in parts)
    except InvalidPath as err:
        raise ArchiveRefused(f"the archive holds an invalid entry name: {name[:100]!r}") from err
    if len(checked) > MAX_DEPTH:
        raise ArchiveRefused("the archive nests deeper than the agent extracts")
    return checked


def _bounded_tarinfo() -> type[tarfile.TarInfo]:
    """The tar header class for one archive: it refuses an oversized long-name or pax record
    before it is read, and global pax headers past ``MAX_GLOBAL_HEADERS`` bytes in all
    (tarfile keeps their records for the rest of the archive and copies them into every
    later member)."""
    global_bytes = 0

    class BoundedTarInfo(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
            nonlocal global_bytes
            header = super().frombuf(buf, encoding, errors)
            if header.type in EXTENDED_HEADERS and header.size > MAX_EXTENDED_HEADER:
                raise ArchiveRefused(
                    f"the archive holds an extended header of {header.size} bytes "
                    f"(at most {MAX_EXTENDED_HEADER})"
                )
            if header.type == tarfile.XGLTYPE:
                global_bytes += header.size
                if global_bytes > MAX_GLOBAL_HEADERS:
                    raise ArchiveRefused(
                        f"the archive's global pax headers hold over {MAX_GLOBAL_HEADERS} bytes"
                    )
            return header

    return BoundedTarInfo


@dataclass(slots=True)
class _Tally:
    """The limits, checked at each entry as the headers are read."""

    limits: FileLimits
    archive_bytes: int
    space_left: int | None
    entries: int = 0
    total: int = 0

    def count(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_extract_entries:
            raise ArchiveRefused(
                f"the archive holds over {self.limits.max_extract_entries} entries"
            )

    def add(self, size: int) -> None:
        """One file entry's declared size."""
        self.total += size
        if self.total > self.limits.max_extract_bytes:
            raise ArchiveRefused(f"the archive expands past {self.limits.max_extract_bytes} bytes")
        if self.total > self.limits.max_compression_ratio * max(self.archive_bytes, 1):
            raise ArchiveRefused(
                f"the archive expands more than {self.limits.max_compression_ratio:g} times "
                "its size"
            )
        if self.space_left is not None and self.total > self.space_left:
            raise InsufficientStorage("the archive's contents do not fit in the server's volume")


def _tar_plan(archive: tarfile.TarFile, tally: _Tally) -> Iterator[PlannedEntry]:
    for member in archive:
        tally.count()
        # Each member's pax records, as a dict of Python strings, cost ~10 times the bytes
        # of its header and are kept with the member for the whole archive: not needed here.
        member.pax_headers = {}
        if member.issym() or member.islnk():
            raise ArchiveRefused(f"the archive holds a link entry: {member.name[:100]!r}")
        if not (member.isreg() or member.isdir()):
            raise ArchiveRefused(f"the archive holds a special file: {member.name[:100]!r}")
        parts = entry_parts(member.name)
        if not parts:
            continue
        if not member.isdir():
            tally.add(member.size)  # before the iteration reads past this entry's data

        def opener(item: tarfile.TarInfo = member) -> IO[bytes]:
            data = archive.extractfile(item)
            if data is None:
                raise ArchiveRefused(f"cannot read the entry {item.name[:100]!r}")
            return data

        yield PlannedEntry(parts, member.isdir(), member.size, bool(member.mode & 0o100), opener)


def _zip_plan(archive: zipfile.ZipFile, tally: _Tally) -> Iterator[PlannedEntry]:
    for member in archive.infolist():
        tally.count()
        kind = stat.S_IFMT(member.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise ArchiveRefused(f"the archive holds a link entry: {member.filename[:100]!r}")
        if kind not in {0, stat.S_IFREG, stat.S_IFDIR}:
            raise ArchiveRefused(f"the archive holds a special file: {member.filename[:100]!r}")
        if member.flag_bits & 0x1:
            raise ArchiveRefused("encrypted zip entries are not supported")
        if member.compress_type not in ZIP_METHODS:
            raise ArchiveRefused(
                f"{member.filename[:100]!r} is compressed by a method the agent does not "
                "extract (zip entries: stored or deflate only)"
            )
        parts = entry_parts(member.filename)
        if not parts:
            continue
        if not member.is_dir():
            tally.add(member.file_size)

        def opener(item: zipfile.ZipInfo = member) -> IO[bytes]:
            return archive.open(item)

        yield PlannedEntry(
            parts,
            member.is_dir(),
            member.file_size,
            bool((member.external_attr >> 16) & 0o100),
            opener,
        )


def _zip_end(source: IO[bytes]) -> tuple[int, int] | None:
    """(start, size) of a zip's central directory, found as zipfile finds it, or None."""
    source.seek(0, os.SEEK_END)
    size = source.tell()
    tail_start = max(size - _ZIP_END.size - _ZIP_MAX_COMMENT, 0)
    source.seek(tail_start)
    tail = source.read()
    # zipfile tries an end record without a comment first, then the last one in the tail.
    at = len(tail) - _ZIP_END.size
    if not (at >= 0 and tail[at:].startswith(EMPTY_ZIP_MAGIC) and tail[-2:] == b"\0\0"):
        at = tail.rfind(EMPTY_ZIP_MAGIC)
    if at < 0 or len(tail) - at < _ZIP_END.size:
        return None
    end_at = tail_start + at
    directory_size = _ZIP_END.unpack_from(tail, at)[5]
    zip64_at = end_at - _ZIP64_LOCATOR.size - _ZIP64_END.size
    if zip64_at >= 0:
        source.seek(zip64_at)
        zip64 = source.read(_ZIP64_END.size + _ZIP64_LOCATOR.size)
        locator = zip64[_ZIP64_END.size :]
        if locator[:4] == b"PK\x06\x07" and zip64[:4] == b"PK\x06\x06":
            return zip64_at - _ZIP64_END.unpack_from(zip64)[8], _ZIP64_END.unpack_from(zip64)[8]
    return end_at - directory_size, directory_size


def _count_zip_entries(source: IO[bytes], limit: int) -> None:
    """Refuse a zip whose central directory lists more than ``limit`` entries, counted record
    by record before zipfile parses it (which builds an object per entry, all at once)."""
    found = _zip_end(source)
    if found is None:
        return  # not a zip zipfile can open: it says so
    start, size = found
    if start < 0:
        return
    source.seek(start)
    entries = read = 0
    while read < size:
        record = source.read(_ZIP_CENTRAL.size)
        if len(record) != _ZIP_CENTRAL.size or record[:4] != b"PK\x01\x02":
            return  # zipfile refuses a damaged directory at this record
        entries += 1
        if entries > limit:
            raise ArchiveRefused(f"the archive holds over {limit} entries")
        fields = _ZIP_CENTRAL.unpack(record)
        variable = fields[12] + fields[13] + fields[14]  # name, extra field, comment
        source.seek(variable, os.SEEK_CUR)
        read += _ZIP_CENTRAL.size + variable
    source.seek(0)


def _check_denied(plan: list[PlannedEntry], denied: DenyList, target: VolumePath) -> None:
    if denied:
        for entry in plan:
            if denied.denies((*target, *entry.parts), is_dir=entry.is_dir):
                raise ArchiveRefused(f"{show(entry.parts)} is on the server's deny-list")


def _check_none_exists(dest_fd: int, plan: list[PlannedEntry]) -> None:
    """Refuse the archive if a file entry would replace a file that exists (directories
    that exist are merged into, not replaced)."""
    for entry in plan:
        if entry.is_dir:
            continue
        try:
            with directory(dest_fd, entry.parts[:-1]) as parent:
                found = lstat_at(parent, entry.parts[-1])
        except FileNotFound:
            continue  # its directory does not exist yet
        if found is not None:
            raise FileExists(f"{show(entry.parts)} exists already")


def _write_entry(
    dest_fd: int, entry: PlannedEntry, owner: Owner, budget: int, *, overwrite: bool
) -> int:
    """Write one file entry; return its byte count (never more than declared)."""
    if entry.open_data is None:
        return 0
    with (
        AtomicWrite.begin(
            dest_fd, entry.parts, owner, overwrite=overwrite, make_parents=True
        ) as write,
        entry.open_data() as data,
    ):
        while chunk := data.read(CHUNK):
            if write.written + len(chunk) > min(entry.size, budget):
                raise ArchiveRefused(f"{show(entry.parts)} is larger than its header says")
            write.write(chunk)
        os.fchmod(write.fd, 0o755 if entry.executable else 0o644)
        write.commit()
        return write.written


def extract(
    root_fd: int,
    archive_path: VolumePath,
    target: VolumePath,
    owner: Owner,
    limits: FileLimits,
    denied: DenyList,
    space_left: int | None,
    overwrite: bool = True,
) -> ExtractionSummary:
    """Check every entry of the archive at ``archive_path``, then extract it into ``target``
    (without ``overwrite``, an entry in the place of an existing file refuses it whole)."""
    with ExitStack() as stack:
        parent = stack.enter_context(directory(root_fd, archive_path[:-1]))
        fd = open_regular_file(parent, archive_path[-1], archive_path)
        source = stack.enter_context(os.fdopen(fd, "rb"))
        archive_bytes = os.fstat(fd).st_size
        magic = source.read(4)
        source.seek(0)
        tally = _Tally(limits, archive_bytes, space_left)
        try:
            if magic in {ZIP_MAGIC, EMPTY_ZIP_MAGIC}:
                _count_zip_entries(source, limits.max_extract_entries)
                zipped = stack.enter_context(zipfile.ZipFile(source))
                plan = list(_zip_plan(zipped, tally))
            else:
                tarred = stack.enter_context(
                    tarfile.open(fileobj=source, mode="r:*", tarinfo=_bounded_tarinfo())
                )
                plan = list(_tar_plan(tarred, tally))
        except RecursionError as err:
            # tarfile reads a run of extended headers recursively, one level each.
            raise ArchiveRefused("the archive holds a run of extended headers") from err
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError) as err:
            raise ArchiveRefused("not a readable tar, tar.gz or zip archive") from err
        _check_denied(plan, denied, target)
        budget = tally.total
        dest_fd = stack.enter_context(directory(root_fd, target))
        if not overwrite:
            _check_none_exists(dest_fd, plan)
        files = directories = written = 0
        try:
            for entry in plan:
                if entry.is_dir:
                    os.close(make_directories(dest_fd, entry.parts, owner))
                    directories += 1
                else:
                    written += _write_entry(
                        dest_fd, entry, owner, budget - written, overwrite=overwrite
                    )
                    files += 1
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
            raise ArchiveRefused("the archive is damaged; extraction stopped") from err
        return ExtractionSummary(
            directory=show(target), files=files, directories=directories, bytes=written
        )
    raise AssertionError("unreachable")
