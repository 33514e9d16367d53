"""Backups through a real agent and real fake-game containers (directory backend).

Create a backup of a running game (with a pre-backup console command), list, download,
restore after changes; damaged, reordered, truncated backups and a wrong key leave the
files exactly as they were; a symlink to a host file is stored as a link, never read.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.backup_format import HEADER_BYTES, TAG_BYTES, BackupReader
from tests.integration.node_agent.backups_client import (
    BackupsClient,
    members,
    new_key,
    plaintext,
    tree_hash,
)
from tests.integration.node_agent.files_client import (
    FilesClient,
    in_game,
)
from tests.integration.node_agent.live_agent import LiveAgent, LiveServers, eventually, read_body

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]
SECRET = b"host secret, never to be archived\n"
BLOCK = 1024 * 1024 + TAG_BYTES


@pytest.fixture
def backups(api: FilesClient) -> BackupsClient:
    return BackupsClient(api)


@pytest.fixture(autouse=True)
def backups_removed(live_agent: LiveAgent) -> Iterator[None]:
    """The module's agent keeps no backup from one test to the next (after its servers go)."""
    yield
    shutil.rmtree(live_agent.data_dir / "backups", ignore_errors=True)


def populate(server_id: uuid.UUID, random_kib: int = 300) -> None:
    in_game(
        server_id,
        "cd /home/container && mkdir -p world/region plugins/empty"
        f" && head -c {random_kib * 1024} /dev/urandom > world/region/r.0.0"
        " && echo motd=hello > server.properties && chmod 600 server.properties"
        " && printf 'a%.0s' $(seq 1 5000) > world/level.dat && ln -s server.properties link",
    )


async def stop(api: FilesClient, server_id: uuid.UUID) -> None:
    answer = await api.power(server_id, "stop")
    assert answer.status == 202, answer

    async def offline() -> bool:
        body = await read_body(api, server_id)
        return body["state"] == "offline" and not body["stopping"]

    await eventually(offline, 30)


def leftovers(volume: Path) -> list[str]:
    return [p.name for p in volume.iterdir() if p.name.startswith(".stellar-restore-")]


async def test_backup_of_a_running_game_restores_the_files_exactly(
    servers: LiveServers, api: FilesClient, backups: BackupsClient, live_agent: LiveAgent
) -> None:
    server_id = await servers.started()
    populate(server_id)
    volume = live_agent.volume(server_id)
    before = tree_hash(volume)
    key = new_key()

    async with api.node_events() as events:
        backup_id, answer = await backups.create(
            server_id, key, pre_command="say saving-for-backup", pre_command_wait_seconds=0.5
        )
        assert answer.status == 202, answer
        assert answer.body["status"] == "running"
        record = await backups.finished(server_id, backup_id)
        await events.wait_for(
            lambda e: (
                e.get("type") == "backup"
                and e["backup"] == str(backup_id)
                and e["status"] == "completed"
            )
        )

    assert record["status"] == "completed", record
    assert record["consistency"] == "live"
    assert record["files"] == 3
    assert record["symlinks"] == 1
    logs = await api.logs(server_id)
    assert "saving-for-backup" in str(logs.body)
    listed = await backups.list(server_id)
    assert [(b["backup_id"], b["status"]) for b in listed.body["backups"]] == [
        (str(backup_id), "completed")
    ]
    status, blob = await backups.download(server_id, backup_id)
    assert status == 200
    assert hashlib.sha256(blob).hexdigest() == record["stored_sha256"]
    assert len(blob) == record["stored_bytes"]
    # size_bytes and sha256 are of the .tar.gz the user gets once the blob is decrypted.
    reader = BackupReader(io.BytesIO(blob), key, backup_id)
    archive = reader.read()
    reader.drain()
    assert (len(archive), hashlib.sha256(archive).hexdigest()) == (
        record["size_bytes"],
        record["sha256"],
    )
    on_disk = live_agent.data_dir / "backups" / str(server_id) / f"{backup_id}.stbk"
    assert blob == on_disk.read_bytes()

    in_game(
        server_id,
        "cd /home/container && rm -rf world/region && echo changed > server.properties"
        " && echo new > extra.txt && rm link && ln -s /etc/passwd link",
    )
    refused = await backups.restore(server_id, backup_id, key)
    assert refused.status == 409, refused  # still running
    await stop(api, server_id)

    answer = await backups.restore(server_id, backup_id, key)
    assert answer.status == 202, answer
    outcome = await backups.restored(server_id, backup_id)

    assert outcome["status"] == "completed", outcome
    assert tree_hash(volume) == before
    assert leftovers(volume) == []
    owners = {p.lstat().st_uid for p in volume.rglob("*")}
    assert owners == {1000}


async def test_damaged_backups_and_a_wrong_key_leave_the_files_exactly_as_they_were(
    servers: LiveServers, api: FilesClient, backups: BackupsClient, live_agent: LiveAgent
) -> None:
    server_id = await servers.started()
    populate(server_id, random_kib=4096)  # several 1 MiB chunks
    key = new_key()
    backup_id, answer = await backups.create(server_id, key)
    assert answer.status == 202, answer
    assert (await backups.finished(server_id, backup_id))["status"] == "completed"
    await stop(api, server_id)
    in_game_free = live_agent.volume(server_id)
    (in_game_free / "after-backup.txt").write_text("made after the backup\n")
    (in_game_free / "server.properties").write_text("motd=changed\n")
    before = tree_hash(in_game_free)
    path = live_agent.data_dir / "backups" / str(server_id) / f"{backup_id}.stbk"
    good = path.read_bytes()
    assert len(good) > HEADER_BYTES + 3 * BLOCK

    chunk = [good[HEADER_BYTES + i * BLOCK : HEADER_BYTES + (i + 1) * BLOCK] for i in range(3)]
    flipped = bytearray(good)
    flipped[len(good) - 40] ^= 0x20
    damaged = {
        "truncated at a chunk boundary": good[: HEADER_BYTES + 2 * BLOCK],
        "truncated mid-chunk": good[:-100],
        "chunks 1 and 2 swapped": good[:HEADER_BYTES]
        + chunk[0]
        + chunk[2]
        + chunk[1]
        + good[HEADER_BYTES + 3 * BLOCK :],
        "one byte flipped": bytes(flipped),
    }
    for label, blob in damaged.items():
        path.write_bytes(blob)
        answer = await backups.restore(server_id, backup_id, key)
        if answer.status == 202:
            outcome = await backups.restored(server_id, backup_id)
            assert outcome["status"] == "failed", (label, outcome)
        else:
            assert answer.status == 400, (label, answer)
        assert tree_hash(in_game_free) == before, label
        assert leftovers(in_game_free) == [], label

    path.write_bytes(good)
    wrong = await backups.restore(server_id, backup_id, new_key())
    assert wrong.status == 400, wrong
    assert wrong.body["error"]["code"] == "backup_damaged"
    assert tree_hash(in_game_free) == before

    answer = await backups.restore(server_id, backup_id, key)
    assert answer.status == 202, answer
    assert (await backups.restored(server_id, backup_id))["status"] == "completed"
    assert not (in_game_free / "after-backup.txt").exists()


async def test_a_symlink_to_a_host_file_is_archived_as_a_link_never_read(
    servers: LiveServers, backups: BackupsClient, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "inner.txt").write_bytes(SECRET)
    server_id = await servers.started()
    in_game(
        server_id,
        f"cd /home/container && ln -s {secret} evil && ln -s {outside} evildir"
        " && echo ok > plain.txt",
    )
    key = new_key()
    backup_id, _ = await backups.create(server_id, key)
    assert (await backups.finished(server_id, backup_id))["status"] == "completed"

    _, blob = await backups.download(server_id, backup_id)
    tar_bytes = plaintext(blob, key, backup_id)
    entries = members(tar_bytes)

    assert SECRET not in tar_bytes
    assert entries["evil"].issym()
    assert entries["evil"].linkname == str(secret)
    assert entries["evildir"].issym()
    assert not any(name.startswith("evildir/") for name in entries)
    assert entries["plain.txt"].isfile()


async def test_ignore_patterns_leave_paths_out_and_operations_conflict(
    servers: LiveServers, backups: BackupsClient, live_agent: LiveAgent
) -> None:
    server_id = await servers.create()
    volume = live_agent.volume(server_id)
    (volume / "logs").mkdir()
    (volume / "logs" / "latest.log").write_text("noise\n")
    (volume / "keep.txt").write_text("kept\n")
    (volume / "cache.tmp").write_text("x\n")
    key = new_key()
    backup_id, answer = await backups.create(server_id, key, ignore=["logs/", "*.tmp"])
    assert answer.status == 202, answer
    _, conflict = await backups.create(server_id, key, backup_id=backup_id)
    assert conflict.status == 409, conflict
    record = await backups.finished(server_id, backup_id)
    assert record["consistency"] == "stopped"

    _, blob = await backups.download(server_id, backup_id)
    assert set(members(plaintext(blob, key, backup_id))) == {"keep.txt"}
    assert (await backups.delete(server_id, backup_id)).status == 204
    assert (await backups.read(server_id, backup_id)).status == 404


async def test_file_operations_and_a_restore_never_overlap(
    servers: LiveServers, api: FilesClient, backups: BackupsClient, live_agent: LiveAgent
) -> None:
    server_id = await servers.create()
    volume = live_agent.volume(server_id)
    (volume / "world.dat").write_bytes(b"saved\n")
    key = new_key()
    backup_id, answer = await backups.create(server_id, key)
    assert answer.status == 202, answer
    assert (await backups.finished(server_id, backup_id))["status"] == "completed"
    (volume / "world.dat").write_bytes(b"changed since\n")

    # An upload that has sent half its bytes and stalls: a file operation in flight.
    release = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        yield b"a" * 1024
        await release.wait()
        yield b"b" * 1024

    upload = asyncio.create_task(api.upload(server_id, "late.txt", 2048, stalling()))

    async def upload_streaming() -> bool:
        return any(p.name.startswith(".stellar-write-") for p in volume.iterdir())

    await eventually(upload_streaming, 10)
    restore = asyncio.create_task(backups.restore(server_id, backup_id, key))

    # The restore waits for the upload; every new file operation is refused meanwhile.
    async def refused() -> Any:
        answer = await api.write_file(server_id, "new.txt", b"x")
        return answer if answer.status == 409 else None

    conflict = await eventually(refused, 10)
    assert "restored" in conflict.body["error"]["message"]
    assert (await api.read_file(server_id, "world.dat")).status == 409
    assert not restore.done()

    release.set()
    assert (await upload).status == 200
    started = await restore
    assert started.status == 202, started
    assert (await backups.restored(server_id, backup_id))["status"] == "completed"
    assert (volume / "world.dat").read_bytes() == b"saved\n"
    assert not (volume / "late.txt").exists()  # written before the restore began: replaced
    assert (await api.write_file(server_id, "after.txt", b"ok")).status == 200


async def test_a_tree_too_deep_to_back_up_is_still_replaced_by_a_restore(
    servers: LiveServers, api: FilesClient, backups: BackupsClient, live_agent: LiveAgent
) -> None:
    """The game makes a directory chain deeper than the agent walks (300 levels). A restore
    replaced the files, then failed deleting the old tree aside: reported failed though done,
    the old tree left in the volume, and every later restore refused from then on."""
    server_id = await servers.started()
    populate(server_id)
    volume = live_agent.volume(server_id)
    await stop(api, server_id)
    before = tree_hash(volume)
    key = new_key()
    backup_id, answer = await backups.create(server_id, key)
    assert answer.status == 202, answer
    assert (await backups.finished(server_id, backup_id))["status"] == "completed"

    assert (await api.power(server_id, "start")).status == 200
    in_game(server_id, "cd /home/container && for i in $(seq 300); do mkdir d && cd d; done")
    await stop(api, server_id)
    for attempt in range(2):
        answer = await backups.restore(server_id, backup_id, key)
        assert answer.status == 202, (attempt, answer)
        outcome = await backups.restored(server_id, backup_id)
        assert outcome["status"] == "completed", (attempt, outcome)
        assert tree_hash(volume) == before
        assert leftovers(volume) == []


async def test_backups_of_many_servers_at_once_leave_the_agent_answering(
    servers: LiveServers, api: FilesClient, backups: BackupsClient, live_agent: LiveAgent
) -> None:
    """Each backup held one of the agent's few shared worker threads (cores + 4) for as long
    as it ran: a handful of servers backed up at once (tenants' nightly schedules at the same
    hour) left no thread for anyone's file listing, reading or writing until one ended.
    Backups and restores run on threads of their own."""
    busy = [await servers.create() for _ in range(12)]
    for server_id in busy:
        random_file = live_agent.volume(server_id) / "region.bin"
        random_file.write_bytes(os.urandom(48 * 1024 * 1024))
    other = await servers.create()
    (live_agent.volume(other) / "motd.txt").write_text("hello\n")
    key = new_key()
    made = []
    for backup_id, answer in await asyncio.gather(*(backups.create(s, key) for s in busy)):
        assert answer.status == 202, answer
        made.append((uuid.UUID(answer.body["server"]), backup_id))

    started = time.monotonic()
    listing = await api.listing(other)
    waited = time.monotonic() - started
    assert listing.status == 200, listing
    still_running = [
        (await backups.read(server_id, backup_id)).body["status"] for server_id, backup_id in made
    ]
    assert "running" in still_running  # the listing really came while they ran
    assert waited < 1.5, f"a file listing waited {waited:.1f} s behind the backups"
    for server_id, backup_id in made:
        assert (await backups.finished(server_id, backup_id, timeout=120))["status"] == "completed"
