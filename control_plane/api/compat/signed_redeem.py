"""Where Pterodactyl's signed links lead (``signed_urls.py`` makes them): public routes whose
one credential is the link's token. Each use decides again, as the issuing route did: the
credential the link was asked with must still work (``caller_from_grant``), the user must
still see the server (else 404) and hold the permission (else 403); then the link is spent
(it works once) and our own download or upload runs, with its audit record.

A refused link (forged, tampered, expired, for another action, used) is 403, one message
for all: which of them it was is no one's business.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import posixpath
import tempfile
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import IO, Any, Final

from aiohttp import BodyPartReader
from pydantic import ConfigDict, Field

from control_plane.api import backups as native_backups
from control_plane.api import files as native_files
from control_plane.api.compat.client_files import ours
from control_plane.api.compat.ids import CLIENT_IDS
from control_plane.api.compat.signed_urls import BACKUP_DOWNLOAD, FILE_DOWNLOAD, FILE_UPLOAD
from control_plane.api.routing import Access, ApiRequest, ApiRoutes, Result, act_as
from control_plane.db.session import transaction
from control_plane.errors import Forbidden, InvalidRequest, PayloadTooLarge, RequestTimeout
from control_plane.keys import SESSIONS
from control_plane.schemas.common import Input
from control_plane.security import signed_links
from control_plane.security.api_keys import Scope
from control_plane.security.authn import caller_from_grant
from control_plane.security.authorization import Requirement
from control_plane.services.signed_link_uses import use_once
from shared.files_api import check_name
from shared.node_endpoints import FilePath, FileUpload

routes = ApiRoutes("pterodactyl client", access=Access.PUBLIC, path_ids=CLIENT_IDS)
REFUSED: Final = "this link is invalid, used or expired; ask for a new one"
# An upload through a link is spooled here before the node gets it (a multipart part has no
# size, and the node takes an exact one): bigger files go through our streamed upload
# (PUT /api/v1/servers/{id}/files/upload) or SFTP.
MAX_LINK_UPLOAD_BYTES: Final = 1024**3
CHUNK: Final = 256 * 1024


class TokenQuery(Input):
    model_config = ConfigDict(extra="ignore")
    token: str = Field(min_length=1, max_length=8192)


class UploadQuery(TokenQuery):
    directory: str = Field("/", max_length=4096)


async def _redeem(
    req: ApiRequest[Any, Any], action: signed_links.Action, permission: str, scope: Scope
) -> signed_links.LinkGrant:
    """The link's grant, once the caller it stands for is decided to be allowed now and the
    link is spent."""
    query: TokenQuery = req.query
    try:
        link = signed_links.verify(req.settings.auth_secret or "", query.token, action)
    except signed_links.LinkRefused as err:
        raise req.deny(Forbidden(REFUSED), "auth.link_refused", reason=str(err)[:100]) from err
    caller = await caller_from_grant(req.http, link.grant, req.ip, req.user_agent)
    if caller is None:
        raise req.deny(Forbidden(REFUSED), "auth.link_refused", reason="credential gone")
    need = Requirement(scope=scope, permission=permission, api="client")
    await act_as(req, caller, link.server_id, need)
    # A request that lasts (an upload) asks again for the credential the link stands for.
    req.reidentify = partial(caller_from_grant, req.http, link.grant, req.ip, req.user_agent)
    expires = dt.datetime.fromtimestamp(link.grant.expires_at, dt.UTC)
    async with transaction(req.http.app[SESSIONS]) as db:
        fresh = await use_once(db, link.jti, expires)
    if not fresh:
        raise req.deny(Forbidden(REFUSED), "auth.link_refused", reason="used")
    return link


@routes.get(
    FILE_DOWNLOAD,
    summary="Pterodactyl's signed file download (the token is the credential; works once)",
    query=TokenQuery,
    rate_limit="files",
    transactional=False,
    calls_node=True,
)
async def download_file(req: ApiRequest[Any, Any]) -> Result:
    link = await _redeem(req, "file.download", "files.read", Scope.READ)
    req.query = ours(FilePath, path=link.target)
    return await native_files.download(req)


@routes.get(
    BACKUP_DOWNLOAD,
    summary="Pterodactyl's signed backup download (the token is the credential; works once)",
    query=TokenQuery,
    rate_limit="files",
    transactional=False,
    calls_node=True,
)
async def download_backup(req: ApiRequest[Any, Any]) -> Result:
    link = await _redeem(req, "backup.download", "backups.download", Scope.READ)
    req.path_uuids["backup_id"] = uuid.UUID(link.target)
    return await native_backups.download_backup(req)


@routes.post(
    FILE_UPLOAD,
    summary="Pterodactyl's signed upload: multipart `files` fields into `?directory=` "
    "(the token is the credential; works once)",
    query=UploadQuery,
    status=204,
    rate_limit="files",
    transactional=False,
    calls_node=True,
)
async def upload_files(req: ApiRequest[Any, Any]) -> None:
    await _redeem(req, "file.upload", "files.create", Scope.WRITE)
    query: UploadQuery = req.query
    directory: FilePath = ours(FilePath, path=query.directory)
    if not req.http.content_type.startswith("multipart/"):
        raise InvalidRequest("send the files as multipart/form-data fields named 'files'")
    node = await req.server_node()
    reader = await req.http.multipart()
    uploaded = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name != "files":
            raise InvalidRequest("only fields named 'files' are taken")
        name = _file_name(part.filename)
        with tempfile.TemporaryFile() as spool:
            size = await _spool(req, part, spool)
            await req.authorized_again()  # the part may have taken minutes to arrive
            where = ours(FileUpload, path=posixpath.join(directory.path, name), size=size)
            await native_files.send_upload(req, node, where, _chunks(spool))
        uploaded += 1
    if not uploaded:
        raise InvalidRequest("no 'files' field in the upload")


def _file_name(raw: str | None) -> str:
    try:
        return check_name(raw or "")
    except ValueError as err:
        raise InvalidRequest(f"files: {err}") from err


async def _spool(req: ApiRequest[Any, Any], part: BodyPartReader, spool: IO[bytes]) -> int:
    """Copy one part into ``spool`` (bounded in size and in how slowly it may arrive)."""
    size = 0
    timeout = req.settings.body_timeout_seconds
    while True:
        try:
            async with asyncio.timeout(timeout):
                chunk = await part.read_chunk(CHUNK)
        except TimeoutError as err:
            raise RequestTimeout("the upload is arriving too slowly") from err
        if not chunk:
            break
        size += len(chunk)
        if size > MAX_LINK_UPLOAD_BYTES:
            raise PayloadTooLarge(
                f"a file uploaded through a link is at most {MAX_LINK_UPLOAD_BYTES} bytes; "
                "use the streamed upload or SFTP for bigger ones"
            )
        await asyncio.to_thread(spool.write, chunk)
    await asyncio.to_thread(spool.seek, 0)
    return size


async def _chunks(spool: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(spool.read, CHUNK):
        yield chunk
