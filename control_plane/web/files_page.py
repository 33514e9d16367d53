"""A server's files page: ``/servers/{server_id}/files?path=/dir``, for whoever holds
``files.read`` on it.

The page is a shell: its browser code (static/files.js) lists the directory in the URL's
``path`` and does every operation through the files API (control_plane/api/files.py), which
checks each one again on its own. Which controls the page draws (save, upload, new folder,
rename, delete, compress and extract, pull from a URL) is decided here, with the same
function as every route (:func:`control_plane.web.server_tabs.may`).

The path in the query is read here as the agent reads it (:func:`shared.files_api.path_parts`:
``..`` refused, never resolved): a bad one is answered with the page and the reason, and the
browser code then lists nothing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from control_plane.api.files import MAX_EDIT_BYTES
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.security.api_keys import Scope
from control_plane.web.render import page
from control_plane.web.server_tabs import may, visible_tabs
from shared.files_api import path_parts

routes = ApiRoutes("pages")


class FilesPageQuery(BaseModel):
    """``?path=`` the directory shown; ``?edit=`` a file open in the editor instead."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Checked by the handler (not here): a bad path gets the page and its reason, not JSON.
    path: str = Field("/", max_length=8192)
    edit: str | None = Field(None, max_length=8192)


def _canonical(text: str) -> str:
    """``text`` as ``/a/b`` (the root is ``/``); ValueError as the agent would refuse it."""
    return "/" + "/".join(path_parts(text))


def crumbs(directory: str) -> list[dict[str, str]]:
    """The breadcrumbs of ``directory`` (canonical): the root, then each parent, itself last."""
    trail = [{"name": "Files", "path": "/"}]
    parts = [part for part in directory.split("/") if part]
    for index, part in enumerate(parts):
        trail.append({"name": part, "path": "/" + "/".join(parts[: index + 1])})
    return trail


@routes.get(
    "/servers/{server_id}/files",
    summary="Page: a server's files",
    permission="files.read",
    query=FilesPageQuery,
    transactional=False,
)
async def files_page(req: ApiRequest[Any, FilesPageQuery]) -> web.StreamResponse:
    problem = None
    directory, editing = "/", None
    try:
        if req.query.edit is not None:
            editing = _canonical(req.query.edit)
            if editing == "/":
                raise ValueError("the path names the folder of all files, not a file")
            directory = editing.rsplit("/", 1)[0] or "/"
        else:
            directory = _canonical(req.query.path)
    except ValueError as err:
        problem = f"That path cannot be opened: {err}."
        directory, editing = "/", None
    return page(
        req.http,
        "files.html",
        status=400 if problem else 200,
        server=req.server,
        tabs=visible_tabs(req),
        directory=directory,
        editing=editing,
        crumbs=crumbs(editing or directory),
        problem=problem,
        max_edit_bytes=MAX_EDIT_BYTES,
        may_write=may(req, Scope.WRITE, "files.write"),
        may_create=may(req, Scope.WRITE, "files.create"),
        may_delete=may(req, Scope.WRITE, "files.delete"),
        may_archive=may(req, Scope.WRITE, "files.archive"),
    )
