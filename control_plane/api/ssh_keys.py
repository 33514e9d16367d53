"""A user's SSH public keys for SFTP (docs/sftp.md). Each change is pushed, after commit, to
every node where the user has a server, so a removed key ends its open SFTP sessions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.api.sftp_sync import push_after_commit
from control_plane.db.models import SshKey, User
from control_plane.errors import Conflict, NotFound
from control_plane.schemas.ssh_keys import SshKeyCreate, SshKeyList, SshKeyOut
from control_plane.services import sftp
from shared.sftp_api import MAX_KEYS_PER_USER

routes = ApiRoutes("ssh keys")


async def _push_after_commit(req: ApiRequest[Any, Any]) -> None:
    push_after_commit(req, await sftp.nodes_of_user(req.db, req.me.user_id))


@routes.get("/api/v1/account/ssh-keys", summary="List my SSH keys for SFTP", response=SshKeyList)
async def list_ssh_keys(req: ApiRequest[Any, Any]) -> SshKeyList:
    user = await req.db.get(User, req.me.user_id)
    rows = await sftp.keys_of(req.db, req.me.user_id)
    return SshKeyList(
        data=[SshKeyOut.model_validate(k) for k in rows],
        sftp_account=user.username if user else "",
    )


@routes.post(
    "/api/v1/account/ssh-keys",
    summary="Add an SSH public key for SFTP",
    body=SshKeyCreate,
    response=SshKeyOut,
    status=201,
)
async def add_ssh_key(req: ApiRequest[SshKeyCreate, Any]) -> SshKeyOut:
    line, fingerprint = sftp.parse_public_key(req.body.public_key)
    user_id = req.me.user_id
    count = await req.db.scalar(select(func.count()).where(SshKey.user_id == user_id)) or 0
    if count >= MAX_KEYS_PER_USER:
        raise Conflict(f"an account holds at most {MAX_KEYS_PER_USER} SSH keys")
    same = await req.db.scalar(
        select(SshKey).where(SshKey.user_id == user_id, SshKey.fingerprint == fingerprint)
    )
    if same is not None:
        raise Conflict(f"this key is yours already ({same.name!r})")
    key = SshKey(user_id=user_id, name=req.body.name, public_key=line, fingerprint=fingerprint)
    req.db.add(key)
    await req.db.flush()
    await req.audit(
        "ssh_key.added",
        target_type="ssh_key",
        target_id=str(key.id),
        details={"name": key.name, "fingerprint": fingerprint},
    )
    await _push_after_commit(req)
    return SshKeyOut.model_validate(key)


@routes.delete(
    "/api/v1/account/ssh-keys/{ssh_key_id}", summary="Remove one of my SSH keys", status=204
)
async def remove_ssh_key(req: ApiRequest[Any, Any]) -> None:
    key = await req.db.get(SshKey, req.uuid_param("ssh_key_id"))
    if key is None or key.user_id != req.me.user_id:
        raise req.deny(NotFound("no such SSH key"), target="ssh_key")
    await remove_key(req, key)


async def remove_key(req: ApiRequest[Any, Any], key: SshKey) -> None:
    """Remove the caller's ``key``: audited, and pushed to their nodes after commit."""
    await delete_and_push(req, key)
    await req.audit(
        "ssh_key.removed",
        target_type="ssh_key",
        target_id=str(key.id),
        details={"fingerprint": key.fingerprint},
    )


async def delete_and_push(req: ApiRequest[Any, Any], key: SshKey) -> None:
    """Delete ``key`` and push, after commit, the nodes of its owner's servers: the SFTP
    sessions it opened there end."""
    await req.db.delete(key)
    push_after_commit(req, await sftp.nodes_of_user(req.db, key.user_id))
