"""Administration of accounts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from control_plane.api import ssh_keys
from control_plane.api.auth import session_list
from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.api.sftp_sync import push_after_commit
from control_plane.db.models import OAuthIdentity, Server, SshKey, User
from control_plane.errors import Conflict, NotFound
from control_plane.schemas.api_keys import ApiKeyList, ApiKeyOut
from control_plane.schemas.auth import SessionList, UserOut
from control_plane.schemas.common import Page, PageMeta
from control_plane.schemas.oauth import IdentityList, IdentityOut
from control_plane.schemas.ssh_keys import (
    SftpPasswordIssued,
    SftpPasswordIssuedList,
    SshKeyList,
    SshKeyOut,
)
from control_plane.schemas.users import UserCreate, UserListQuery, UserUpdate
from control_plane.security.sessions import end_all_sessions
from control_plane.services import api_keys as api_key_service
from control_plane.services import mfa, records, sftp
from control_plane.services import oauth as oauth_service
from control_plane.services import passkeys as passkey_service
from control_plane.services import users as user_service

routes = ApiRoutes("users", access=Access.ADMIN)


async def _user(req: ApiRequest[Any, Any]) -> User:
    return await records.get_or_404(req.db, User, req.uuid_param("user_id"), "user")


async def _another_user(req: ApiRequest[Any, Any], own: str) -> User:
    """The route's user, who must not be the caller (409 ``own``: where that is done)."""
    user = await _user(req)
    if user.id == req.me.user_id:
        raise Conflict(own)
    return user


@routes.get(
    "/api/v1/users",
    summary="List users (search: e-mail addresses containing this text)",
    query=UserListQuery,
    response=Page[UserOut],
)
async def list_users(req: ApiRequest[Any, UserListQuery]) -> Page[UserOut]:
    q = req.query
    rows, total = await user_service.user_page(
        req.db, search=q.search, offset=q.offset, limit=q.per_page
    )
    return Page[UserOut](
        data=[UserOut.model_validate(u) for u in rows],
        meta=PageMeta(page=q.page, per_page=q.per_page, total=total),
    )


@routes.post(
    "/api/v1/users",
    summary="Create a user",
    body=UserCreate,
    response=UserOut,
    status=201,
)
async def create_user(req: ApiRequest[UserCreate, Any]) -> UserOut:
    user = await user_service.create_user(
        req.db,
        email=req.body.email,
        password=req.body.password,
        is_admin=req.body.is_admin,
        bcrypt_cost=req.settings.bcrypt_cost,
    )
    await req.audit(
        "user.created",
        target_type="user",
        target_id=str(user.id),
        details={"is_admin": user.is_admin},
    )
    return UserOut.model_validate(user)


@routes.get("/api/v1/users/{user_id}", summary="Get a user", response=UserOut)
async def get_user(req: ApiRequest[Any, Any]) -> UserOut:
    return UserOut.model_validate(await _user(req))


@routes.patch(
    "/api/v1/users/{user_id}",
    summary="Disable, enable, promote or demote a user",
    body=UserUpdate,
    response=UserOut,
)
async def update_user(req: ApiRequest[UserUpdate, Any]) -> UserOut:
    user = await _user(req)
    changes = req.body.model_dump(exclude_none=True)
    if user.id == req.me.user_id and (changes.get("disabled") or changes.get("is_admin") is False):
        raise Conflict("you cannot disable or demote yourself; ask another administrator")
    if changes.get("disabled") or changes.get("is_admin") is False:
        await user_service.keep_an_administrator(req.db, user)
    if "disabled" in changes:
        await user_service.set_disabled(req.db, user, changes["disabled"])
        push_after_commit(req, await sftp.nodes_of_user(req.db, user.id))
    if "is_admin" in changes:
        user.is_admin = changes["is_admin"]
    await req.audit("user.updated", target_type="user", target_id=str(user.id), details=changes)
    return UserOut.model_validate(user)


@routes.delete("/api/v1/users/{user_id}", summary="Delete a user", status=204)
async def delete_user(req: ApiRequest[Any, Any]) -> None:
    user = await _another_user(req, "you cannot delete your own account; ask another administrator")
    owned = await req.db.scalar(select(func.count()).where(Server.owner_id == user.id))
    if owned:
        raise Conflict(f"the user owns {owned} server(s): delete them first")
    await user_service.keep_an_administrator(req.db, user)
    await req.db.delete(user)
    await req.audit(
        "user.deleted", target_type="user", target_id=str(user.id), details={"email": user.email}
    )


@routes.post(
    "/api/v1/users/{user_id}/2fa/reset",
    summary="Turn off a user's authenticator app (TOTP) and recovery codes, e.g. a lost phone",
    status=204,
)
async def reset_second_factor(req: ApiRequest[Any, Any]) -> None:
    # Turning one's own off asks for the password and a code (the account's 2FA page).
    user = await _another_user(
        req, "turn off your own two-factor authentication on your account page"
    )
    if await mfa.active_credential(req.db, user.id) is None:
        raise Conflict("two-factor authentication is off for this user: nothing to reset")
    # Their passkeys stay (each a complete sign-in of its own): removed by the route below.
    await mfa.disable(req.db, user.id)
    await req.audit(
        "user.2fa.reset", target_type="user", target_id=str(user.id), details={"email": user.email}
    )


@routes.delete(
    "/api/v1/users/{user_id}/passkeys",
    summary="Remove every passkey of a user, e.g. lost or stolen authenticators",
    status=204,
)
async def remove_passkeys(req: ApiRequest[Any, Any]) -> None:
    user = await _another_user(req, "remove your own passkeys on your account page")
    removed = await passkey_service.remove_all(req.db, user)
    # A passkey signs in completely by itself, and a session does not say how it began: any
    # of them may be a removed passkey's (a stolen laptop's), so all of them end.
    await end_all_sessions(req.db, user.id)
    await req.audit(
        "user.passkeys.removed",
        target_type="user",
        target_id=str(user.id),
        details={"email": user.email, "removed": removed},
    )


@routes.get(
    "/api/v1/users/{user_id}/sessions",
    summary="List where a user is signed in",
    response=SessionList,
)
async def user_sessions(req: ApiRequest[Any, Any]) -> SessionList:
    return await session_list(req, (await _user(req)).id)


@routes.delete(
    "/api/v1/users/{user_id}/sessions",
    summary="Sign a user out everywhere (their API keys stay)",
    status=204,
)
async def end_user_sessions(req: ApiRequest[Any, Any]) -> None:
    user = await _another_user(req, "sign out your other sessions on your account page")
    ended = await end_all_sessions(req.db, user.id)
    await req.audit(
        "user.sessions.ended",
        target_type="user",
        target_id=str(user.id),
        details={"email": user.email, "ended": ended},
    )


@routes.get(
    "/api/v1/users/{user_id}/api-keys",
    summary="List a user's API keys (never their secrets)",
    response=ApiKeyList,
)
async def user_api_keys(req: ApiRequest[Any, Any]) -> ApiKeyList:
    rows = await api_key_service.keys_of(req.db, (await _user(req)).id)
    return ApiKeyList(data=[ApiKeyOut.model_validate(key) for key in rows])


@routes.delete(
    "/api/v1/users/{user_id}/api-keys/{key_id}",
    summary="Revoke one of a user's API keys",
    status=204,
)
async def revoke_user_api_key(req: ApiRequest[Any, Any]) -> None:
    user = await _user(req)
    key = await api_key_service.key_of(req.db, user.id, req.uuid_param("key_id"))
    if key is None or not await api_key_service.revoke(req.db, key):
        raise NotFound(f"{user.email} has no such API key")
    # Audited against the user: their account's trail shows what was taken back.
    await req.audit(
        "user.api_key.revoked",
        target_type="user",
        target_id=str(user.id),
        details={"email": user.email, "name": key.name, "prefix": key.prefix},
    )


@routes.get(
    "/api/v1/users/{user_id}/oauth",
    summary="List the provider accounts linked to a user",
    response=IdentityList,
)
async def user_identities(req: ApiRequest[Any, Any]) -> IdentityList:
    rows = await oauth_service.identities(req.db, (await _user(req)).id)
    return IdentityList(data=[IdentityOut.model_validate(row) for row in rows])


@routes.delete(
    "/api/v1/users/{user_id}/oauth/{identity_id}",
    summary="Unlink a provider account from a user (not their last way to sign in)",
    status=204,
)
async def unlink_user_identity(req: ApiRequest[Any, Any]) -> None:
    user = await _another_user(req, "unlink your own accounts on your account page")
    identity_id = req.uuid_param("identity_id")
    seen = await req.db.get(OAuthIdentity, identity_id)
    if seen is None or seen.user_id != user.id:
        raise NotFound(f"no such account is linked to {user.email}")
    identity = await oauth_service.unlink(
        req.db,
        user,
        identity_id=identity_id,
        last_way=f"the {seen.provider} account is {user.email}'s only way to sign in: disable"
        " the account instead, or have them set a password or add a passkey first",
    )
    provider = identity.provider
    # Signing in with the linked account is complete by itself, and a session does not say
    # how it began: any of them may be the unlinked account's, so all of them end.
    ended = await end_all_sessions(req.db, user.id)
    await req.audit(
        "user.oauth.unlinked",
        target_type="user",
        target_id=str(user.id),
        details={"provider": provider, "email": user.email, "sessions_ended": ended},
    )


@routes.get(
    "/api/v1/users/{user_id}/ssh-keys",
    summary="List a user's SSH keys for SFTP",
    response=SshKeyList,
)
async def user_ssh_keys(req: ApiRequest[Any, Any]) -> SshKeyList:
    user = await _user(req)
    rows = await sftp.keys_of(req.db, user.id)
    return SshKeyList(data=[SshKeyOut.model_validate(k) for k in rows], sftp_account=user.username)


@routes.delete(
    "/api/v1/users/{user_id}/ssh-keys/{ssh_key_id}",
    summary="Remove one of a user's SSH keys (ends the SFTP sessions it opened)",
    status=204,
)
async def remove_user_ssh_key(req: ApiRequest[Any, Any]) -> None:
    user = await _user(req)
    key = await req.db.get(SshKey, req.uuid_param("ssh_key_id"))
    if key is None or key.user_id != user.id:
        raise NotFound(f"{user.email} has no such SSH key")
    await ssh_keys.delete_and_push(req, key)
    await req.audit(
        "user.ssh_key.removed",
        target_type="user",
        target_id=str(user.id),
        details={"email": user.email, "name": key.name, "fingerprint": key.fingerprint},
    )


@routes.get(
    "/api/v1/users/{user_id}/sftp-passwords",
    summary="Which servers a user holds an SFTP password for (never the passwords)",
    response=SftpPasswordIssuedList,
)
async def user_sftp_passwords(req: ApiRequest[Any, Any]) -> SftpPasswordIssuedList:
    rows = await sftp.passwords_of(req.db, (await _user(req)).id)
    return SftpPasswordIssuedList(
        data=[
            SftpPasswordIssued(
                server_id=server.id, server_name=server.name, created_at=password.created_at
            )
            for password, server in rows
        ]
    )


@routes.delete(
    "/api/v1/users/{user_id}/sftp-passwords",
    summary="Remove every SFTP password of a user (ends the SFTP sessions they opened)",
    status=204,
)
async def remove_user_sftp_passwords(req: ApiRequest[Any, Any]) -> None:
    user = await _user(req)
    removed, nodes = await sftp.remove_passwords(req.db, user.id)
    if not removed:
        return  # none left: what was asked holds already
    push_after_commit(req, nodes)
    await req.audit(
        "user.sftp_passwords.removed",
        target_type="user",
        target_id=str(user.id),
        details={"email": user.email, "removed": removed},
    )
