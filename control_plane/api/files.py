"""A server's files, proxied to its node: each operation behind its ``files.*`` permission,
the file-operations rate limit and the audit trail. Downloads and uploads stream through the
control plane in chunks, so its memory stays flat whatever the file's size.

These routes run without a database transaction: a long operation on the node (an archive,
a pull, a big upload) must never hold a database lock.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from functools import partial
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from control_plane.api.body_stream import BodyStream, rechecked
from control_plane.api.routing import ApiRequest, ApiRoutes, Handler, RawBody
from control_plane.db.models import Node
from control_plane.errors import ApiError, Conflict, InvalidRequest, NotFound, PayloadTooLarge
from shared.files_api import (
    ChangeMode,
    CompressFiles,
    CopyFile,
    DecompressArchive,
    DeletePaths,
    ExtractionSummary,
    FileEntry,
    FileListing,
    MakeDirectory,
    PullFile,
    RenameFile,
)
from shared.node_endpoints import FilePath, FileSave, FileUpload

routes = ApiRoutes("files")
CHUNK = 256 * 1024
# Text edited in the browser; bigger files go through the streamed upload.
MAX_EDIT_BYTES = 1024 * 1024
# Creating a file needs files.create; putting one in the place of an existing file is
# changing it (as saving is), which needs this too.
REPLACE_PERMISSION = "files.write"
CREATE_PERMISSION = "files.create"


def _user(req: ApiRequest[Any, Any]) -> str:
    return str(req.me.user_id)


async def _audit(req: ApiRequest[Any, Any], operation: str, **details: Any) -> None:
    await req.audit_now(
        f"server.files.{operation}",
        target_type="server",
        target_id=str(req.server.id),
        details=details,
    )


def _file_route(
    method: str, suffix: str, permission: str, **kwargs: Any
) -> Callable[[Handler], Handler]:
    return routes.route(
        method,
        f"/api/v1/servers/{{server_id}}/files/{suffix}",
        permission=permission,
        rate_limit="files",
        transactional=False,
        calls_node=True,
        **kwargs,
    )


@_file_route(
    "GET", "list", "files.read", summary="List a directory", query=FilePath, response=FileListing
)
async def list_directory(req: ApiRequest[Any, FilePath]) -> FileListing:
    return await req.nodes.list_files(
        await req.server_node(), req.server.id, req.query, user=_user(req)
    )


@_file_route("GET", "contents", "files.read", summary="Download a file (streamed)", query=FilePath)
async def download(req: ApiRequest[Any, FilePath]) -> web.StreamResponse:
    node = await req.server_node()
    async with req.nodes.read_file(node, req.server.id, req.query, user=_user(req)) as upstream:
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": "attachment",
            }
        )
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(req.http)
        async for chunk in rechecked(upstream.content.iter_chunked(CHUNK), req.authorized_again):
            await response.write(chunk)
        await response.write_eof()
    await _audit(req, "download", path=req.query.path)
    return response


@_file_route(
    "PUT",
    "contents",
    "files.write",
    summary="Save a (text) file of at most 1 MiB",
    query=FilePath,
    response=FileEntry,
    raw_body=RawBody(
        "The file's new contents as raw bytes, not JSON; they replace the file at `path`.",
        max_bytes=MAX_EDIT_BYTES,
        limit=(
            "Bigger files go through PUT .../files/upload. A body that stops arriving is "
            "refused with 408."
        ),
    ),
)
async def save(req: ApiRequest[Any, FilePath]) -> FileEntry:
    """Saving changes a file (``files.write``); a file that is not there yet is made only for
    a caller who may also create files (the node answers 404 to the others)."""
    too_large = "use the upload route for files over 1 MiB"
    if (req.http.content_length or 0) > MAX_EDIT_BYTES:
        raise PayloadTooLarge(too_large)
    body = await BodyStream(
        req.http,
        timeout=req.settings.body_timeout_seconds,
        max_bytes=MAX_EDIT_BYTES,
        too_large=too_large,
        recheck=req.authorized_again,
    ).read()
    node = await req.server_node()
    may_create = req.access.allows(CREATE_PERMISSION)
    where = FileSave(path=req.query.path, create=may_create)
    try:
        entry = await req.nodes.write_file(node, req.server.id, where, body, user=_user(req))
    except NotFound as err:
        if may_create or not err.message.endswith("does not exist"):
            raise
        raise NotFound(
            f"{err.message}: creating a file needs the {CREATE_PERMISSION!r} permission"
        ) from err
    await _audit(req, "write", path=req.query.path, bytes=len(body))
    return entry


@_file_route(
    "PUT",
    "upload",
    "files.create",
    summary="Upload a file (streamed; size in the query)",
    query=FileUpload,
    response=FileEntry,
    raw_body=RawBody(
        "The file as raw bytes, not JSON, streamed to the node: exactly `size` bytes (the "
        "query's); Content-Length, if sent, must equal `size` (400 otherwise). A body "
        "longer than `size` is refused with 413, a shorter one with 400, one that stops "
        "arriving with 408; each leaves the file as it was.",
        limit=(
            "The node refuses a `size` over its `[files] max_upload_bytes` (16 GiB by "
            "default) with 413 before reading the body."
        ),
    ),
)
async def upload(req: ApiRequest[Any, FileUpload]) -> FileEntry:
    size = req.query.size
    if req.http.content_length is not None and req.http.content_length != size:
        raise InvalidRequest("Content-Length and size differ")
    node = await req.server_node()
    # Replacing a file needs files.write too (``send_upload``): still, when the body ends.
    replacing = req.query.overwrite and req.access.allows(REPLACE_PERMISSION)
    body = BodyStream(
        req.http,
        timeout=req.settings.body_timeout_seconds,
        max_bytes=size,
        too_large=f"the upload is larger than its announced size ({size} bytes)",
        recheck=partial(req.authorized_again, *([REPLACE_PERMISSION] if replacing else [])),
    )
    try:
        return await send_upload(req, node, req.query, body.chunks())
    except ApiError as err:
        # The body broke off the relay, so the node never got a whole file: say why.
        if body.failure is not None:
            raise body.failure from err
        raise


def _explain_replace(err: Conflict) -> None:
    """To a caller held back from replacing files, the node's "exists already" with why."""
    if err.message.endswith("exists already"):
        raise Conflict(
            f"{err.message}: replacing a file needs the {REPLACE_PERMISSION!r} permission"
        ) from err


async def send_upload(
    req: ApiRequest[Any, Any], node: Node, where: FileUpload, chunks: AsyncIterable[bytes]
) -> FileEntry:
    """Stream exactly ``where.size`` bytes to the node as the file at ``where.path`` (its
    size limit and the server's disk limit apply there), and audit the upload.

    Uploading is creating (``files.create``): replacing a file of the same name is changing
    it, which needs ``files.write`` too; without it the node refuses an existing name (409).
    """
    held_back = where.overwrite and not req.access.allows(REPLACE_PERMISSION)
    if held_back:
        where = where.model_copy(update={"overwrite": False})
    try:
        entry = await req.nodes.upload_file(node, req.server.id, where, chunks, user=_user(req))
    except Conflict as err:
        if held_back:
            _explain_replace(err)
        raise
    await _audit(req, "upload", path=where.path, bytes=where.size)
    return entry


@_file_route(
    "POST",
    "directory",
    "files.create",
    summary="Create a directory",
    body=MakeDirectory,
    response=FileEntry,
    status=201,
)
async def make_directory(req: ApiRequest[MakeDirectory, Any]) -> FileEntry:
    data = await req.nodes.make_directory(
        await req.server_node(), req.server.id, req.body, user=_user(req)
    )
    await _audit(req, "mkdir", path=req.body.path)
    return data


@_file_route(
    "POST", "rename", "files.write", summary="Rename or move", body=RenameFile, response=FileEntry
)
async def rename(req: ApiRequest[RenameFile, Any]) -> FileEntry:
    node = await req.server_node()
    data = await req.nodes.rename_file(node, req.server.id, req.body, user=_user(req))
    await _audit(req, "rename", **req.body.model_dump())
    return data


@_file_route(
    "POST",
    "copy",
    "files.create",
    summary="Copy a file",
    body=CopyFile,
    response=FileEntry,
    status=201,
)
async def copy(req: ApiRequest[CopyFile, Any]) -> FileEntry:
    node = await req.server_node()
    data = await req.nodes.copy_file(node, req.server.id, req.body, user=_user(req))
    await _audit(req, "copy", **req.body.model_dump())
    return data


@_file_route(
    "POST",
    "delete",
    "files.delete",
    summary="Delete files and directories",
    body=DeletePaths,
    status=204,
)
async def delete(req: ApiRequest[DeletePaths, Any]) -> None:
    node = await req.server_node()
    await req.nodes.delete_files(node, req.server.id, req.body, user=_user(req))
    await _audit(req, "delete", paths=list(req.body.paths)[:100])


@_file_route(
    "POST",
    "chmod",
    "files.write",
    summary="Change a file's mode",
    body=ChangeMode,
    response=FileEntry,
)
async def chmod(req: ApiRequest[ChangeMode, Any]) -> FileEntry:
    node = await req.server_node()
    data = await req.nodes.change_mode(node, req.server.id, req.body, user=_user(req))
    await _audit(req, "chmod", path=req.body.path, mode=req.body.model_dump()["mode"])
    return data


@_file_route(
    "POST",
    "compress",
    "files.archive",
    summary="Pack files into tar.gz or zip",
    body=CompressFiles,
    response=FileEntry,
    status=201,
)
async def compress(req: ApiRequest[CompressFiles, Any]) -> FileEntry:
    node = await req.server_node()
    data = await req.nodes.compress(node, req.server.id, req.body, user=_user(req))
    await _audit(req, "compress", paths=list(req.body.paths)[:100])
    return data


@_file_route(
    "POST",
    "decompress",
    "files.archive",
    summary="Unpack an archive (checked)",
    body=DecompressArchive,
    response=ExtractionSummary,
)
async def decompress(req: ApiRequest[DecompressArchive, Any]) -> ExtractionSummary:
    node = await req.server_node()
    order = req.body
    held_back = order.overwrite and not req.access.allows(REPLACE_PERMISSION)
    if held_back:
        order = order.model_copy(update={"overwrite": False})
    try:
        data = await req.nodes.decompress(node, req.server.id, order, user=_user(req))
    except Conflict as err:
        if held_back:
            _explain_replace(err)
        raise
    await _audit(req, "decompress", path=req.body.path)
    return data


@_file_route(
    "POST",
    "pull",
    "files.create",
    summary="Download a public URL into the server",
    body=PullFile,
    response=FileEntry,
    status=201,
)
async def pull(req: ApiRequest[PullFile, Any]) -> FileEntry:
    if req.body.overwrite:
        req.require(REPLACE_PERMISSION)  # as an upload's (``send_upload``)
    node = await req.server_node()
    data = await req.nodes.pull_file(node, req.server.id, req.body, user=_user(req))
    await _audit(req, "pull", url=req.body.url[:500], directory=req.body.directory)
    return data


class DiskUsage(BaseModel):
    """A server's disk now: what its files use, and its limit (the server's ``disk_mib``)."""

    model_config = ConfigDict(frozen=True)

    used_bytes: int
    limit_bytes: int
    # Whether the node's storage enforces the limit (a kernel quota), or only watches it.
    enforced: bool


@_file_route(
    "GET", "disk", "files.read", summary="Disk use and the server's limit", response=DiskUsage
)
async def disk_usage(req: ApiRequest[Any, Any]) -> DiskUsage:
    disk = await req.nodes.disk(await req.server_node(), req.server.id, user=_user(req))
    return DiskUsage(
        used_bytes=disk.used_bytes,
        limit_bytes=req.server.disk_mib * 1024 * 1024,
        enforced=disk.enforced,
    )
