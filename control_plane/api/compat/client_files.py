"""``/api/client/servers/{identifier}/files``: Pterodactyl's file routes over ours
(``control_plane/api/files.py``): the same ``files.*`` permissions, confinement on the node,
rate limit and audit records. Pterodactyl names a directory ``root`` and files relative to
it; each becomes our path."""

from __future__ import annotations

import datetime as dt
import posixpath
import stat
from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from control_plane.api import files as native
from control_plane.api.compat.envelope import CompatObject, collection
from control_plane.api.compat.ids import CLIENT_IDS
from control_plane.api.routing import ApiRequest, ApiRoutes, Handler, RawBody, Result
from control_plane.errors import InvalidRequest
from control_plane.schemas.common import Input
from shared.files_api import DeletePaths, FileEntry, FileListing, MakeDirectory, RenameFile
from shared.node_endpoints import FilePath

routes = ApiRoutes("pterodactyl client", path_ids=CLIENT_IDS)
FILES = "/api/client/servers/{server_id}/files"
_TEXT = Field(min_length=1, max_length=4096)


class DirectoryQuery(Input):
    model_config = ConfigDict(extra="ignore")
    directory: str = Field("/", max_length=4096)


class FileQuery(Input):
    model_config = ConfigDict(extra="ignore")
    file: str = _TEXT


class Rename(Input):
    from_: str = Field(alias="from", min_length=1, max_length=4096)
    to: str = _TEXT


class RenameFiles(Input):
    root: str = Field("/", max_length=4096)
    files: list[Rename] = Field(min_length=1, max_length=100)


class DeleteFiles(Input):
    root: str = Field("/", max_length=4096)
    files: list[str] = Field(min_length=1, max_length=100)


class CreateFolder(Input):
    root: str = Field("/", max_length=4096)
    name: str = _TEXT


def ours(model: Any, **values: Any) -> Any:
    """Our model of the request, its problems as a 422 like any other."""
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise InvalidRequest.from_validation(err, "invalid request") from err


def under(root: str, name: str) -> str:
    return posixpath.join(root or "/", name.lstrip("/"))


def file_attributes(entry: FileEntry) -> dict[str, Any]:
    kind = {"directory": stat.S_IFDIR, "symlink": stat.S_IFLNK}.get(entry.type, stat.S_IFREG)
    modified = dt.datetime.fromtimestamp(entry.mtime, dt.UTC).isoformat(timespec="seconds")
    return {
        "name": entry.name,
        "mode": stat.filemode(kind | entry.mode),
        "mode_bits": f"{entry.mode:o}",
        "size": entry.size,
        "is_file": entry.type == "file",
        "is_symlink": entry.type == "symlink",
        "mimetype": "inode/directory" if entry.type == "directory" else "application/octet-stream",
        "created_at": modified,
        "modified_at": modified,
    }


def route(
    method: str, suffix: str, permission: str, *, table: ApiRoutes = routes, **kwargs: Any
) -> Callable[[Handler], Handler]:
    """A file route as ours are declared: transactions only around reads, the node called,
    the file-operations rate limit."""
    return table.route(
        method,
        f"{FILES}/{suffix}",
        permission=permission,
        rate_limit="files",
        transactional=False,
        calls_node=True,
        **kwargs,
    )


@route(
    "GET",
    "list",
    "files.read",
    summary="Pterodactyl: list a directory",
    query=DirectoryQuery,
    response=CompatObject,
)
async def list_files(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    query: DirectoryQuery = req.query
    req.query = ours(FilePath, path=query.directory)
    listing = await native.list_directory(req)
    assert isinstance(listing, FileListing)
    return collection("file_object", [file_attributes(e) for e in listing.entries])


@route(
    "GET",
    "contents",
    "files.read",
    summary="Pterodactyl: a file's contents (streamed)",
    query=FileQuery,
)
async def file_contents(req: ApiRequest[Any, Any]) -> Result:
    query: FileQuery = req.query
    req.query = ours(FilePath, path=query.file)
    return await native.download(req)


@route(
    "POST",
    "write",
    "files.write",
    summary="Pterodactyl: write a (text) file of at most 1 MiB",
    query=FileQuery,
    status=204,
    raw_body=RawBody(
        "The file's new contents as raw bytes; they replace the file at `file`.",
        max_bytes=native.MAX_EDIT_BYTES,
    ),
)
async def write_file(req: ApiRequest[Any, Any]) -> None:
    query: FileQuery = req.query
    req.query = ours(FilePath, path=query.file)
    await native.save(req)


@route(
    "PUT",
    "rename",
    "files.write",
    summary="Pterodactyl: rename or move files",
    body=RenameFiles,
    status=204,
)
async def rename_files(req: ApiRequest[Any, Any]) -> None:
    body: RenameFiles = req.body
    for item in body.files:
        req.body = ours(
            RenameFile, source=under(body.root, item.from_), destination=under(body.root, item.to)
        )
        await native.rename(req)


@route(
    "POST",
    "delete",
    "files.delete",
    summary="Pterodactyl: delete files and directories",
    body=DeleteFiles,
    status=204,
)
async def delete_files(req: ApiRequest[Any, Any]) -> None:
    body: DeleteFiles = req.body
    req.body = ours(DeletePaths, paths=[under(body.root, name) for name in body.files])
    await native.delete(req)


@route(
    "POST",
    "create-folder",
    "files.create",
    summary="Pterodactyl: create a directory",
    body=CreateFolder,
    status=204,
)
async def create_folder(req: ApiRequest[Any, Any]) -> None:
    body: CreateFolder = req.body
    req.body = ours(MakeDirectory, path=under(body.root, body.name))
    await native.make_directory(req)
