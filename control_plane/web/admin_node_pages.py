"""The administration pages of nodes: the list (and a form to add one), a node's health,
capacity, agent config and install command, and its allocations. Like every administration
page they are ``Access.ADMIN`` and act through the JSON API (``static/admin.js``).

A node's agent config holds no secret (the node's id, our issuer and public key): it is
rendered again on the node's page whenever an administrator opens it, as the API's node
creation returns it once.
"""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select

from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.cli_ops import DEFAULT_AGENT_DATA_DIR, render_agent_config
from control_plane.db.models import Location, Node, Server, User
from control_plane.security.command_signing import CommandSigner
from control_plane.services import fleet
from control_plane.services import infrastructure as infra
from control_plane.web.admin_pages import node_health
from control_plane.web.render import page

routes = ApiRoutes("pages", access=Access.ADMIN)
# What the install command says where this control plane's address is not known.
ADDRESS_PLACEHOLDER = "CONTROL_PLANE_IP"


@routes.get("/admin/nodes", summary="Page: nodes")
async def nodes_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    nodes = await infra.list_nodes(req.db)
    locations = await infra.list_locations(req.db)
    return page(
        req.http,
        "admin/nodes.html",
        nodes=[(node, node_health(node.status)) for node in nodes],
        usage=await fleet.node_usage(req.db),
        locations=locations,
        location_codes={location.id: location.code for location in locations},
        may_add=bool(req.settings.signing_key_file),
    )


@routes.get("/admin/nodes/{node_id}", summary="Page: a node")
async def node_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    node = await infra.get_node(req.db, req.uuid_param("node_id"))
    location = await req.db.get(Location, node.location_id) if node.location_id else None
    servers = await req.db.execute(
        select(Server, User.email)
        .join(User, User.id == Server.owner_id)
        .where(Server.node_id == node.id)
        .order_by(Server.name)
    )
    config = await _agent_config(req, node)
    return page(
        req.http,
        "admin/node.html",
        node=node,
        health=node_health(node.status),
        location=location,
        usage=(await fleet.node_usage(req.db)).get(node.id, fleet.NodeUsage()),
        servers=list(servers),
        config=config,
        install=_install_command(req, node) if config else None,
    )


@routes.get("/admin/nodes/{node_id}/allocations", summary="Page: a node's allocations")
async def allocations_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    node = await infra.get_node(req.db, req.uuid_param("node_id"))
    allocations = await infra.list_allocations(req.db, node)
    users = {a.server_id for a in allocations if a.server_id is not None}
    names = {}
    if users:
        rows = await req.db.execute(select(Server.id, Server.name).where(Server.id.in_(users)))
        names = {server_id: name for server_id, name in rows}
    return page(
        req.http,
        "admin/allocations.html",
        node=node,
        allocations=allocations,
        server_names=names,
        default_ip=node_ip(node.url),
    )


async def _agent_config(req: ApiRequest[Any, Any], node: Node) -> str | None:
    """The node's agent config, or None when no signing key is configured."""
    key_file = req.settings.signing_key_file
    if not key_file:
        return None
    signer = await asyncio.to_thread(
        CommandSigner.from_file, Path(key_file), issuer=req.settings.issuer
    )
    return render_agent_config(node, signer, data_dir=DEFAULT_AGENT_DATA_DIR)


def _install_command(req: ApiRequest[Any, Any], node: Node) -> str:
    """What to run on the node as root, from a copy of the source tree, with the config
    saved next to it (deploy/install-agent.sh, deploy/README.md "Add a node")."""
    return (
        f"sudo deploy/install-agent.sh --bundle {node.name}.toml "
        f"--control-plane {control_plane_ip(req.http.host or '')}"
    )


def control_plane_ip(host: str) -> str:
    """The IP for the node's firewall from the Host the panel was reached at: that host if
    it is an IP other than loopback, else a placeholder to fill in (a name or loopback says
    nothing of the address the node will see)."""
    host = host.strip()
    if host.startswith("["):  # [IPv6]:port
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:  # IPv4 or a name, with a port
        host = host.rsplit(":", 1)[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ADDRESS_PLACEHOLDER
    return ADDRESS_PLACEHOLDER if address.is_loopback else str(address)


def node_ip(url: str) -> str:
    """The node's address if its agent URL names an IP (the default for new ports), else ""."""
    host = url.split("://", 1)[-1]
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return ""
