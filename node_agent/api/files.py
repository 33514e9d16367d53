"""A server's files: list, read, write, upload, mkdir, rename, copy, delete, chmod, archives, pull.

Every path is confined to the server's volume by construction (``node_agent/files/``), and
the server's deny-list (``ServerSpec.file_denylist``) is honoured by every route.

    GET  .../files/list?path=P               files.list        -> FileListing
    GET  .../files/contents?path=P           files.read        -> the bytes (streamed)
    PUT  .../files/contents?path=P           files.write       raw body (<= max_body_bytes)
                                                               -> FileEntry
    PUT  .../files/upload?path=P&size=N      files.upload      raw body of exactly N bytes,
         [&overwrite=False]                                    streamed; bdh = hash(b"")
                                                               -> FileEntry (409 if the
                                                               file exists and overwrite
                                                               is False)
    POST .../files/directory                 files.mkdir       MakeDirectory -> 201 FileEntry
    POST .../files/rename                    files.rename      RenameFile -> FileEntry
    POST .../files/copy                      files.copy        CopyFile -> 201 FileEntry
    POST .../files/delete                    files.delete      DeletePaths -> 204
    POST .../files/chmod                     files.chmod       ChangeMode -> FileEntry
    POST .../files/compress                  files.compress    CompressFiles -> 201 FileEntry
    POST .../files/decompress                files.decompress  DecompressArchive
                                                               -> ExtractionSummary
    POST .../files/pull                      files.pull        PullFile -> 201 FileEntry

(``...`` is ``/api/v1/servers/{server_id}``.) An upload's size is checked against the
node's limit and the volume's free space before a byte of the body is read.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from node_agent.api.servers import parse_body, server_id_of
from node_agent.files.errors import FileTooLarge
from node_agent.files.limits import FileLimits
from node_agent.files.service import CHUNK, FileService, ServerFiles
from node_agent.keys import FILES, SERVERS, SETTINGS
from node_agent.security.verify import serves
from node_agent.storage.context import game_user_ids
from shared.errors import InvalidRequest
from shared.files_api import (
    FileEntry,
)
from shared.node_endpoints import (
    FILES_CHMOD,
    FILES_COMPRESS,
    FILES_COPY,
    FILES_DECOMPRESS,
    FILES_DELETE,
    FILES_LIST,
    FILES_MKDIR,
    FILES_PULL,
    FILES_READ,
    FILES_RENAME,
    FILES_UPLOAD,
    FILES_WRITE,
)
from shared.outbound import OutboundClient

routes = web.RouteTableDef()
R = TypeVar("R", bound=web.StreamResponse)


def _files(request: web.Request) -> ServerFiles:
    server = request.app[SERVERS].get(server_id_of(request))
    return request.app[FILES].server(server.volume, server.spec.file_denylist)


def _volume_operation(
    handler: Callable[[web.Request], Awaitable[R]],
) -> Callable[[web.Request], Awaitable[R]]:
    """The whole route, streaming included, is one operation on the server's volume: none
    runs while a backup is restored over it (409), and a restore waits for it."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> R:
        server = request.app[SERVERS].get(server_id_of(request))
        with server.volume_gate.operation():
            return await handler(request)

    return run


def _query_path(request: web.Request) -> str:
    path = request.query.get("path")
    if path is None:
        raise InvalidRequest("the query needs a path")
    return path


def _query_flag(request: web.Request, name: str) -> bool:
    """A yes/no of the query (as the control plane writes a bool: True or False; True if
    absent)."""
    value = request.query.get(name, "True")
    if value not in {"True", "False"}:
        raise InvalidRequest(f"{name} must be True or False")
    return value == "True"


def _entry(entry: FileEntry, status: int = 200) -> web.Response:
    return web.json_response(text=entry.model_dump_json(), status=status)


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


@serves(routes, FILES_LIST)
@_volume_operation
async def list_files(request: web.Request) -> web.Response:
    """A directory's entries (symlinks reported as symlinks, deny-listed ones left out)."""
    listing = await _files(request).list_directory(request.query.get("path", "/"))
    return web.json_response(text=listing.model_dump_json())


@serves(routes, FILES_READ)
@_volume_operation
async def read_file(request: web.Request) -> web.StreamResponse:
    """A regular file's bytes, streamed in chunks (memory stays flat)."""
    reader = await _files(request).open_read(_query_path(request))
    try:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = reader.size
        await response.prepare(request)
        async for chunk in reader.chunks():
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        reader.close()


@serves(routes, FILES_WRITE)
@_volume_operation
async def write_file(request: web.Request) -> web.Response:
    """Replace (or create, unless ``create`` is False) a file with the request body,
    atomically."""
    body = await request.read()
    entry = await _files(request).write(
        _query_path(request),
        _once(body),
        size=len(body),
        max_bytes=len(body),
        create=_query_flag(request, "create"),
    )
    return _entry(entry)


def _signed_size(request: web.Request, limits: FileLimits) -> int:
    try:
        size = int(request.query.get("size", ""))
    except ValueError as err:
        raise InvalidRequest("the query needs the upload's size in bytes") from err
    if size < 0:
        raise InvalidRequest("the size cannot be negative")
    if size > limits.max_upload_bytes:
        raise FileTooLarge(f"uploads are limited to {limits.max_upload_bytes} bytes")
    declared = request.content_length
    if declared is not None and declared != size:
        raise InvalidRequest("Content-Length differs from the signed size")
    return size


@serves(routes, FILES_UPLOAD)
@_volume_operation
async def upload_file(request: web.Request) -> web.Response:
    """Stream the body (exactly ``size`` bytes, as signed) into a file, atomically."""
    limits = request.app[FILES].limits
    size = _signed_size(request, limits)
    files = _files(request)
    entry = await files.write(
        _query_path(request),
        request.content.iter_chunked(CHUNK),
        size=size,
        max_bytes=limits.max_upload_bytes,
        overwrite=_query_flag(request, "overwrite"),
    )
    return _entry(entry)


@serves(routes, FILES_MKDIR)
@_volume_operation
async def make_directory(request: web.Request) -> web.Response:
    """Create one directory."""
    order = await parse_body(request, FILES_MKDIR)
    return _entry(await _files(request).make_directory(order.path), 201)


@serves(routes, FILES_RENAME)
@_volume_operation
async def rename_file(request: web.Request) -> web.Response:
    """Rename or move a file or directory."""
    order = await parse_body(request, FILES_RENAME)
    return _entry(await _files(request).rename(order.source, order.destination))


@serves(routes, FILES_COPY)
@_volume_operation
async def copy_file(request: web.Request) -> web.Response:
    """Copy a file or directory."""
    order = await parse_body(request, FILES_COPY)
    return _entry(await _files(request).copy(order.source, order.destination), 201)


@serves(routes, FILES_DELETE)
@_volume_operation
async def delete_files(request: web.Request) -> web.Response:
    """Delete files and directories (recursively; symlinks inside are unlinked)."""
    order = await parse_body(request, FILES_DELETE)
    await _files(request).delete(order.paths)
    return web.Response(status=204)


@serves(routes, FILES_CHMOD)
@_volume_operation
async def change_mode(request: web.Request) -> web.Response:
    """Set a file's or directory's permission bits."""
    order = await parse_body(request, FILES_CHMOD)
    return _entry(await _files(request).change_mode(order.path, order.mode))


@serves(routes, FILES_COMPRESS)
@_volume_operation
async def compress_files(request: web.Request) -> web.Response:
    """Archive selected paths into a tar.gz or zip file."""
    order = await parse_body(request, FILES_COMPRESS)
    files = _files(request)
    with request.app[FILES].archive_job(server_id_of(request)):
        entry = await files.compress(order.directory, order.paths, order.format, order.name)
    return _entry(entry, 201)


@serves(routes, FILES_DECOMPRESS)
@_volume_operation
async def decompress_archive(request: web.Request) -> web.Response:
    """Extract an archive (refused whole if any entry or limit is unsafe)."""
    order = await parse_body(request, FILES_DECOMPRESS)
    files = _files(request)
    with request.app[FILES].archive_job(server_id_of(request)):
        summary = await files.decompress(order.path, order.directory, overwrite=order.overwrite)
    return web.json_response(text=summary.model_dump_json())


@serves(routes, FILES_PULL)
@_volume_operation
async def pull_file(request: web.Request) -> web.Response:
    """Download a public URL into the volume (at most a few at once per server)."""
    order = await parse_body(request, FILES_PULL)
    files = _files(request)
    entry = await request.app[FILES].pull(server_id_of(request), files, order)
    return _entry(entry, 201)


async def files_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the file service and its outbound HTTP client.

    Before the agent listens, the temporary files of writes a killed agent left in the
    volumes are removed (the game sees them, and they count against its disk).
    """
    async with OutboundClient(user_agent="StellarStack-agent") as outbound:
        service = FileService(app[SETTINGS].files, game_user_ids(), outbound)
        await service.remove_unfinished_writes(app[SERVERS].volumes())
        app[FILES] = service
        yield


def setup(app: web.Application) -> None:
    """Add the file routes and the file service's lifetime to the agent's app."""
    app.add_routes(routes)
    app.cleanup_ctx.append(files_ctx)
