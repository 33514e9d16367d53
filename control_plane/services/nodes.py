"""Nodes: registration and look-up."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from yarl import URL

from control_plane.db.models import Node
from control_plane.errors import Conflict, InvalidRequest, NotFound

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_node_url(url: str) -> str:
    """An agent URL is ``http(s)://host:port`` with no path, query or credentials."""
    try:
        parsed = URL(url)
    except ValueError as err:
        raise InvalidRequest(f"{url!r} is not a URL") from err
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise InvalidRequest("node URL must be http(s)://host:port")
    if parsed.user or parsed.password or parsed.query_string or parsed.fragment:
        raise InvalidRequest("node URL must not carry credentials, a query or a fragment")
    if parsed.path not in {"", "/"}:
        raise InvalidRequest("node URL must not have a path")
    return str(parsed.with_path("")).rstrip("/")


async def add_node(session: AsyncSession, *, name: str, url: str) -> Node:
    if not NAME.fullmatch(name):
        raise InvalidRequest("node name: 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit")
    node = Node(name=name, url=check_node_url(url))
    session.add(node)
    try:
        await session.flush()
    except IntegrityError as err:
        raise Conflict(f"a node named {name!r} exists already") from err
    return node


async def get_node_by_name(session: AsyncSession, name: str) -> Node:
    node = await session.scalar(select(Node).where(Node.name == name))
    if node is None:
        raise NotFound(f"no node named {name!r}")
    return node


async def list_nodes(session: AsyncSession) -> list[Node]:
    return list(await session.scalars(select(Node).order_by(Node.name)))
