"""The disk backends' logic that needs no root: settings, parsers, the directory poll, tools."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from structlog.testing import capture_logs

from node_agent.settings import AgentSettings, ConfigError, load_settings
from node_agent.storage import open_storage
from node_agent.storage.btrfs import parse_qgroups
from node_agent.storage.commands import run_command
from node_agent.storage.directory import DirectoryQuotaWatch, DirectoryVolume
from node_agent.storage.errors import DiskLimitBelowUsage, StorageError
from node_agent.storage.mounts import parse_mountinfo
from node_agent.storage.volume import MIB, DiskUsage
from shared.command_keys import public_key_text

PUBLIC_KEY = public_key_text(Ed25519PrivateKey.generate().public_key())
UID, GID = os.getuid(), os.getgid()


def settings(tmp_path: Path, **changes: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "node_id": uuid.uuid4(),
        "data_dir": tmp_path,
        "trusted_keys": {"cp-key": PUBLIC_KEY},
    }
    values.update(changes)
    return AgentSettings.model_validate(values)


# --- settings ------------------------------------------------------------------------------


def test_production_refuses_the_directory_backend(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="disk limits the kernel enforces"):
        settings(tmp_path, environment="production", storage_backend="directory")


def test_only_a_development_agent_stops_its_games_when_it_exits(tmp_path: Path) -> None:
    assert settings(tmp_path, stop_servers_on_exit=True).stop_servers_on_exit
    assert not settings(tmp_path).stop_servers_on_exit
    with pytest.raises(ValidationError, match="keep games running across their restarts"):
        settings(tmp_path, environment="production", stop_servers_on_exit=True)


@pytest.mark.parametrize("backend", ["auto", "btrfs", "ext4"])
def test_production_accepts_the_enforcing_backends(tmp_path: Path, backend: str) -> None:
    assert settings(tmp_path, environment="production", storage_backend=backend)


def test_the_config_file_reports_the_refused_backend_as_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'node_id = "{uuid.uuid4()}"\ndata_dir = "{tmp_path}"\nenvironment = "production"\n'
        'storage_backend = "directory"\n\n[trusted_keys]\n'
        f'"cp-key" = "{PUBLIC_KEY}"\n',
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as caught:
        load_settings(config)

    assert any('"directory" only polls usage' in problem for problem in caught.value.problems)


def test_pool_defaults_live_in_the_data_dir(tmp_path: Path) -> None:
    agent = settings(tmp_path)

    assert agent.storage_backend == "auto"
    assert (agent.pool_dir, agent.pool_image) == (tmp_path / "pool", tmp_path / "pool.img")


def test_a_pool_too_small_for_mkfs_btrfs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        settings(tmp_path, storage_pool_size_mib=64)


# --- choosing the backend ------------------------------------------------------------------


async def test_auto_without_root_falls_back_to_directory_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with capture_logs() as logs:
        storage = await open_storage(settings(tmp_path), UID, GID)

    assert (storage.backend, storage.enforced) == ("directory", False)
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert warnings
    assert "DISK LIMITS ARE NOT ENFORCED" in warnings[0]["event"]
    assert "does not run as root" in warnings[0]["reason"]


async def test_auto_without_root_is_refused_in_production(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(ConfigError, match="disk limits cannot be enforced"):
        await open_storage(settings(tmp_path, environment="production"), UID, GID)


@pytest.mark.parametrize("backend", ["btrfs", "ext4"])
async def test_an_explicit_backend_that_cannot_work_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(ConfigError, match=f"storage_backend {backend}: .*not run as root"):
        await open_storage(settings(tmp_path, storage_backend=backend), UID, GID)


# --- parsing what the kernel and btrfs-progs print -----------------------------------------


def test_qgroup_rows_are_read_with_their_limits() -> None:
    text = (
        "Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path \n"
        "--------    ----------    ---------  --------------  -------------   ---- \n"
        "0/5              16384        16384            none           none   <toplevel>\n"
        "0/256         10469376     10469376        10485760           none   3f2a-uuid\n"
    )

    qgroups = parse_qgroups(text)

    assert set(qgroups) == {"0/5", "0/256"}
    assert qgroups["0/256"].referenced == 10469376
    assert qgroups["0/256"].max_referenced == 10 * MIB
    assert qgroups["0/5"].max_referenced is None


def test_mountinfo_paths_with_spaces_are_unescaped() -> None:
    text = (
        "36 35 98:0 / /srv/stellar\\040pool rw,noatime shared:1 - btrfs /dev/loop3 rw,space_cache\n"
        "37 35 0:5 / /proc rw - proc proc rw\n"
    )

    mounts = parse_mountinfo(text)

    assert [(str(m.mount_point), m.fstype, m.source) for m in mounts] == [
        ("/srv/stellar pool", "btrfs", "/dev/loop3"),
        ("/proc", "proc", "proc"),
    ]


# --- the directory backend's poll ----------------------------------------------------------


async def test_directory_poll_reports_only_the_server_over_its_limit(tmp_path: Path) -> None:
    over, under = uuid.uuid4(), uuid.uuid4()
    for server_id in (over, under):
        await DirectoryVolume(tmp_path, server_id, UID, GID).create(1)
    (tmp_path / "volumes" / str(over) / "big.bin").write_bytes(os.urandom(2 * MIB))
    (tmp_path / "volumes" / str(under) / "small.bin").write_bytes(os.urandom(MIB // 4))
    reported: list[tuple[uuid.UUID, DiskUsage]] = []

    async def hook(server_id: uuid.UUID, usage: DiskUsage) -> None:
        reported.append((server_id, usage))

    watch = DirectoryQuotaWatch(tmp_path, interval=60)
    watch.on_over_limit = hook
    found = await watch.check_once()

    assert found == [over]
    assert [server_id for server_id, _ in reported] == [over]
    assert reported[0][1].total_bytes == MIB
    assert reported[0][1].used_bytes >= 2 * MIB


async def test_directory_limit_below_usage_is_refused_and_removal_forgets_it(
    tmp_path: Path,
) -> None:
    volume = DirectoryVolume(tmp_path, uuid.uuid4(), UID, GID)
    await volume.create(4)
    (volume.path / "data.bin").write_bytes(os.urandom(2 * MIB))

    with pytest.raises(DiskLimitBelowUsage):
        await volume.resize(1)
    await volume.resize(8)
    assert (await volume.usage()).total_bytes == 8 * MIB
    await volume.remove()

    assert list((tmp_path / "volumes").iterdir()) == []


# --- running the tools ---------------------------------------------------------------------


async def test_a_failing_tool_is_named_with_its_complaint() -> None:
    with pytest.raises(StorageError, match=r"`ls /no/such/path` failed \(exit 2\): .*No such"):
        await run_command("ls", "/no/such/path")


async def test_a_missing_tool_says_it_is_not_installed() -> None:
    with pytest.raises(StorageError, match="not-a-tool-xyz is not installed"):
        await run_command("not-a-tool-xyz")


async def test_a_hung_tool_is_killed_at_its_time_limit() -> None:
    with pytest.raises(StorageError, match=r"did not finish within 0\.2 s"):
        await run_command("sleep", "30", limit_seconds=0.2)
