"""SFTP on the control plane's side (docs/sftp.md): users' SSH public keys, and each node's
SFTP access table, computed from the database and pushed over the signed node API.

A node's table lists, for each of its servers that is not suspended, every user who holds
``files.sftp`` there (the owner always; a sub-user granted it), is not disabled, with the
``files.*`` permissions they hold and their public keys. It is pushed whole after every change
that can alter it, with a version (``control_plane/services/sftp_push.py``).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Server, SftpPassword, SshKey, Subuser, User
from control_plane.errors import InvalidRequest
from control_plane.security.permissions import expand, holds
from shared.sftp_api import SftpAccess, SftpServerAccess, SftpUser

MIN_RSA_BITS = 3072
SFTP = "files.sftp"


async def keys_of(db: AsyncSession, user_id: uuid.UUID) -> list[SshKey]:
    """The user's SSH keys, oldest first: as they, and an administrator, see them."""
    rows = await db.scalars(
        select(SshKey).where(SshKey.user_id == user_id).order_by(SshKey.created_at)
    )
    return list(rows)


def parse_public_key(text: str) -> tuple[str, str]:
    """``(<algorithm> <base64>, SHA256:<fingerprint>)`` of an OpenSSH public key line.

    Ed25519, ECDSA (P-256/384/521) and RSA of at least 3072 bits; anything else is a 400.
    """
    fields = text.strip().split()
    if len(fields) < 2:
        raise InvalidRequest("give the key as one OpenSSH line: 'ssh-ed25519 AAAA… comment'")
    line = f"{fields[0]} {fields[1]}"
    try:
        key = load_ssh_public_key(line.encode("ascii"))
        blob = base64.b64decode(fields[1], validate=True)
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as err:
        raise InvalidRequest("this is not an OpenSSH public key this panel accepts") from err
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidRequest(f"RSA keys need at least {MIN_RSA_BITS} bits")
    elif not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise InvalidRequest("use an Ed25519, ECDSA or RSA (3072 bits or more) key")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return line, f"SHA256:{digest}"


def _files_permissions(granted: Iterable[str]) -> frozenset[str]:
    return frozenset(p for p in expand(granted) if p.startswith("files."))


async def node_access(db: AsyncSession, node_id: uuid.UUID, version: int = 0) -> SftpAccess:
    """The node's whole SFTP access table, as the database has it now, as ``version``."""
    servers = list(
        await db.scalars(
            select(Server)
            .where(Server.node_id == node_id, Server.suspended.is_(False))
            .order_by(Server.id)
        )
    )
    server_ids = [s.id for s in servers]
    members: dict[uuid.UUID, list[tuple[uuid.UUID, frozenset[str]]]] = defaultdict(list)
    for server in servers:
        members[server.id].append((server.owner_id, _files_permissions(["*"])))
    if server_ids:
        for sub in await db.scalars(select(Subuser).where(Subuser.server_id.in_(server_ids))):
            if holds(sub.permissions, SFTP):
                members[sub.server_id].append((sub.user_id, _files_permissions(sub.permissions)))
    user_ids = {user_id for rows in members.values() for user_id, _ in rows}
    users: dict[uuid.UUID, User] = {}
    keys: dict[uuid.UUID, list[str]] = defaultdict(list)
    hashes: dict[tuple[uuid.UUID, uuid.UUID], str] = {}
    if user_ids:
        for user in await db.scalars(select(User).where(User.id.in_(user_ids))):
            if not user.disabled:
                users[user.id] = user
        for key in await db.scalars(
            select(SshKey).where(SshKey.user_id.in_(user_ids)).order_by(SshKey.created_at)
        ):
            keys[key.user_id].append(key.public_key)
        for password in await db.scalars(
            select(SftpPassword).where(SftpPassword.server_id.in_(server_ids))
        ):
            hashes[(password.server_id, password.user_id)] = password.agent_hash
    rows = []
    for server in servers:
        granted = [
            SftpUser(
                account=users[user_id].username,
                user_id=user_id,
                permissions=permissions,
                keys=tuple(keys[user_id]),
                password_hash=hashes.get((server.id, user_id)),
            )
            for user_id, permissions in members[server.id]
            if user_id in users
        ]
        rows.append(SftpServerAccess(server=server.id, users=tuple(granted)))
    return SftpAccess(version=version, servers=tuple(rows))


async def nodes_of_user(db: AsyncSession, user_id: uuid.UUID) -> set[uuid.UUID]:
    """Every node where the user owns a server or is a sub-user."""
    owned = await db.scalars(select(Server.node_id).where(Server.owner_id == user_id))
    shared = await db.scalars(
        select(Server.node_id)
        .join(Subuser, Subuser.server_id == Server.id)
        .where(Subuser.user_id == user_id)
    )
    return set(owned) | set(shared)


async def passwords_of(db: AsyncSession, user_id: uuid.UUID) -> list[tuple[SftpPassword, Server]]:
    """The user's SFTP passwords with their servers, newest first (never a password: only
    that one was issued)."""
    rows = await db.execute(
        select(SftpPassword, Server)
        .join(Server, Server.id == SftpPassword.server_id)
        .where(SftpPassword.user_id == user_id)
        .order_by(SftpPassword.created_at.desc())
    )
    return [(password, server) for password, server in rows]


async def remove_passwords(db: AsyncSession, user_id: uuid.UUID) -> tuple[int, set[uuid.UUID]]:
    """Delete every SFTP password of the user: how many, and the nodes of the servers of
    exactly the rows deleted (to push; one issued meanwhile is either deleted and pushed,
    or not deleted)."""
    deleted = await db.scalars(
        delete(SftpPassword)
        .where(SftpPassword.user_id == user_id)
        .returning(SftpPassword.server_id)
        .execution_options(synchronize_session=False)
    )
    servers = set(deleted)
    if not servers:
        return 0, set()
    nodes = await db.scalars(select(Server.node_id).where(Server.id.in_(servers)))
    return len(servers), set(nodes)
