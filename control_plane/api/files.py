"""A server's files, proxied to its node: each operation behind its ``files.*`` permission,
the file-operations rate limit and the audit trail. Downloads and uploads stream through the
control plane in chunks, so its memory stays flat whatever the file's size.

These routes run without a database transaction: a long operation on the node (an archive,
a pull, a big upload) must never hold a database lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import Field

from control_plane.api.body_stream import BodyStream
from control_plane.api.routing import ApiRequest, ApiRoutes, Handler, RawBody
from control_plane.db.session import transaction
from control_plane.errors import ApiError, InvalidRequest, PayloadTooLarge
from control_plane.keys import NODES, READ_SESSIONS
from control_plane.schemas.common import Input
from control_plane.services import infrastructure as infra
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
    PathText,
    PullFile,
    RenameFile,
)

routes = ApiRoutes("files")
CHUNK = 256 * 1024
# Text edited in the browser; bigger files go through the streamed upload.
MAX_EDIT_BYTES = 1024 * 1024


class PathQuery(Input):
    path: PathText = "/"


class UploadQuery(Input):
    path: PathText
    size: int = Field(ge=0, le=1 << 44)


async def _node(req: ApiRequest[Any, Any]) -> Any:
    async with transaction(req.http.app[READ_SESSIONS]) as db:
        return await infra.get_node(db, req.server.node_id)


async def _forward(
    req: ApiRequest[Any, Any],
    method: str,
    suffix: str,
    action: str,
    *,
    payload: Any = None,
    raw: bytes | None = None,
    query: dict[str, str] | None = None,
) -> Any:
    node = await _node(req)
    return await req.http.app[NODES].call(
        node,
        method,
        f"/api/v1/servers/{req.server.id}/files/{suffix}",
        action=action,
        subject=f"server:{req.server.id}",
        user=str(req.me.user_id),
        payload=payload,
        raw=raw,
        query=query,
    )


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
        **kwargs,
    )


@_file_route(
    "GET", "list", "files.read", summary="List a directory", query=PathQuery, response=FileListing
)
async def list_directory(req: ApiRequest[Any, PathQuery]) -> FileListing:
    data = await _forward(req, "GET", "list", "files.list", query={"path": req.query.path})
    return FileListing.model_validate(data)


@_file_route("GET", "contents", "files.read", summary="Download a file (streamed)", query=PathQuery)
async def download(req: ApiRequest[Any, PathQuery]) -> web.StreamResponse:
    node = await _node(req)
    async with req.http.app[NODES].download(
        node,
        f"/api/v1/servers/{req.server.id}/files/contents",
        query={"path": req.query.path},
        action="files.read",
        subject=f"server:{req.server.id}",
        user=str(req.me.user_id),
    ) as upstream:
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": "attachment",
            }
        )
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(req.http)
        async for chunk in upstream.content.iter_chunked(CHUNK):
            await response.write(chunk)
        await response.write_eof()
    await _audit(req, "download", path=req.query.path)
    return response


@_file_route(
    "PUT",
    "contents",
    "files.write",
    summary="Save a (text) file of at most 1 MiB",
    query=PathQuery,
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
async def save(req: ApiRequest[Any, PathQuery]) -> FileEntry:
    too_large = "use the upload route for files over 1 MiB"
    if (req.http.content_length or 0) > MAX_EDIT_BYTES:
        raise PayloadTooLarge(too_large)
    body = await BodyStream(
        req.http,
        timeout=req.settings.body_timeout_seconds,
        max_bytes=MAX_EDIT_BYTES,
        too_large=too_large,
    ).read()
    data = await _forward(
        req, "PUT", "contents", "files.write", raw=body, query={"path": req.query.path}
    )
    await _audit(req, "write", path=req.query.path, bytes=len(body))
    return FileEntry.model_validate(data)


@_file_route(
    "PUT",
    "upload",
    "files.create",
    summary="Upload a file (streamed; size in the query)",
    query=UploadQuery,
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
async def upload(req: ApiRequest[Any, UploadQuery]) -> FileEntry:
    size = req.query.size
    if req.http.content_length is not None and req.http.content_length != size:
        raise InvalidRequest("Content-Length and size differ")
    node = await _node(req)
    body = BodyStream(
        req.http,
        timeout=req.settings.body_timeout_seconds,
        max_bytes=size,
        too_large=f"the upload is larger than its announced size ({size} bytes)",
    )
    try:
        data = await req.http.app[NODES].upload(
            node,
            f"/api/v1/servers/{req.server.id}/files/upload",
            body.chunks(),
            query={"path": req.query.path, "size": str(size)},
            action="files.upload",
            subject=f"server:{req.server.id}",
            user=str(req.me.user_id),
        )
    except ApiError as err:
        # The body broke off the relay, so the node never got a whole file: say why.
        if body.failure is not None:
            raise body.failure from err
        raise
    await _audit(req, "upload", path=req.query.path, bytes=size)
    return FileEntry.model_validate(data)


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
    data = await _forward(req, "POST", "directory", "files.mkdir", payload=req.body.model_dump())
    await _audit(req, "mkdir", path=req.body.path)
    return FileEntry.model_validate(data)


@_file_route(
    "POST", "rename", "files.write", summary="Rename or move", body=RenameFile, response=FileEntry
)
async def rename(req: ApiRequest[RenameFile, Any]) -> FileEntry:
    data = await _forward(req, "POST", "rename", "files.rename", payload=req.body.model_dump())
    await _audit(req, "rename", **req.body.model_dump())
    return FileEntry.model_validate(data)


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
    data = await _forward(req, "POST", "copy", "files.copy", payload=req.body.model_dump())
    await _audit(req, "copy", **req.body.model_dump())
    return FileEntry.model_validate(data)


@_file_route(
    "POST",
    "delete",
    "files.delete",
    summary="Delete files and directories",
    body=DeletePaths,
    status=204,
)
async def delete(req: ApiRequest[DeletePaths, Any]) -> None:
    await _forward(req, "POST", "delete", "files.delete", payload=req.body.model_dump())
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
    data = await _forward(req, "POST", "chmod", "files.chmod", payload=req.body.model_dump())
    await _audit(req, "chmod", path=req.body.path, mode=req.body.model_dump()["mode"])
    return FileEntry.model_validate(data)


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
    data = await _forward(req, "POST", "compress", "files.compress", payload=req.body.model_dump())
    await _audit(req, "compress", paths=list(req.body.paths)[:100])
    return FileEntry.model_validate(data)


@_file_route(
    "POST",
    "decompress",
    "files.archive",
    summary="Unpack an archive (checked)",
    body=DecompressArchive,
    response=ExtractionSummary,
)
async def decompress(req: ApiRequest[DecompressArchive, Any]) -> ExtractionSummary:
    data = await _forward(
        req, "POST", "decompress", "files.decompress", payload=req.body.model_dump()
    )
    await _audit(req, "decompress", path=req.body.path)
    return ExtractionSummary.model_validate(data)


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
    data = await _forward(req, "POST", "pull", "files.pull", payload=req.body.model_dump())
    await _audit(req, "pull", url=req.body.url[:500], directory=req.body.directory)
    return FileEntry.model_validate(data)
