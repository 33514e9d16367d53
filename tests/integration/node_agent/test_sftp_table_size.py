"""A node's SFTP access table is taken whatever its size within the table's own limits.

The table is pushed whole, and a node with many servers and users (or one user with many
long keys on a few servers) has one over the agent's file-write body limit (``max_body_bytes``,
1 MiB). Refused with 413, every later push failed the same way: the node kept the last table
it took, so a sub-user removed from a server, a password replaced or a server suspended kept
their SFTP access to its files for as long as the table stayed that large.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from shared.protocol import mint
from shared.sftp_api import SftpAccess, SftpServerAccess, SftpUser
from shared.sftp_passwords import hash_password, new_password
from tests.integration.node_agent.sftp_client import ALL_FILES, UserKey, push_access
from tests.support.agent_process import AgentProcess, SigningKey

pytestmark = pytest.mark.slow


async def held_version(agent: AgentProcess, key: SigningKey, http: aiohttp.ClientSession) -> int:
    path = "/api/v1/system"
    token = mint(
        private_key=key.private_key,
        kid=key.kid,
        issuer=agent.expected_issuer,
        node_id=agent.node_id,
        subject="node",
        action="node.system",
        method="GET",
        path=path,
        body=b"",
        user="test-user",
    )
    async with http.get(
        agent.base_url + path, headers={"Authorization": f"Bearer {token}"}
    ) as answer:
        assert answer.status == 200, await answer.text()
        return int((await answer.json())["sftp_access_version"])


async def test_a_table_over_a_mebibyte_is_taken_and_revokes_access(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, tmp_path: Path
) -> None:
    public = UserKey.make(tmp_path / "keys").public
    hashed = hash_password(new_password())

    def row(account: str) -> SftpUser:
        return SftpUser(
            account=account,
            user_id=uuid.uuid4(),
            permissions=ALL_FILES,
            keys=(public,),
            password_hash=hashed,
        )

    victim, removed = uuid.uuid4(), row("removed")
    others = [SftpServerAccess(server=uuid.uuid4(), users=(row("owner"),)) for _ in range(3000)]
    before = SftpAccess(
        version=1, servers=(SftpServerAccess(server=victim, users=(removed,)), *others)
    )
    after = SftpAccess(version=2, servers=(SftpServerAccess(server=victim), *others))
    assert len(after.model_dump_json()) > 1024 * 1024

    # The first table of this size already: taken.
    assert await push_access(agent, signing_key, http, before) == 204
    assert await held_version(agent, signing_key, http) == 1
    # The sub-user is removed from the server: the node must hear of it.
    assert await push_access(agent, signing_key, http, after) == 204
    assert await held_version(agent, signing_key, http) == 2


async def test_other_bodies_keep_the_agents_limit(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    # The room made for the table is the table's alone: a file write (raw) and a command
    # (JSON) over max_body_bytes are refused as before, announced or chunked.
    server = uuid.uuid4()
    big = b"x" * (1024 * 1024 + 1)
    for action, path in (
        ("files.write", f"/api/v1/servers/{server}/files/contents?path=%2Fa.txt"),
        ("server.command", f"/api/v1/servers/{server}/command"),
    ):
        for chunked in (False, True):
            token = mint(
                private_key=signing_key.private_key,
                kid=signing_key.kid,
                issuer=agent.expected_issuer,
                node_id=agent.node_id,
                subject=f"server:{server}",
                action=action,
                method="PUT" if action == "files.write" else "POST",
                path=path,
                body=big,
                user="test-user",
            )

            async def chunks() -> AsyncIterator[bytes]:
                yield big

            async with http.request(
                "PUT" if action == "files.write" else "POST",
                URL(agent.base_url + path, encoded=True),
                data=chunks() if chunked else io.BytesIO(big),
                headers={"Authorization": f"Bearer {token}"},
            ) as answer:
                assert answer.status == 413, (action, chunked, await answer.text())
