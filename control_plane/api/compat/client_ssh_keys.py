"""``/api/client/account/ssh-keys``: Pterodactyl's SSH keys for SFTP, over ours
(``ssh_keys.py``): the same key rules, limit, audit records and push to the nodes.

Pterodactyl names a key by its SHA-256 fingerprint without OpenSSH's ``SHA256:`` prefix; a
removal takes either form and answers 204 whether or not the key was there, as Pterodactyl
does. Adding and removing a key are changes to the account's own credentials: from a
signed-in session only, as on our API (a leaked API key cannot add a way in).
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import Field
from sqlalchemy import select

from control_plane.api import ssh_keys
from control_plane.api.compat.envelope import CompatObject, collection, item, timestamp
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.models import SshKey
from control_plane.errors import Conflict, InvalidRequest
from control_plane.schemas.common import Input
from control_plane.schemas.ssh_keys import SshKeyCreate, SshKeyList, SshKeyOut
from shared.errors import ErrorDetail

routes = ApiRoutes("pterodactyl client")
KEYS: Final = "/api/client/account/ssh-keys"
PREFIX: Final = "SHA256:"


class KeyRemove(Input):
    fingerprint: str = Field(min_length=1, max_length=128)


def _key(key: SshKeyOut) -> dict[str, Any]:
    return {
        "name": key.name,
        "fingerprint": key.fingerprint.removeprefix(PREFIX),
        "public_key": key.public_key,
        "created_at": timestamp(key.created_at),
    }


@routes.get(KEYS, summary="Pterodactyl: my SSH keys for SFTP", response=CompatObject)
async def list_ssh_keys(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    listed = await ssh_keys.list_ssh_keys(req)
    assert isinstance(listed, SshKeyList)
    return collection("ssh_key", [_key(k) for k in listed.data])


@routes.post(KEYS, summary="Pterodactyl: add an SSH public key for SFTP (one OpenSSH line)",
             body=SshKeyCreate, response=CompatObject, session_only=True)  # fmt: skip
async def add_ssh_key(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    try:
        made = await ssh_keys.add_ssh_key(req)
    except (InvalidRequest, Conflict) as err:
        if isinstance(err, InvalidRequest) and err.details:
            raise
        # Pterodactyl answers a key it cannot take, or has already, as a 422 on the field.
        problem = ErrorDetail(loc=["public_key"], msg=err.message, type="public_key")
        raise InvalidRequest("invalid request body", details=[problem]) from err
    assert isinstance(made, SshKeyOut)
    return item("ssh_key", _key(made))


@routes.post(KEYS + "/remove", summary="Pterodactyl: remove one of my SSH keys by its "
             "fingerprint (204 whether or not it was there)", body=KeyRemove, status=204,
             session_only=True)  # fmt: skip
async def remove_ssh_key(req: ApiRequest[Any, Any]) -> None:
    body: KeyRemove = req.body
    fingerprint = PREFIX + body.fingerprint.removeprefix(PREFIX)
    key = await req.db.scalar(
        select(SshKey).where(SshKey.user_id == req.me.user_id, SshKey.fingerprint == fingerprint)
    )
    if key is not None:
        await ssh_keys.remove_key(req, key)
