"""Helpers for the backup tests: signed backup routes, tree hashes, waiting for outcomes."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import stat
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.backup_format import BackupReader
from tests.integration.node_agent.files_client import FilesClient
from tests.integration.node_agent.live_agent import eventually
from tests.support.containers import Answer


def new_key() -> bytes:
    return os.urandom(32)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def tree_hash(root: Path) -> dict[str, str]:
    """Every entry below ``root`` (links not followed): type, mode and content or target."""
    found: dict[str, str] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory, name)
            relative = str(path.relative_to(root))
            info = path.lstat()
            mode = oct(stat.S_IMODE(info.st_mode))
            if stat.S_ISLNK(info.st_mode):
                found[relative] = f"link {os.readlink(path)}"
            elif stat.S_ISDIR(info.st_mode):
                found[relative] = f"dir {mode}"
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[relative] = f"file {mode} {digest}"
    return found


def plaintext(blob: bytes, key: bytes, backup_id: uuid.UUID) -> bytes:
    """The decrypted tar (gunzipped) of a downloaded backup."""
    reader = BackupReader(io.BytesIO(blob), key, backup_id)
    with gzip.GzipFile(fileobj=reader, mode="rb") as gz:  # type: ignore[call-overload]
        data: bytes = gz.read()
    reader.drain()
    return data


def members(tar_bytes: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        return {member.name: member for member in tar.getmembers()}


@dataclass
class BackupsClient:
    """The backup routes, signed as the control plane would sign them."""

    api: FilesClient

    async def create(
        self,
        server_id: uuid.UUID,
        key: bytes,
        backup_id: uuid.UUID | None = None,
        **more: Any,
    ) -> tuple[uuid.UUID, Answer]:
        backup_id = backup_id or uuid.uuid4()
        body = self.api.encode({"backup_id": str(backup_id), "key": b64(key), **more})
        answer = await self.api.send(
            "POST", server_id, "backups.create", suffix="/backups", body=body
        )
        return backup_id, answer

    async def list(self, server_id: uuid.UUID) -> Answer:
        return await self.api.send("GET", server_id, "backups.list", suffix="/backups")

    async def read(self, server_id: uuid.UUID, backup_id: uuid.UUID) -> Answer:
        return await self.api.send("GET", server_id, "backups.read", suffix=f"/backups/{backup_id}")

    async def delete(self, server_id: uuid.UUID, backup_id: uuid.UUID) -> Answer:
        return await self.api.send(
            "DELETE", server_id, "backups.delete", suffix=f"/backups/{backup_id}"
        )

    async def restore(self, server_id: uuid.UUID, backup_id: uuid.UUID, key: bytes) -> Answer:
        body = self.api.encode({"key": b64(key)})
        return await self.api.send(
            "POST",
            server_id,
            "backups.restore",
            suffix=f"/backups/{backup_id}/restore",
            body=body,
        )

    async def download(self, server_id: uuid.UUID, backup_id: uuid.UUID) -> tuple[int, bytes]:
        path = f"/api/v1/servers/{server_id}/backups/{backup_id}/download"
        token = self.api.sign(server_id, "backups.download", "GET", path, b"")
        async with self.api.http.get(
            self.api.agent.base_url + path, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            return response.status, await response.read()

    async def finished(
        self, server_id: uuid.UUID, backup_id: uuid.UUID, timeout: float = 60
    ) -> dict[str, Any]:
        """The record once the backup is no longer running."""

        async def done() -> dict[str, Any] | None:
            answer = await self.read(server_id, backup_id)
            assert answer.status == 200, answer
            body: dict[str, Any] = answer.body
            return body if body["status"] != "running" else None

        result: dict[str, Any] = await eventually(done, timeout)
        return result

    async def restored(
        self, server_id: uuid.UUID, backup_id: uuid.UUID, timeout: float = 60
    ) -> dict[str, Any]:
        """The record's ``restore`` once it is no longer running."""

        async def done() -> dict[str, Any] | None:
            answer = await self.read(server_id, backup_id)
            assert answer.status == 200, answer
            outcome: dict[str, Any] | None = answer.body["restore"]
            return outcome if outcome is not None and outcome["status"] != "running" else None

        result: dict[str, Any] = await eventually(done, timeout)
        return result
