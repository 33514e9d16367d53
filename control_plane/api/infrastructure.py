"""Administration of locations, nodes and allocations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.cli_ops import DEFAULT_AGENT_DATA_DIR, render_agent_config
from control_plane.errors import InvalidRequest
from control_plane.nodes.client import NodeNotConfigured
from control_plane.schemas.infrastructure import (
    AllocationCreate,
    AllocationList,
    AllocationOut,
    LocationCreate,
    LocationList,
    LocationOut,
    LocationUpdate,
    NodeCreate,
    NodeCreated,
    NodeList,
    NodeOut,
    NodeUpdate,
)
from control_plane.security.command_signing import CommandSigner
from control_plane.services import infrastructure as infra
from control_plane.services import nodes as node_service
from shared.node_api import SystemInfo

routes = ApiRoutes("infrastructure", access=Access.ADMIN)


@routes.get("/api/v1/locations", summary="List locations", response=LocationList)
async def list_locations(req: ApiRequest[Any, Any]) -> LocationList:
    rows = await infra.list_locations(req.db)
    return LocationList(data=[LocationOut.model_validate(r) for r in rows])


@routes.post(
    "/api/v1/locations",
    summary="Create a location",
    body=LocationCreate,
    response=LocationOut,
    status=201,
)
async def create_location(req: ApiRequest[LocationCreate, Any]) -> LocationOut:
    location = await infra.create_location(
        req.db, code=req.body.code, description=req.body.description
    )
    await req.audit("location.created", target_type="location", target_id=str(location.id))
    return LocationOut.model_validate(location)


@routes.patch(
    "/api/v1/locations/{location_id}",
    summary="Rename a location or change its description",
    body=LocationUpdate,
    response=LocationOut,
)
async def update_location(req: ApiRequest[LocationUpdate, Any]) -> LocationOut:
    changes = req.body.model_dump(exclude_none=True)
    location = await infra.change_location(
        req.db, req.uuid_param("location_id"), code=req.body.code, description=req.body.description
    )
    await req.audit(
        "location.updated", target_type="location", target_id=str(location.id), details=changes
    )
    return LocationOut.model_validate(location)


@routes.delete(
    "/api/v1/locations/{location_id}",
    summary="Delete an empty location",
    status=204,
)
async def delete_location(req: ApiRequest[Any, Any]) -> None:
    location = await infra.delete_location(req.db, req.uuid_param("location_id"))
    await req.audit("location.deleted", target_type="location", target_id=str(location.id))


@routes.get("/api/v1/nodes", summary="List nodes", response=NodeList)
async def list_nodes(req: ApiRequest[Any, Any]) -> NodeList:
    rows = await infra.list_nodes(req.db)
    return NodeList(data=[NodeOut.model_validate(r) for r in rows])


@routes.post(
    "/api/v1/nodes",
    summary="Register a node; the answer carries the agent's config",
    body=NodeCreate,
    response=NodeCreated,
    status=201,
)
async def create_node(req: ApiRequest[NodeCreate, Any]) -> NodeCreated:
    if not req.settings.signing_key_file:
        raise NodeNotConfigured("set STELLAR_SIGNING_KEY_FILE before adding nodes")
    await infra.check_location(req.db, req.body.location_id)
    node = await node_service.add_node(req.db, name=req.body.name, url=req.body.url)
    node.location_id = req.body.location_id
    node.memory_mib = req.body.memory_mib
    node.disk_mib = req.body.disk_mib
    node.tls_fingerprint = req.body.tls_fingerprint
    await req.db.flush()
    signer = CommandSigner.from_file(
        Path(req.settings.signing_key_file), issuer=req.settings.issuer
    )
    await req.audit(
        "node.created", target_type="node", target_id=str(node.id), details={"url": node.url}
    )
    return NodeCreated(
        **NodeOut.model_validate(node).model_dump(),
        agent_config=render_agent_config(node, signer, data_dir=DEFAULT_AGENT_DATA_DIR),
    )


@routes.get("/api/v1/nodes/{node_id}", summary="Get a node", response=NodeOut)
async def get_node(req: ApiRequest[Any, Any]) -> NodeOut:
    return NodeOut.model_validate(await infra.get_node(req.db, req.uuid_param("node_id")))


@routes.patch(
    "/api/v1/nodes/{node_id}",
    summary="Change a node",
    body=NodeUpdate,
    response=NodeOut,
)
async def update_node(req: ApiRequest[NodeUpdate, Any]) -> NodeOut:
    node = await infra.get_node(req.db, req.uuid_param("node_id"))
    changes = req.body.model_dump(exclude_unset=True)
    if "url" in changes:
        if changes["url"] is None:
            raise InvalidRequest("url cannot be empty")
        node.url = node_service.check_node_url(changes.pop("url"))
    if "location_id" in changes:
        await infra.check_location(req.db, changes["location_id"])
    for field, value in changes.items():
        if value is not None or field == "location_id":
            setattr(node, field, value)
    await req.audit("node.updated", target_type="node", target_id=str(node.id), details=changes)
    return NodeOut.model_validate(node)


@routes.delete(
    "/api/v1/nodes/{node_id}",
    summary="Delete a node without servers",
    status=204,
)
async def delete_node(req: ApiRequest[Any, Any]) -> None:
    node = await infra.delete_node(req.db, req.uuid_param("node_id"))
    await req.audit("node.deleted", target_type="node", target_id=str(node.id))


@routes.get(
    "/api/v1/nodes/{node_id}/system",
    summary="Ask the node for its facts (a signed call)",
    response=SystemInfo,
    transactional=False,
    calls_node=True,
)
async def node_system(req: ApiRequest[Any, Any]) -> SystemInfo:
    async with req.transaction(write=False) as db:
        node = await infra.get_node(db, req.uuid_param("node_id"))
    return await req.nodes.system_info(node, user=str(req.me.user_id))


@routes.get(
    "/api/v1/nodes/{node_id}/allocations",
    summary="List a node's allocations",
    response=AllocationList,
)
async def list_allocations(req: ApiRequest[Any, Any]) -> AllocationList:
    node = await infra.get_node(req.db, req.uuid_param("node_id"))
    rows = await infra.list_allocations(req.db, node)
    return AllocationList(data=[AllocationOut.model_validate(r) for r in rows])


@routes.post(
    "/api/v1/nodes/{node_id}/allocations",
    summary="Add a port or a port range",
    body=AllocationCreate,
    response=AllocationList,
    status=201,
)
async def create_allocations(req: ApiRequest[AllocationCreate, Any]) -> AllocationList:
    node = await infra.get_node(req.db, req.uuid_param("node_id"))
    body = req.body
    rows = await infra.add_allocations(
        req.db, node, ip=body.ip, first=body.port, last=body.port_end or body.port
    )
    await req.audit(
        "node.allocations.created",
        target_type="node",
        target_id=str(node.id),
        details={"ip": body.ip, "ports": f"{body.port}-{body.port_end or body.port}"},
    )
    return AllocationList(data=[AllocationOut.model_validate(r) for r in rows])


@routes.delete(
    "/api/v1/nodes/{node_id}/allocations/{allocation_id}",
    summary="Remove an unused allocation",
    status=204,
)
async def delete_allocation(req: ApiRequest[Any, Any]) -> None:
    node_id = req.uuid_param("node_id")
    allocation_id = req.uuid_param("allocation_id")
    await infra.delete_allocation(req.db, node_id, allocation_id)
    await req.audit(
        "node.allocations.deleted", target_type="allocation", target_id=str(allocation_id)
    )
