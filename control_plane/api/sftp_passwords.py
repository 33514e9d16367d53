"""SFTP on one server, for its owner and sub-users (docs/sftp.md): where to connect and the
host key to expect, and a per-server SFTP password made by the panel, shown once, stored
encrypted; the node receives only its scrypt hash.

    GET    /api/v1/servers/{server_id}/sftp            files.sftp   -> SftpDetails (asks the node)
    POST   /api/v1/servers/{server_id}/sftp-password   files.sftp   -> 201 {username, password}
    DELETE /api/v1/servers/{server_id}/sftp-password   files.sftp   -> 204 (also if none)

A new password replaces the previous one; removing it (or replacing it) ends the SFTP
sessions that logged in with the old one.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.api.sftp_sync import push_after_commit
from control_plane.db.models import Node, SftpPassword, User
from control_plane.errors import ApiError, Forbidden, NotFound
from control_plane.keys import SECRET_BOX
from control_plane.schemas.ssh_keys import SftpDetails, SftpPasswordOut
from control_plane.security.encryption import EncryptionNotConfigured
from shared.sftp_api import login_name
from shared.sftp_passwords import hash_password, new_password

routes = ApiRoutes("sftp passwords")
PATH = "/api/v1/servers/{server_id}/sftp-password"


class SftpNotServed(ApiError):
    status = 409
    code = "sftp_not_served"


@routes.get(
    "/api/v1/servers/{server_id}/sftp",
    summary="Where to connect with SFTP, my login name and the node's host key",
    permission="files.sftp",
    response=SftpDetails,
    transactional=False,
    calls_node=True,
)
async def sftp_details(req: ApiRequest[Any, Any]) -> SftpDetails:
    _member(req)
    server_id, user_id = req.server.id, req.me.user_id
    async with req.transaction(write=False) as db:
        user = await db.get(User, user_id)
        node = await db.get(Node, req.server.node_id)
        if user is None or node is None:
            raise NotFound("no such server")
        account = user.username
    info = await req.nodes.system_info(node, user=str(user_id))
    if info.sftp is None:
        raise SftpNotServed("this server's node does not serve SFTP (sftp_port is not set)")
    return SftpDetails(
        host=urlsplit(node.url).hostname or "",
        port=info.sftp.port,
        username=login_name(account, server_id),
        host_key=info.sftp.host_key,
        fingerprint=info.sftp.fingerprint,
    )


class SftpPasswordsUnavailable(ApiError):
    status = 503
    code = "sftp_passwords_unavailable"


def _member(req: ApiRequest[Any, Any]) -> None:
    # The table a node receives lists owners and sub-users only (services/sftp.py).
    if req.server.owner_id != req.me.user_id and req.access.role != "subuser":
        raise req.deny(Forbidden("SFTP is for the server's owner and its sub-users"))


@routes.post(
    PATH,
    summary="Make my SFTP password for this server (shown once; replaces the previous one)",
    permission="files.sftp",
    response=SftpPasswordOut,
    status=201,
    # A scrypt (~50 ms of CPU, 16 MiB) and a push of the node's whole access table each.
    rate_limit="authentication",
    transactional=False,
)
async def issue_sftp_password(req: ApiRequest[Any, Any]) -> SftpPasswordOut:
    _member(req)
    password = new_password()
    agent_hash = await asyncio.to_thread(hash_password, password)
    server_id, user_id = req.server.id, req.me.user_id
    async with req.transaction() as db:
        old = await db.scalar(
            select(SftpPassword).where(
                SftpPassword.server_id == server_id, SftpPassword.user_id == user_id
            )
        )
        if old is not None:
            await db.delete(old)
            await db.flush()
        row = SftpPassword(user_id=user_id, server_id=server_id, secret="", agent_hash=agent_hash)
        try:
            req.http.app[SECRET_BOX].seal(row, "secret", password)
        except EncryptionNotConfigured as err:
            raise SftpPasswordsUnavailable(str(err)) from err
        db.add(row)
        user = await db.get(User, user_id)
        if user is None:
            raise NotFound("no such user")
        account = user.username
        await req.audit(
            "server.sftp_password.issued", target_type="server", target_id=str(server_id)
        )
    push_after_commit(req, [req.server.node_id])
    return SftpPasswordOut(username=login_name(account, server_id), password=password)


@routes.delete(
    PATH, summary="Remove my SFTP password for this server", permission="files.sftp", status=204
)
async def remove_sftp_password(req: ApiRequest[Any, Any]) -> None:
    row = await req.db.scalar(
        select(SftpPassword).where(
            SftpPassword.server_id == req.server.id, SftpPassword.user_id == req.me.user_id
        )
    )
    if row is None:
        return  # nothing to remove: the caller's wish holds already
    await req.db.delete(row)
    await req.audit(
        "server.sftp_password.removed", target_type="server", target_id=str(req.server.id)
    )
    push_after_commit(req, [req.server.node_id])
