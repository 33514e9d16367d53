"""A password login costs one scrypt of the same parameters whether the account exists, has
no password, or has one: the answer's time does not tell which accounts have a password."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any, cast

import pytest

from node_agent.events import NodeEventBus
from node_agent.files.service import FileService
from node_agent.servers.registry import ServerRegistry
from node_agent.sftp.access import AccessTable
from node_agent.sftp.limits import SftpLimits
from node_agent.sftp.session import SftpServices, SftpSession
from shared.sftp_api import SftpAccess, SftpServerAccess, SftpUser, login_name
from shared.sftp_passwords import hash_password

SERVER = uuid.uuid4()


def user(account: str, password: str | None) -> SftpUser:
    return SftpUser.model_validate(
        {
            "account": account,
            "user_id": uuid.uuid4(),
            "permissions": ["files.read"],
            "keys": [],
            "password_hash": hash_password(password) if password else None,
        }
    )


@pytest.fixture
def services(tmp_path: Path) -> SftpServices:
    table = AccessTable(tmp_path)
    rows = (user("withpw", "right password"), user("nopw", None))
    table.replace(SftpAccess(servers=(SftpServerAccess(server=SERVER, users=rows),)))
    return SftpServices(
        table=table,
        # Neither is reached on the password path: no request is served before login.
        servers=cast(ServerRegistry, None),
        files=cast(FileService, None),
        limits=SftpLimits(),
        events=NodeEventBus(),
    )


@pytest.mark.parametrize(
    ("account", "password", "accepted"),
    [
        ("nobody", "guess", False),  # no such account
        ("nopw", "guess", False),  # an account without a password
        ("withpw", "guess", False),  # a wrong password
        ("withpw", "right password", True),
    ],
)
async def test_every_password_attempt_costs_one_scrypt_of_the_same_parameters(
    services: SftpServices,
    monkeypatch: pytest.MonkeyPatch,
    account: str,
    password: str,
    accepted: bool,
) -> None:
    calls: list[dict[str, Any]] = []
    real = hashlib.scrypt

    def counted(secret: bytes, **options: Any) -> bytes:
        calls.append({k: v for k, v in options.items() if k != "salt"})
        return real(secret, **options)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    session = SftpSession(services)
    assert await session.validate_password(login_name(account, SERVER), password) is accepted
    assert calls == [{"n": 1 << 14, "r": 8, "p": 1, "maxmem": 256 * (1 << 14) * 8, "dklen": 32}]
