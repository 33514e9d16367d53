"""SFTP clients for the agent's listener: paramiko in a worker thread, OpenSSH ``sftp -b``.

:func:`push_access` signs ``PUT /api/v1/sftp/access`` as the control plane would.
:class:`UserKey` is one user's Ed25519 key pair on disk (for both clients). Both clients
check the agent's host key against the one its system info shows, never "accept anything".
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncssh
import paramiko

from shared.protocol import mint
from shared.sftp_api import SftpAccess, SftpServerAccess, SftpUser, login_name
from tests.support.agent_process import AgentProcess, SigningKey

ACCESS_PATH = "/api/v1/sftp/access"
ALL_FILES = frozenset({"files.read", "files.write", "files.delete", "files.create"})


@dataclass(frozen=True)
class UserKey:
    """A private key file (0600) and its public line."""

    path: Path
    public: str

    @classmethod
    def make(cls, directory: Path, name: str = "id_ed25519") -> UserKey:
        directory.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519")
        path = directory / name
        key.write_private_key(path)
        path.chmod(0o600)
        return cls(path, key.export_public_key().decode("ascii").strip())


def user_row(
    account: str, key: UserKey, permissions: frozenset[str] = ALL_FILES, **more: object
) -> SftpUser:
    return SftpUser.model_validate(
        {
            "account": account,
            "user_id": more.get("user_id", uuid.uuid4()),
            "permissions": permissions,
            "keys": [key.public],
        }
    )


def table(*servers: tuple[uuid.UUID, list[SftpUser]]) -> SftpAccess:
    return SftpAccess(
        servers=tuple(SftpServerAccess(server=sid, users=tuple(users)) for sid, users in servers)
    )


async def push_access(
    agent: AgentProcess, key: SigningKey, http: aiohttp.ClientSession, access: SftpAccess
) -> int:
    """Sign and send the node's SFTP access table; the answer's status."""
    body = access.model_dump_json().encode("utf-8")
    token = mint(
        private_key=key.private_key,
        kid=key.kid,
        issuer=agent.expected_issuer,
        node_id=agent.node_id,
        subject="node",
        action="sftp.access",
        method="PUT",
        path=ACCESS_PATH,
        body=body,
        user="test-user",
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    # A BytesIO: a table of megabytes as raw bytes is refused by aiohttp (it would hold the loop).
    data = io.BytesIO(body)
    async with http.put(agent.base_url + ACCESS_PATH, data=data, headers=headers) as answer:
        return answer.status


def _connect(client: paramiko.SSHClient, **options: object) -> None:
    """``client.connect``; a refused login closes its socket (the agent counts connections
    not logged in per address, and paramiko keeps a failed one open)."""
    try:
        client.connect("127.0.0.1", **options)
    except BaseException:
        client.close()
        raise


@dataclass(frozen=True)
class SftpTarget:
    """Where one agent serves SFTP, and the host key it must present."""

    port: int
    host_key: str  # "ssh-ed25519 AAAA…"
    fingerprint: str
    directory: Path  # for known_hosts files

    def known_hosts(self) -> Path:
        path = self.directory / "known_hosts"
        path.write_text(f"[127.0.0.1]:{self.port} {self.host_key}\n", encoding="utf-8")
        return path

    @contextmanager
    def sftp(self, username: str, key: UserKey) -> Iterator[paramiko.SFTPClient]:
        """A paramiko SFTP client logged in as ``username`` with ``key`` (blocking calls)."""
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts()))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        _connect(
            client,
            port=self.port,
            username=username,
            key_filename=str(key.path),
            allow_agent=False,
            look_for_keys=False,
            timeout=10,
        )
        try:
            sftp = client.open_sftp()
            try:
                yield sftp
            finally:
                sftp.close()
        finally:
            client.close()

    def ssh_client(self, username: str, key: UserKey) -> paramiko.SSHClient:
        """A logged-in paramiko SSH client (for trying shells, exec and forwarding)."""
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts()))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        _connect(
            client,
            port=self.port,
            username=username,
            key_filename=str(key.path),
            allow_agent=False,
            look_for_keys=False,
            timeout=10,
        )
        return client

    def password_client(self, username: str, password: str) -> paramiko.SSHClient:
        """A paramiko SSH client logged in with a password (no key offered)."""
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts()))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        _connect(
            client,
            port=self.port,
            username=username,
            password=password,
            allow_agent=False,
            look_for_keys=False,
            timeout=10,
        )
        return client

    async def openssh_batch(
        self, username: str, key: UserKey, commands: str, cwd: Path
    ) -> subprocess.CompletedProcess[str]:
        """OpenSSH's ``sftp -b -`` with ``commands``, strict host key checking."""
        args = [
            "sftp",
            "-b",
            "-",
            "-P",
            str(self.port),
            "-i",
            str(key.path),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts()}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            f"{username}@127.0.0.1",
        ]
        return await asyncio.to_thread(
            subprocess.run,
            args,
            input=commands,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=cwd,
            check=False,
        )


def username(account: str, server_id: uuid.UUID) -> str:
    return login_name(account, server_id)


async def sftp_target(
    agent: AgentProcess, key: SigningKey, http: aiohttp.ClientSession, directory: Path
) -> SftpTarget:
    """The agent's SFTP port and host key, read from its signed system info."""
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
        info = await answer.json()
    sftp = info["sftp"]
    directory.mkdir(parents=True, exist_ok=True)
    return SftpTarget(
        port=sftp["port"],
        host_key=sftp["host_key"],
        fingerprint=sftp["fingerprint"],
        directory=directory,
    )


@asynccontextmanager
async def connect(
    target: SftpTarget, name: str, key: UserKey, source: str = "127.0.0.1"
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """An asyncssh connection as ``name`` with ``key``, checking the agent's host key."""
    async with asyncssh.connect(
        "127.0.0.1",
        target.port,
        username=name,
        client_keys=[asyncssh.read_private_key(key.path)],
        known_hosts=str(target.known_hosts()),
        agent_path=None,
        local_addr=(source, 0),
        login_timeout=15,
    ) as conn:
        yield conn
