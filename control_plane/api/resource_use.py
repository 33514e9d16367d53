"""The latest resource use of the servers on one page of my server list (the list page
polls it: one request for the whole page, answered from the database, no node asked).

GET /api/v1/resource-use?page=1&q=name    the servers I may list; each only with stats.read
"""

from __future__ import annotations

from typing import Any

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.keys import WALL_CLOCK
from control_plane.schemas.resource_use import SERVERS_PER_PAGE, ResourceUseList, ServerSearch
from control_plane.security.permissions import holds
from control_plane.services.servers import listing, resource_use

routes = ApiRoutes("servers")


@routes.get(
    "/api/v1/resource-use",
    summary="CPU and memory of the servers on a page of my list (those I hold stats.read on)",
    query=ServerSearch,
    response=ResourceUseList,
    transactional=False,
)
async def page_resource_use(req: ApiRequest[Any, ServerSearch]) -> ResourceUseList:
    found = await listing.server_page(
        req.reader,
        req.me,
        offset=(req.query.page - 1) * SERVERS_PER_PAGE,
        limit=SERVERS_PER_PAGE,
        name=req.query.q.strip() or None,
    )
    # The same rule as GET /servers/{id}/stats: a sub-user sees use only with stats.read.
    ids = [str(s.columns.id) for s in found.servers if holds(s.permissions, "stats.read")]
    use = await resource_use.latest(req.reader, ids, req.http.app[WALL_CLOCK]())
    return ResourceUseList(data=list(use.values()))
