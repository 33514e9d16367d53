"""``/api/client/servers/{identifier}/files``: Pterodactyl's copy, compress, decompress,
pull and chmod, over our file routes (``control_plane/api/files.py``): the same ``files.*``
permissions, the node's confinement of every path to the server's volume, its disk limit,
the pull's SSRF guard (on the node: ``node_agent/files/pull.py``), rate limit and audit
records. Only the shapes differ: Pterodactyl answers 204 where we answer the new entry."""

from __future__ import annotations

import posixpath
from typing import Any

from pydantic import Field

from control_plane.api import files as native
from control_plane.api.compat.client_files import file_attributes, ours, route, under
from control_plane.api.compat.envelope import CompatObject, item
from control_plane.api.compat.ids import CLIENT_IDS
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.schemas.common import Input
from shared.files_api import (
    ChangeMode,
    CompressFiles,
    CopyFile,
    DecompressArchive,
    FileEntry,
    PullFile,
)

routes = ApiRoutes("pterodactyl client", path_ids=CLIENT_IDS)
_PATH = Field(min_length=1, max_length=4096)
_ROOT = Field("/", max_length=4096)


class CopyRequest(Input):
    # The file to copy; the copy is ``<name> copy<ext>`` beside it (the node names it).
    location: str = _PATH


class CompressRequest(Input):
    root: str = _ROOT
    files: list[str] = Field(min_length=1, max_length=1000)


class DecompressRequest(Input):
    root: str = _ROOT
    file: str = _PATH


class PullRequest(Input):
    url: str = Field(min_length=1, max_length=8192)
    directory: str = _ROOT
    filename: str | None = Field(None, min_length=1, max_length=255)
    # The name comes from Content-Disposition anyway when no filename is given, and the
    # download always runs before the answer: both accepted for Pterodactyl's clients.
    use_header: bool = False
    foreground: bool = False


class ModeChange(Input):
    file: str = _PATH
    mode: int | str


class ChmodRequest(Input):
    root: str = _ROOT
    files: list[ModeChange] = Field(min_length=1, max_length=100)


@route(
    table=routes,
    method="POST",
    suffix="copy",
    permission="files.create",
    summary="Pterodactyl: copy a file beside itself",
    body=CopyRequest,
    status=204,
)
async def copy_file(req: ApiRequest[Any, Any]) -> None:
    body: CopyRequest = req.body
    req.body = ours(CopyFile, source=body.location)
    await native.copy(req)


@route(
    table=routes,
    method="POST",
    suffix="compress",
    permission="files.archive",
    summary="Pterodactyl: pack files of a directory into a .tar.gz there",
    body=CompressRequest,
    response=CompatObject,
)
async def compress_files(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    body: CompressRequest = req.body
    req.body = ours(CompressFiles, directory=body.root or "/", paths=body.files)
    archive = await native.compress(req)
    assert isinstance(archive, FileEntry)
    return item("file_object", file_attributes(archive))


@route(
    table=routes,
    method="POST",
    suffix="decompress",
    permission="files.archive",
    summary="Pterodactyl: unpack an archive where it lies",
    body=DecompressRequest,
    status=204,
)
async def decompress_file(req: ApiRequest[Any, Any]) -> None:
    body: DecompressRequest = req.body
    req.body = ours(DecompressArchive, path=under(body.root, body.file))
    await native.decompress(req)


@route(
    table=routes,
    method="POST",
    suffix="pull",
    permission="files.create",
    summary="Pterodactyl: download a public URL into the server (the node fetches it)",
    body=PullRequest,
    status=204,
)
async def pull_file(req: ApiRequest[Any, Any]) -> None:
    body: PullRequest = req.body
    directory = posixpath.join("/", body.directory or "/")
    req.body = ours(PullFile, url=body.url, directory=directory, name=body.filename)
    await native.pull(req)


@route(
    table=routes,
    method="POST",
    suffix="chmod",
    permission="files.write",
    summary="Pterodactyl: change files' modes",
    body=ChmodRequest,
    status=204,
)
async def chmod_files(req: ApiRequest[Any, Any]) -> None:
    body: ChmodRequest = req.body
    # Every change is checked before the first is made: a bad mode changes nothing.
    changes = [
        ours(ChangeMode, path=under(body.root, change.file), mode=_octal(change.mode))
        for change in body.files
    ]
    for change in changes:
        req.body = change
        await native.chmod(req)


def _octal(mode: int | str) -> str:
    # Pterodactyl's clients send "755" or 755: octal digits either way.
    return str(mode)
