"""Pterodactyl's ``signed_url`` answers: ``GET files/download?file=``, ``GET files/upload``
and ``GET backups/{uuid}/download`` give ``{"object": "signed_url", "attributes": {"url"}}``,
a link that works once, for a few minutes, without any other credential
(``control_plane/security/signed_links.py``). Opening it runs our own download or upload
(``control_plane/api/compat/signed_redeem.py``) with the same permission, checked again."""

from __future__ import annotations

from typing import Any, Final

from yarl import URL

from control_plane.api.compat.client_files import FILES, FileQuery, ours
from control_plane.api.compat.envelope import CompatObject, item
from control_plane.api.compat.errors import BadRequest
from control_plane.api.compat.ids import CLIENT_IDS
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.session import transaction
from control_plane.keys import READ_SESSIONS
from control_plane.security import signed_links
from control_plane.services import backups as backup_service
from shared.node_endpoints import FilePath

routes = ApiRoutes("pterodactyl client", path_ids=CLIENT_IDS)
BACKUPS: Final = "/api/client/servers/{server_id}/backups"
# Where the links lead (public routes: the token is their credential).
SIGNED: Final = "/api/client/signed"
FILE_DOWNLOAD: Final = SIGNED + "/files/download"
FILE_UPLOAD: Final = SIGNED + "/files/upload"
BACKUP_DOWNLOAD: Final = SIGNED + "/backups/download"


def signed_url(
    req: ApiRequest[Any, Any], path: str, action: signed_links.Action, target: str
) -> dict[str, Any]:
    """A link to ``path`` for the caller's ``action`` on ``target`` of the route's server."""
    token, _ = signed_links.issue(
        req.settings.auth_secret or "", req.me, req.server.id, action, target
    )
    base = URL(req.settings.public_url) if req.settings.public_url else req.http.url
    url = base.with_path(path).with_query({"token": token})
    return item("signed_url", {"url": str(url)})


@routes.get(
    FILES + "/download",
    permission="files.read",
    rate_limit="files",
    summary="Pterodactyl: a link that downloads the file once, within 5 minutes",
    query=FileQuery,
    response=CompatObject,
    transactional=False,
)
async def file_download_url(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    query: FileQuery = req.query
    where: FilePath = ours(FilePath, path=query.file)
    return signed_url(req, FILE_DOWNLOAD, "file.download", where.path)


@routes.get(
    FILES + "/upload",
    permission="files.create",
    rate_limit="files",
    summary="Pterodactyl: a link that takes one multipart upload (`files` fields, "
    "`?directory=`) within 5 minutes",
    response=CompatObject,
    transactional=False,
)
async def file_upload_url(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    return signed_url(req, FILE_UPLOAD, "file.upload", "")


@routes.get(
    BACKUPS + "/{backup_id}/download",
    summary="Pterodactyl: a link that downloads the backup (.tar.gz) once, within 5 minutes",
    permission="backups.download",
    response=CompatObject,
    transactional=False,
    rate_limit="files",
)
async def backup_download_url(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    async with transaction(req.http.app[READ_SESSIONS]) as db:
        backup = await backup_service.get_backup(db, req.server.id, req.uuid_param("backup_id"))
    if backup.status != "completed":
        raise BadRequest("only a completed backup can be downloaded")
    return signed_url(req, BACKUP_DOWNLOAD, "backup.download", str(backup.id))
