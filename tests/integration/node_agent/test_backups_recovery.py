"""Backups that outlive their agent, and how fast a backup runs.

An agent killed with SIGKILL in the middle of a backup comes back with that backup
``failed`` (never stuck ``running``) and no partial file. The throughput test prints a
backup's MB/s next to ``tar | gzip`` of the same tree and checks the agent's memory stays flat.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from node_agent.docker.hardening import game_container_name
from tests.integration.node_agent.backups_client import BackupsClient, new_key
from tests.integration.node_agent.files_client import (
    FilesClient,
    in_game,
)
from tests.integration.node_agent.live_agent import LiveAgent, LiveServers, eventually

pytestmark = [pytest.mark.docker, pytest.mark.own_agent, pytest.mark.timeout(300)]
MIB = 1024 * 1024


def fill(volume: Path, random_mib: int, text_mib: int) -> None:
    """Incompressible files (like a game's region files) and compressible text."""
    (volume / "world").mkdir()
    for index in range(random_mib // 16):
        (volume / "world" / f"r.{index}.mca").write_bytes(os.urandom(16 * MIB))
    (volume / "logs").mkdir()
    for index in range(text_mib // 16):
        text = base64.b64encode(os.urandom(12 * MIB))  # 16 MiB of text, ~75 % compressible
        (volume / "logs" / f"{index}.log").write_bytes(text)
    os.sync()


async def test_agent_killed_mid_backup_comes_back_with_it_failed_and_no_partial_file(
    servers: LiveServers, live_agent: LiveAgent, api: FilesClient
) -> None:
    backups = BackupsClient(api)
    server_id = await servers.create(disk_mib=1024)  # room for what fill() writes
    fill(live_agent.volume(server_id), random_mib=320, text_mib=0)
    directory = live_agent.data_dir / "backups" / str(server_id)
    backup_id, answer = await backups.create(server_id, new_key())
    assert answer.status == 202, answer
    part = directory / f"{backup_id}.stbk.part"

    async def midway() -> bool:
        return part.exists() and part.stat().st_size > 8 * MIB

    await eventually(midway, 60)
    live_agent.kill()
    assert part.exists()  # the kill really came in the middle
    live_agent.start()

    record = (await backups.read(server_id, backup_id)).body
    assert record["status"] == "failed", record
    assert record["reason"] == "agent restarted during the backup"
    assert sorted(p.name for p in directory.iterdir()) == [f"{backup_id}.json"]
    retry, again = await backups.create(server_id, new_key())
    assert again.status == 202, again
    assert (await backups.finished(server_id, retry, timeout=120))["status"] == "completed"


def _tar_gzip_seconds(volume: Path, out: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        f"tar -C {volume} -cf - . | gzip -6 > {out}", shell=True, check=True, timeout=600
    )
    return time.monotonic() - started


async def test_backup_throughput_against_tar_and_gzip(
    servers: LiveServers, live_agent: LiveAgent, api: FilesClient, tmp_path: Path
) -> None:
    backups = BackupsClient(api)
    server_id = await servers.create(disk_mib=1024)  # room for what fill() writes
    volume = live_agent.volume(server_id)
    fill(volume, random_mib=256, text_mib=256)
    size_mb = sum(p.stat().st_size for p in volume.rglob("*") if p.is_file()) / 1e6

    started = time.monotonic()
    backup_id, answer = await backups.create(server_id, new_key())
    assert answer.status == 202, answer
    record = await backups.finished(server_id, backup_id, timeout=240)
    ours = time.monotonic() - started
    assert record["status"] == "completed", record
    reference = _tar_gzip_seconds(volume, tmp_path / "reference.tar.gz")
    reference_size = (tmp_path / "reference.tar.gz").stat().st_size

    print(
        f"\nbackup of {size_mb:.0f} MB: agent {size_mb / ours:.1f} MB/s "
        f"({record['stored_bytes'] / 1e6:.0f} MB encrypted); "
        f"tar | gzip -6 {size_mb / reference:.1f} MB/s ({reference_size / 1e6:.0f} MB); "
        f"agent peak RSS {live_agent.peak_rss_kib() // 1024} MiB"
    )
    assert live_agent.peak_rss_kib() < 300 * 1024
    assert uuid.UUID(record["backup_id"]) == backup_id


def _running(container: str) -> bool:
    answer = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", container],
        capture_output=True,
        text=True,
        check=False,
    )
    return answer.stdout.strip() == "true"


async def test_no_game_starts_before_an_interrupted_restore_is_settled(
    servers: LiveServers, live_agent: LiveAgent
) -> None:
    """The host went down in a restore's swap-out (the world set aside, not yet back) while
    the server's desired state was running (its last start had failed, say). The agent
    started the game first and settled the restore after its other start-up work: the game
    ran on a volume without its world and made a new one, and the roll-back then kept the
    new world and deleted the original. Interrupted restores are settled before any game
    starts."""
    server_id = await servers.started()
    container = game_container_name(server_id)
    volume = live_agent.volume(server_id)
    in_game(server_id, "cd /home/container && mkdir world && echo original > world/level.dat")
    # Enough files that the agent's start-up walk of the volumes takes a moment.
    (volume / "cache").mkdir()
    for index in range(150_000):
        os.close(os.open(volume / "cache" / str(index), os.O_CREAT | os.O_WRONLY, 0o644))
    live_agent.kill()
    subprocess.run(["docker", "kill", container], check=True, capture_output=True)
    # What a restore killed in its swap-out phase leaves behind.
    aside = volume / ".stellar-restore-old"
    aside.mkdir()
    (volume / "world").rename(aside / "world")
    (volume / ".stellar-restore-new").mkdir()
    journal = live_agent.data_dir / "backups" / str(server_id) / "restore.json"
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text(f'{{"backup_id": "{uuid.uuid4()}", "phase": "swap-out"}}')

    starting = asyncio.create_task(asyncio.to_thread(live_agent.start))
    seen_unsettled = False
    while not starting.done():
        if _running(container) and aside.exists():
            seen_unsettled = True
            # As a game finding no world does: it makes a new one.
            in_game(server_id, "cd /home/container && mkdir -p world && echo new > world/level.dat")
            break
        await asyncio.sleep(0.05)
    await starting

    assert not seen_unsettled, "the game ran before the interrupted restore was settled"
    assert (volume / "world" / "level.dat").read_text() == "original\n"
    assert not aside.exists()
    assert not journal.exists()
